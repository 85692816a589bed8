"""The ``wait`` handler (SPEC §5, §6 output, §8 JSON events).

Playbooks run by a real ``runbook play --output json`` process; the JSON events are
read back. A few unit-level tests call ``tasks.wait.run`` with a real ``TaskContext``.
Only lower bounds on time are asserted (the machine is shared); the counts of polls
have upper bounds, since a poll never comes sooner than ``interval`` after the last.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import wait

from .playing import play

# Every test gets a marker in its environment; no process carrying it may outlive the test.
pytestmark = pytest.mark.usefixtures("marker")

# -- helpers ------------------------------------------------------------------------------------


def event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["time"]).timestamp()


def ctx_for(tmp_path: Path, **kwargs: Any) -> TaskContext:
    return TaskContext(step_label="unit", cwd=str(tmp_path), **kwargs)


# -- durations -----------------------------------------------------------------------------------


def test_a_duration_waits_at_least_that_long(tmp_path):
    run = play(
        tmp_path,
        """\
name: sleeps
steps:
  - id: shorthand
    wait: 0.2s
  - id: seconds_number
    wait: 0.3
  - id: milliseconds
    wait: 250ms
  - id: mapping
    wait: {duration: 0.2s}
""",
    )
    assert run.returncode == 0, run.stderr
    assert run.finished()["status"] == "ok"
    for step_id, seconds in (
        ("shorthand", 0.2),
        ("seconds_number", 0.3),
        ("milliseconds", 0.25),
        ("mapping", 0.2),
    ):
        step = run.step(step_id)
        assert step["status"] == "ok", step  # waiting changes nothing
        assert step["result"]["changed"] is False
        assert step["result"]["waited"] >= seconds
        assert step["duration"] >= seconds
        assert step["result"]["polls"] == 0


def test_a_step_timeout_cancels_a_long_wait(tmp_path):
    run = play(
        tmp_path,
        """\
name: cut-short
steps:
  - id: long
    wait: 1h
    timeout: 0.5s
""",
    )
    assert run.returncode == 1
    step = run.step("long")
    assert step["status"] == "failed"
    assert "timed out" in step["error"]
    assert step["duration"] >= 0.5


# -- path ----------------------------------------------------------------------------------------


def test_path_present_succeeds_once_a_sibling_creates_it(tmp_path):
    where = tmp_path / "where-runbook-runs"
    where.mkdir()
    run = play(
        tmp_path,
        """\
name: appears
steps:
  - parallel:
      steps:
        - id: creator
          shell: "sleep 1; touch later.txt"
        - id: waiter
          wait: {path: later.txt, state: present, interval: 50ms, timeout: 60s}
        - id: default_state
          wait: {path: later.txt, interval: 50ms, timeout: 60s}
""",
        name="elsewhere/play.yml",
        cwd=where,
    )
    assert run.returncode == 0, run.stderr
    created = (where / "later.txt").stat().st_mtime
    for step_id in ("waiter", "default_state"):
        step = run.step(step_id)
        assert step["status"] == "ok", step
        assert step["result"]["polls"] >= 2, "the file was not there at the first poll"
        assert step["result"]["waited"] > 0
        assert event_time(step) >= created - 0.01, "it ended only after the file appeared"


def test_path_absent_succeeds_once_a_sibling_removes_it(tmp_path):
    (tmp_path / "doomed.txt").write_text("")
    (tmp_path / "here.txt").write_text("")
    run = play(
        tmp_path,
        """\
name: disappears
steps:
  - parallel:
      steps:
        - id: remover
          shell: "sleep 1; rm doomed.txt"
        - id: waiter
          wait: {path: doomed.txt, state: absent, interval: 50ms, timeout: 60s}
  - id: already_absent
    wait: {path: never-there.txt, state: absent, interval: 10s, timeout: 60s}
  - id: already_present
    wait: {path: here.txt, interval: 10s, timeout: 60s}
""",
    )
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "doomed.txt").exists()
    step = run.step("waiter")
    assert step["status"] == "ok"
    assert step["result"]["polls"] >= 2
    for step_id in ("already_absent", "already_present"):
        step = run.step(step_id)
        assert step["status"] == "ok", step
        assert step["result"]["polls"] == 1


def test_reaching_the_timeout_fails_the_step_with_a_clear_error(tmp_path):
    run = play(
        tmp_path,
        """\
name: never
vars: {name: never.txt}
steps:
  - id: never
    wait: {path: "{{ name }}", timeout: 0.5s, interval: 0.1s}
  - id: after
    shell: "touch after.txt"
""",
    )
    assert run.returncode == 1
    assert run.finished()["status"] == "failed" and run.finished()["exit_code"] == 1
    step = run.step("never")
    assert step["status"] == "failed"
    error = step["error"]
    assert "\n" not in error
    assert "never.txt" in error
    assert "500ms" in error or "0.5s" in error, "the error says how long it waited"
    assert "present" in error
    result = step["result"]
    assert 1 < result["polls"] <= 0.5 / 0.1 + 1
    assert result["waited"] >= 0.5
    assert not (tmp_path / "after.txt").exists()


# -- until ---------------------------------------------------------------------------------------


def test_until_that_holds_succeeds_at_the_first_poll(tmp_path, monkeypatch):
    monkeypatch.setenv("RB_WAIT_FLAG", "yes")
    run = play(
        tmp_path,
        """\
