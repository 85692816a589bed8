"""YAML loading: positions, duplicate keys, safe tags, -e values, vars files."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.diagnostics import Position
from runner.errors import PlaybookError, UsageError
from runner.loader import MAX_NODES, parse_cli_var, parse_text
from runner.playbook import Group, Step, load_playbook

TEXT = """\
name: demo
vars:
  n: 3
steps:
  - id: first
    shell: echo one
  - parallel:
      steps:
        - wait: 1s
        - id: probe
          check_port: {host: 127.0.0.1, port: 22}
"""


def test_every_key_and_item_has_its_position():
    doc = parse_text(TEXT, "p.yml")
    assert doc.problems == []
    keys = doc.source.keys
    assert keys[("name",)] == Position("p.yml", 1, 1)
    assert keys[("vars", "n")] == Position("p.yml", 3, 3)
    assert keys[("steps", 0)] == Position("p.yml", 5, 5)
    assert keys[("steps", 0, "shell")] == Position("p.yml", 6, 5)
    assert keys[("steps", 1, "parallel", "steps", 1, "check_port", "port")] == Position("p.yml", 11, 41)
    assert doc.source.value(("steps", 0, "shell")) == Position("p.yml", 6, 12)


def test_nearest_position_for_a_path_that_is_not_in_the_file():
    doc = parse_text(TEXT, "p.yml")
    assert doc.source.key(("steps", 0, "shell", "cmd")) == Position("p.yml", 6, 5)


def test_duplicate_keys_are_errors_naming_both_lines():
    doc = parse_text("name: a\nsteps: []\nname: b\n", "d.yml")
    assert len(doc.problems) == 1
    problem = doc.problems[0]
    assert problem.position == Position("d.yml", 3, 1)
    assert "duplicate key 'name'" in problem.message
    assert "first at line 1" in problem.message


def test_keys_stay_text_and_dates_stay_strings():
    doc = parse_text("on: [error]\nyes: 1\nday: 2024-01-02\nflag: yes\n", "k.yml")
    assert doc.data == {"on": ["error"], "yes": 1, "day": "2024-01-02", "flag": True}


def test_scalar_types_follow_yaml():
    doc = parse_text("a: 3\nb: '3'\nc: 3.5\nd: ~\ne: true\nf: 0x10\n", "t.yml")
    assert doc.data == {"a": 3, "b": "3", "c": 3.5, "d": None, "e": True, "f": 16}


@pytest.mark.parametrize(
    "text",
    [
        "x: !!python/object/apply:os.system ['echo pwned']\n",
        "x: !!python/name:os.system\n",
        "x: !custom value\n",
        "x: !!binary aGVsbG8=\n",
    ],
)
def test_unsafe_and_unknown_tags_are_refused(text):
    doc = parse_text(text, "tag.yml")
    assert any("unsupported YAML tag" in p.message for p in doc.problems)
    assert all(p.position.line == 1 for p in doc.problems)


def test_merge_keys_merge_and_explicit_keys_win():
    text = "base: &b {timeout: 5s, retry: 2}\nstep:\n  <<: *b\n  retry: 3\n"
    doc = parse_text(text, "m.yml")
    assert doc.problems == []
    assert doc.data["step"] == {"timeout": "5s", "retry": 3}


def test_recursive_alias_is_an_error_not_a_hang():
    doc = parse_text("a: &x [1, *x]\n", "r.yml")
    assert any("recursive alias" in p.message for p in doc.problems)


def test_alias_bomb_is_bounded():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    doc = parse_text("\n".join(lines) + "\n", "bomb.yml")
    assert any(str(MAX_NODES) in p.message for p in doc.problems)


@pytest.mark.parametrize(
    ("text", "line", "col", "words"),
    [
        ("name: a\nsteps:\n\t- shell: x\n", 3, 1, "tab"),
        ("name: 'open\nsteps: []\n", 1, 7, "a quote is never closed"),
        ("name: a\nsteps: [1, 2\n", 2, 8, "a '[' is never closed"),
        ("name: a\n  steps: []\n", 2, 8, "YAML syntax error"),
    ],
)
def test_syntax_errors_point_at_the_cause(text, line, col, words):
    doc = parse_text(text, "s.yml")
    assert len(doc.problems) == 1
    problem = doc.problems[0]
    assert (problem.position.line, problem.position.col) == (line, col)
    assert words in problem.format()


@pytest.mark.parametrize(
    ("arg", "key", "value"),
    [
        ("n=3", "n", 3),
        ('s="3"', "s", "3"),
        ("f=2.5", "f", 2.5),
        ("b=true", "b", True),
        ("t=hello world", "t", "hello world"),
        ("e=", "e", ""),
        ("eq=a=b", "eq", "a=b"),
        ("lst=[1, 2]", "lst", "[1, 2]"),
        ("d=2024-01-01", "d", "2024-01-01"),
        ("nul=null", "nul", None),
    ],
)
def test_cli_vars_are_yaml_scalars(arg, key, value):
    assert parse_cli_var(arg) == (key, value)


@pytest.mark.parametrize("arg", ["novalue", "=3", "bad-name=1"])
def test_malformed_cli_vars_are_usage_errors(arg):
    with pytest.raises(UsageError):
        parse_cli_var(arg)


def test_variable_precedence(tmp_path: Path):
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "a.yml").write_text("x: from_vars_file\ny: from_vars_file\nz: from_vars_file\n")
    cli_file = tmp_path / "cli.yml"
    cli_file.write_text("y: from_cli_file\nz: from_cli_file\n")
    at_file = tmp_path / "at.yml"
    at_file.write_text("z: from_at_file\n")
    book = tmp_path / "book.yml"
    book.write_text("name: p\nvars: {w: from_vars, x: from_vars}\nvars_files: [vars/a.yml]\nsteps: []\n")
    playbook = load_playbook(book, cli_vars=[f"@{at_file}", "n=3"], vars_files=[cli_file])
    assert playbook.vars == {
        "w": "from_vars",
        "x": "from_vars_file",
        "y": "from_cli_file",
        "z": "from_at_file",
        "n": 3,
    }


def test_vars_files_are_relative_to_the_playbook_not_the_cwd(tmp_path: Path, monkeypatch):
    sub = tmp_path / "deploy"
    (sub / "vars").mkdir(parents=True)
    (sub / "vars" / "prod.yml").write_text("target: prod\n")
    (sub / "site.yml").write_text(
        "name: s\nvars_files: [vars/prod.yml]\nsteps:\n  - shell: echo {{ target }}\n"
    )
    monkeypatch.chdir(tmp_path)
    assert load_playbook(Path("deploy/site.yml")).vars == {"target": "prod"}


def test_playbook_structure_for_the_executor(tmp_path: Path):
    book = tmp_path / "p.yml"
    book.write_text(
        TEXT
        + "defaults:\n  retry: {attempts: 3, delay: 1s}\n  timeout: 5m\n"
        + "finally:\n  - shell: echo bye\n    retry: {delay: 2s}\n"
    )
    playbook = load_playbook(book)
    first, group = playbook.steps
    assert isinstance(first, Step) and isinstance(group, Group)
    assert (first.handler, first.args, first.id) == ("shell", {"cmd": "echo one"}, "first")
    assert first.retry == {"attempts": 3, "delay": "1s"}
    assert first.timeout == "5m"
    assert first.position.line == 5
    wait, probe = group.steps
    assert wait.args == {"duration": "1s"}
    assert probe.where(("check_port", "port")) == "step 'probe' (check_port.port)"
    assert probe.locate(("check_port", "port")).line == 11
    (bye,) = playbook.finally_
    assert bye.retry == {"attempts": 3, "delay": "2s"}, "retry mappings merge; step keys win"
    labels = [n.label for n in playbook.walk()]
    assert labels == ["first", "parallel (2 steps)", "wait: 1s", "probe", "shell: echo bye"]


def test_all_problems_are_reported_at_once(tmp_path: Path):
    book = tmp_path / "p.yml"
    book.write_text("name: p\nsteps:\n  - shel: x\n  - wait: 5x\n  - id: a\n    needs: [a]\n    wait: 1s\n")
    with pytest.raises(PlaybookError) as info:
        load_playbook(book)
    lines = [d.position.line for d in info.value.diagnostics]
    assert lines == sorted(lines)
    assert {3, 4, 6} <= set(lines)


def test_not_utf8_is_reported_with_its_line(tmp_path: Path):
    book = tmp_path / "p.yml"
    book.write_bytes(b"name: p\nsteps: []\n# caf\xe9\n")
    with pytest.raises(PlaybookError) as info:
        load_playbook(book)
    assert info.value.diagnostics[0].position.line == 3
