"""The combined JSON Schema: committed, current, valid, and usable by editors as is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from runner.loader import load_file
from runner.registry import builtin_handlers
from runner.schema import build_schema, dumps

from .conftest import REPO, run_cli

COMMITTED = REPO / "schemas" / "playbook.schema.json"
EXAMPLES = sorted((REPO / "playbooks").glob("*.yml"))


def test_committed_schema_is_current():
    current = dumps(build_schema(builtin_handlers()))
    assert COMMITTED.read_text() == current, (
        "schemas/playbook.schema.json is stale: run `runbook schema > schemas/playbook.schema.json`"
    )


def test_schema_is_valid_draft_2020_12():
    schema = json.loads(COMMITTED.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


def test_schema_command_prints_the_committed_schema_when_no_plugins_are_installed():
    result = run_cli("schema")
    assert result.returncode == 0
    printed = json.loads(result.stdout)
    assert set(printed["$defs"]["args"]) >= set(builtin_handlers())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_point_editors_at_the_schema_and_pass_it(path: Path):
    first_line = path.read_text().splitlines()[0]
    assert first_line == "# yaml-language-server: $schema=../schemas/playbook.schema.json"
    assert (path.parent / "../schemas/playbook.schema.json").resolve() == COMMITTED
    validator = Draft202012Validator(json.loads(COMMITTED.read_text()))
    errors = [e.message for e in validator.iter_errors(load_file(path).data)]
    assert errors == []


def _plain_validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(COMMITTED.read_text()))


@pytest.mark.parametrize(
    ("step", "valid"),
    [
        ({"check_port": {"port": "{{ port }}"}}, True),  # typed values may be templates (§8)
        ({"check_port": {"port": "eighty"}}, False),
        ({"wait": "5s"}, True),  # shorthand
        ({"wait": "5 fortnights"}, False),
        ({"shell": "ls", "copy": {"src": "a", "dest": "b"}}, False),  # two handlers
        ({"id": "x"}, False),  # no handler
        ({"parallel": [{"wait": 1}], "max_workers": 2}, False),
        ({"parallel": {"steps": [{"wait": 1}], "max_workers": 2}}, True),
        ({"shell": "ls", "retry": {"attempts": 3, "on": ["error", {"rc": [1]}]}}, True),
        ({"shell": "ls", "retry": {"attempt": 3}}, False),
    ],
)
def test_editor_view_of_steps(step, valid):
    document = {"name": "p", "steps": [step]}
    assert _plain_validator().is_valid(document) is valid


@pytest.mark.parametrize("name", sorted(builtin_handlers()))
def test_every_builtin_handler_documents_itself(name):
    handler = builtin_handlers()[name]
    assert handler.summary and handler.summary.endswith(".")
    assert handler.schema.get("type") == "object"
    assert handler.schema.get("additionalProperties") is False
    assert handler.result, "result fields are declared"
    example_steps = yaml.safe_load(handler.example)
    assert isinstance(example_steps, list) and example_steps
    document = {"name": "example", "steps": example_steps}
    errors = [e.message for e in _plain_validator().iter_errors(document)]
    assert errors == [], f"the example of {name} does not pass the schema"
    assert all(name in step for step in example_steps)
