"""The ``grep`` handler (SPEC §5b): counts and line numbers against GNU ``grep``.

Logs are generated (random lines, some longer than the handler's read block, a last line
without newline, CRLF lines); ``grep -c``/``grep -n`` with ``-E`` (and ``-i``) run on the
same files are the reference. Patterns are chosen to mean the same to Python's ``re``
and to POSIX extended regexes.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import grep

from .playing import Play, one_line_error, play

WORDS = ["INFO", "ERROR", "error", "WARN", "user", "login", "db", "timeout", "ok", "Error:", "42", "x"]


def make_log(path: Path, lines: int, seed: int) -> Path:
    rng = random.Random(seed)
    out = []
    for number in range(lines):
        if number % 997 == 5:
            out.append("ERROR " + "y" * 1_300_000)  # longer than a read block
        else:
            line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 8)))
            out.append(line + "\r" if number % 50 == 7 else line)  # a few CRLF lines
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("\n".join(out).encode())  # no final newline
    return path


def gnu(*args: str | Path) -> str:
    proc = subprocess.run(["grep", *map(str, args)], capture_output=True, text=True, errors="replace")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout


def ctx_for(tmp_path: Path) -> TaskContext:
    return TaskContext(step_label="u", cwd=str(tmp_path))


@pytest.mark.parametrize(
    ("pattern", "ignore_case"),
    [
        ("ERROR", False),
        ("error", True),
        ("^INFO", False),
        ("ok$", False),
        ("user +login", False),
        ("^$", False),
    ],
)
def test_counts_and_line_numbers_match_gnu_grep(tmp_path, pattern, ignore_case):
    log = make_log(tmp_path / "app.log", 3000, seed=len(pattern))
    flags = ["-E"] + (["-i"] if ignore_case else [])
    result = grep.run(
        {"path": "app.log", "pattern": pattern, "ignore_case": ignore_case, "max_matches": 100_000},
        ctx_for(tmp_path),
    )
    assert result["count"] == int(gnu(*flags, "-c", pattern, log))
    numbered = [int(line.split(":", 1)[0]) for line in gnu(*flags, "-n", pattern, log).splitlines()]
    assert [m["line"] for m in result["matches"]] == numbered
    assert result["last_line"][str(log)] == 3000
    assert all(len(m["text"]) <= 1000 for m in result["matches"])


def test_a_glob_counts_per_file_like_grep_c(tmp_path):
    for index in range(4):
        make_log(tmp_path / "logs" / f"app{index}.log", 400, seed=index)
    (tmp_path / "logs" / "ignored.txt").write_text("ERROR\n")
    result = grep.run({"path": "logs/*.log", "pattern": "ERROR|timeout", "max_matches": 3}, ctx_for(tmp_path))
    reference = gnu("-E", "-c", "ERROR|timeout", *sorted((tmp_path / "logs").glob("*.log")))
    expected = {path: int(count) for path, count in (line.rsplit(":", 1) for line in reference.splitlines())}
    assert result["counts"] == expected
    assert result["count"] == sum(expected.values()) and result["files"] == 4
    assert len(result["matches"]) == 3  # listed up to max_matches; counts stay exact


def test_since_line_and_tail_bytes_scan_only_the_end(tmp_path):
    lines = [f"{n} {'ERROR' if n % 3 == 0 else 'INFO'} event" for n in range(1, 1001)]
    log = tmp_path / "big.log"
    log.write_text("\n".join(lines) + "\n")
    since = grep.run({"path": "big.log", "pattern": "ERROR", "since_line": 901}, ctx_for(tmp_path))
    assert since["count"] == sum(1 for line in lines[900:] if "ERROR" in line)
    assert since["matches"][0]["line"] == next(n for n in range(901, 1001) if n % 3 == 0)
    data = log.read_bytes()
    start = len(data) - 2000  # the scan starts at the first whole line of the last 2000 bytes
    if data[start - 1 : start] != b"\n":
        start = data.index(b"\n", start) + 1
    result = grep.run({"path": "big.log", "pattern": "ERROR", "tail_bytes": 2000}, ctx_for(tmp_path))
    wanted = [line for line in data[start:].decode().splitlines() if "ERROR" in line]
    assert [m["text"] for m in result["matches"]] == wanted and result["count"] == len(wanted)
    assert {m["line"] for m in result["matches"]} == {None}
    assert result["last_line"] == {str(log): None}


def book(steps: list[dict[str, Any]]) -> str:
    return json.dumps({"name": "grep-tests", "steps": steps})


def test_expect_turns_the_search_into_a_check(tmp_path):
    (tmp_path / "app.log").write_text("ok\nERROR one\nok\nERROR two\nERROR three\n")
    (tmp_path / "app.conf").write_text("listen = 443\n")
    checks = {
        "present": ("app.conf", "^listen\\s*=\\s*443$", "present", True),
        "absent_fails": ("app.log", "ERROR", "absent", False),
        "absent_ok": ("app.conf", "debug", "absent", True),
        "at_most": ("app.log", "ERROR", {"max": 2}, False),
        "between": ("app.log", "ERROR", {"min": 1, "max": 3}, True),
        "at_least": ("app.log", "FATAL", {"min": 1}, False),
    }
    steps = [
        {"id": key, "grep": {"path": path, "pattern": pattern, "expect": expect}, "continue_on_error": True}
        for key, (path, pattern, expect, _) in checks.items()
    ]
    run = play(tmp_path, book(steps))
    for key, (*_, passes) in checks.items():
        step = run.step(key)
        assert (step["status"] == "ok") is passes, step
        if not passes:
            assert "expected" in one_line_error(step) or "not found" in step["error"]
    assert "found 3 matching lines, expected at most 2" in run.step("at_most")["error"]
    assert str(tmp_path / "app.log") in run.step("at_most")["error"]
    assert run.step("at_most")["result"]["count"] == 3  # the failed step keeps its findings


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"path": "missing.log", "pattern": "x"}, "does not exist"),
        ({"path": "a.log", "pattern": "(unclosed"}, "not a valid regular expression"),
        ({"path": "a.log", "pattern": "x", "since_line": 2, "tail_bytes": 10}, "not both"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, expected):
    (tmp_path / "a.log").write_text("x\n")
    with pytest.raises(HandlerError) as caught:
        grep.run(args, ctx_for(tmp_path))
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_glob_matching_nothing_counts_zero(tmp_path):
    result = grep.run({"path": "logs/*.log", "pattern": "x", "expect": "absent"}, ctx_for(tmp_path))
    assert (result["count"], result["files"]) == (0, 0)


def test_runs_under_dry_run(tmp_path):
    (tmp_path / "a.log").write_text("ERROR\n")
    run: Play = play(
        tmp_path, book([{"id": "g", "grep": {"path": "a.log", "pattern": "ERROR"}}]), "--dry-run"
    )
    assert run.returncode == 0, run.stderr
    assert run.step("g")["result"]["count"] == 1


@pytest.mark.parametrize(
    "pattern",
    [
        "ERROR",
        "caf\\w",
        "\\bERR",
        "[^a-z ]{3}",
        "é+",
        "x\\s+y",
        "\\S$",
        "(?i)error",
        "^\\d+ ",
        "\\u00e9",
        "ERR(OR)?",
        "(ERROR|ab) x",
        "ERx{0}ROR",
        "ab{1|ERROR}",
        "ER+OR",
        "E.R",
        "caf[eé]",
        "ERROR|error",
        "12\\b",
        "\\[?ab",
    ],
)
@pytest.mark.parametrize("ascii_only", [True, False])
def test_every_search_path_finds_what_python_finds_line_by_line(tmp_path, pattern, ascii_only):
    """The definition, checked directly: a line counts when ``re.search`` finds the pattern in it."""
    rng = random.Random(pattern)
    pieces = ["ERROR", "error", "café", "x", "y", " ", "\t", "\x1c", "12", "ab", "é", "ERR"]
    if ascii_only:
        pieces = [p for p in pieces if p.isascii()]
    lines = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(5000)]
    data = "\n".join(lines).encode()
    if not ascii_only:
        data += b"\nbad \xff\xfe bytes ERROR\n"
        lines += ["bad \ufffd\ufffd bytes ERROR"]
    (tmp_path / "mixed.log").write_bytes(data)
    compiled = re.compile(pattern)
    expected = [n for n, line in enumerate(lines, 1) if compiled.search(line)]
    result = grep.run({"path": "mixed.log", "pattern": pattern, "max_matches": 100_000}, ctx_for(tmp_path))
    assert result["count"] == len(expected)
    assert [m["line"] for m in result["matches"]] == expected


@pytest.mark.parametrize(
    ("pattern", "required", "exact"),
    [
        ("ERROR", b"ERROR", True),
        ("\\bERROR\\b", b"ERROR", False),
        ("ERROR.*db$", b"ERROR", False),
        ("timeout talking", b"timeout talking", True),
        ("\\.log$", b".log", False),
        ("ab*cde", b"cde", False),
        ("x{2}yz", b"yz", False),
        ("a{b", b"a{b", True),
        ("ab{1|ERROR}", None, False),  # "{1|" is no repeat count: an alternation of two texts
        ("ERROR|WARN", None, False),
        ("(?i)error", None, False),
        ("\\x41BCD", None, False),
        ("é", None, False),  # one character: not worth a search of its own
    ],
)
def test_the_text_every_match_must_hold(pattern, required, exact):
    assert grep._required_text(re.compile(pattern)) == (required, exact)
