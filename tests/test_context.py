"""Template contexts: variables rendered in dependency order, reserved names, per-step names."""

from __future__ import annotations

import os

import pytest

from runner.context import resolve_vars, run_context, step_context
from runner.errors import TemplateError
from runner.playbook import load_playbook
from runner.templating import render


def test_variables_render_after_the_variables_they_read_whatever_the_order():
    variables = {
        "artifact": "dist/app-{{ version }}.tgz",
        "url": "{{ base }}/{{ artifact }}",
        "base": "https://example.invalid",
        "version": "1.4",
    }
    resolved = resolve_vars(variables, {})
    assert resolved["artifact"] == "dist/app-1.4.tgz"
    assert resolved["url"] == "https://example.invalid/dist/app-1.4.tgz"


def test_variables_keep_native_types_and_nested_values_render():
    resolved = resolve_vars({"n": 3, "double": "{{ n * 2 }}", "conf": {"ports": ["{{ n }}", 8080]}}, {})
    assert resolved["double"] == 6
    assert resolved["conf"] == {"ports": [3, 8080]}


def test_variable_cycle_is_named():
    with pytest.raises(TemplateError, match=r"variables refer to each other: a -> b -> a"):
        resolve_vars({"a": "{{ b }}", "b": "{{ a }}"}, {})


def test_undefined_name_in_a_variable_names_the_variable():
    with pytest.raises(TemplateError, match=r"variable 'greeting': undefined variable 'nobody'"):
        resolve_vars({"greeting": "hi {{ nobody }}"}, {})


def test_run_context_has_every_reserved_name(monkeypatch):
    monkeypatch.setenv("RUNBOOK_TEST_VALUE", "from-env")
    context = run_context(
        {"where": "{{ env.RUNBOOK_TEST_VALUE }}"},
        {"id": "r1", "playbook": "p"},
        env={"EXTRA": "1"},
        secrets={"token": "s3cr3t"},
    )
    assert context["where"] == "from-env"
    assert context["vars"] == {"where": "from-env"}
    assert context["env"]["EXTRA"] == "1" and context["env"]["HOME"] == os.environ["HOME"]
    assert context["run"]["id"] == "r1"
    assert context["secrets"]["token"] == "s3cr3t"
    assert context["steps"] == {}
    assert context["facts"]["cpu_count"] == os.cpu_count()
    assert render("{{ facts.os }}", context) == os.uname().sysname.lower()


def test_step_results_and_loop_names_reach_templates(tmp_path):
    book = tmp_path / "p.yml"
    book.write_text(
        "name: p\nvars: {dir: /srv}\nsteps:\n"
        "  - id: find\n    glob: {pattern: '{{ dir }}/*.log'}\n"
        '  - id: show\n    shell: "echo {{ item }} of {{ steps.find.count }}"\n'
        "    loop: '{{ steps.find.paths }}'\n"
    )
    playbook = load_playbook(book)
    base = run_context(playbook.vars, {"id": "r1"})
    first, second = playbook.steps
    assert first.render_args(base) == {"pattern": "/srv/*.log"}
    base["steps"]["find"] = {"paths": ["/srv/a.log", "/srv/b.log"], "count": 2}
    items = render(second.loop, base)
    assert items == ["/srv/a.log", "/srv/b.log"]
    rendered = second.render_args(step_context(base, item=items[1], loop={"index": 2}))
    assert rendered == {"cmd": "echo /srv/b.log of 2"}


def test_render_error_names_step_argument_and_position(tmp_path):
    book = tmp_path / "p.yml"
    book.write_text(
        "name: p\nsteps:\n  - id: a\n    wait: 1s\n  - id: b\n"
        "    shell: {cmd: 'echo {{ steps.a.nope }}'}\n    needs: [a]\n"
    )
    playbook = load_playbook(book)
    context = run_context({}, {"id": "r"})
    context["steps"]["a"] = {"ok": True}
    with pytest.raises(TemplateError) as info:
        playbook.steps[1].render_args(context)
    message = str(info.value)
    assert message.startswith(f"{book}:6:") and "step 'b' (shell.cmd)" in message
    assert "nope" in message
