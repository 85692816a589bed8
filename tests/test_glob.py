"""The ``glob`` handler (SPEC §5 row glob, §8 glob details), on real files.

Each test builds a tree under ``tmp_path`` and runs real ``runbook play --output json``
processes; what they find is compared with GNU ``find`` run on the same tree:
``find ROOT -name '*.log' -type f -not -path '*/.*'`` for the default rules (regular
files only, dot files and dot folders left out as in the shell), ``-L`` for
``follow_symlinks``, ``-size``/``-mmin`` for the filters, and ``find -printf | sort -n |
head`` for sort, reverse and limit. Ages are set with ``os.utime``, well away from every
threshold tested.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .playing import Play, parse_events, play, restricted_prefix

MINUTE, HOUR, DAY = 60, 3600, 86400

# relative path: (size in bytes, age in seconds); every size and every age distinct.
FILES: dict[str, tuple[int, int]] = {
    "app.log": (100, 10 * DAY),
    "error.log": (0, 3 * DAY),
    "notes.txt": (50, 4 * DAY),
    "with space.log": (10, 1 * HOUR),
    "ünï cødé.log": (999, 1 * MINUTE),
    "file1.log": (1000, 20 * DAY),
    "file2.log": (1001, 5 * DAY),
    "fileX.log": (4096, 3 * HOUR),
    "d.log/inner.log": (4097, 8 * DAY),
    "sub/a.log": (1_000_000, 30 * MINUTE + 7),
    "sub/deeper/b.log": (1_048_576, 6 * DAY),
    "sub/deeper/c.txt": (5, 2 * DAY + 5 * HOUR),
    "archive/old.log": (20, 400 * DAY),
    "archive/2020/x.log": (30, 100 * DAY),
    ".hidden.log": (7, 11 * DAY),
    ".cache/c.log": (8, 12 * DAY),
    "sub/.dot/d.log": (9, 13 * DAY),
}


# -- helpers ------------------------------------------------------------------------------------


def make_tree(tmp_path: Path) -> Path:
    """The tree under ``tmp_path/t``, with a link to a file, a link to a folder outside
    (``ext``), a dangling link, a folder named like a log (``d.log``), an empty folder."""
    root = tmp_path / "t"
    now = time.time()
    for relative, (size, age) in FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, (now - age, now - age))
    (root / "emptydir").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "o.log").write_bytes(b"o" * 11)
    os.utime(outside / "o.log", (now - 9 * DAY, now - 9 * DAY))
    os.symlink("app.log", root / "link.log")
    os.symlink("../outside", root / "ext")
    os.symlink("nowhere", root / "broken.log")
    assert "/." not in str(root)  # find's -not -path '*/.*' must only see the tree's own dots
    return root


def find(*args: str, cwd: Path | None = None) -> list[str]:
    """``find ARGS -print0``'s paths, in find's own order (its exit code is not checked:
    ``find -L`` exits 1 after reporting a link loop, and still lists everything else)."""
    proc = subprocess.run(["find", *args, "-print0"], capture_output=True, cwd=cwd)
    return [p.decode() for p in proc.stdout.split(b"\0") if p]


def shell(script: str, *args: str | Path, cwd: Path | None = None) -> list[str]:
    proc = subprocess.run(
        ["sh", "-c", script, "sh", *map(str, args)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
        env={**os.environ, "LC_ALL": "C"},
    )
    return proc.stdout.splitlines()


VISIBLE_LOGS = ("-name", "*.log", "-type", "f", "-not", "-path", "*/.*")


def globs(tmp_path: Path, steps: dict[str, dict[str, Any]], *args: str, cwd: Path | None = None) -> Play:
    """One playbook with a glob step per entry (id: arguments), run for real."""
    text = json.dumps(
        {"name": "glob-tests", "steps": [{"id": key, "glob": value} for key, value in steps.items()]},
        ensure_ascii=False,
    )
    run = play(tmp_path, text, *args, cwd=cwd)
    assert run.returncode == 0, run.stderr + run.stdout[-2000:]
    return run


def result(run: Play, key: str) -> dict[str, Any]:
    step = run.step(key)
    assert step["status"] == "ok", step
    return step["result"]


def regular_size(path: str, follow: bool) -> int | None:
    """The size of a regular file (through links only when following them), else None."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def check_against_find(found: dict[str, Any], expected: list[str], follow: bool = False) -> None:
    """paths sorted by name, absolute; count, total_bytes and matches agree with the files."""
    assert found["paths"] == sorted(expected)
    assert len(set(found["paths"])) == len(found["paths"])
    assert found["count"] == len(expected)
    sizes = {p: size for p in expected if (size := regular_size(p, follow)) is not None}
    assert found["total_bytes"] == sum(sizes.values())
    assert [m["path"] for m in found["matches"]] == found["paths"]
    for match in found["matches"]:
        if match["path"] in sizes:
            assert match["size"] == sizes[match["path"]]
            assert abs(match["mtime"] - os.stat(match["path"]).st_mtime) < 1e-5


