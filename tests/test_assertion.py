"""The ``assert`` handler (SPEC §5b), in real ``runbook play`` runs.

The expressions read real results of earlier steps; the failures must list every false
expression with the values it read, in one line.
"""

from __future__ import annotations

import json
from typing import Any

from tasks.assertion import operands

from .conftest import run_cli
from .playing import Play, one_line_error, play


def run_book(tmp_path, steps: list[dict[str, Any]], *args: str, **vars: Any) -> Play:
    body = {"name": "assert-tests", "vars": vars, "steps": [{"id": "echo", "shell": "echo hello"}, *steps]}
    return play(tmp_path, json.dumps(body), *args)


def test_true_expressions_pass(tmp_path):
    run = run_book(
        tmp_path,
        [
            {
                "id": "check",
                "assert": {
                    "that": [
                        "steps.echo.rc == 0",
                        "'hello' in steps.echo.stdout",
                        "limits.disk > 10",
                        "steps.echo.stdout | trim | length == 5",
                        True,
                    ]
                },
            },
            {"id": "short", "assert": "steps.check.passed == 5"},
        ],
        limits={"disk": 20},
    )
    assert run.returncode == 0, run.stderr
    assert run.step("check")["status"] == "ok"
    assert run.step("check")["result"]["passed"] == 5 and run.step("check")["result"]["failed_checks"] == []
    assert run.step("short")["status"] == "ok"


def test_every_false_expression_is_listed_with_its_values(tmp_path):
    run = run_book(
        tmp_path,
        [
            {
                "id": "check",
                "assert": {
                    "that": [
                        "steps.echo.rc == 0",
                        "items | length < limit",
                        "steps.echo.stdout | trim == 'goodbye'",
                        "steps.echo.missing > 1",
                    ],
                    "message": "pre-flight checks failed for {{ app }}",
                },
            },
            {"id": "after", "shell": "echo never"},
        ],
        items=[1, 2, 3, 4],
        limit=3,
        app="billing",
    )
    assert run.returncode == 1
    error = one_line_error(run.step("check"))
    assert error.startswith("pre-flight checks failed for billing: ")
    assert "items | length < limit is false (items | length = 4, limit = 3" in error
    assert "steps.echo.stdout | trim == 'goodbye' is false (steps.echo.stdout | trim = \"hello\")" in error
    assert "steps.echo.missing > 1: " in error and "missing" in error
    assert "steps.echo.rc == 0" not in error
    failed = run.step("check")["result"]["failed_checks"]
    assert [f["that"] for f in failed] == [
        "items | length < limit",
        "steps.echo.stdout | trim == 'goodbye'",
        "steps.echo.missing > 1",
    ]
    assert failed[0]["values"] == {"items | length": 4, "limit": 3}
    assert all(e["event"] != "step_started" or e["step"]["id"] != "after" for e in run.events)


def test_runs_under_dry_run(tmp_path):
    run = run_book(tmp_path, [{"id": "check", "assert": {"that": "limit > 5"}}], "--dry-run", limit=3)
    assert run.returncode == 1
    assert "limit > 5 is false (limit = 3)" in one_line_error(run.step("check"))


def test_operands_are_the_parts_worth_showing():
    assert operands("a.b > 3 and c[0] in d | list") == ["a.b", "c[0]", "d | list"]
    assert operands("steps.x.stdout.strip() == 'y'") == ["steps.x.stdout.strip()"]
    assert operands("not ok") == ["ok"]
    assert operands("1 < 2") == []
    assert operands("broken ((") == []


def test_validate_checks_the_expressions_of_that(tmp_path):
    book = tmp_path / "checks.yml"
    book.write_text(
        "name: checks\nsteps:\n  - id: one\n    shell: 'true'\n"
        '  - assert: {that: ["steps.one.rc == 0", "nope > 1", "steps.later.ok"]}\n'
        "  - id: later\n    shell: 'true'\n"
    )
    proc = run_cli("validate", str(book))
    assert proc.returncode == 2
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    assert lines[0].startswith(f"{book}:5:42: ") and "undefined variable 'nope'" in lines[0]
    assert lines[1].startswith(f"{book}:5:54: ") and "steps.later may not have run yet" in lines[1]
