"""The ``template`` handler (SPEC §5b), rendering real files in a real ``runbook play``.

The expected text is built by the test from the values it gave (vars, an earlier step's
output, a loop item, the machine's hostname as Python sees it), not taken from the code.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path
from typing import Any

from .playing import Play, one_line_error, play

TEMPLATE = """\
# managed by runbook
server {{ server_name }}:{{ port }}
{% for upstream in upstreams -%}
upstream {{ upstream }}
{% endfor -%}
host {{ facts.hostname }}
greeting {{ steps.hello.stdout | trim }}
env {{ env.TEMPLATE_TEST_VALUE }}
"""


def expected(port: int, server_name: str = "app.local") -> str:
    return (
        "# managed by runbook\n"
        f"server {server_name}:{port}\n"
        "upstream 10.0.0.1\nupstream 10.0.0.2\n"
        f"host {socket.gethostname()}\n"
        "greeting hello there\n"
        "env from-the-environment\n"
    )


def run_book(tmp_path: Path, steps: list[dict[str, Any]], *args: str, **vars: Any) -> Play:
    text = json.dumps(
        {
            "name": "template-tests",
            "vars": {"server_name": "app.local", "upstreams": ["10.0.0.1", "10.0.0.2"], **vars},
            "steps": [{"id": "hello", "shell": "echo hello there", "dry_run": "run"}, *steps],
        }
    )
    return play(tmp_path, text, *args, env={"TEMPLATE_TEST_VALUE": "from-the-environment"})


def test_renders_the_run_context_plus_vars_then_leaves_an_identical_file_alone(tmp_path):
    (tmp_path / "app.conf.j2").write_text(TEMPLATE)
    step = {
        "template": {"src": "app.conf.j2", "dest": "out/app.conf", "vars": {"port": 8080}, "mode": "0640"}
    }
    run = run_book(tmp_path, [{"id": "first", **step}, {"id": "second", **step}])
    assert run.returncode == 0, run.stderr
    dest = tmp_path / "out" / "app.conf"
    assert dest.read_text() == expected(8080)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640
    assert run.step("first")["status"] == "changed"
    assert run.step("first")["result"]["bytes"] == len(expected(8080).encode())
    assert run.step("second")["status"] == "ok" and run.step("second")["result"]["changed"] is False
    assert sorted(os.listdir(dest.parent)) == ["app.conf"]  # no temporary file left


def test_vars_override_the_playbook_vars_and_loop_items_reach_the_template(tmp_path):
    (tmp_path / "site.j2").write_text("{{ server_name }} {{ item }}\n")
    run = run_book(
        tmp_path,
        [
            {
                "id": "sites",
                "template": {"src": "site.j2", "dest": "sites/{{ item }}.conf", "vars": {"server_name": "x"}},
                "loop": ["a", "b"],
            }
        ],
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "sites" / "a.conf").read_text() == "x a\n"
    assert (tmp_path / "sites" / "b.conf").read_text() == "x b\n"


def test_a_changed_output_is_backed_up_and_dry_run_shows_the_diff(tmp_path):
    (tmp_path / "app.conf.j2").write_text(TEMPLATE)
    dest = tmp_path / "app.conf"
    dest.write_text(expected(80))
    dest.chmod(0o600)
    step = {"id": "conf", "template": {"src": "app.conf.j2", "dest": "app.conf", "vars": {"port": 9090}}}
    preview = run_book(tmp_path, [step], "--dry-run")
    assert preview.returncode == 0, preview.stderr
    result = preview.step("conf")["result"]
    assert result["changed"] is True
    assert "-server app.local:80\n" in result["diff"] and "+server app.local:9090\n" in result["diff"]
    assert dest.read_text() == expected(80), "a dry run wrote the file"

    step["template"]["backup"] = True
    run = run_book(tmp_path, [step])
    assert run.returncode == 0, run.stderr
    assert dest.read_text() == expected(9090)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600  # a replaced file keeps its mode
    backup = run.step("conf")["result"]["backup"]
    assert backup == f"{dest}.~1~" and Path(backup).read_text() == expected(80)


def test_an_undefined_name_fails_naming_the_file_and_line_and_writes_nothing(tmp_path):
    (tmp_path / "bad.j2").write_text("line one\nline two {{ nope }}\n")
    (tmp_path / "app.conf").write_text("kept\n")
    run = run_book(tmp_path, [{"id": "conf", "template": {"src": "bad.j2", "dest": "app.conf"}}])
    assert run.returncode == 1
    error = one_line_error(run.step("conf"))
    assert "bad.j2:2" in error and "nope" in error
    assert (tmp_path / "app.conf").read_text() == "kept\n"


def test_the_sandbox_and_missing_files_give_one_line_errors(tmp_path):
    (tmp_path / "escape.j2").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    run = run_book(
        tmp_path,
        [
            {"id": "escape", "template": {"src": "escape.j2", "dest": "x.txt"}, "continue_on_error": True},
            {"id": "missing", "template": {"src": "missing.j2", "dest": "y.txt"}},
        ],
    )
    assert "sandbox" in one_line_error(run.step("escape"))
    error = one_line_error(run.step("missing"))
    assert "missing.j2" in error and "no such file" in error
    assert not (tmp_path / "x.txt").exists() and not (tmp_path / "y.txt").exists()


def test_dry_run_cannot_preview_what_reads_results_a_dry_run_lacks(tmp_path):
    (tmp_path / "out.j2").write_text("{{ steps.later.stdout }}\n")
    steps = [
        {"id": "later", "shell": "echo real"},
        {"id": "conf", "template": {"src": "out.j2", "dest": "out.txt"}},
    ]
    preview = play(tmp_path, json.dumps({"name": "t", "steps": steps}), "--dry-run")
    assert preview.returncode == 0, preview.stderr
    step = preview.step("conf")
    assert step["result"]["verdict"] == "unknown"
    assert "no preview" in step["result"]["dry_run"]
    assert not (tmp_path / "out.txt").exists()
