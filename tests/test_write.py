"""The ``write`` handler (SPEC §5b): reports written as CSV, JSON, YAML or text.

Every file is read back with the standard parsers (``csv.DictReader``, ``json``,
``yaml.safe_load``) and compared with the data the test gave; playbooks run in a real
``runbook play`` process.
"""

from __future__ import annotations

import csv
import json
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner.errors import HandlerError
from runner.taskctx import TaskContext
from tasks import write

from .playing import Play, one_line_error, play

HOSTS = [
    {"host": "web-1", "cpu": 12.5, "memory": {"percent": 40.1, "total": 8}, "tags": ["a", "b"], "up": True},
    {"host": "db-1", "cpu": 3, "memory": {"percent": 77.0, "total": 32}, "up": False, "note": None},
    {"host": 'odd, "quoted"\nname', "cpu": 0},
]


def run_steps(tmp_path: Path, steps: list[dict[str, Any]], *args: str, **vars: Any) -> Play:
    return play(tmp_path, json.dumps({"name": "write-tests", "vars": vars, "steps": steps}), *args)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_from_a_list_of_mappings_json_yaml_and_text(tmp_path):
    run = run_steps(
        tmp_path,
        [
            {"id": "csv", "write": {"path": "out/hosts.csv", "data": "{{ hosts }}"}},
            {"id": "json", "write": {"path": "out/hosts.json", "data": "{{ hosts }}"}},
            {"id": "yaml", "write": {"path": "out/hosts.yml", "data": "{{ hosts }}"}},
            {
                "id": "text",
                "write": {"path": "out/hosts.txt", "data": "{{ hosts | map(attribute='host') | list }}"},
            },
            {"id": "same", "write": {"path": "out/hosts.json", "data": "{{ hosts }}"}},
        ],
        hosts=HOSTS,
    )
    assert run.returncode == 0, run.stderr
    rows = read_csv(tmp_path / "out" / "hosts.csv")
    assert list(rows[0]) == ["host", "cpu", "memory", "tags", "up", "note"]  # keys in first-seen order
    assert [r["host"] for r in rows] == [h["host"] for h in HOSTS]
    assert rows[0]["cpu"] == "12.5" and rows[2]["memory"] == "" and rows[1]["note"] == ""
    assert json.loads(rows[0]["memory"]) == HOSTS[0]["memory"] and json.loads(rows[0]["tags"]) == ["a", "b"]
    assert (rows[0]["up"], rows[1]["up"]) == ("true", "false")
    assert run.step("csv")["result"]["rows"] == 3
    assert json.loads((tmp_path / "out" / "hosts.json").read_text()) == HOSTS
    assert yaml.safe_load((tmp_path / "out" / "hosts.yml").read_text()) == HOSTS
    assert (tmp_path / "out" / "hosts.txt").read_text() == "".join(h["host"] + "\n" for h in HOSTS)
    assert run.step("json")["status"] == "changed"
    assert run.step("same")["status"] == "ok" and run.step("same")["result"]["changed"] is False
    assert sorted(os.listdir(tmp_path / "out")) == ["hosts.csv", "hosts.json", "hosts.txt", "hosts.yml"]


def test_columns_choose_order_rename_and_reach_into_nested_values(tmp_path):
    run = run_steps(
        tmp_path,
        [
            {"write": {"path": "a.csv", "data": "{{ hosts }}", "columns": ["memory.percent", "host"]}},
            {
                "write": {
                    "path": "b.csv",
                    "data": "{{ hosts }}",
                    "columns": {"name": "host", "ram": "memory.total"},
                }
            },
        ],
        hosts=HOSTS,
    )
    assert run.returncode == 0, run.stderr
    assert read_csv(tmp_path / "a.csv") == [
        {"memory.percent": str(h.get("memory", {}).get("percent", "")), "host": h["host"]} for h in HOSTS
    ]
    assert read_csv(tmp_path / "b.csv") == [
        {"name": h["host"], "ram": str(h.get("memory", {}).get("total", ""))} for h in HOSTS
    ]


