"""The ``delete`` handler (SPEC §5b), on real files.

Playbooks run in a real ``runbook play --output json`` process. Ages are set with
``os.utime``; what must go and what must stay is decided by the test from the files it
made, and checked on disk afterwards. Permission faults are real: runbook runs as root
without CAP_DAC_OVERRIDE (``setpriv``), so a read-only folder refuses it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from runner.taskctx import TaskContext
from tasks import delete

from .playing import Play, one_line_error, play, restricted_prefix

DAY = 86400


def book(steps: list[dict[str, Any]]) -> str:
    return json.dumps({"name": "delete-tests", "steps": steps})


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str, cwd: Path | None = None) -> Play:
    return play(tmp_path, book(steps), *args, cwd=cwd)


def make(path: Path, size: int = 10, age_days: float = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    if age_days:
        moment = time.time() - age_days * DAY
        os.utime(path, (moment, moment))
    return path


def logs(root: Path) -> dict[str, Path]:
    """Logs of several ages and sizes, plus things a *.log.gz glob must not touch."""
    return {
        "old": make(root / "app.1.log.gz", 1000, 40),
        "older": make(root / "app.2.log.gz", 3000, 90),
        "recent": make(root / "app.3.log.gz", 500, 2),
        "hidden": make(root / ".app.4.log.gz", 700, 90),
        "other": make(root / "app.log", 100, 90),
        "nested": make(root / "sub" / "app.5.log.gz", 100, 90),
    }


def test_a_glob_with_older_than_deletes_only_old_matches(tmp_path):
    files = logs(tmp_path / "logs")
    run = run_steps(
        tmp_path, [{"id": "preview", "delete": {"path": "logs/*.log.gz", "older_than": "30d"}}], "--dry-run"
    )
    assert run.returncode == 0, run.stderr
    preview = run.step("preview")["result"]
    gone = {files["old"], files["older"]}
    assert sorted(preview["deleted"]) == sorted(str(p) for p in gone)
    assert preview["bytes_freed"] == sum(p.stat().st_size for p in gone)
    assert preview["changed"] is True and "would delete 2 paths" in preview["dry_run"]
    assert all(p.exists() for p in files.values()), "a dry run deleted something"

    run = run_steps(tmp_path, [{"id": "clean", "delete": {"path": "logs/*.log.gz", "older_than": "30d"}}])
    assert run.returncode == 0, run.stderr
    result = run.step("clean")["result"]
    assert run.step("clean")["status"] == "changed"
    assert sorted(result["deleted"]) == sorted(str(p) for p in gone)
    assert (result["count"], result["files"], result["bytes_freed"]) == (2, 2, 4000)
    assert {k for k, p in files.items() if not p.exists()} == {"old", "older"}

    again = run_steps(tmp_path, [{"id": "clean", "delete": {"path": "logs/*.log.gz", "older_than": "30d"}}])
    step = again.step("clean")
    assert step["status"] == "ok" and step["result"]["changed"] is False and step["result"]["deleted"] == []


def test_folders_links_missing_paths_and_sizes(tmp_path):
    tree = tmp_path / "build"
    for index in range(5):
        make(tree / f"d{index}" / f"f{index}.o", 100 * (index + 1))
    kept = make(tmp_path / "keep" / "important.txt", 50)
    (tmp_path / "link-to-keep").symlink_to(tmp_path / "keep")
    big = make(tmp_path / "cache" / "big.bin", 5000)
    small = make(tmp_path / "cache" / "small.bin", 10)
    run = run_steps(
        tmp_path,
        [
            {"id": "tree", "delete": str(tree)},
            {"id": "link", "delete": "link-to-keep"},
            {"id": "missing", "delete": {"path": ["no-such-file", "nothing-*"]}},
            {"id": "big", "delete": {"path": "cache/*", "min_size": "1KiB"}},
        ],
    )
    assert run.returncode == 0, run.stderr
    tree_result = run.step("tree")["result"]
    assert (tree_result["count"], tree_result["files"], tree_result["bytes_freed"]) == (1, 5, 1500)
    assert not tree.exists()
    assert not os.path.lexists(tmp_path / "link-to-keep") and kept.read_bytes() == b"x" * 50
    missing = run.step("missing")
    assert missing["status"] == "ok" and missing["result"]["deleted"] == []
    assert run.step("big")["result"]["deleted"] == [str(big)]
    assert not big.exists() and small.exists()


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("/", "the root folder"),
        ("HOME", "the home folder"),
        (".", "the playbook's folder"),
        ("..", "the playbook's folder"),
    ],
)
def test_protected_folders_are_refused_without_force(tmp_path, isolated_env, target, what):
    work = tmp_path / "work"
    make(work / "data.txt")
    make(isolated_env / "notes.txt")
    path = str(isolated_env) if target == "HOME" else target
    run = play(tmp_path, book([{"id": "rm", "delete": path}]), cwd=work)
    assert run.returncode == 1
    error = one_line_error(run.step("rm"))
    assert "refusing to delete" in error and what in error and "force: true" in error
    assert (work / "data.txt").exists() and (isolated_env / "notes.txt").exists()


def test_force_deletes_the_playbook_folder(tmp_path):
    work = tmp_path / "work"
    make(work / "data.txt", 7)
    run = play(tmp_path, book([{"id": "rm", "delete": {"path": str(work), "force": True}}]), cwd=work)
    assert run.returncode == 0, run.stderr
    assert run.step("rm")["result"]["bytes_freed"] == 7
    assert not work.exists()


def test_a_glob_reaching_a_protected_folder_deletes_nothing(tmp_path):
    work = tmp_path / "work"
    make(work / "data.txt")
    other = make(tmp_path / "other" / "x.txt")
    run = play(tmp_path, book([{"id": "rm", "delete": str(tmp_path / "*")}]), cwd=work)
    assert run.returncode == 1
    assert "refusing to delete" in one_line_error(run.step("rm"))
    assert (work / "data.txt").exists() and other.exists()


def test_permission_denied_is_one_line_and_keeps_what_was_done(tmp_path):
    prefix = restricted_prefix(tmp_path)
    first = make(tmp_path / "a" / "one.log", 10, 40)
    locked = make(tmp_path / "b" / "two.log", 10, 40)
    (tmp_path / "b").chmod(0o555)
    try:
        run = play(tmp_path, book([{"id": "rm", "delete": {"path": "*/*.log"}}]), prefix=prefix)
    finally:
        (tmp_path / "b").chmod(0o755)
    assert run.returncode == 1
    step = run.step("rm")
    error = one_line_error(step)
    assert "permission denied" in error and str(locked) in error
    assert step["result"]["deleted"] == [str(first)] and not first.exists() and locked.exists()


# -- unit level: selection rules ---------------------------------------------------------------


def ctx_for(tmp_path: Path, dry_run: bool = False) -> TaskContext:
    return TaskContext(step_label="unit", cwd=str(tmp_path), dry_run=dry_run)


def test_a_folder_and_its_contents_matched_together_count_once(tmp_path):
    make(tmp_path / "out" / "a.txt", 4)
    make(tmp_path / "out" / "deep" / "b.txt", 6)
    result = delete.run({"path": ["out", "out/**"]}, ctx_for(tmp_path))
    assert result["deleted"] == [str(tmp_path / "out")]
    assert (result["files"], result["bytes_freed"]) == (2, 10)


def test_newer_than_keeps_only_recent(tmp_path):
    fresh = make(tmp_path / "fresh.tmp", 1)
    stale = make(tmp_path / "stale.tmp", 1, 3)
    result = delete.run({"path": "*.tmp", "newer_than": "1d"}, ctx_for(tmp_path))
    assert result["deleted"] == [str(fresh)]
    assert not fresh.exists() and stale.exists()


def test_the_playbook_folder_is_protected_from_another_working_folder(tmp_path):
    work = tmp_path / "work"
    make(work / "data.txt")
    run = play(tmp_path, book([{"id": "rm", "delete": str(tmp_path)}]), cwd=work)  # play.yml is in tmp_path
    assert run.returncode == 1
    error = one_line_error(run.step("rm"))
    assert "the playbook's folder" in error and "force: true" in error
    assert (tmp_path / "play.yml").exists()