def test_double_star_and_name_patterns_match_find(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "logs": {"pattern": "**/*.log", "root": r},
            "hidden": {"pattern": "**/*.log", "root": r, "hidden": True},
            "txt": {"pattern": "**/*.txt", "root": r},
            "top": {"pattern": "*.log", "root": r},
            "dot_named": {"pattern": ".cache/*.log", "root": r},
            "digit": {"pattern": "file[0-9].log", "root": r},
            "not_digit": {"pattern": "file[!0-9].log", "root": r},
            "unicode": {"pattern": "**/ünï*.log", "root": r},
            "spaces": {"pattern": "**/with space.log", "root": r},
            "one_char": {"pattern": "file?.log", "root": r},
            "one_level": {"pattern": "*/*.log", "root": r},
            "case": {"pattern": "**/*.LOG", "root": r},
            "relative_root": {"pattern": "**/*.log", "root": "t"},
        },
    )
    expected = {
        "logs": find(r, *VISIBLE_LOGS),
        "hidden": find(r, "-name", "*.log", "-type", "f"),
        "txt": find(r, "-name", "*.txt", "-type", "f", "-not", "-path", "*/.*"),
        "top": find(r, "-maxdepth", "1", *VISIBLE_LOGS),
        "dot_named": find(f"{r}/.cache", "-name", "*.log", "-type", "f"),
        "digit": find(r, "-maxdepth", "1", "-name", "file[0-9].log", "-type", "f"),
        "not_digit": find(r, "-maxdepth", "1", "-name", "file[!0-9].log", "-type", "f"),
        "unicode": find(r, "-name", "ünï*.log", "-type", "f", "-not", "-path", "*/.*"),
        "spaces": find(r, "-name", "with space.log", "-type", "f"),
        "one_char": find(r, "-maxdepth", "1", "-name", "file?.log", "-type", "f"),
        "one_level": find(r, "-mindepth", "2", "-maxdepth", "2", *VISIBLE_LOGS),
        "case": find(r, "-name", "*.LOG", "-type", "f"),
        "relative_root": find(r, *VISIBLE_LOGS),
    }
    for key, paths in expected.items():
        check_against_find(result(run, key), paths)
    # The find side is not trivially empty, and the dot rule is what it seems.
    assert len(expected["logs"]) == 12 and len(expected["hidden"]) == 15
    assert {os.path.basename(p) for p in expected["digit"]} == {"file1.log", "file2.log"}
    assert [os.path.basename(p) for p in expected["not_digit"]] == ["fileX.log"]
    assert len(expected["one_char"]) == 3 and len(expected["one_level"]) == 3
    assert expected["case"] == []
    assert not any("/." in p for p in result(run, "logs")["paths"])
    assert str(root / "sub" / ".dot" / "d.log") in result(run, "hidden")["paths"]
    # type: file means regular files: the link to a file, the dangling link and the
    # folder named d.log are not files.
    for name in ("link.log", "broken.log", "d.log"):
        assert str(root / name) not in result(run, "logs")["paths"]


