"""Run history (SPEC §7): real ``runbook play`` processes write a real SQLite file.

Each test has its own RUNBOOK_HOME (conftest's isolated_env), so the database starts empty.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runner.history import MIGRATIONS, History

from .conftest import run_cli
from .playing import play

pytestmark = pytest.mark.usefixtures("marker")


def history_json(*args: str) -> list[dict[str, Any]]:
    proc = run_cli("history", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def show_json(run_id: str) -> dict[str, Any]:
    proc = run_cli("show", run_id, "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def db_path() -> Path:
    return Path(os.environ["RUNBOOK_HOME"]) / "history.db"


TWO_STEPS = """\
name: recorded
steps:
  - id: greet
    shell: "echo hello; echo warning >&2"
  - id: broken
    shell: "echo before; exit 3"
    continue_on_error: true
"""


def test_a_run_and_its_steps_are_recorded_with_their_output(tmp_path):
    run = play(tmp_path, TWO_STEPS, "--report", str(tmp_path / "report.json"))
    assert run.returncode == 0, run.stderr
    run_id = run.finished()["run_id"]

    runs = history_json()
    assert [r["id"] for r in runs] == [run_id]
    row = runs[0]
    assert row["playbook"] == "recorded"
    assert row["path"] == str(tmp_path / "play.yml")
    assert (row["status"], row["trigger"], row["exit_code"]) == ("ok", "manual", 0)
    assert row["ended"] >= row["started"]

    shown = show_json(run_id[:6])  # a unique prefix is enough
    report = json.loads((tmp_path / "report.json").read_text())
    assert shown["run"]["id"] == report["run"]["id"] == run_id
    assert [s["id"] for s in shown["steps"]] == [s["id"] for s in report["steps"]] == ["greet", "broken"]
    for mine, theirs in zip(shown["steps"], report["steps"], strict=True):
        for key in ("label", "status", "attempts", "error", "result"):
            assert mine[key] == theirs[key], key
    greet, broken = shown["steps"]
    assert greet["output"].splitlines() == ["hello", "[stderr] warning"]
    assert broken["status"] == "failed" and "3" in broken["error"]
    assert broken["output"].splitlines() == ["before"]

    text = run_cli("show", run_id)
    assert text.returncode == 0
    assert "hello" in text.stdout and "broken" in text.stdout and run_id in text.stdout


def test_no_history_records_nothing(tmp_path):
    run = play(tmp_path, TWO_STEPS, "--no-history")
    assert run.returncode == 0
    assert history_json() == []


def test_history_folder_and_file_are_private(tmp_path):
    play(tmp_path, "name: p\nsteps: []\n")
    assert stat.S_IMODE(db_path().parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path().stat().st_mode) == 0o600


def test_filters_limit_and_table(tmp_path):
    play(tmp_path, "name: good\nsteps: [{shell: 'true'}]\n", name="good.yml")
    play(tmp_path, "name: bad\nsteps: [{shell: 'false'}]\n", name="bad.yml")
    play(tmp_path, "name: good\nsteps: [{shell: 'true'}]\n", name="good.yml")

    assert [r["playbook"] for r in history_json()] == ["good", "bad", "good"]  # newest first
    assert [r["status"] for r in history_json("--playbook", "bad")] == ["failed"]
    assert [r["exit_code"] for r in history_json("--status", "failed")] == [1]
    assert len(history_json("--limit", "2")) == 2

    table = run_cli("history")
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "PLAYBOOK", "STATUS", "TRIGGER", "STARTED", "DURATION", "EXIT"]
    assert [row.split()[1:3] for row in rows] == [["good", "ok"], ["bad", "failed"], ["good", "ok"]]


def test_show_of_an_unknown_run_is_a_one_line_error():
    proc = run_cli("show", "nope")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no run 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_a_killed_run_is_running_then_interrupted(tmp_path):
    path = tmp_path / "slow.yml"
    path.write_text("name: slow\nsteps:\n  - id: first\n    shell: 'true'\n  - id: long\n    wait: 60s\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "play", str(path), "--output", "json"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 30
        assert proc.stdout is not None
        for line in proc.stdout:  # until the long step has started
            event = json.loads(line)
            if event["event"] == "step_started" and event["step"]["id"] == "long":
                break
            assert time.monotonic() < deadline
        time.sleep(FLUSH_GRACE)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()

    # Read the file directly first: nothing has marked the run yet.
    with sqlite3.connect(db_path()) as db:
        status, ended = db.execute("SELECT status, ended FROM runs").fetchone()
    assert (status, ended) == ("running", None)

    (row,) = history_json()  # the next start of runbook finds the process gone
    assert row["status"] == "interrupted" and row["ended"] is None and row["exit_code"] is None


FLUSH_GRACE = 0.6  # steps are written at most FLUSH_EVERY (0.5 s) apart


def test_a_running_run_of_a_live_process_is_left_alone(tmp_path):
    store = History()
    store.start_run("live-run", "p", str(tmp_path / "p.yml"), "manual")  # this test's own pid: alive
    store.start_run("gone-run", "p", str(tmp_path / "p.yml"), "manual", pid=_dead_pid())
    assert store.mark_interrupted() == ["gone-run"]
    statuses = {r["id"]: r["status"] for r in store.runs()}
    assert statuses == {"live-run": "running", "gone-run": "interrupted"}
    store.close()


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_eight_processes_writing_at_once_lose_no_row(tmp_path):
    steps = "".join(f"  - id: s{n}\n    shell: 'echo {n}'\n" for n in range(20))
    paths = []
    for number in range(8):
        path = tmp_path / f"p{number}.yml"
        path.write_text(f"name: writer{number}\nsteps:\n{steps}")
        paths.append(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runner", "play", str(p), "--output", "plain"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in paths
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "recorded" not in err  # "runs are not being recorded", "this run is not recorded"

    runs = history_json("--limit", "100")
    assert sorted(r["playbook"] for r in runs) == [f"writer{n}" for n in range(8)]
    assert {r["status"] for r in runs} == {"ok"}
    with sqlite3.connect(db_path()) as db:
        counts = dict(db.execute("SELECT run_id, COUNT(*) FROM steps GROUP BY run_id").fetchall())
    assert sorted(counts.values()) == [20] * 8


def _open_history_at_the_signal(home: str, ready: Any, go: Any, errors: Any) -> None:
    os.environ["RUNBOOK_HOME"] = home
    ready.release()
    go.wait(10)
    try:
        History().close()
    except Exception as exc:
        errors.put(str(exc))


def test_processes_opening_a_new_history_at_once_all_open_it(tmp_path):
    # The first open puts the file in WAL mode, which SQLite refuses at once (no busy wait)
    # while another process opens it: each round, 8 processes open a new file together.
    context = multiprocessing.get_context("fork")
    errors = context.Queue()
    for round_number in range(30):
        home = str(tmp_path / f"home{round_number}")
        ready, go = context.Semaphore(0), context.Event()
        openers = [
            context.Process(target=_open_history_at_the_signal, args=(home, ready, go, errors))
            for _ in range(8)
        ]
        for opener in openers:
            opener.start()
        for _ in openers:
            assert ready.acquire(timeout=30)
        go.set()
        for opener in openers:
            opener.join(30)
            assert opener.exitcode == 0
        assert errors.empty(), errors.get()
        with sqlite3.connect(Path(home) / "history.db") as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_pruning_keeps_the_last_runs_of_each_playbook(tmp_path):
    env = {"RUNBOOK_HISTORY_KEEP": "3"}
    for _ in range(5):
        play(tmp_path, "name: pruned\nsteps: [{shell: 'true'}]\n", env=env)
    play(tmp_path, "name: other\nsteps: [{shell: 'true'}]\n", name="other.yml", env=env)
    runs = history_json("--limit", "100")
    assert sorted(r["playbook"] for r in runs) == ["other", "pruned", "pruned", "pruned"]
    with sqlite3.connect(db_path()) as db:
        orphans = db.execute(
            "SELECT COUNT(*) FROM steps WHERE run_id NOT IN (SELECT id FROM runs)"
        ).fetchone()
    assert orphans == (0,)


def test_a_bad_keep_setting_warns_and_loses_no_run(tmp_path):
    run = play(tmp_path, "name: p\nsteps: []\n", env={"RUNBOOK_HISTORY_KEEP": "lots"})
    assert run.returncode == 0
    (warning,) = [line for line in run.stderr.splitlines() if "RUNBOOK_HISTORY_KEEP" in line]
    assert "'lots'" in warning
    assert [r["status"] for r in history_json()] == ["ok"]


def test_schema_version_is_recorded_and_an_old_database_is_migrated(tmp_path):
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()  # an empty database: version 0
    store = History(path)
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    History(path).close()  # opening again migrates nothing and fails on nothing
