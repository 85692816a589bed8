"""The ``mkdir`` handler (SPEC §5b), on real folders, against ``mkdir -p -m``.

GNU ``mkdir -p -m MODE`` run as a subprocess is the reference: the named folder gets
exactly MODE, the parents it creates get the default mode (0777 less the umask).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

from runner.taskctx import TaskContext
from tasks import mkdir

from .playing import one_line_error, play


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_nested_folders_with_a_mode_match_mkdir_p(tmp_path):
    reference = tmp_path / "ref" / "a" / "b" / "c"
    subprocess.run(["mkdir", "-p", "-m", "0750", str(reference)], check=True)
    steps = [
        {"id": "make", "mkdir": {"path": "ours/a/b/c", "mode": "0750"}},
        {"id": "again", "mkdir": {"path": "ours/a/b/c", "mode": "0750"}},
        {"id": "plain", "mkdir": ["ours/x", "ours/y/z"]},
    ]
    run = play(tmp_path, json.dumps({"name": "mkdir", "steps": steps}))
    assert run.returncode == 0, run.stderr
    ours = tmp_path / "ours" / "a" / "b" / "c"
    for relative in ("", "a", "a/b", "a/b/c"):
        assert mode(tmp_path / "ours" / relative) == mode(tmp_path / "ref" / relative), relative
    made = run.step("make")["result"]
    assert made["created"] == [
        str(tmp_path / "ours"),
        str(tmp_path / "ours" / "a"),
        str(tmp_path / "ours" / "a" / "b"),
        str(ours),
    ]
    assert run.step("make")["status"] == "changed"
    assert run.step("again")["status"] == "ok" and run.step("again")["result"]["created"] == []
    assert (tmp_path / "ours" / "y" / "z").is_dir() and (tmp_path / "ours" / "x").is_dir()
    assert run.step("plain")["result"]["created"] == [
        str(tmp_path / "ours" / "x"),
        str(tmp_path / "ours" / "y"),
        str(tmp_path / "ours" / "y" / "z"),
    ]


def test_an_existing_folder_gets_its_mode_set(tmp_path):
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    result = mkdir.run({"path": "shared", "mode": 0o700}, TaskContext(step_label="u", cwd=str(tmp_path)))
    assert result["changed"] is True and result["mode_set"] == [str(folder)]
    assert mode(folder) == 0o700


def test_dry_run_creates_nothing(tmp_path):
    ctx = TaskContext(step_label="u", cwd=str(tmp_path), dry_run=True)
    result = mkdir.run({"path": "p/q"}, ctx)
    assert result["changed"] is True and result["created"] == [str(tmp_path / "p"), str(tmp_path / "p" / "q")]
    assert "would create 2 folders" in result["dry_run"]
    assert not (tmp_path / "p").exists()


def test_a_file_in_the_way_is_a_one_line_error(tmp_path):
    (tmp_path / "blocker").write_text("x")
    run = play(tmp_path, "name: m\nsteps:\n  - id: m\n    mkdir: blocker/sub\n")
    assert run.returncode == 1
    error = one_line_error(run.step("m"))
    assert "blocker" in error and "is a file" in error
    assert (tmp_path / "blocker").read_text() == "x"