def test_names_ending_in_wildcards_brackets_or_text_match_find(tmp_path):
    """Names are first tested against the text every match must end with (``.csv`` for
    ``data-?.csv``), before the whole pattern; patterns ending in a wildcard or a bracket
    have no such text, and one of those among several patterns turns the test off."""
    root = tmp_path / "t"
    names = [
        "data-1.csv", "data-22.csv", "data-x.csv.bak", "notes]", "notes", "log.1", "log.a",
        "archive.log.gz", "[x].log", "x.log", ".dot.csv", "csv", "a.CSV",
    ]  # fmt: skip
    for folder in ("", "sub/", "sub/deeper/"):
        for name in names:
            path = root / f"{folder}{name}"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(name)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "one_char": {"pattern": "**/data-?.csv", "root": r},
            "bracket_last": {"pattern": "**/*]", "root": r},
            "class_last": {"pattern": "**/log.[0-9]", "root": r},
            "star_last": {"pattern": "**/*.log*", "root": r},
            "bracket_inside": {"pattern": "**/[[]x].log", "root": r},
            "below_a_folder": {"pattern": "sub/*.csv", "root": r},
            "mixed": {"patterns": ["**/*.csv", "**/notes*"], "root": r},
            "literal": {"pattern": "**/csv", "root": r},
        },
    )
    expected = {
        "one_char": find(r, "-name", "data-?.csv", "-not", "-path", "*/.*"),
        "bracket_last": find(r, "-name", "*]", "-not", "-path", "*/.*"),
        "class_last": find(r, "-name", "log.[0-9]", "-not", "-path", "*/.*"),
        "star_last": find(r, "-name", "*.log*", "-not", "-path", "*/.*"),
        "bracket_inside": find(r, "-name", "[[]x].log", "-not", "-path", "*/.*"),
        "below_a_folder": find(f"{r}/sub", "-maxdepth", "1", "-name", "*.csv", "-not", "-path", "*/.*"),
        "mixed": find(r, "(", "-name", "*.csv", "-o", "-name", "notes*", ")", "-not", "-path", "*/.*"),
        "literal": find(r, "-name", "csv"),
    }
    for key, paths in expected.items():
        check_against_find(result(run, key), paths)
    counts = {key: len(paths) for key, paths in expected.items()}
    assert counts == {
        "one_char": 3,
        "bracket_last": 3,
        "class_last": 3,
        "star_last": 9,
        "bracket_inside": 3,
        "below_a_folder": 2,
        "mixed": 12,
        "literal": 3,
    }


def test_type_dir_and_any_match_find(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "dirs": {"pattern": "**", "root": r, "type": "dir"},
            "any_logs": {"pattern": "**/*.log", "root": r, "type": "any"},
            "everything": {"pattern": "**", "root": r, "type": "any"},
            "everything_hidden": {"pattern": "**", "root": r, "type": "any", "hidden": True},
        },
    )
    dirs = find(r, "-mindepth", "1", "-type", "d", "-not", "-path", "*/.*")
    assert str(root / "emptydir") in dirs and str(root / "d.log") in dirs
    check_against_find(result(run, "dirs"), dirs)
    any_logs = find(r, "-name", "*.log", "-not", "-path", "*/.*")
    assert {str(root / n) for n in ("d.log", "link.log", "broken.log")} <= set(any_logs)
    check_against_find(result(run, "any_logs"), any_logs)
    check_against_find(result(run, "everything"), find(r, "-mindepth", "1", "-not", "-path", "*/.*"))
    check_against_find(result(run, "everything_hidden"), find(r, "-mindepth", "1"))


def test_exclude_several_patterns_absolute_pattern_and_shorthand(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "exclude": {"pattern": "**/*.log", "root": r, "exclude": ["archive", "*space*"]},
            "exclude_path": {"pattern": "**/*.log", "root": r, "exclude": "sub/deeper/*"},
            "exclude_globstar": {"pattern": "**/*", "root": r, "exclude": ["**/deeper", "**/*.txt"]},
            "several": {"patterns": ["**/*.log", "sub/**/*.log", "**/*.txt"], "root": r},
            "absolute": {"pattern": f"{r}/sub/**/*.log", "root": str(tmp_path / "outside")},
            "shorthand": "sub/**/*.log",  # relative to the run's folder (cwd)
        },
        cwd=root,
    )
    excluded = find(r, *VISIBLE_LOGS, "-not", "-path", "*/archive/*", "-not", "-name", "*space*")
    assert len(excluded) == 9
    check_against_find(result(run, "exclude"), excluded)
    check_against_find(
        result(run, "exclude_path"), find(r, *VISIBLE_LOGS, "-not", "-path", f"{r}/sub/deeper/*")
    )
    no_deeper = find(
        r, "-type", "f", "-not", "-path", "*/.*", "-not", "-path", "*/deeper/*", "-not", "-name", "*.txt"
    )
    assert str(root / "sub" / "a.log") in no_deeper and len(no_deeper) == 11
    check_against_find(result(run, "exclude_globstar"), no_deeper)
    both = find(r, "(", "-name", "*.log", "-o", "-name", "*.txt", ")", "-type", "f", "-not", "-path", "*/.*")
    check_against_find(result(run, "several"), both)  # sub/a.log matched twice, listed once
    below_sub = find(f"{r}/sub", *VISIBLE_LOGS)
    check_against_find(result(run, "absolute"), below_sub)
    check_against_find(result(run, "shorthand"), below_sub)
    assert result(run, "shorthand")["root"] == r


# -- links --------------------------------------------------------------------------------------