name: ready
vars: {ready: false}
steps:
  - id: ready
    wait: {until: "ready and env.RB_WAIT_FLAG == 'yes'", interval: 10s, timeout: 60s}
""",
        "-e",
        "ready=true",
    )
    assert run.returncode == 0, run.stderr
    step = run.step("ready")
    assert step["status"] == "ok"
    assert step["result"]["polls"] == 1


def test_until_that_stays_false_times_out(tmp_path):
    run = play(
        tmp_path,
        """\
name: not-ready
vars: {ready: false}
steps:
  - id: not_ready
    wait: {until: "ready", interval: 0.1s, timeout: 0.5s}
""",
    )
    assert run.returncode == 1
    step = run.step("not_ready")
    assert step["status"] == "failed"
    assert "ready" in step["error"] and "\n" not in step["error"]
    assert 1 < step["result"]["polls"] <= 0.5 / 0.1 + 1
    assert step["result"]["waited"] >= 0.5


def test_until_is_evaluated_again_at_every_poll(tmp_path):
    """A parallel sibling's result appears in ``steps`` while the wait polls (no DAG here)."""
    run = play(
        tmp_path,
        """\
name: sees-sibling
steps:
  - parallel:
      steps:
        - id: slow
          shell: "sleep 1; echo done"
        - id: watcher
          wait: {until: "steps.slow is defined and steps.slow.ok", interval: 50ms, timeout: 60s}
""",
    )
    assert run.returncode == 0, run.stderr
    step = run.step("watcher")
    assert step["status"] == "ok", step
    assert step["result"]["polls"] >= 2
    assert run.index("watcher") > run.index("slow"), "it held only once the sibling had finished"


# -- interval ------------------------------------------------------------------------------------


def test_polls_are_spaced_by_the_interval(tmp_path):
    run = play(
        tmp_path,
        """\
name: intervals
steps:
  - parallel:
      steps:
        - id: quarter
          wait: {path: never.txt, interval: 250ms, timeout: 1s}
        - id: default_interval
          wait: {path: never.txt, timeout: 1.5s}
        - id: interval_longer_than_timeout
          wait: {path: never.txt, interval: 1h, timeout: 0.3s}
""",
    )
    assert run.returncode == 1
    quarter = run.step("quarter")["result"]
    assert 2 <= quarter["polls"] <= 1 / 0.25 + 1
    assert quarter["waited"] >= max(1.0, (quarter["polls"] - 1) * 0.25 * 0.99)
    default = run.step("default_interval")["result"]
    assert 2 <= default["polls"] <= 3, "the default interval is 1s"
    capped = run.step("interval_longer_than_timeout")
    assert capped["status"] == "failed"
    assert capped["result"]["polls"] <= 2, "the timeout cuts the last pause short"
    assert capped["result"]["waited"] >= 0.3


# -- dry run -------------------------------------------------------------------------------------


def test_dry_run_does_not_wait(tmp_path):
    run = play(
        tmp_path,
        """\
name: dry
vars: {ready: false}
steps:
  - id: long
    wait: 1h
  - id: path
    wait: {path: never.txt}
  - id: until
    wait: {until: "ready"}
""",
        "--dry-run",
    )
    assert run.returncode == 0, run.stderr
    for step_id in ("long", "path", "until"):
        step = run.step(step_id)
        assert step["status"] != "failed", step
        assert step["result"]["waited"] == 0
        assert step["result"]["polls"] == 0
        assert "wait" in step["result"]["dry_run"]
    assert "1h" in run.step("long")["result"]["dry_run"] or "1.0h" in run.step("long")["result"]["dry_run"]
    assert "never.txt" in run.step("path")["result"]["dry_run"]


# -- unit level: tasks.wait.run with a real TaskContext ------------------------------------------


def test_unit_until_is_evaluated_at_every_poll(tmp_path):
    calls: list[Any] = []

    def evaluator(expression: Any) -> bool:
        calls.append(expression)
        return len(calls) >= 4

    ctx = ctx_for(tmp_path, evaluator=evaluator)
    result = wait.run({"until": "x", "interval": 0.05, "timeout": 60}, ctx)
    assert result["polls"] == 4
    assert calls == ["x"] * 4
    assert result["waited"] >= 3 * 0.05


def test_unit_cancel_interrupts_a_wait(tmp_path):
    ctx = ctx_for(tmp_path)
    begin = time.monotonic()  # before the timer starts: the wait cannot end sooner than 0.2 s after this
    timer = threading.Timer(0.2, ctx.cancel_event.set)
    timer.start()
    try:
        with pytest.raises(HandlerError) as caught:
            wait.run({"duration": 3600}, ctx)
        assert time.monotonic() - begin >= 0.2
    finally:
        timer.cancel()
        timer.join()
    assert "cancelled" in str(caught.value)


def test_unit_dry_run_neither_waits_nor_evaluates(tmp_path):
    def evaluator(expression: Any) -> bool:
        raise AssertionError("evaluated under dry run")

    ctx = ctx_for(tmp_path, dry_run=True, evaluator=evaluator)
    result = wait.run({"until": "x", "interval": 3600}, ctx)
    assert result["polls"] == 0 and result["waited"] == 0
    assert "until" in result["dry_run"]
