"""Running ``runbook play`` as a user would, and reading its JSON events, for the tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest


@dataclass
class Play:
    """One finished ``runbook play --output json`` process."""

    returncode: int
    stdout: str
    stderr: str
    events: list[dict[str, Any]]

    def finished(self) -> dict[str, Any]:
        runs = [e for e in self.events if e["event"] == "run_finished"]
        assert len(runs) == 1, self.stderr
        return runs[0]

    def step(self, key: str) -> dict[str, Any]:
        """The ``step_finished`` event of the step with this id (or label)."""
        found = [
            e
            for e in self.events
            if e["event"] == "step_finished" and key in (e["step"]["id"], e["step"]["label"])
        ]
        assert len(found) == 1, f"{len(found)} step_finished events for {key!r}; stderr: {self.stderr}"
        return found[0]

    def index(self, key: str) -> int:
        """Position of a step's ``step_finished`` event in the stream."""
        return self.events.index(self.step(key))

    def lines(self, key: str, stream: str = "stdout") -> list[str]:
        """The ``step_output`` lines of one step and stream, in order."""
        return [
            e["line"]
            for e in self.events
            if e["event"] == "step_output"
            and key in (e["step"]["id"], e["step"]["label"])
            and e["stream"] == stream
        ]


def parse_events(stdout: str) -> list[dict[str, Any]]:
    events = []
    for number, line in enumerate(stdout.split("\n"), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:  # a line that is not one whole event is a bug
            raise AssertionError(f"stdout line {number} is not a JSON event: {line[:300]!r}") from exc
        assert {"event", "time", "run_id"} <= event.keys(), event
        events.append(event)
    return events


def play(
    tmp_path: Path,
    text: str,
    *args: str,
    cwd: Path | None = None,
    name: str = "play.yml",
    stdin: Any = subprocess.DEVNULL,
    timeout: float = 90,
    env: dict[str, str] | None = None,
    prefix: Sequence[str] = (),
) -> Play:
    """Write ``text`` as a playbook and run it with a real ``runbook play`` process.

    ``prefix`` comes before the command, such as ``restricted_prefix``'s ``setpriv``."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    proc = subprocess.run(
        [*prefix, sys.executable, "-m", "runner", "play", str(path), "--output", "json", *args],
        cwd=cwd or tmp_path,
        stdin=stdin,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return Play(proc.returncode, proc.stdout, proc.stderr, parse_events(proc.stdout))


DROP_DAC = "-dac_override,-dac_read_search"


def restricted_prefix(tmp_path: Path) -> list[str]:
    """A command prefix under which file permissions apply, even when the tests run as root.

    As root, runbook runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (``setpriv``),
    so a mode-000 file is as unreadable to it as to anyone: a real EACCES, no mock."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("tests run as root and setpriv is missing: root bypasses file permissions")
    prefix = [setpriv, f"--inh-caps={DROP_DAC}", f"--bounding-set={DROP_DAC}"]
    probe = tmp_path / "permission-probe"
    probe.write_text("x")
    probe.chmod(0)
    try:
        proc = subprocess.run([*prefix, "cat", str(probe)], capture_output=True)
    finally:
        probe.unlink()
    if proc.returncode == 0:
        pytest.skip("dropping CAP_DAC_OVERRIDE did not make a mode-000 file unreadable here")
    return prefix


def one_line_error(step: dict[str, Any]) -> str:
    """The error of a failed step, checked to be one line without a traceback."""
    assert step["status"] == "failed", step
    error = step["error"]
    assert isinstance(error, str) and error and "\n" not in error, error
    assert "Traceback" not in error
    return error


# -- trees against cp ---------------------------------------------------------------------------


# -- processes a test started: none may outlive it ------------------------------------------

MARKER_VAR = "RUNBOOK_TEST_MARKER"


def marked_processes(token: str) -> list[psutil.Process]:
    """Live processes (not zombies) whose environment or command line carries ``token``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "environ", "status"]):
        info = proc.info
        if info["pid"] == os.getpid() or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if token in " ".join(info["cmdline"] or []) or (info["environ"] or {}).get(MARKER_VAR) == token:
            found.append(proc)
    return found
