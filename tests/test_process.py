"""The ``process`` handler (SPEC §5b) on real processes the tests start.

Each child is a Python process whose command line carries a unique token, so only it
can match; it says "ready" once its signal handling is set up. One child ignores SIGTERM,
to prove the KILL after ``timeout``. The ``marker`` fixture fails a test that leaves any
process behind, and every child is reaped (or killed) by the test itself.
"""

from __future__ import annotations

import getpass
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .playing import Play, one_line_error, play

pytestmark = pytest.mark.usefixtures("marker")

CHILD = """\
import signal, sys, time
if sys.argv[1] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


class Children:
    def __init__(self) -> None:
        self.token = f"rbproc-{uuid.uuid4().hex[:12]}"
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, mode: str = "plain", program: str = sys.executable) -> subprocess.Popen[str]:
        proc = subprocess.Popen([program, "-c", CHILD, mode, self.token], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            if proc.stdout:
                proc.stdout.close()


@pytest.fixture
def children() -> Iterator[Children]:
    group = Children()
    try:
        yield group
    finally:
        group.stop_all()


def run_book(tmp_path: Path, steps: list[dict[str, Any]], *args: str) -> Play:
    return play(tmp_path, json.dumps({"name": "process-tests", "steps": steps}), *args)


def test_running_and_absent_checks(tmp_path, children):
    first, second = children.start(), children.start()
    token = children.token
    run = run_book(
        tmp_path,
        [
            {"id": "two", "process": {"cmdline": token, "min_count": 2, "max_count": 2}},
            {"id": "by_pid", "process": {"pid": first.pid, "user": getpass.getuser()}},
            {"id": "by_name", "process": {"name": Path(sys.executable).name, "cmdline": token}},
            {"id": "absent", "process": {"cmdline": f"{token}-other", "state": "absent"}},
            {"id": "too_few", "process": {"cmdline": token, "min_count": 3}, "continue_on_error": True},
            {"id": "too_many", "process": {"cmdline": token, "max_count": 1}, "continue_on_error": True},
            {"id": "not_absent", "process": {"cmdline": token, "state": "absent"}, "continue_on_error": True},
            {
                "id": "wrong_user",
                "process": {"pid": first.pid, "user": "no-such-user-x"},
                "continue_on_error": True,
            },
        ],
    )
    assert run.returncode == 0, run.stderr
    found = run.step("two")["result"]["processes"]
    assert sorted(p["pid"] for p in found) == sorted([first.pid, second.pid])
    for info in found:
        assert token in info["cmdline"] and info["user"] == getpass.getuser()
        assert info["memory_rss"] > 0 and info["cpu_percent"] >= 0 and info["status"] != "zombie"
    assert [p["pid"] for p in run.step("by_pid")["result"]["processes"]] == [first.pid]
    assert run.step("by_name")["result"]["count"] == 2
    assert run.step("absent")["status"] == "ok"
    assert "only 2 match" in one_line_error(run.step("too_few"))
    assert "expected at most 1" in one_line_error(run.step("too_many"))
    assert str(second.pid) in one_line_error(run.step("not_absent"))
    assert "no process matches" in one_line_error(run.step("wrong_user"))
    assert first.poll() is None and second.poll() is None  # checks touch nothing


def test_a_name_longer_than_linux_keeps_is_matched_whole(tmp_path, children):
    # The kernel keeps 15 characters of a program's name; the first argument has all of it.
    program = tmp_path / "runbook-test-long-program-name"
    program.symlink_to(sys.executable)
    child = children.start(program=str(program))
    run = run_book(
        tmp_path,
        [
            {"id": "whole", "process": {"name": program.name}},
            {"id": "other", "process": {"name": program.name + "-x", "state": "absent"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    assert [p["pid"] for p in run.step("whole")["result"]["processes"]] == [child.pid]
    assert run.step("whole")["result"]["processes"][0]["name"] == program.name


def test_stopped_sends_term_and_reports_it(tmp_path, children):
    child = children.start()
    pidfile = tmp_path / "app.pid"
    pidfile.write_text(f"{child.pid}\n")
    preview = run_book(
        tmp_path, [{"id": "stop", "process": {"pidfile": "app.pid", "state": "stopped"}}], "--dry-run"
    )
    assert preview.returncode == 0, preview.stderr
    assert f"would send SIGTERM to {child.pid}" in preview.step("stop")["result"]["dry_run"]
    assert child.poll() is None, "a dry run stopped the process"

    run = run_book(tmp_path, [{"id": "stop", "process": {"pidfile": "app.pid", "state": "stopped"}}])
    assert run.returncode == 0, run.stderr
    step = run.step("stop")
    assert step["status"] == "changed"
    assert step["result"]["stopped"] == [{"pid": child.pid, "name": child_name(step), "signal": "TERM"}]
    assert child.wait(timeout=10) == -signal.SIGTERM

    again = run_book(tmp_path, [{"id": "stop", "process": {"pidfile": "app.pid", "state": "stopped"}}])
    assert again.step("stop")["status"] == "ok" and again.step("stop")["result"]["stopped"] == []


def child_name(step: dict[str, Any]) -> str:
    return step["result"]["processes"][0]["name"]


def test_a_process_ignoring_term_is_killed_after_the_timeout(tmp_path, children):
    stubborn = children.start("ignore-term")
    polite = children.start()
    run = run_book(
        tmp_path,
        [{"id": "stop", "process": {"cmdline": children.token, "state": "stopped", "timeout": "0.5s"}}],
    )
    assert run.returncode == 0, run.stderr
    stopped = {entry["pid"]: entry["signal"] for entry in run.step("stop")["result"]["stopped"]}
    assert stopped == {stubborn.pid: "KILL", polite.pid: "TERM"}
    assert stubborn.wait(timeout=10) == -signal.SIGKILL
    assert polite.wait(timeout=10) == -signal.SIGTERM
    assert run.step("stop")["duration"] >= 0.5


def test_signal_by_name_or_number(tmp_path, children):
    first, second = children.start(), children.start()
    run = run_book(
        tmp_path,
        [
            {"id": "int", "process": {"pid": first.pid, "state": "stopped", "signal": "SIGINT"}},
            {"id": "hup", "process": {"pid": second.pid, "state": "stopped", "signal": int(signal.SIGHUP)}},
        ],
    )
    assert run.returncode == 0, run.stderr
    assert first.wait(timeout=10) != 0  # KeyboardInterrupt in the child
    assert run.step("int")["result"]["stopped"][0]["signal"] == "INT"
    assert second.wait(timeout=10) == -signal.SIGHUP


def test_runbook_never_selects_itself(tmp_path):
    # The playbook's file name, unique to this test, is on runbook's own command line.
    name = f"rbself-{uuid.uuid4().hex[:12]}"
    steps = [{"id": "me", "process": {"cmdline": name, "state": "absent"}}]
    run = play(tmp_path, json.dumps({"name": "self", "steps": steps}), name=f"{name}.yml")
    assert run.returncode == 0, run.stderr
    assert run.step("me")["result"]["processes"] == []


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "bad.pid").write_text("not a pid\n")
    cases = {
        "signal": ({"pid": 1, "state": "stopped", "signal": "NOPE"}, "unknown signal 'NOPE'"),
        "regex": ({"cmdline": "(unclosed"}, "not a valid regular expression"),
        "pidfile": ({"pidfile": "bad.pid"}, "does not hold a process id"),
        "nopidfile": ({"pidfile": "missing.pid"}, "no process matches pidfile 'missing.pid'"),
    }
    steps = [{"id": key, "process": args, "continue_on_error": True} for key, (args, _) in cases.items()]
    run = run_book(tmp_path, steps)
    for key, (_, expected) in cases.items():
        assert expected in one_line_error(run.step(key))
