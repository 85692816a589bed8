"""The executor through real `runbook play` runs: order, parallelism, failures, retry, events, reports.

Steps record what happened (order, timestamps) in files with real shell commands; the
assertions read those records. No assertion bounds wall time from above.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import psutil
import pytest

from .conftest import run_cli


def play(tmp_path: Path, text: str, *args: str, env: dict[str, str] | None = None):
    book = tmp_path / "book.yml"
    book.write_text(text)
    result = run_cli("play", str(book), "--output", "json", *args, cwd=tmp_path, env=env, timeout=120)
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def finished(events: list[dict]) -> dict[str, dict]:
    return {e["step"]["id"] or e["step"]["label"]: e for e in events if e["event"] == "step_finished"}


def run_end(events: list[dict]) -> dict:
    (end,) = [e for e in events if e["event"] == "run_finished"]
    return end


def intervals(log: Path) -> dict[str, tuple[float, float]]:
    """``NAME start T`` / ``NAME end T`` lines → {NAME: (start, end)}."""
    spans: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        name, what, stamp = line.split()
        spans.setdefault(name, [0.0, 0.0])[0 if what == "start" else 1] = float(stamp)
    return {name: (a, b) for name, (a, b) in spans.items()}


def timed(name: str, log: str, seconds: float = 0.3) -> str:
    """A shell command that logs its start and end around a sleep."""
    return (
        f'echo "{name} start $(date +%s.%N)" >> {log}; sleep {seconds}; '
        f'echo "{name} end $(date +%s.%N)" >> {log}'
    )


def test_a_sequence_runs_in_order_and_stops_at_the_first_failure(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: seq
steps:
  - {id: a, shell: "echo a >> order"}
  - {id: b, shell: "echo b >> order; exit 3"}
  - {id: c, shell: "echo c >> order"}
finally:
  - {id: z, shell: "echo z >> order"}
""",
    )
    assert result.returncode == 1
    assert (tmp_path / "order").read_text().split() == ["a", "b", "z"]
    steps = finished(events)
    assert steps["b"]["status"] == "failed" and steps["b"]["result"]["rc"] == 3
    assert "exited with 3" in steps["b"]["error"]
    assert steps["c"]["status"] == "skipped" and "b failed" in steps["c"]["result"]["skip_reason"]
    assert run_end(events)["status"] == "failed"