def test_append_writes_the_header_once_and_rows_in_order(tmp_path):
    step = {
        "id": "row",
        "write": {"path": "history.csv", "data": {"run": "{{ n }}", "ok": True}, "append": True},
    }
    for n in range(3):
        run = run_steps(tmp_path, [step], "-e", f"n={n}", n=0)
        assert run.returncode == 0, run.stderr
    assert read_csv(tmp_path / "history.csv") == [{"run": str(n), "ok": "true"} for n in range(3)]
    assert (tmp_path / "history.csv").read_text().count("run,ok") == 1

    other = {"id": "row", "write": {"path": "history.csv", "data": {"run": 9, "extra": 1}, "append": True}}
    run = run_steps(tmp_path, [other])
    assert run.returncode == 1
    assert "header" in one_line_error(run.step("row"))
    assert len(read_csv(tmp_path / "history.csv")) == 3


def test_append_text_adds_lines(tmp_path):
    log = tmp_path / "notes.txt"
    log.write_text("first")  # no final newline: the next line must not glue on
    ctx = TaskContext(step_label="u", cwd=str(tmp_path))
    write.run({"path": "notes.txt", "data": "second\n", "append": True}, ctx)
    write.run({"path": "notes.txt", "data": ["third", "fourth"], "append": True}, ctx)
    assert log.read_text() == "first\nsecond\nthird\nfourth\n"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"path": "x.csv", "data": [1, 2]}, "csv needs a list of mappings"),
        ({"path": "x.csv", "data": "text"}, "csv needs a list of mappings"),
        ({"path": "x.json", "data": {}, "append": True}, "append works with csv and text"),
        ({"path": "folder", "data": "x"}, "is a folder"),
    ],
)
def test_bad_input_is_a_one_line_error_and_nothing_is_written(tmp_path, args, expected):
    (tmp_path / "folder").mkdir()
    with pytest.raises(HandlerError) as caught:
        write.run(args, TaskContext(step_label="u", cwd=str(tmp_path)))
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path)) == ["folder"]


def test_dry_run_writes_nothing_and_says_whether_it_would_change(tmp_path):
    (tmp_path / "same.json").write_text(json.dumps([1, 2], indent=2) + "\n")
    ctx = TaskContext(step_label="u", cwd=str(tmp_path), dry_run=True)
    new = write.run({"path": "new.yaml", "data": {"a": 1}}, ctx)
    same = write.run({"path": "same.json", "data": [1, 2]}, ctx)
    assert (new["changed"], same["changed"]) == (True, False)
    assert new["format"] == "yaml" and "would write" in new["dry_run"]
    assert not (tmp_path / "new.yaml").exists()


def test_format_overrides_the_extension_and_mode_applies(tmp_path):
    ctx = TaskContext(step_label="u", cwd=str(tmp_path))
    write.run({"path": "report.out", "data": [{"a": 1}], "format": "csv", "mode": "0600"}, ctx)
    assert read_csv(tmp_path / "report.out") == [{"a": "1"}]
    assert (tmp_path / "report.out").stat().st_mode & 0o777 == 0o600


def test_lazy_mappings_and_dates_are_written_as_their_contents(tmp_path):
    run = play(
        tmp_path,
        json.dumps(
            {
                "name": "facts",
                "steps": [
                    {"write": {"path": "f.json", "data": {"facts": "{{ facts }}", "at": "{{ now() }}"}}},
                    {"write": {"path": "f.yml", "data": "{{ facts }}"}},
                ],
            }
        ),
    )
    assert run.returncode == 0, run.stderr
    written = json.loads((tmp_path / "f.json").read_text())
    assert written["facts"]["hostname"] == socket.gethostname()
    assert datetime.fromisoformat(written["at"]).tzinfo is not None
    assert yaml.safe_load((tmp_path / "f.yml").read_text())["cpu_count"] == os.cpu_count()
