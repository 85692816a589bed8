"""The command line as a user meets it: help, version, tasks, validate, errors, colour."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

import runner
from runner.registry import builtin_handlers

from .conftest import REPO, run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_version_matches_the_installed_distribution():
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"runbook {runner.__version__}"
    assert runner.__version__ == version("runbook")


@pytest.mark.parametrize("command", [[], ["validate"], ["tasks"], ["schema"]])
def test_help_of_every_command_has_examples(command):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    assert "Examples:" in result.stdout
    assert "Usage: runbook" in result.stdout


def test_tasks_lists_every_builtin_with_its_summary():
    result = run_cli("tasks")
    assert result.returncode == 0
    for name, handler in builtin_handlers().items():
        line = next(line for line in result.stdout.splitlines() if line.startswith(name + " "))
        assert handler.summary.replace("``", "`") in line


def test_tasks_name_shows_arguments_results_and_example():
    result = run_cli("tasks", "shell")
    assert result.returncode == 0
    out = result.stdout
    handler = builtin_handlers()["shell"]
    for argument, schema in handler.schema["properties"].items():
        assert re.search(rf"^  {argument}\b", out, re.M), argument
        if "description" in schema:
            assert schema["description"][:20] in out
    for field in handler.result:
        assert re.search(rf"^  {field}\b", out, re.M), field
    assert "Example" in out and "argv: [make" in out
    assert "(default: [0])" in out, "defaults are shown"


def test_unknown_task_name_suggests_the_closest():
    result = run_cli("tasks", "shel")
    assert result.returncode == 2
    assert "did you mean 'shell'?" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_debug_shows_the_traceback():
    quiet = run_cli("tasks", "nope")
    loud = run_cli("tasks", "nope", "--debug")
    assert "Traceback" not in quiet.stderr
    assert "Traceback" in loud.stderr and "UsageError" in loud.stderr
    assert quiet.returncode == 2


def test_validate_ok_and_invalid_files_together(tmp_path: Path):
    good = tmp_path / "good.yml"
    good.write_text("name: g\nsteps:\n  - wait: 1s\n  - shell: echo hi\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("name: b\nsteps:\n  - wait: 1s\n  - shel: echo hi\n")
    result = run_cli("validate", str(good), str(bad))
    assert result.returncode == 2
    assert f"{good}: ok (2 steps)" in result.stdout
    assert f"{bad}:4:5: step steps[1]: unknown handler 'shel'" in result.stdout
    assert f"{bad}: 1 problem" in result.stderr


def test_validate_missing_file_is_one_line(tmp_path: Path):
    result = run_cli("validate", str(tmp_path / "nope.yml"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"runbook: error: {tmp_path / 'nope.yml'}: no such file"


def test_validate_uses_cli_vars(tmp_path: Path):
    book = tmp_path / "p.yml"
    book.write_text("name: p\nsteps:\n  - shell: echo {{ target }}\n")
    assert run_cli("validate", str(book)).returncode == 2
    assert run_cli("validate", str(book), "-e", "target=prod").returncode == 0
    vars_file = tmp_path / "v.yml"
    vars_file.write_text("target: prod\n")
    assert run_cli("validate", str(book), "--vars-file", str(vars_file)).returncode == 0
    assert run_cli("validate", str(book), "-e", f"@{vars_file}").returncode == 0
    bad = run_cli("validate", str(book), "-e", "no_equals_sign")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr


def test_shipped_examples_validate():
    examples = sorted(str(p) for p in (REPO / "playbooks").glob("*.yml"))
    result = run_cli("validate", *examples)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok (") == len(examples)


def _run_on_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run runbook with stdout on a pseudo-terminal, as a person at a terminal would."""
    primary, secondary = os.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", *args], stdout=secondary, stderr=secondary, env={**os.environ, **env}
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert process.wait(timeout=30) == 0
    return b"".join(chunks).decode()


def test_colour_on_a_terminal_and_no_colour_with_NO_COLOR():
    coloured = _run_on_terminal(["tasks"], {"TERM": "xterm"})
    plain = _run_on_terminal(["tasks"], {"TERM": "xterm", "NO_COLOR": "1"})
    assert ANSI.search(coloured)
    assert not ANSI.search(plain)
    assert ANSI.sub("", coloured) == plain
