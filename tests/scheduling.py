"""Running ``runbook schedule`` as a real daemon process for the tests, and reading its JSON log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Scheduler:
    """A ``runbook schedule --log-format json`` process; its log lines are collected as they come."""

    def __init__(self, files: list[Path], *args: str, cwd: Path, env: dict[str, str] | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "schedule", *map(str, files), "--log-format", "json", *args],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=None if env is None else {**os.environ, **env},
        )
        self.events: list[dict[str, Any]] = []
        self.other_lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                try:
                    self.events.append(json.loads(line))
                except json.JSONDecodeError:
                    self.other_lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], Any], timeout: float = 30, what: str = "an event"
    ) -> Any:
        """Wait until ``predicate(events)`` is true (bounded); return its value."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                value = predicate(self.events)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {what} in {timeout}s; log: {self.events} {self.other_lines}")
                self._changed.wait(min(left, 0.5))

    def finished(self, playbook: str | None = None) -> list[dict[str, Any]]:
        return [
            e for e in self.events if e["event"] == "run_finished" and playbook in (None, e.get("playbook"))
        ]

    def wait_runs(self, count: int, playbook: str | None = None, timeout: float = 30) -> list[dict[str, Any]]:
        return self.wait_for(
            lambda events: len(self.finished(playbook)) >= count and self.finished(playbook),
            timeout,
            f"{count} finished runs",
        )

    def first(self, kind: str, timeout: float = 20) -> dict[str, Any]:
        """The first log event of this kind, waiting for it (bounded)."""
        return self.wait_for(
            lambda events: next((e for e in events if e["event"] == kind), None), timeout, kind
        )

    @property
    def url(self) -> str:
        event = self.first("http")
        return str(event["url"])

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the scheduler did not stop in {timeout}s: {self.events[-8:]}") from None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            self._reader.join(5)
            assert self.proc.stderr is not None
            self.proc.stderr.close()
        return code

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
