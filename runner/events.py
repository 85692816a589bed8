"""The event stream of a run, and the sinks that print or collect it.

The executor emits plain dict events (SPEC §8 "JSON events"): ``run_started``,
``step_started``, ``step_retry``, ``step_output``, ``step_finished``, ``run_finished``,
each with ``event``, ``time`` and ``run_id``; step events add ``step`` ({id, label}).
``EventBus.emit`` is called from many threads: each sink gets whole events under one
lock, so lines from parallel steps never interleave mid-line.

Sinks: ``PlainPrinter`` (one stable line per event, for CI logs), ``JsonPrinter``
(one JSON object per line), ``Recorder`` (keeps step results for reports). The live
terminal view is in ``runner.console``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol, TextIO

from runner.units import format_duration

Event = dict[str, Any]


class Sink(Protocol):
    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def now_iso() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def epoch_of(iso: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time (as ``now_iso`` writes), or None."""
    try:
        return datetime.fromisoformat(iso).timestamp() if iso else None
    except ValueError:
        return None


class EventBus:
    """Fans events out to sinks, one event at a time."""

    def __init__(
        self, run_id: str, sinks: list[Sink] | None = None, mask: Callable[[Any], Any] | None = None
    ):
        self.run_id = run_id
        self.sinks: list[Sink] = list(sinks or [])
        self._lock = threading.Lock()
        self._mask = mask

    def emit(self, event: str, **fields: Any) -> Event:
        record: Event = {"event": event, "time": now_iso(), "run_id": self.run_id, **fields}
        if self._mask is not None:
            record = self._mask(record)
        with self._lock:
            for sink in self.sinks:
                sink.handle(record)
        return record

    def progress(self, step: dict[str, Any], done: int, total: int) -> None:
        """Byte progress of a running step, for sinks that draw it (not an event: not recorded)."""
        for sink in self.sinks:
            draw = getattr(sink, "progress", None)
            if draw is not None:
                draw(step, done, total)

    def close(self) -> None:
        with self._lock:
            for sink in self.sinks:
                sink.close()


class NestedEvents:
    """The events of an included playbook, passed to the including run's bus.

    The included run's own start and end are not events of the run (the ``include``
    step's are); its steps appear under the step's label (``deploy / migrate``) and id
    (``deploy.migrate``), so they stay apart from the including playbook's steps."""

    def __init__(self, parent: EventBus | NestedEvents, step: dict[str, Any]):
        self.parent = parent
        self.step = step
        self.run_id: str = parent.run_id

    def _nested(self, ref: dict[str, Any]) -> dict[str, Any]:
        outer_id, inner_id = self.step.get("id"), ref.get("id")
        return {
            "id": f"{outer_id}.{inner_id}" if outer_id and inner_id else None,
            "label": f"{self.step.get('label')} / {ref.get('label')}",
        }

    def emit(self, event: str, **fields: Any) -> Event:
        if event in ("run_started", "run_finished"):
            return {}
        if isinstance(fields.get("step"), dict):
            fields["step"] = self._nested(fields["step"])
        return self.parent.emit(event, **fields)

    def progress(self, step: dict[str, Any], done: int, total: int) -> None:
        self.parent.progress(self._nested(step), done, total)

    def close(self) -> None:
        pass


def to_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))


class JsonPrinter:
    """``--output json``: one JSON object per line per event."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stdout

    def handle(self, event: Event) -> None:
        self.stream.write(to_json(event) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


STATUS_WORDS = {
    "ok": "ok",
    "changed": "changed",
    "failed": "FAILED",
    "skipped": "skipped",
    "cancelled": "cancelled",
}


def status_text(result: dict[str, Any]) -> str:
    """``ok``, ``changed``, ``FAILED (ignored)``... as summaries print a step's outcome."""
    word = STATUS_WORDS.get(result.get("status", ""), str(result.get("status")))
    if result.get("status") == "failed" and result.get("ignored"):
        word += " (ignored)"
    return word


class PlainPrinter:
    """One line per event, prefixed by the step's label: stable output for logs and CI."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False, dry_run: bool = False):
        self.stream = stream or sys.stdout
        self.verbose = verbose
        self.dry_run = dry_run

    def write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def handle(self, event: Event) -> None:
        kind = event["event"]
        label = event.get("step", {}).get("label", "")
        if kind == "run_started":
            mode = " (dry run)" if event.get("dry_run") else ""
            self.write(f"run {event['run_id']} of {event['playbook']}{mode}")
        elif kind == "step_started":
            self.write(f"[{label}] started")
        elif kind == "step_output":
            if self.verbose:
                self.write(f"[{label}] {event['line']}")
        elif kind == "step_retry":
            self.write(
                f"[{label}] attempt {event['attempt']} failed: {event['error']}; "
                f"retrying in {format_duration(event['wait'])}"
            )
        elif kind == "step_finished":
            self.write(finished_line(label, event, self.dry_run))
            if event.get("status") == "failed" and not self.verbose:
                for line in output_tail(event.get("result") or {}):
                    self.write(f"[{label}] | {line}")
        elif kind == "run_finished":
            if event.get("error"):
                self.write(f"run error: {event['error']}")
            self.write(
                f"run {event['status']} in {format_duration(event['duration'])} (exit {event['exit_code']})"
            )

    def close(self) -> None:
        self.stream.flush()


def finished_line(label: str, event: Event, dry_run: bool = False) -> str:
    result = event.get("result") or {}
    text = f"[{label}] {status_text(result)}"
    if dry_run and result.get("dry_run"):
        text = f"[{label}] {result.get('verdict', 'unknown')}: {result['dry_run']}"
        if "args" in result:
            text += f" {to_json(result['args'])}"
    if result.get("skip_reason"):
        text += f" ({result['skip_reason']})"
    if event.get("attempts", 1) > 1:
        text += f" after {event['attempts']} attempts"
    text += f" in {format_duration(event.get('duration') or 0)}"
    if event.get("error"):
        text += f": {event['error']}"
    return text


def output_tail(result: dict[str, Any], lines: int = 20) -> list[str]:
    """The last lines a failed step printed (stderr, else stdout), to show with its failure."""
    for stream in ("stderr", "stdout"):
        text = result.get(stream)
        if isinstance(text, str) and text.strip():
            return text.rstrip("\n").splitlines()[-lines:]
    return []


class Recorder:
    """Keeps what reports need: the run's start, and each finished step's record."""

    def __init__(self) -> None:
        self.run: Event = {}
        self.steps: list[Event] = []
        self.finished: Event = {}

    def handle(self, event: Event) -> None:
        kind = event["event"]
        if kind == "run_started":
            self.run = event
        elif kind == "step_finished":
            self.steps.append(event)
        elif kind == "run_finished":
            self.finished = event

    def close(self) -> None:
        pass