def test_follow_symlinks_matches_find_l(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "follow": {"pattern": "**/*.log", "root": r, "follow_symlinks": True},
            "follow_any": {"pattern": "**/*.log", "root": r, "follow_symlinks": True, "type": "any"},
        },
    )
    followed = find("-L", r, *VISIBLE_LOGS)
    assert {str(root / "link.log"), str(root / "ext" / "o.log")} <= set(followed)
    found = result(run, "follow")
    check_against_find(found, followed, follow=True)
    link = next(m for m in found["matches"] if m["path"] == str(root / "link.log"))
    assert link["size"] == FILES["app.log"][0]  # the target's size, as find -L sees it
    followed_any = find("-L", r, "-name", "*.log", "-not", "-path", "*/.*")
    check_against_find(result(run, "follow_any"), followed_any, follow=True)


def test_a_symlink_loop_with_follow_symlinks_terminates(tmp_path):
    loop = tmp_path / "loop"
    (loop / "a" / "b").mkdir(parents=True)
    (loop / "a" / "x.log").write_text("x")
    (loop / "a" / "b" / "y.log").write_text("yy")
    os.symlink("..", loop / "a" / "back")
    os.symlink(".", loop / "a" / "self")
    os.symlink("../..", loop / "a" / "b" / "up")
    proc = subprocess.run(["find", "-L", str(loop)], capture_output=True, text=True)
    assert "loop" in proc.stderr  # find itself sees the loops
    run = globs(
        tmp_path,
        {
            "logs": {"pattern": "**/*.log", "root": str(loop), "follow_symlinks": True},
            "any": {"pattern": "**", "root": str(loop), "follow_symlinks": True, "type": "any"},
        },
    )
    check_against_find(
        result(run, "logs"), find("-L", str(loop), "-name", "*.log", "-type", "f"), follow=True
    )
    assert result(run, "logs")["count"] == 2
    # Every path once: the loop links are listed as entries, and not entered.
    links = [str(loop / "a" / "back"), str(loop / "a" / "self"), str(loop / "a" / "b" / "up")]
    check_against_find(result(run, "any"), find("-L", str(loop), "-mindepth", "1") + links, follow=True)


# -- filters ------------------------------------------------------------------------------------


def test_size_and_age_filters_match_find(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "min": {"pattern": "**/*.log", "root": r, "min_size": "1KB"},
            "max": {"pattern": "**/*.log", "root": r, "max_size": "4KiB"},
            "mb_to_mib": {"pattern": "**/*.log", "root": r, "min_size": "1MB", "max_size": "1MiB"},
            "bytes": {"pattern": "**/*.log", "root": r, "min_size": 1001, "max_size": 4097},
            "old": {"pattern": "**/*.log", "root": r, "older_than": "7d"},
            "new": {"pattern": "**/*.log", "root": r, "newer_than": "1d"},
            "window": {"pattern": "**/*.log", "root": r, "newer_than": "2h", "older_than": "45m"},
            "both": {"pattern": "**/*.log", "root": r, "older_than": "2d", "min_size": 1000},
        },
    )
    expected = {
        "min": find(r, *VISIBLE_LOGS, "-size", "+999c"),
        "max": find(r, *VISIBLE_LOGS, "-size", "-4097c"),
        "mb_to_mib": find(r, *VISIBLE_LOGS, "-size", "+999999c", "-size", "-1048577c"),
        "bytes": find(r, *VISIBLE_LOGS, "-size", "+1000c", "-size", "-4098c"),
        "old": find(r, *VISIBLE_LOGS, "-mmin", f"+{7 * 24 * 60}"),
        "new": find(r, *VISIBLE_LOGS, "-mmin", f"-{24 * 60}"),
        "window": find(r, *VISIBLE_LOGS, "-mmin", "-120", "-mmin", "+45"),
        "both": find(r, *VISIBLE_LOGS, "-mmin", f"+{2 * 24 * 60}", "-size", "+999c"),
    }
    for key, paths in expected.items():
        check_against_find(result(run, key), paths)
    names = {key: sorted(os.path.relpath(p, r) for p in paths) for key, paths in expected.items()}
    assert names["mb_to_mib"] == ["sub/a.log", "sub/deeper/b.log"]  # 1 MB = 10^6, 1 MiB = 2^20
    assert names["bytes"] == ["d.log/inner.log", "file2.log", "fileX.log"]
    assert names["window"] == ["with space.log"]
    assert names["old"] == [
        "app.log",
        "archive/2020/x.log",
        "archive/old.log",
        "d.log/inner.log",
        "file1.log",
    ]
    assert names["both"] == ["d.log/inner.log", "file1.log", "file2.log", "sub/deeper/b.log"]


