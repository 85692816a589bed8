"""The ``move`` handler (SPEC §5b), on real files.

Playbooks run in a real ``runbook play --output json`` process. Where files must land is
worked out by the test from the files it made; bytes, modes and times are compared on
disk. The move across file systems goes to ``/dev/shm`` when that is a different file
system from the test's folder (a real EXDEV, no mock).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from runner.taskctx import TaskContext
from tasks import move

from .playing import Play, one_line_error, play

DAY = 86400


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str) -> Play:
    return play(tmp_path, json.dumps({"name": "move-tests", "steps": steps}), *args)


def make(path: Path, text: str = "data", age_days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if age_days:
        moment = time.time() - age_days * DAY
        os.utime(path, (moment, moment))
    return path


def test_a_glob_moves_old_files_into_a_folder_keeping_their_relative_paths(tmp_path):
    old_a = make(tmp_path / "logs" / "a.log", "a" * 11, 10)
    old_b = make(tmp_path / "logs" / "web" / "b.log", "b" * 22, 10)
    new_c = make(tmp_path / "logs" / "c.log", "c", 0)
    step = {"id": "archive", "move": {"src": "logs/**/*.log", "dest": "archive", "older_than": "7d"}}
    preview = run_steps(tmp_path, [step], "--dry-run")
    assert preview.returncode == 0, preview.stderr
    planned = {(m["src"], m["dest"]) for m in preview.step("archive")["result"]["moved"]}
    expected = {
        (str(old_a), str(tmp_path / "archive" / "a.log")),
        (str(old_b), str(tmp_path / "archive" / "web" / "b.log")),
    }
    assert planned == expected
    assert old_a.exists() and not (tmp_path / "archive").exists(), "a dry run moved something"

    run = run_steps(tmp_path, [step])
    assert run.returncode == 0, run.stderr
    result = run.step("archive")["result"]
    assert {(m["src"], m["dest"]) for m in result["moved"]} == expected
    assert (result["count"], result["bytes"]) == (2, 33)
    assert (tmp_path / "archive" / "web" / "b.log").read_text() == "b" * 22
    assert not old_a.exists() and not old_b.exists() and new_c.exists()
    # The moved file keeps its modification time: a rename does not touch it.
    assert (tmp_path / "archive" / "a.log").stat().st_mtime < time.time() - 9 * DAY

    again = run_steps(tmp_path, [step])
    assert again.step("archive")["status"] == "ok"
    assert again.step("archive")["result"]["moved"] == []


def test_rename_into_folder_overwrite_and_already_moved(tmp_path):
    make(tmp_path / "report.txt", "new report")
    make(tmp_path / "out" / "report.txt", "old report")
    make(tmp_path / "keep.txt", "mine")
    make(tmp_path / "out" / "keep.txt", "theirs")
    make(tmp_path / "draft.txt", "draft")
    run = run_steps(
        tmp_path,
        [
            {"id": "replace", "move": {"src": "report.txt", "dest": "out/"}},
            {"id": "keep", "move": {"src": "keep.txt", "dest": "out", "overwrite": False}},
            {"id": "rename", "move": {"src": "draft.txt", "dest": "final/v1.txt"}},
            {"id": "twice", "move": {"src": "draft.txt", "dest": "final/v1.txt"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "report.txt").read_text() == "new report"
    assert not (tmp_path / "report.txt").exists()
    keep = run.step("keep")
    assert keep["status"] == "ok" and keep["result"]["not_moved"] == [str(tmp_path / "keep.txt")]
    assert (tmp_path / "keep.txt").read_text() == "mine"
    assert (tmp_path / "out" / "keep.txt").read_text() == "theirs"
    assert (tmp_path / "final" / "v1.txt").read_text() == "draft"
    assert run.step("rename")["status"] == "changed"
    assert run.step("twice")["status"] == "ok" and run.step("twice")["result"]["count"] == 0


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"src": "nowhere.txt", "dest": "x"}, "does not exist"),
        ({"src": "tree", "dest": "tree/inside/"}, "into itself"),
        ({"src": "file.txt", "dest": "folder"}, None),  # into the existing folder: fine
        ({"src": "file.txt", "dest": "blocker/x/"}, "a part of it is a file"),
        ({"src": "tree", "dest": "taken"}, "a folder is already there"),
    ],
)
def test_errors_are_one_line(tmp_path, step, expected):
    make(tmp_path / "tree" / "f.txt")
    make(tmp_path / "file.txt")
    make(tmp_path / "blocker")
    (tmp_path / "folder").mkdir()
    make(tmp_path / "taken" / "tree" / "g.txt")
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    result: Any
    try:
        result = move.run(step, TaskContext(step_label="unit", cwd=str(tmp_path)))
    except Exception as exc:
        result = exc
    if expected is None:
        assert (tmp_path / "folder" / "file.txt").exists()
        return
    assert expected in str(result) and "\n" not in str(result)
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_an_error_in_a_playbook_names_the_step(tmp_path):
    run = run_steps(tmp_path, [{"id": "mv", "move": {"src": "missing.txt", "dest": "out/"}}])
    assert run.returncode == 1
    assert "does not exist" in one_line_error(run.step("mv"))


def test_a_move_across_file_systems_copies_then_removes(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is not a separate file system here")
    target = shm / f"runbook-move-{uuid.uuid4().hex}"
    source = make(tmp_path / "big.bin", "z" * 300_000, 5)
    source.chmod(0o640)
    folder = tmp_path / "tree"
    make(folder / "one.txt", "1")
    make(folder / "sub" / "two.txt", "22")
    (folder / "link").symlink_to("one.txt")
    mtime = source.stat().st_mtime
    try:
        run = run_steps(
            tmp_path,
            [
                {"id": "file", "move": {"src": str(source), "dest": f"{target}/"}},
                {"id": "tree", "move": {"src": str(folder), "dest": str(target / "tree")}},
            ],
        )
        assert run.returncode == 0, run.stderr
        moved = target / "big.bin"
        assert moved.read_text() == "z" * 300_000 and not source.exists()
        assert (moved.stat().st_mode & 0o777, moved.stat().st_mtime) == (0o640, mtime)
        assert (target / "tree" / "sub" / "two.txt").read_text() == "22"
        assert os.readlink(target / "tree" / "link") == "one.txt"
        assert not folder.exists()
        assert run.step("file")["result"]["bytes"] == 300_000
        assert sorted(os.listdir(target)) == ["big.bin", "tree"]  # no temporary left behind
    finally:
        import shutil

        shutil.rmtree(target, ignore_errors=True)