def test_continue_on_error_records_the_failure_and_goes_on(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: coe
steps:
  - {id: a, shell: "exit 1", continue_on_error: true}
  - {id: b, shell: "echo b > done"}
""",
    )
    assert result.returncode == 0
    steps = finished(events)
    assert steps["a"]["status"] == "failed" and steps["a"]["result"]["ignored"] is True
    assert (tmp_path / "done").exists()


def test_on_failure_runs_after_a_failure_and_not_otherwise(tmp_path):
    text = """\
name: onf
steps:
  - {id: a, shell: "exit {{ code }}"}
on_failure:
  - {id: alert, shell: "echo alerted > alert"}
finally:
  - {id: cleanup, shell: "echo cleaned > cleanup"}
"""
    result, _ = play(tmp_path, text, "-e", "code=0")
    assert result.returncode == 0
    assert not (tmp_path / "alert").exists() and (tmp_path / "cleanup").exists()
    (tmp_path / "cleanup").unlink()
    result, _ = play(tmp_path, text, "-e", "code=1")
    assert result.returncode == 1
    assert (tmp_path / "alert").exists() and (tmp_path / "cleanup").exists()


def test_parallel_group_members_overlap_and_the_group_joins(tmp_path):
    log = tmp_path / "log"
    result, _ = play(
        tmp_path,
        f"""\
name: par
steps:
  - parallel:
      - {{id: p1, shell: '{timed("p1", log)}'}}
      - {{id: p2, shell: '{timed("p2", log)}'}}
      - {{id: p3, shell: '{timed("p3", log)}'}}
  - {{id: after, shell: '{timed("after", log, 0)}'}}
""",
    )
    assert result.returncode == 0, result.stderr
    spans = intervals(log)
    members = [spans[n] for n in ("p1", "p2", "p3")]
    assert max(start for start, _ in members) < min(end for _, end in members), "all three ran at once"
    assert spans["after"][0] >= max(end for _, end in members), "the group joins before the next step"


def test_max_parallel_is_never_exceeded(tmp_path):
    log = tmp_path / "log"
    members = "\n".join(f"      - {{shell: '{timed(f'm{i}', log, 0.2)}'}}" for i in range(8))
    result, _ = play(tmp_path, f"name: cap\nmax_parallel: 3\nsteps:\n  - parallel:\n{members}\n")
    assert result.returncode == 0
    spans = intervals(log)
    assert len(spans) == 8
    points = sorted(
        [(s, 1) for s, _ in spans.values()] + [(e, -1) for _, e in spans.values()], key=lambda p: (p[0], p[1])
    )
    running = peak = 0
    for _, delta in points:
        running += delta
        peak = max(peak, running)
    assert peak == 3


def test_group_max_workers_caps_within_the_group(tmp_path):
    log = tmp_path / "log"
    members = "\n".join(f"        - {{shell: '{timed(f'm{i}', log, 0.2)}'}}" for i in range(4))
    result, _ = play(
        tmp_path, f"name: cap\nsteps:\n  - parallel:\n      max_workers: 1\n      steps:\n{members}\n"
    )
    assert result.returncode == 0
    spans = sorted(intervals(log).values())
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "one at a time"


def test_needs_orders_a_dag_and_independent_steps_start_at_once(tmp_path):
    log = tmp_path / "log"
    result, _events = play(
        tmp_path,
        f"""\
name: dag
steps:
  - {{id: publish, needs: [build, test], shell: '{timed("publish", log, 0)}'}}
  - {{id: build, shell: '{timed("build", log, 0.3)}'}}
  - {{id: test, shell: '{timed("test", log, 0.3)}'}}
  - {{id: docs, shell: '{timed("docs", log, 0.3)}'}}
""",
    )
    assert result.returncode == 0, result.stderr
    spans = intervals(log)
    assert spans["publish"][0] >= max(spans["build"][1], spans["test"][1])
    assert spans["docs"][0] < spans["build"][1], "docs needs nothing: it runs beside build"


def test_a_failure_in_a_dag_stops_only_its_dependents(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: dag
steps:
  - {id: a, shell: "exit 1"}
  - {id: b, needs: [a], shell: "touch b"}
  - {id: c, shell: "sleep 0.2; touch c"}
  - {id: d, needs: [c], shell: "touch d"}
""",
    )
    assert result.returncode == 1
    assert not (tmp_path / "b").exists()
    assert (tmp_path / "c").exists() and (tmp_path / "d").exists()
    assert finished(events)["b"]["status"] == "skipped"


def test_failure_in_a_group_lets_siblings_finish(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: g
steps:
  - parallel:
      - {id: bad, shell: "exit 1"}
      - {id: slow, shell: "sleep 0.5; touch slow"}
  - {id: next, shell: "touch next"}
""",
    )
    assert result.returncode == 1
    assert (tmp_path / "slow").exists(), "siblings run to completion"
    assert not (tmp_path / "next").exists()
    assert finished(events)["slow"]["status"] == "changed"


def test_fail_fast_cancels_running_siblings(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: g
steps:
  - parallel:
      fail_fast: true
      steps:
        - {id: bad, shell: "sleep 0.3; exit 1"}
        - {id: slow, shell: "sleep 30; touch slow"}
""",
    )
    assert result.returncode == 1
    assert not (tmp_path / "slow").exists()
    assert finished(events)["slow"]["status"] == "cancelled"


def test_nested_groups(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: nest
steps:
  - parallel:
      - {id: a, shell: "touch a"}
      - parallel:
          - {id: b, shell: "touch b"}
          - {id: c, shell: "touch c"}
  - {id: after, shell: "ls a b c"}
""",
    )
    assert result.returncode == 0
    assert finished(events)["after"]["result"]["stdout"].split() == ["a", "b", "c"]


def test_retry_spacing_follows_the_backoff(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: retry
steps:
  - id: flaky
    shell: 'date +%s.%N >> stamps; [ $(wc -l < stamps) -ge 4 ]'
    retry: {attempts: 4, delay: 0.2s, backoff: 2}
""",
    )
    assert result.returncode == 0
    stamps = [float(x) for x in (tmp_path / "stamps").read_text().split()]
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert len(gaps) == 3
    for gap, wait in zip(gaps, (0.2, 0.4, 0.8), strict=False):
        assert gap >= wait * 0.95
    retries = [e for e in events if e["event"] == "step_retry"]
    assert [(e["attempt"], e["wait"]) for e in retries] == [(1, 0.2), (2, 0.4), (3, 0.8)]
    assert all("exited with 1" in e["error"] for e in retries)
    step = finished(events)["flaky"]
    assert step["attempts"] == 4
    assert [h["status"] for h in step["result"]["history"]] == ["failed"] * 3 + ["changed"]


