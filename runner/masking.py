"""Masking of secret values: each, and its common encodings, prints as ``***``.

Secrets are registered as they are loaded (``!vault`` values, ``secrets:`` entries,
every value of an encrypted vars file). Everything runbook prints or records passes
through ``SECRETS.mask``: events (so the console, JSON output, reports, JUnit files and
the history), error messages, and the output of child processes (masked line by line,
after lines are whole, so a secret split across two reads is still found).

Besides the value itself, its base64 (standard and URL-safe, with and without
padding), URL-quoted and JSON-escaped forms are masked. Values shorter than
``MIN_LENGTH`` characters are not: masking every "on" or "1" would garble output
without protecting anything.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any
from urllib.parse import quote, quote_plus

MIN_LENGTH = 4
MASK = "***"


def encodings(value: str) -> set[str]:
    """The forms of ``value`` that could appear in output."""
    forms = {value, quote(value, safe=""), quote_plus(value), json.dumps(value)[1:-1]}
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    raw = value.encode()
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode()
        forms.update((text, text.rstrip("=")))
    return {form for form in forms if len(form) >= MIN_LENGTH}


class Secrets:
    """The secret values of this process, and one regular expression that finds them all."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        if not isinstance(value, str) or len(value) < MIN_LENGTH:
            return
        # The lines of a multi-line secret (a PEM key, say) are secrets on their own too.
        fresh = {value} | {line.strip() for line in value.splitlines() if len(line.strip()) >= MIN_LENGTH}
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            forms: set[str] = set()
            for secret in self._values:
                forms |= encodings(secret)
            # Longest first, so a value's base64 is not half-masked through a shorter secret.
            ordered = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def add_all(self, data: Any) -> None:
        """Every string inside ``data`` (a whole encrypted file's values)."""
        if isinstance(data, dict):
            for item in data.values():
                self.add_all(item)
        elif isinstance(data, list):
            for item in data:
                self.add_all(item)
        else:
            self.add(data)

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text

    def mask(self, data: Any) -> Any:
        """``data`` with every secret replaced, in strings at any depth (keys included)."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            return {self.mask(k) if isinstance(k, str) else k: self.mask(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.mask(item) for item in data]
        return data

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._pattern = None


SECRETS = Secrets()
