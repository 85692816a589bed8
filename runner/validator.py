"""JSON Schema validation with errors turned into short, precise sentences.

jsonschema's own messages are written for schema authors ("... is not valid under
any of the given schemas"); users need "expected an integer, got 'ten'" at the exact
key. ``check`` validates a value against a part of the combined schema and returns
``Problem``s: a path relative to the value, a message and a hint.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner.diagnostics import did_you_mean
from runner.schema import STEP_ID_PATTERN
from runner.units import UnitError, parse_duration, parse_size

_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping",
    "null": "null",
}


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    message: str
    hint: str = ""


def describe(value: Any) -> str:
    """A short rendering of a user's value for messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = json.dumps(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + '..."'


class SchemaChecker:
    """Validates parts of one combined schema (``#/$defs/...`` refs resolve in it)."""

    def __init__(self, root: Mapping[str, Any]):
        from jsonschema import Draft202012Validator

        self.root = root
        self._validator = Draft202012Validator(root)

    def check(self, instance: Any, schema: Mapping[str, Any]) -> list[Problem]:
        validator = self._validator.evolve(schema=schema)
        problems: list[Problem] = []
        for error in validator.iter_errors(instance):
            problems.extend(self._translate(error))
        return problems

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        """Follow a local ``#/$defs/...`` reference."""
        while "$ref" in schema and str(schema["$ref"]).startswith("#/"):
            node: Any = self.root
            for part in schema["$ref"][2:].split("/"):
                node = node[part]
            schema = node
        return schema

    def _translate(self, error: Any) -> Iterator[Problem]:
        path = tuple(error.absolute_path)
        kind = error.validator
        schema = error.schema
        value = error.instance
        if kind in ("anyOf", "oneOf") and isinstance(schema, Mapping):
            yield from self._translate_union(error, path)
            return
        if kind == "type":
            expected = error.validator_value
            expected = expected if isinstance(expected, list) else [expected]
            wanted = " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in expected)
            hint = ""
            if isinstance(value, bool) and "string" in expected:
                hint = "unquoted yes/no/on/off/true/false are booleans in YAML: put the value in quotes"
            yield Problem(path, f"expected {wanted}, got {describe(value)}", hint)
        elif kind == "required":
            present = set(value) if isinstance(value, dict) else set()
            for name in error.validator_value:
                if name not in present:
                    yield Problem(path, f"missing required argument '{name}'")
        elif kind == "additionalProperties":
            known = set(schema.get("properties", {}))
            for name in value:
                if name not in known:
                    hint = did_you_mean(name, known)
                    if not hint and known:
                        hint = "allowed: " + ", ".join(sorted(known))
                    yield Problem((*path, name), f"unknown argument '{name}'", hint)
        elif kind == "enum":
            options = error.validator_value
            shown = ", ".join(str(o) for o in options)
            hint = did_you_mean(str(value), [str(o) for o in options])
            yield Problem(path, f"must be one of {shown}; got {describe(value)}", hint)
        elif kind == "pattern" and error.validator_value == STEP_ID_PATTERN:
            yield Problem(
                path,
                f"{describe(value)} is not a valid step id",
                "ids use lowercase letters, digits and _, and start with a letter or _",
            )
        elif kind == "not" and set(error.validator_value) == {"required"}:
            names = " and ".join(f"'{n}'" for n in error.validator_value["required"])
            yield Problem(path, f"takes only one of {names}")
        elif kind == "minimum":
            yield Problem(path, f"must be at least {error.validator_value}; got {describe(value)}")
        elif kind == "maximum":
            yield Problem(path, f"must be at most {error.validator_value}; got {describe(value)}")
        elif kind == "pattern":
            title = schema.get("title")
            if title:
                yield Problem(path, f"expected {title}, got {describe(value)}")
            else:
                yield Problem(
                    path, f"{describe(value)} does not have the expected form ({schema['pattern']})"
                )
        elif kind == "maxItems" or (kind == "minItems" and error.validator_value != 1):
            count = error.validator_value
            bound = "at least" if kind == "minItems" else "at most"
            got = len(value) if isinstance(value, list) else "?"
            yield Problem(path, f"needs {bound} {count} item{'s' if count != 1 else ''}; got {got}")
        elif kind == "minLength":
            count = error.validator_value
            yield Problem(
                path,
                f"must be at least {count} character{'s' if count != 1 else ''} long; got {describe(value)}",
            )
        elif kind == "minItems" and error.validator_value == 1:
            yield Problem(path, "must not be empty")
        else:
            yield Problem(path, error.message)

    def _translate_union(self, error: Any, path: tuple[str | int, ...]) -> Iterator[Problem]:
        schema = error.schema
        branches = schema.get(error.validator, [])
        value = error.instance
        title = schema.get("title")
        if title in ("duration", "size"):
            parse = parse_duration if title == "duration" else parse_size
            try:
                parse(value)
            except UnitError as exc:
                message, _, hint = str(exc).partition(": ")
                yield Problem(path, message, hint)
                return
        if branches and all(set(b) == {"required"} for b in branches):
            names = [name for b in branches for name in b["required"]]
            listed = " or ".join(f"'{n}'" for n in names)
            present = [n for n in names if isinstance(value, dict) and n in value]
            if len(present) > 1:
                yield Problem(path, "takes only one of " + " and ".join(f"'{n}'" for n in present))
            else:
                yield Problem(path, f"needs {listed}")
            return
        # Leave out the "or a template" branch: the user did not mean to write one.
        candidates = [
            e
            for e in error.context
            if not (isinstance(e.schema, Mapping) and e.schema.get("$ref") == "#/$defs/template")
            and not _is_template_schema(self.resolve(branches[e.schema_path[0]]))
        ]
        if error.validator == "oneOf" and not candidates:
            yield Problem(path, error.message)
            return
        best = _best_branch(candidates)
        if not best:
            yield Problem(path, f"{describe(value)} is not valid here")
            return
        for sub in best:
            yield from self._translate(sub)


def _is_template_schema(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("pattern") == r"\{\{|\{%"


def _shape_matches(error: Any) -> bool:
    """False when ``error`` says the value has the wrong type for its branch, at any depth of unions."""
    if error.path:
        return True
    if error.validator == "type":
        return False
    if error.validator in ("anyOf", "oneOf"):
        branches: dict[int, list[Any]] = {}
        for sub in error.context:
            if isinstance(sub.schema, Mapping) and _is_template_schema(sub.schema):
                continue
            branches.setdefault(sub.schema_path[0], []).append(sub)
        return any(all(_shape_matches(e) for e in group) for group in branches.values())
    return True


def _best_branch(errors: list[Any]) -> list[Any]:
    """The errors of the branch the user most likely meant: the one whose type matches."""
    if not errors:
        return []
    by_branch: dict[int, list[Any]] = {}
    for e in errors:
        by_branch.setdefault(e.schema_path[0], []).append(e)

    def score(branch_errors: list[Any]) -> tuple[int, int]:
        # A branch that failed only deeper than its type check matched the value's shape.
        shape_ok = all(_shape_matches(e) for e in branch_errors)
        return (0 if shape_ok else 1, -max(len(e.absolute_path) for e in branch_errors))

    return min(by_branch.values(), key=score)
