"""``include``: another playbook run as a step, nested in output, results, report and history."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import run_cli
from .playing import one_line_error, parse_events, play

pytestmark = pytest.mark.usefixtures("marker")

BACKUP = """\
name: backup
vars:
  target: /default
steps:
  - id: say
    shell: "echo backing up {{ target }}"
  - id: pair
    parallel:
      - wait: 0.05
      - shell: "echo two"
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_included_playbook_runs_nested_with_its_vars(tmp_path):
    write(tmp_path / "sub" / "backup.yml", BACKUP)
    report = tmp_path / "report.json"
    run = play(
        tmp_path,
        """\
name: main
steps:
  - id: backup
    include: {path: sub/backup.yml, vars: {target: /srv/db}}
  - id: after
    shell: "echo got {{ steps.backup.steps.say.stdout | trim }}"
""",
        "--report",
        str(report),
    )
    assert run.returncode == 0, run.stderr
    assert run.lines("after") == ["got backing up /srv/db"]  # the include's vars win
    inner = run.step("backup.say")
    assert inner["step"]["label"] == "backup / say"
    assert run.index("backup.say") < run.index("backup")  # the inner steps end first
    result = run.step("backup")["result"]
    assert result["playbook"] == "backup" and result["run_status"] == "ok"
    assert set(result["steps"]) >= {"say", "pair"} and result["changed"] is True
    assert not [
        e for e in run.events if e["event"] == "run_started" and e["run_id"] != run.finished()["run_id"]
    ]
    assert len([e for e in run.events if e["event"] == "run_finished"]) == 1

    labels = [s["label"] for s in json.loads(report.read_text())["steps"]]
    assert "backup / say" in labels and "backup" in labels
    shown = json.loads(run_cli("show", run.finished()["run_id"], "--json").stdout)
    assert "backup / say" in [s["label"] for s in shown["steps"]]


def test_a_failure_inside_fails_the_include_step_naming_the_inner_step(tmp_path):
    write(tmp_path / "fail.yml", 'name: failing\nsteps:\n  - id: boom\n    shell: "exit 4"\n')
    run = play(tmp_path, "name: outer\nsteps:\n  - id: inc\n    include: fail.yml\n")
    assert run.returncode == 1
    error = one_line_error(run.step("inc"))
    assert "failing" in error and "step boom" in error and "4" in error
    assert run.step("inc.boom")["status"] == "failed"


def test_validation_follows_includes_and_finds_cycles(tmp_path):
    write(tmp_path / "a.yml", "name: a\nsteps:\n  - id: to_b\n    include: b.yml\n")
    write(tmp_path / "b.yml", "name: b\nsteps:\n  - include: {path: a.yml}\n")
    cycle = run_cli("validate", str(tmp_path / "a.yml"))
    assert cycle.returncode == 2
    assert (
        f"{tmp_path / 'b.yml'}:3:21: " in cycle.stdout
        and "include cycle: a.yml -> b.yml -> a.yml" in cycle.stdout
    )

    write(tmp_path / "sub" / "backup.yml", BACKUP.replace("vars:\n  target: /default\n", ""))
    write(tmp_path / "uses.yml", "name: u\nsteps:\n  - include: {path: sub/backup.yml, vars: {target: /x}}\n")
    assert run_cli("validate", str(tmp_path / "uses.yml")).returncode == 0  # target is passed
    write(tmp_path / "lacks.yml", "name: l\nsteps:\n  - include: sub/backup.yml\n")
    lacks = run_cli("validate", str(tmp_path / "lacks.yml"))
    assert lacks.returncode == 2
    assert (
        f"{tmp_path / 'sub' / 'backup.yml'}:4:" in lacks.stdout
        and "undefined variable 'target'" in lacks.stdout
    )

    write(tmp_path / "missing.yml", "name: m\nsteps:\n  - include: nowhere.yml\n")
    missing = run_cli("validate", str(tmp_path / "missing.yml"))
    assert missing.returncode == 2 and ":3:14: " in missing.stdout and "no playbook" in missing.stdout


def test_dry_run_goes_inside(tmp_path):
    write(tmp_path / "inner.yml", 'name: inner\nsteps:\n  - id: touch\n    shell: "touch made-by-inner"\n')
    run = play(tmp_path, "name: o\nsteps:\n  - id: inc\n    include: inner.yml\n", "--dry-run")
    assert run.returncode == 0, run.stderr
    assert run.step("inc.touch")["result"]["dry_run"]
    assert not (tmp_path / "made-by-inner").exists()


def test_cancelling_the_run_cancels_the_included_run_and_runs_its_finally(tmp_path):
    write(
        tmp_path / "slow.yml",
        "name: slow\nsteps:\n  - id: long\n    wait: 60s\nfinally:\n  - shell: touch inner-finally\n",
    )
    book = write(tmp_path / "outer.yml", "name: outer\nsteps:\n  - id: inc\n    include: slow.yml\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runner", "play", str(book), "--output", "json"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        lines.append(line)
        if '"step_started"' in line and '"inc.long"' in line:
            break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143
    events = parse_events("".join(lines) + rest)
    statuses = {e["step"]["id"]: e["status"] for e in events if e["event"] == "step_finished"}
    assert statuses["inc.long"] == "cancelled"
    assert (tmp_path / "inner-finally").exists()