def test_retry_gives_up_after_its_attempts(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: retry
steps:
  - {id: never, shell: "echo x >> tries; exit 2", retry: {attempts: 3, delay: 0}}
""",
    )
    assert result.returncode == 1
    assert (tmp_path / "tries").read_text().count("x") == 3
    assert finished(events)["never"]["attempts"] == 3


def test_retry_on_rc_retries_only_those_codes(tmp_path):
    result, _ = play(
        tmp_path,
        """\
name: retry
steps:
  - {shell: "echo x >> tries; exit 5", retry: {attempts: 3, on: [{rc: [75]}]}}
""",
    )
    assert result.returncode == 1
    assert (tmp_path / "tries").read_text().count("x") == 1


def test_until_retries_until_the_condition_holds(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: until
steps:
  - id: count
    shell: 'echo x >> n; wc -l < n'
    until: result.stdout | int >= 3
    retry: {attempts: 5, delay: 0}
""",
    )
    assert result.returncode == 0
    assert finished(events)["count"]["attempts"] == 3


def test_when_skips_and_reads_earlier_results(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: when
vars: {enabled: false}
steps:
  - {id: a, shell: "echo 7"}
  - {id: b, shell: "touch b", when: "steps.a.stdout | int == 7"}
  - {id: c, shell: "touch c", when: enabled}
""",
    )
    assert result.returncode == 0
    steps = finished(events)
    assert (tmp_path / "b").exists() and not (tmp_path / "c").exists()
    assert steps["c"]["status"] == "skipped" and steps["c"]["result"]["skip_reason"] == "when: enabled"


def test_loop_runs_per_item_and_collects_results(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: loop
steps:
  - id: each
    shell: "echo {{ loop.index }}-{{ item }} >> out"
    loop: [a, b, c]
  - {id: count, shell: "echo {{ steps.each.results | length }}"}
""",
    )
    assert result.returncode == 0
    assert (tmp_path / "out").read_text().split() == ["1-a", "2-b", "3-c"]
    each = finished(events)["each"]["result"]
    assert [r["item"] for r in each["results"]] == ["a", "b", "c"]
    assert finished(events)["count"]["result"]["stdout"].strip() == "3"


def test_loop_parallel_runs_items_at_once(tmp_path):
    log = tmp_path / "log"
    result, _ = play(
        tmp_path,
        f"""\
name: loop
steps:
  - shell: '{timed("{{ item }}", log, 0.3)}'
    loop: [i1, i2, i3]
    loop_parallel: 3
""",
    )
    assert result.returncode == 0, result.stderr
    spans = intervals(log)
    assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())


def test_failed_when_and_changed_when(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: verdicts
steps:
  - {id: grep, shell: "echo ERROR here", failed_when: "'ERROR' in result.stdout", continue_on_error: true}
  - {id: quiet, shell: "true", changed_when: false}
  - {id: fine, shell: "exit 1", failed_when: false}
""",
    )
    assert result.returncode == 0
    steps = finished(events)
    assert steps["grep"]["status"] == "failed"
    assert steps["quiet"]["status"] == "ok"
    assert steps["fine"]["status"] == "ok"


def test_tags_select_steps_and_always_runs(tmp_path):
    text = """\
name: tags
steps:
  - {id: a, shell: "touch a", tags: [build]}
  - {id: b, shell: "touch b", tags: [deploy]}
  - {id: c, shell: "touch c", tags: [always]}
"""
    result, events = play(tmp_path, text, "--tags", "deploy")
    assert result.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir() if len(p.name) == 1) == ["b", "c"]
    assert finished(events)["a"]["status"] == "skipped"
    for name in "bc":
        (tmp_path / name).unlink()
    play(tmp_path, text, "--skip-tags", "deploy,always")
    assert sorted(p.name for p in tmp_path.iterdir() if len(p.name) == 1) == ["a"]


def test_env_reaches_processes(tmp_path):
    _result, events = play(
        tmp_path,
        """\
name: env
env: {LEVEL: playbook, BOTH: playbook}
steps:
  - {id: show, shell: 'echo $LEVEL $BOTH $STEP', env: {BOTH: step, STEP: "yes"}}
""",
    )
    assert finished(events)["show"]["result"]["stdout"].split() == ["playbook", "step", "yes"]


def test_timeout_fails_the_step_and_kills_its_processes(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: t
steps:
  - {id: slow, shell: "sleep 1000 & echo $! > pid; wait", timeout: 0.5s}
""",
    )
    assert result.returncode == 1
    step = finished(events)["slow"]
    assert step["status"] == "failed" and "timed out after" in step["error"]
    pid = int((tmp_path / "pid").read_text())
    assert _gone(pid)


