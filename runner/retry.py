"""Retry policy: how many attempts, how long to wait between them, and what is retried.

The wait before retry ``n`` (the ``n``-th retry, so attempt ``n + 1``) is
``min(max_delay, delay * backoff ** (n - 1))``. With ``jitter: true`` the wait is drawn
uniformly from ``[0, wait]`` ("full jitter"); with a fraction ``f`` from
``[wait * (1 - f), wait]``. ``on`` says which failures are retried: ``error`` (any
failure), ``timeout``, ``{rc: [...]}`` (a command's exit code) or ``{status: [...]}`` (an
HTTP status). ``until`` turns an unmet condition into a retried failure.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner.units import parse_duration

DEFAULT_ON: tuple[Any, ...] = ("error", "timeout")
UNTIL_DEFAULT_ATTEMPTS = 3


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None
    jitter: bool | float = False
    on: Sequence[Any] = field(default=DEFAULT_ON)

    @classmethod
    def from_options(cls, options: Any, has_until: bool = False) -> RetryPolicy:
        """Build from a step's rendered ``retry`` value (a mapping, an int, or None)."""
        if options is None:
            return cls(attempts=UNTIL_DEFAULT_ATTEMPTS if has_until else 1)
        if isinstance(options, int) and not isinstance(options, bool):
            return cls(attempts=options)
        if not isinstance(options, Mapping):
            raise ValueError(f"retry must be a number of attempts or a mapping, got {options!r}")
        default_attempts = UNTIL_DEFAULT_ATTEMPTS if has_until else 1
        max_delay = options.get("max_delay")
        return cls(
            attempts=int(options.get("attempts", default_attempts)),
            delay=parse_duration(options.get("delay", 0)),
            backoff=float(options.get("backoff", 1)),
            max_delay=None if max_delay is None else parse_duration(max_delay),
            jitter=options.get("jitter", False),
            on=tuple(options.get("on", DEFAULT_ON)),
        )

    def wait_before(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 = the first retry)."""
        wait = self.delay * self.backoff ** (retry_number - 1)
        if self.max_delay is not None:
            wait = min(wait, self.max_delay)
        if self.jitter is True:
            return (rng or random).uniform(0, wait)
        if self.jitter and not isinstance(self.jitter, bool):
            fraction = min(max(float(self.jitter), 0.0), 1.0)
            return (rng or random).uniform(wait * (1 - fraction), wait)
        return wait

    def retries(self, failure: Failure) -> bool:
        """Whether this kind of failure is one the policy retries."""
        for rule in self.on:
            if rule == "error" and not failure.timed_out:
                return True
            if rule == "timeout" and failure.timed_out:
                return True
            if isinstance(rule, Mapping):
                result = failure.result or {}
                if "rc" in rule and result.get("rc") in rule["rc"]:
                    return True
                if "status" in rule and result.get("status_code") in rule["status"]:
                    return True
        return False


@dataclass(frozen=True)
class Failure:
    """What went wrong in one attempt, as the retry policy needs to know it."""

    error: str
    timed_out: bool = False
    result: Mapping[str, Any] | None = None
