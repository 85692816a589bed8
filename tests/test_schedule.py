"""``runbook schedule`` (SPEC §7): a real daemon process, real child runs, a real history file.

Schedules are short (``every 1 second``); waits are bounded by deadlines, and only
relations are asserted (runs never overlap, a run exists in the history), not timings.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psutil
import pytest

from runner.history import History
from runner.schedules import ScheduleError, parse_schedule

from .conftest import run_cli
from .scheduling import Scheduler

pytestmark = pytest.mark.usefixtures("marker")


def history_runs(*args: str) -> list[dict[str, Any]]:
    proc = run_cli("history", "--json", "--limit", "1000", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


CATCH_UP = "catch_up: true\n"


def playbook(tmp_path: Path, name: str, body: str, schedule: str = "every 1 second", extra: str = "") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"name: {name}\nschedule: {schedule}\n{extra}steps:\n{body}")
    return path


# -- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "now", "expected"),
    [
        ("*/5 * * * *", "2026-11-26T14:03:00+00:00", "2026-11-26T14:05:00+00:00"),
        ("*/5 * * * *", "2026-11-26T14:05:00+00:00", "2026-11-26T14:10:00+00:00"),
        ("0 2 * * 1-5", "2026-11-27T03:00:00+00:00", "2026-11-30T02:00:00+00:00"),  # Friday → Monday
        ("0 2 * * 1-5", "2026-11-25T01:00:00+00:00", "2026-11-25T02:00:00+00:00"),
        ("30 2 1 * *", "2026-11-26T00:00:00+00:00", "2026-12-01T02:30:00+00:00"),
    ],
)
def test_cron_next_times(expression, now, expected):
    schedule = parse_schedule(expression, "UTC", now=datetime.fromisoformat(now))
    assert schedule.next_run == epoch(expected)


def test_cron_in_a_time_zone_follows_its_offset():
    now = datetime(2026, 7, 1, 0, 0, tzinfo=timezone.utc)
    paris = parse_schedule("0 9 * * *", "Europe/Paris", now=now)
    assert paris.next_run_iso() == "2026-07-01T09:00:00+02:00"  # summer time
    assert paris.next_run == epoch("2026-07-01T07:00:00+00:00")


@pytest.mark.parametrize(
    ("phrase", "period"),
    [
        ("every 5 minutes", 300),
        ("every 10 seconds", 10),
        ("every second", 1),
        ("every day at 02:30", 86400),
        ("every monday at 09:00", 7 * 86400),
        ("every hour at :15", 3600),
        ("every 2 to 4 seconds", 4),
        ("every day at 02:30 Europe/Paris", 86400),
    ],
)
def test_phrases_become_schedule_jobs(phrase, period):
    schedule = parse_schedule(phrase)
    assert schedule.period == period
    assert time.time() < schedule.next_run <= time.time() + period + 1


def test_fixed_intervals_keep_their_phase_after_a_late_start():
    schedule = parse_schedule("every 10 seconds")
    for late, next_after in ((2.5, 10), (25.0, 30)):  # late by less than, and by over two intervals
        planned = time.time() - late
        schedule._next = planned
        schedule.job.next_run = datetime.fromtimestamp(planned)
        schedule.advance()
        assert schedule.next_run - planned == pytest.approx(next_after, abs=1e-3)


def test_an_interval_gets_an_offset_fixed_by_the_playbook_name():
    def offset(phrase: str, name: str) -> float:
        schedule = parse_schedule(phrase)
        before = schedule.next_run
        schedule.spread(name)
        return schedule.next_run - before

    first, again, other = (
        offset("every 10 seconds", "backup"),
        offset("every 10 seconds", "backup"),
        offset("every 10 seconds", "cleanup"),
    )
    assert 0 <= first < 10 and first == pytest.approx(again, abs=1e-6)
    assert other != pytest.approx(first, abs=1e-6)
    assert 0 <= offset("every 2 hours", "backup") < 60  # at most a minute, however long the interval
    for fixed_times in ("every day at 02:30", "every 2 to 4 seconds", "every monday at 09:00"):
        assert offset(fixed_times, "backup") == 0


def test_a_daily_time_in_a_zone_lands_at_that_wall_clock_time():
    schedule = parse_schedule("every day at 02:30", "America/New_York")
    local = datetime.fromtimestamp(schedule.next_run).astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (2, 30)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("every 2 mondays", "cron"),
        ("every day at 25:00", "HH:MM"),
        ("every weekday at 09:00", "1-5"),
        ("every fortnight", "unknown unit 'fortnight'"),
        ("every 5 minutes at 10:00", ":SS"),
        ("0 61 * * *", "not a valid cron expression"),
        ("* * *", "five-field cron"),
        ("every day at 02:30 Mars/Base", "unknown time zone 'Mars/Base'"),
        ("", "empty"),
    ],
)
def test_schedules_that_cannot_be_understood_say_what_would(text, says):
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(text)
    message = str(caught.value)
    assert says in message and "{}" not in message and "\n" not in message


def test_validate_reports_a_bad_schedule_at_its_position(tmp_path):
    path = tmp_path / "bad.yml"
    path.write_text("name: bad\nschedule: every 3 fortnights\nsteps: []\n")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert f"{path}:2:11: schedule: " in proc.stdout and "fortnights" in proc.stdout


# -- the daemon --------------------------------------------------------------------------------


def test_invalid_files_fail_at_start_with_every_problem(tmp_path):
    bad = playbook(tmp_path, "bad", "  - shell: 'true'\n", schedule="every 2 mondays")
    unscheduled = tmp_path / "plain.yml"
    unscheduled.write_text("name: plain\nsteps: []\n")
    proc = run_cli("schedule", str(bad), str(unscheduled), timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"{bad}:2:11: schedule: ")
    assert str(unscheduled) in lines[1] and "no schedule" in lines[1]
    assert "Traceback" not in proc.stderr


def test_runs_happen_on_schedule_and_are_recorded(tmp_path):
    tick = playbook(tmp_path, "tick", "  - id: say\n    shell: 'echo tick'\n")
    with Scheduler([tick], cwd=tmp_path) as daemon:
        finished = daemon.wait_runs(3)
        # The launcher warmed itself up with a run of its own, whose thread is gone: forks
        # are made from a process with one thread.
        assert _launcher(daemon).num_threads() == 1
        assert daemon.stop() == 0
    assert {r["playbook"] for r in history_runs()} == {"tick"}  # the warm-up is not recorded
    runs = [r for r in history_runs() if r["playbook"] == "tick" and r["status"] != "skipped"]
    assert {r["trigger"] for r in runs} == {"schedule"}
    assert {r["run_id"] for r in finished} <= {r["id"] for r in runs}
    assert all(r["status"] == "ok" and r["exit_code"] == 0 for r in runs)
    started = [e for e in daemon.events if e["event"] == "run_started"]
    assert all(e["drift"] >= 0 for e in started)
    shown = run_cli("show", runs[0]["id"], "--json")
    assert json.loads(shown.stdout)["steps"][0]["output"] == "tick"


def test_overlap_skip_never_runs_two_at_once_and_records_the_skips(tmp_path):
    slow = playbook(tmp_path, "slow", "  - wait: 2.2s\n")
    with Scheduler([slow], cwd=tmp_path) as daemon:
        daemon.wait_runs(2, timeout=40)
        daemon.wait_for(lambda events: any(e["event"] == "skipped" for e in events), 10, "a skip")
        assert daemon.stop() == 0
    runs = sorted(history_runs("--playbook", "slow"), key=lambda r: r["started"])
    ran = [r for r in runs if r["status"] != "skipped"]
    skipped = [r for r in runs if r["status"] == "skipped"]
    assert len(ran) >= 2 and skipped
    for before, after in itertools.pairwise(ran):
        assert epoch(after["started"]) >= epoch(before["ended"]), (before, after)
    report = json.loads(run_cli("show", skipped[0]["id"], "--json").stdout)
    assert "overlap: skip" in report["run"]["error"]


def test_jitter_spreads_starts_after_the_due_time(tmp_path):
    spread = playbook(tmp_path, "spread", "  - shell: 'true'\n", extra="jitter: 0.8s\n")
    with Scheduler([spread], cwd=tmp_path) as daemon:
        daemon.wait_runs(4, timeout=40)
        assert daemon.stop() == 0
    starts = [e for e in daemon.events if e["event"] == "run_started"]
    offsets = [e["planned"] - e["due"] for e in starts]
    assert all(0 <= offset <= 0.8 for offset in offsets), offsets
    assert len(set(offsets)) > 1  # drawn at random, not one fixed delay
    assert all(e["started"] >= e["planned"] for e in starts)


def test_overlap_queue_starts_the_waiting_run_when_the_last_ends(tmp_path):
    slow = playbook(tmp_path, "queued", "  - wait: 1.5s\n", extra="overlap: queue\n")
    with Scheduler([slow], cwd=tmp_path) as daemon:
        daemon.wait_runs(3, timeout=40)
        assert daemon.stop() == 0
    ran = sorted(
        (r for r in history_runs("--playbook", "queued") if r["status"] != "skipped"),
        key=lambda r: r["started"],
    )
    for before, after in itertools.pairwise(ran):
        assert epoch(after["started"]) >= epoch(before["ended"])
    assert any(e["event"] == "queued" for e in daemon.events)


def test_a_run_past_its_timeout_is_stopped_and_recorded_failed(tmp_path):
    hang = playbook(tmp_path, "hang", "  - shell: 'sleep 60'\n", extra="timeout: 1s\n")
    with Scheduler([hang], cwd=tmp_path) as daemon:
        first = daemon.wait_runs(1, timeout=30)[0]
        assert daemon.stop() == 0
    assert first["status"] == "failed" and first["exit_code"] == 1
    runs = {r["id"]: r for r in history_runs("--playbook", "hang")}
    assert runs[first["run_id"]]["status"] == "failed"


def test_a_hung_run_is_killed_by_the_daemon_after_its_timeout(tmp_path):
    hang = playbook(tmp_path, "frozen", "  - wait: 60s\n", extra="timeout: 1s\n")
    with Scheduler([hang], cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        os.kill(started["pid"], signal.SIGSTOP)  # frozen: it cannot even cancel itself
        finished = daemon.first("run_finished", 40)
        assert daemon.stop() == 0
    assert finished["run_id"] == started["run_id"] and finished["status"] == "failed"
    assert not psutil.pid_exists(started["pid"]) or psutil.Process(started["pid"]).status() == "zombie"
    report = json.loads(run_cli("show", started["run_id"], "--json").stdout)
    assert report["run"]["status"] == "failed" and "timeout 1.0s" in report["run"]["error"]


def test_a_run_killed_with_sigkill_is_recorded(tmp_path):
    victim = playbook(tmp_path, "victim", "  - wait: 60s\n", schedule="every 1 hour", extra=CATCH_UP)
    _seed_old_scheduled_run("victim", victim, hours_ago=2)  # so catch_up starts a run at once
    with Scheduler([victim], cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        os.kill(started["pid"], signal.SIGKILL)
        finished = daemon.first("run_finished", 20)
        assert daemon.stop() == 0
    assert finished["status"] == "interrupted"
    report = json.loads(run_cli("show", started["run_id"], "--json").stdout)
    assert report["run"]["status"] == "interrupted" and "SIGKILL" in report["run"]["error"]


def _seed_old_scheduled_run(name: str, path: Path, hours_ago: float) -> None:
    store = History()
    store.start_run(f"old-{name}", name, str(path), "schedule", pid=0)
    store.finish_run(f"old-{name}", "ok", 0, 1.0)
    started = time.time() - hours_ago * 3600
    iso = datetime.fromtimestamp(started).astimezone().isoformat()
    store.db.execute(
        "UPDATE runs SET started_at = ?, started = ? WHERE id = ?", (started, iso, f"old-{name}")
    )
    store.close()


def test_catch_up_runs_once_at_start_only_when_asked(tmp_path):
    eager = playbook(tmp_path, "eager", "  - shell: 'true'\n", schedule="every 1 hour", extra=CATCH_UP)
    lazy = playbook(tmp_path, "lazy", "  - shell: 'true'\n", schedule="every 1 hour")
    _seed_old_scheduled_run("eager", eager, hours_ago=2)
    _seed_old_scheduled_run("lazy", lazy, hours_ago=2)
    with Scheduler([eager, lazy], cwd=tmp_path) as daemon:
        daemon.wait_runs(1, playbook="eager")
        time.sleep(1.0)  # lazy has had the same chance to start
        assert daemon.stop() == 0
    assert [r["playbook"] for r in daemon.finished()] == ["eager"]


def test_sigterm_waits_for_a_running_run_within_the_grace(tmp_path):
    slow = playbook(tmp_path, "finishing", "  - wait: 2s\n")
    with Scheduler([slow], "--grace", "20", cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 20 + 5
    statuses = {r["id"]: r["status"] for r in history_runs("--playbook", "finishing")}
    assert statuses[started["run_id"]] == "ok"  # it was let finish
    assert "running" not in statuses.values()


def test_sigterm_cancels_runs_past_the_grace_and_records_them(tmp_path):
    marker_file = tmp_path / "finally-ran"
    long = playbook(
        tmp_path,
        "long",
        "  - wait: 60s\nfinally:\n  - shell: 'touch finally-ran'\n",
    )
    with Scheduler([long], "--grace", "1", cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        began = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - began < 1 + 5 + 5
    statuses = {r["id"]: r["status"] for r in history_runs("--playbook", "long")}
    assert statuses[started["run_id"]] == "cancelled"
    assert marker_file.exists()  # the cancelled run ran its finally


def test_sighup_reloads_and_keeps_the_old_version_of_a_broken_file(tmp_path):
    path = playbook(tmp_path, "edited", "  - id: say\n    shell: 'echo first'\n")
    with Scheduler([path], cwd=tmp_path) as daemon:
        daemon.wait_runs(1)
        path.write_text(path.read_text().replace("echo first", "echo second"))
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_for(lambda events: any(e["event"] == "reloaded" for e in events), 20, "a reload")
        count = len(daemon.finished())
        after_reload = daemon.wait_runs(count + 2)[-1]
        path.write_text("name: edited\nschedule: every 1 second\nsteps: [{shel: oops}]\n")
        daemon.proc.send_signal(signal.SIGHUP)
        failed = daemon.first("reload_failed", 20)
        count = len(daemon.finished())
        still = daemon.wait_runs(count + 2)[-1]
        assert daemon.stop() == 0
    assert "shel" in failed["message"] and str(path) in failed["message"]
    for run in (after_reload, still):
        report = json.loads(run_cli("show", run["run_id"], "--json").stdout)
        assert report["steps"][0]["output"] == "second", report
        assert run["status"] == "ok"


def test_healthz_runs_and_the_page(tmp_path):
    failing = playbook(tmp_path, "failing", "  - shell: 'exit 1'\n")
    fine = playbook(tmp_path, "fine", "  - shell: 'true'\n", schedule="every 1 hour")
    options = ("--http", "127.0.0.1:0", "--unhealthy-after", "2")
    with Scheduler([failing, fine], *options, cwd=tmp_path) as daemon:
        status, body = daemon.get("/healthz")
        health = json.loads(body)
        assert {s["playbook"] for s in health["schedules"]} == {"failing", "fine"}
        assert all(s["next_run"] for s in health["schedules"])
        daemon.wait_runs(2, playbook="failing")
        status, body = daemon.get("/healthz")
        health = json.loads(body)
        assert status == 503 and health["status"] == "failing"
        failing_state = next(s for s in health["schedules"] if s["playbook"] == "failing")
        assert failing_state["consecutive_failures"] >= 2 and failing_state["last_status"] == "failed"
        fine_state = next(s for s in health["schedules"] if s["playbook"] == "fine")
        assert fine_state["last_status"] is None and fine_state["consecutive_failures"] == 0

        status, body = daemon.get("/runs?playbook=failing")
        runs = json.loads(body)
        statuses = {r["status"] for r in runs}  # a run due while the last still ran is skipped
        assert status == 200 and "failed" in statuses and statuses <= {"failed", "skipped"}
        status, body = daemon.get(f"/runs/{runs[0]['id']}")
        assert status == 200 and json.loads(body)["run"]["id"] == runs[0]["id"]
        assert daemon.get("/runs/nope")[0] == 404
        status, page = daemon.get("/")
        assert status == 200 and "<svg" in page and "failing" in page and "fine" in page
        assert daemon.stop() == 0


def test_a_non_loopback_address_needs_a_token(tmp_path):
    tick = playbook(tmp_path, "tick", "  - shell: 'true'\n", schedule="every 1 hour")
    proc = run_cli("schedule", str(tick), "--http", "0.0.0.0:0", timeout=30)
    assert proc.returncode == 2 and "--http-token" in proc.stderr and "Traceback" not in proc.stderr


def test_a_token_is_required_when_given(tmp_path):
    tick = playbook(tmp_path, "tick", "  - shell: 'true'\n", schedule="every 1 hour")
    with Scheduler([tick], "--http", "127.0.0.1:0", "--http-token", "s3cret-token", cwd=tmp_path) as daemon:
        assert daemon.get("/healthz")[0] == 401
        assert daemon.get("/healthz", {"Authorization": "Bearer wrong"})[0] == 401
        assert daemon.get("/healthz", {"Authorization": "Bearer s3cret-token"})[0] == 200
        assert daemon.get("/?token=s3cret-token")[0] == 200
        assert daemon.stop() == 0


def test_the_history_file_is_consistent_after_the_daemon(tmp_path):
    tick = playbook(tmp_path, "consistent", "  - shell: 'true'\n")
    with Scheduler([tick], cwd=tmp_path) as daemon:
        daemon.wait_runs(2)
        assert daemon.stop() == 0
    db = Path(os.environ["RUNBOOK_HOME"]) / "history.db"
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        running = conn.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()
    assert running == (0,)


def _launcher(daemon: Scheduler) -> psutil.Process:
    children = psutil.Process(daemon.proc.pid).children()
    return next(c for c in children if "runner.launcher" in " ".join(c.cmdline()))


def test_a_run_records_itself_when_the_scheduler_is_killed(tmp_path):
    body = "  - wait: 2s\n  - shell: 'echo done'\n"
    orphan = playbook(tmp_path, "orphan", body, "every 1 hour", CATCH_UP)
    _seed_old_scheduled_run("orphan", orphan, hours_ago=2)  # so catch_up starts a run at once
    with Scheduler([orphan], cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        run = psutil.Process(started["pid"])
        daemon.proc.kill()  # no grace, no cleanup: the run's pipe to the scheduler breaks
        daemon.proc.wait(10)
        run.wait(20)  # it finishes on its own
    report = json.loads(run_cli("show", started["run_id"], "--json").stdout)
    assert report["run"]["status"] == "ok", report
    assert [step["status"] for step in report["steps"]] == ["ok", "changed"]
    assert report["steps"][1]["output"] == "done"


def test_the_launcher_is_started_again_if_it_dies(tmp_path):
    tick = playbook(tmp_path, "relaunched", "  - shell: 'true'\n")
    with Scheduler([tick], cwd=tmp_path) as daemon:
        daemon.wait_runs(1)
        first = _launcher(daemon)
        first.kill()
        daemon.first("launcher_restarted", 20)
        count = len(daemon.finished())
        runs = daemon.wait_runs(count + 2)
        assert _launcher(daemon).pid != first.pid
        assert daemon.stop() == 0
    assert [run["status"] for run in runs[-2:]] == ["ok", "ok"]
    assert "running" not in {r["status"] for r in history_runs("--playbook", "relaunched")}


def test_vars_files_are_read_at_start_and_on_sighup(tmp_path):
    (tmp_path / "vars.yml").write_text("greeting: first\n")
    greet = playbook(
        tmp_path, "greet", "  - shell: 'echo {{ greeting }}'\n", extra="vars_files: [vars.yml]\n"
    )

    def outputs(runs: list[dict[str, Any]]) -> list[str]:
        return [json.loads(run_cli("show", r["run_id"], "--json").stdout)["steps"][0]["output"] for r in runs]

    with Scheduler([greet], cwd=tmp_path) as daemon:
        daemon.wait_runs(1)
        (tmp_path / "vars.yml").write_text("greeting: second\n")
        count = len(daemon.finished())
        before_reload = daemon.wait_runs(count + 2)[count:]
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.first("reloaded", 20)
        count = len(daemon.finished())
        after_reload = daemon.wait_runs(count + 2)[count + 1 :]  # the first may have started before
        assert daemon.stop() == 0
    assert outputs(before_reload) == ["first", "first"]
    assert outputs(after_reload) == ["second"]


def test_a_run_going_on_during_a_reload_counts_for_the_reloaded_playbook(tmp_path):
    slow = playbook(tmp_path, "reloaded", "  - wait: 1500ms\n")
    with Scheduler([slow], "--http", "127.0.0.1:0", cwd=tmp_path) as daemon:
        started = daemon.first("run_started", 20)
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.first("reloaded", 20)
        daemon.wait_for(
            lambda events: any(
                e["event"] == "run_finished" and e["run_id"] == started["run_id"] for e in events
            ),
            20,
            "the run to finish",
        )
        status, body = daemon.get("/healthz")
        assert daemon.stop() == 0
    assert status == 200
    schedule = json.loads(body)["schedules"][0]
    assert schedule["last_run"] is not None and schedule["last_status"] == "ok", schedule