def test_run_timeout_cancels_and_fails_the_run_then_runs_finally(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: t
timeout: 0.5s
steps:
  - {id: slow, shell: "sleep 1000 & echo $! > pid; wait"}
  - {id: never, shell: "touch never"}
finally:
  - {shell: "touch finally"}
""",
    )
    assert result.returncode == 1
    assert run_end(events)["status"] == "failed"
    assert (tmp_path / "finally").exists() and not (tmp_path / "never").exists()
    assert _gone(int((tmp_path / "pid").read_text()))


def _running(pid: int) -> bool:
    """Whether ``pid`` still runs. A zombie does not: it is dead, only not yet reaped (an
    orphan's zombie waits for init, which here can take a second or more)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while _running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _start(tmp_path: Path, text: str) -> subprocess.Popen:
    book = tmp_path / "book.yml"
    book.write_text(text)
    return subprocess.Popen(
        [sys.executable, "-m", "runner", "play", str(book), "--output", "json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


SIGNAL_BOOK = """\
name: sig
steps:
  - {id: slow, shell: "sleep 1000 & echo $! > pid; wait"}
  - {id: never, shell: "touch never"}
finally:
  - {shell: "touch finally"}
"""


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_cancels_runs_finally_and_exits_with_its_code(tmp_path, sig, code):
    process = _start(tmp_path, SIGNAL_BOOK)
    try:
        _wait_for(tmp_path / "pid")
        process.send_signal(sig)
        out, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == code
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert run_end(events)["status"] == "cancelled"
    assert finished(events)["slow"]["status"] == "cancelled"
    never = finished(events)["never"]
    assert never["status"] == "skipped" and "cancelled" in never["result"]["skip_reason"]
    assert (tmp_path / "finally").exists() and not (tmp_path / "never").exists()
    assert _gone(int((tmp_path / "pid").read_text()))


def test_a_second_sigint_exits_at_once_and_kills_the_processes(tmp_path):
    process = _start(
        tmp_path,
        """\
name: sig
steps:
  - {id: slow, shell: "sleep 1000 & echo $! > pid; wait"}
finally:
  - {shell: "trap '' TERM INT; sleep 1000 & echo $! > pid2; wait"}
""",
    )
    try:
        _wait_for(tmp_path / "pid")
        process.send_signal(signal.SIGINT)
        _wait_for(tmp_path / "pid2")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 130
    assert _gone(int((tmp_path / "pid").read_text()))
    assert _gone(int((tmp_path / "pid2").read_text()))


def test_json_events_follow_the_contract(tmp_path):
    _result, events = play(
        tmp_path,
        """\
name: ev
steps:
  - {id: a, shell: "echo hello"}
  - {id: b, shell: "exit 1", retry: {attempts: 2, delay: 0}, continue_on_error: true}
""",
    )
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"step_started", "step_output", "step_retry", "step_finished"} <= set(kinds)
    run_ids = {e["run_id"] for e in events}
    assert len(run_ids) == 1
    for event in events:
        assert event["time"][:4].isdigit() and "T" in event["time"]
        if event["event"].startswith("step_"):
            assert set(event["step"]) == {"id", "label"}
    output = next(e for e in events if e["event"] == "step_output")
    assert output["line"] == "hello" and output["stream"] == "stdout"
    end = run_end(events)
    assert end["status"] == "ok" and end["exit_code"] == 0


def test_report_and_junit(tmp_path):
    report = tmp_path / "run.json"
    junit = tmp_path / "junit.xml"
    result, _ = play(
        tmp_path,
        """\
name: reports
steps:
  - {id: good, shell: "echo fine"}
  - {id: ignored, shell: "echo bad >&2; exit 1", continue_on_error: true}
  - {id: idle, shell: "true", when: false}
  - parallel:
      - {id: p1, shell: "true"}
      - {id: p2, shell: "true"}
""",
        "--report",
        str(report),
        "--junit",
        str(junit),
    )
    assert result.returncode == 0
    data = json.loads(report.read_text())
    assert data["run"]["status"] == "ok" and data["run"]["exit_code"] == 0
    assert data["run"]["playbook"] == "reports" and data["run"]["trigger"] == "manual"
    ids = [s["id"] for s in data["steps"]]
    assert ids[:3] == ["good", "ignored", "idle"] and sorted(ids[3:]) == ["p1", "p2"]
    by_id = {s["id"]: s for s in data["steps"]}
    assert by_id["ignored"]["status"] == "failed" and by_id["ignored"]["result"]["ignored"]
    assert by_id["idle"]["status"] == "skipped"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "5" and suite.get("failures") == "1"
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failure = cases["ignored"].find("failure")
    assert failure is not None and "(ignored)" in failure.get("message", "")
    assert "bad" in (failure.text or "")
    assert cases["idle"].find("skipped") is not None


def test_dry_run_changes_nothing_and_shows_the_plan(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: dry
vars: {name: created}
steps:
  - {id: make, shell: "touch {{ name }}"}
  - {id: look, shell: "ls > listing", dry_run: run}
""",
        "--dry-run",
    )
    assert result.returncode == 0
    assert not (tmp_path / "created").exists()
    assert (tmp_path / "listing").exists()
    assert finished(events)["make"]["result"]["dry_run"] == "would run: touch created"


def test_a_runtime_type_error_in_a_templated_value_fails_the_step(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: types
vars: {wait_for: soon}
steps:
  - {id: w, wait: {duration: "{{ wait_for }}"}}
""",
    )
    assert result.returncode == 1
    error = finished(events)["w"]["error"]
    assert "book.yml:4:" in error and "wait.duration" in error and "malformed duration" in error


def test_a_missing_attribute_at_run_time_names_step_and_position(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: attr
steps:
  - {id: a, shell: "true"}
  - {id: b, shell: "echo {{ steps.a.nope }}"}
""",
    )
    assert result.returncode == 1
    error = finished(events)["b"]["error"]
    assert error.startswith(f"{tmp_path / 'book.yml'}:4:") and "step 'b' (shell.cmd)" in error
    assert "nope" in error


def test_an_invalid_playbook_exits_2_before_running_anything(tmp_path):
    result, events = play(tmp_path, "name: bad\nsteps:\n  - shell: touch ran\n  - shel: x\n")
    assert result.returncode == 2
    assert events == []
    assert "unknown handler 'shel'" in result.stderr
    assert not (tmp_path / "ran").exists()


def test_plain_output_is_one_line_per_event(tmp_path):
    book = tmp_path / "book.yml"
    book.write_text("name: plain\nsteps:\n  - {id: a, shell: 'echo out; exit 1'}\n")
    result = run_cli("play", str(book), "--output", "plain", cwd=tmp_path)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("run ") and "of plain" in lines[0]
    assert "[a] started" in lines
    assert any(line.startswith("[a] FAILED") and "exited with 1" in line for line in lines)
    assert "[a] | out" in lines, "a failure shows the tail of its output"
    assert lines[-1].startswith("run failed") and lines[-1].endswith("(exit 1)")


def test_the_readme_example_runs(tmp_path):
    from .conftest import REPO

    result = run_cli("play", str(REPO / "playbooks" / "hello.yml"), "--output", "plain", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[Succeeds on the third try] changed after 3 attempts" in result.stdout


def test_live_view_on_a_terminal_ends_with_a_summary_table(tmp_path):
    from .test_cli import ANSI, _run_on_terminal

    book = tmp_path / "book.yml"
    book.write_text("name: tty\nsteps:\n  - {id: first, shell: 'echo hi'}\n  - {id: second, wait: 0.3s}\n")
    screen = ANSI.sub("", _run_on_terminal(["play", str(book)], {"TERM": "xterm", "COLUMNS": "100"}))
    table = screen[screen.index("step ") :]
    for header in ("step", "status", "attempts", "duration"):
        assert header in table
    assert "first" in table and "second" in table
    assert screen.rstrip().splitlines()[-1].startswith("ok in ")


def test_a_group_skipped_by_when_skips_its_members_but_not_what_follows(tmp_path):
    result, events = play(
        tmp_path,
        """\
name: g
steps:
  - id: group
    when: false
    parallel:
      - {id: inside, shell: "touch inside"}
  - {id: after, shell: "touch after", when: "steps.group.skipped"}
""",
    )
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "inside").exists() and (tmp_path / "after").exists()
    inside = finished(events)["inside"]
    assert inside["status"] == "skipped" and "when: False" in inside["result"]["skip_reason"]


def test_the_run_timeout_holds_while_steps_keep_finishing(tmp_path):
    steps = "\n".join("  - wait: 0.05s" for _ in range(200))
    result, events = play(tmp_path, f"name: t\ntimeout: 0.5s\nsteps:\n{steps}\n")
    assert result.returncode == 1
    end = run_end(events)
    assert end["status"] == "failed" and "timed out" in end["error"]
    statuses = [e["status"] for e in events if e["event"] == "step_finished"]
    assert "skipped" in statuses, "steps after the deadline are not run"
