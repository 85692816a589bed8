"""The ``ini`` handler (SPEC §5b): reads with configparser, edits lines, keeps the rest.

Edited files are read back with ``configparser`` (the values must be what was set) and
compared line by line with the original: every line the edit did not concern must still
be there, unchanged and in order, comments and blank lines included.
"""

from __future__ import annotations

import configparser
import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import ini

from .playing import one_line_error, play

ORIGINAL = """\
; app settings, edited by hand and by runbook
# keep this comment

[server]
host = 0.0.0.0
Port=8080
; the banner spans lines
banner = hello
    world

[database]
# credentials come from the vault
user : admin
timeout = 30

[legacy]
flag = yes
"""


def read(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines between two texts."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def ctx_for(tmp_path: Path, dry_run: bool = False) -> TaskContext:
    return TaskContext(step_label="u", cwd=str(tmp_path), dry_run=dry_run)


def test_set_remove_and_get_touch_only_their_lines(tmp_path):
    conf = tmp_path / "app.ini"
    conf.write_text(ORIGINAL)
    steps: list[dict[str, Any]] = [
        {
            "id": "edit",
            "ini": {
                "path": "app.ini",
                "set": {
                    "server": {"port": 9090, "workers": 4},
                    "database": {"user": "admin", "password": ""},
                    "cache": {"size": "64MiB", "enabled": True},
                },
                "remove": ["legacy", "database/timeout"],
                "get": ["server", "database/user"],
            },
        },
        {"id": "again", "ini": {"path": "app.ini", "set": {"server": {"port": 9090}}}},
    ]
    run = play(tmp_path, json.dumps({"name": "ini", "steps": steps}))
    assert run.returncode == 0, run.stderr
    after = conf.read_text()
    removed, added = changed_lines(ORIGINAL, after)
    assert removed == ["Port=8080", "timeout = 30", "[legacy]", "flag = yes"]
    # The changed key keeps its spelling and its "=" without spaces; new keys follow the
    # section's last key (after its continuation line); a new section goes at the end.
    assert added == [
        "Port=9090",
        "workers = 4",
        "password :",
        "[cache]",
        "size = 64MiB",
        "enabled = true",
    ]
    assert after.index("workers = 4") > after.index("    world")
    assert "password :\n\n[cache]\n" in after  # the blank line left by [legacy] separates them
    parser = read(conf)
    assert parser["server"]["port"] == "9090" and parser["server"]["banner"] == "hello\nworld"
    assert parser["database"]["password"] == "" and not parser.has_option("database", "timeout")
    assert not parser.has_section("legacy") and parser["cache"]["enabled"] == "true"
    result = run.step("edit")["result"]
    assert result["values"]["server"] == {k: v for k, v in parser["server"].items()}
    assert result["values"]["database"] == {"user": "admin"}
    assert result["removed"] == ["legacy", "database/timeout"]
    assert "database/user" not in result["updated"]  # already that value
    assert run.step("again")["status"] == "ok" and run.step("again")["result"]["changed"] is False


def test_get_one_key_gives_value_and_a_missing_one_fails(tmp_path):
    (tmp_path / "app.ini").write_text(ORIGINAL)
    result = ini.run({"path": "app.ini", "get": ["server/PORT"]}, ctx_for(tmp_path))
    assert result["value"] == "8080" and result["changed"] is False
    with pytest.raises(HandlerError) as caught:
        ini.run({"path": "app.ini", "get": ["server/host", "server/nope", "ghost"]}, ctx_for(tmp_path))
    message = str(caught.value)
    assert "no key 'nope' in section [server]" in message and "no section [ghost]" in message
    assert caught.value.result["values"] == {"server": {"host": "0.0.0.0"}}


def test_dry_run_reads_and_writes_nothing(tmp_path):
    conf = tmp_path / "app.ini"
    conf.write_text(ORIGINAL)
    result = ini.run(
        {"path": "app.ini", "set": {"server": {"host": "127.0.0.1"}}, "get": ["server/host"]},
        ctx_for(tmp_path, dry_run=True),
    )
    assert result["changed"] is True and result["value"] == "127.0.0.1"  # what it would be
    assert conf.read_text() == ORIGINAL


def test_a_missing_file_is_created_by_set_and_windows_line_ends_are_kept(tmp_path):
    ctx = ctx_for(tmp_path)
    ini.run({"path": "new/tool.ini", "set": {"main": {"a": 1}}}, ctx)
    assert read(tmp_path / "new" / "tool.ini")["main"]["a"] == "1"
    crlf = tmp_path / "win.ini"
    crlf.write_bytes(b"[s]\r\na = 1\r\n; note\r\n")
    ini.run({"path": "win.ini", "set": {"s": {"a": 2, "b": 3}}}, ctx)
    assert crlf.read_bytes() == b"[s]\r\na = 2\r\nb = 3\r\n; note\r\n"


def test_backup_keeps_the_old_file(tmp_path):
    conf = tmp_path / "app.ini"
    conf.write_text(ORIGINAL)
    result = ini.run({"path": "app.ini", "remove": ["legacy"], "backup": True}, ctx_for(tmp_path))
    assert Path(result["backup"]).read_text() == ORIGINAL
    assert "[legacy]" not in conf.read_text()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[a]\nx = 1\n[a]\ny = 2\n", "app.ini:3: section [a] appears twice"),
        ("[a]\nx = 1\nX = 2\n", "app.ini:3: key 'x' appears twice in section [a]"),
        ("key = before any section\n", "app.ini:1: a line before the first [section]"),
        ("[a]\njust words\n", "app.ini:2: not a [section], a key = value or a comment"),
    ],
)
def test_a_file_configparser_refuses_is_a_one_line_error_naming_the_line(tmp_path, text, expected):
    conf = tmp_path / "app.ini"
    conf.write_text(text)
    run = play(tmp_path, "name: i\nsteps:\n  - id: i\n    ini: {path: app.ini, set: {a: {z: 1}}}\n")
    assert run.returncode == 1
    assert expected in one_line_error(run.step("i"))
    assert conf.read_text() == text