def test_sort_reverse_limit_and_relative_match_find_and_sort(tmp_path):
    root = make_tree(tmp_path)
    r = str(root)
    run = globs(
        tmp_path,
        {
            "by_mtime": {"pattern": "**/*.log", "root": r, "sort": "mtime"},
            "by_size_top3": {"pattern": "**/*.log", "root": r, "sort": "size", "reverse": True, "limit": 3},
            "name_reversed": {"pattern": "**/*.log", "root": r, "reverse": True},
            "relative": {"pattern": "**/*.log", "root": r, "relative": True, "sort": "mtime", "limit": 4},
            "none": {"pattern": "**/*.log", "root": r, "limit": 0},
        },
    )
    logs = ("(", "-name", "*.log", "-type", "f", "-not", "-path", "*/.*", ")")
    by_mtime = shell('r=$1; shift; find "$r" "$@" -printf "%T@\\t%p\\n" | sort -n | cut -f2', r, *logs)
    top3 = shell(
        'r=$1; shift; find "$r" "$@" -printf "%s\\t%p\\n" | sort -rn | head -n 3 | cut -f2', r, *logs
    )
    reversed_names = shell('r=$1; shift; find "$r" "$@" -printf "%p\\n" | sort -r', r, *logs)
    relative = shell('find . "$@" -printf "%T@\\t%P\\n" | sort -n | head -n 4 | cut -f2', *logs, cwd=root)
    assert len(by_mtime) == 12
    assert result(run, "by_mtime")["paths"] == by_mtime
    assert result(run, "by_size_top3")["paths"] == top3
    assert [os.path.basename(p) for p in top3] == ["b.log", "a.log", "inner.log"]
    assert result(run, "by_size_top3")["total_bytes"] == 1_048_576 + 1_000_000 + 4097
    assert result(run, "name_reversed")["paths"] == reversed_names
    found = result(run, "relative")
    assert found["paths"] == relative
    assert [m["path"] for m in found["matches"]] == relative
    assert all(not os.path.isabs(p) for p in relative)
    assert (result(run, "none")["paths"], result(run, "none")["count"]) == ([], 0)


# -- errors and dry run -------------------------------------------------------------------------


def test_missing_root_or_a_file_as_root_fails_with_one_line(tmp_path):
    (tmp_path / "plain.txt").write_text("x")
    text = json.dumps(
        {
            "name": "glob-errors",
            "steps": [
                {
                    "id": "missing",
                    "glob": {"pattern": "*.log", "root": "no/such/dir"},
                    "continue_on_error": True,
                },
                {"id": "file", "glob": {"pattern": "*.log", "root": "plain.txt"}},
            ],
        }
    )
    run = play(tmp_path, text)
    assert run.returncode == 1, run.stderr
    for key, words in (("missing", "does not exist"), ("file", "is not a folder")):
        step = run.step(key)
        assert step["status"] == "failed"
        error = step["error"]
        assert "\n" not in error and words in error, error
    assert str(tmp_path / "no" / "such" / "dir") in run.step("missing")["error"]
    assert str(tmp_path / "plain.txt") in run.step("file")["error"]


def test_unreadable_root_fails_with_permission_denied(tmp_path):
    """Regression (failed at f349a50): a root the glob cannot read gives an empty, successful
    result (the walk ignores EACCES); find reports 'Permission denied' and exits 1."""
    root = tmp_path / "locked"
    root.mkdir()
    (root / "a.log").write_text("a")
    text = json.dumps({"name": "g", "steps": [{"id": "g", "glob": {"pattern": "*.log", "root": str(root)}}]})
    (tmp_path / "play.yml").write_text(text)
    prefix = restricted_prefix(tmp_path)
    root.chmod(0)
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "runner", "play", str(tmp_path / "play.yml"), "--output", "json"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
        )
        ref = subprocess.run([*prefix, "find", str(root), "-name", "*.log"], capture_output=True, text=True)
    finally:
        root.chmod(0o755)
    assert ref.returncode == 1 and "Permission denied" in ref.stderr
    step = Play(proc.returncode, proc.stdout, proc.stderr, parse_events(proc.stdout)).step("g")
    assert step["status"] == "failed"
    assert "permission denied" in step["error"] and str(root) in step["error"]


def test_dry_run_still_lists_matches(tmp_path):
    root = make_tree(tmp_path)
    before = sorted(os.listdir(root))
    run = globs(tmp_path, {"logs": {"pattern": "**/*.log", "root": str(root)}}, "--dry-run")
    found = result(run, "logs")
    check_against_find(found, find(str(root), *VISIBLE_LOGS))
    assert found["verdict"] == "no change"
    assert sorted(os.listdir(root)) == before
