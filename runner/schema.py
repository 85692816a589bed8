"""The combined JSON Schema (Draft 2020-12): the playbook's structure plus every handler's arguments.

The same document serves editors (committed as ``schemas/playbook.schema.json`` and
printed by ``runbook schema``) and the loader. Handlers declare their schemas with
plain types; ``accept_templates`` then lets every typed value also be a string
holding a template (SPEC §8), whose rendered value is type-checked when the step runs.

This module is imported by handler modules for the shared pieces (``DURATION``,
``SIZE``...), so it must stay cheap: jsonschema is imported only to validate.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from runner.units import DURATION_PATTERN, SIZE_PATTERN

SCHEMA_ID = "https://runbook.dev/schemas/playbook.schema.json"

# Pieces handlers use in their own schemas; "#/$defs/..." resolves in the combined schema.
DURATION: dict[str, Any] = {"$ref": "#/$defs/duration"}
SIZE: dict[str, Any] = {"$ref": "#/$defs/size"}
EXPRESSION: dict[str, Any] = {"$ref": "#/$defs/expression"}
string_or_list: dict[str, Any] = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
}

TEMPLATE_PATTERN = r"\{\{|\{%"
TEMPLATE: dict[str, Any] = {
    "type": "string",
    "pattern": TEMPLATE_PATTERN,
    "description": "A Jinja template; its rendered value is checked when the step runs.",
}

STEP_ID_PATTERN = "^[a-z_][a-z0-9_]*$"

# Keys every handler step may carry besides its handler key (SPEC §2).
STEP_KEYS: dict[str, Any] = {
    "id": {
        "type": "string",
        "pattern": STEP_ID_PATTERN,
        "description": "Name of the step's result (steps.<id>) and for needs.",
    },
    "name": {"type": "string", "description": "Human label."},
    "when": {**EXPRESSION, "description": "Run the step only when this expression is true."},
    "loop": {
        "anyOf": [{"type": "array"}, {"$ref": "#/$defs/template"}],
        "description": "Run the step once per item (a list, or a template yielding one).",
    },
    "loop_parallel": {
        "type": "integer",
        "minimum": 1,
        "description": "Run this many loop items at once.",
    },
    "needs": {
        "anyOf": [
            {"type": "string", "pattern": STEP_ID_PATTERN},
            {"type": "array", "items": {"type": "string", "pattern": STEP_ID_PATTERN}},
        ],
        "description": "Ids of steps this step waits for (makes the playbook a DAG).",
    },
    "retry": {"$ref": "#/$defs/retry"},
    "until": {**EXPRESSION, "description": "Retry until this expression over result holds."},
    "timeout": {**DURATION, "description": "Cancel the step after this long."},
    "continue_on_error": {
        "type": "boolean",
        "description": "Record a failure but go on; the run does not fail.",
    },
    "failed_when": {**EXPRESSION, "description": "Expression over result: the step failed."},
    "changed_when": {**EXPRESSION, "description": "Expression over result: the step changed."},
    "env": {"$ref": "#/$defs/env"},
    "tags": {"$ref": "#/$defs/tags"},
    "dry_run": {
        "enum": ["run", "simulate"],
        "description": "Under --dry-run: simulate (default) or run this read-only step for real.",
    },
}

# Keys `defaults:` may set for every step.
DEFAULTABLE_KEYS = ("retry", "timeout", "continue_on_error", "env", "tags", "dry_run")

# Keys a parallel group may carry besides `parallel`.
GROUP_KEYS = ("id", "name", "when", "needs", "tags")

PLAYBOOK_KEYS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "description": "The playbook's name."},
    "description": {"type": "string"},
    "vars": {"type": "object", "description": "Variables; -e and --vars-file override them."},
    "vars_files": {
        "type": "array",
        "items": {"type": "string"},
        "description": "YAML files of variables, relative to the playbook.",
    },
    "env": {"$ref": "#/$defs/env"},
    "defaults": {
        "type": "object",
        "properties": {key: STEP_KEYS[key] for key in DEFAULTABLE_KEYS},
        "additionalProperties": False,
        "description": "Merged into every step (step keys win).",
    },
    "max_parallel": {
        "type": "integer",
        "minimum": 1,
        "description": "Cap on handlers running at once (default: CPU count x 4).",
    },
    "timeout": {**DURATION, "description": "Timeout of the whole run."},
    "schedule": {
        "type": "string",
        "description": 'When `runbook schedule` runs it: "every day at 02:30" or cron "30 2 * * *".',
    },
    "timezone": {"type": "string", "description": "IANA time zone of the schedule."},
    "secrets": {
        "type": "object",
        "additionalProperties": {
            "anyOf": [
                {"type": "string", "title": "a !vault value"},
                {
                    "type": "object",
                    "properties": {"env": {"type": "string", "description": "An environment variable."}},
                    "required": ["env"],
                    "additionalProperties": False,
                },
                {
                    "type": "object",
                    "properties": {"file": {"type": "string", "description": "A file (its text, trimmed)."}},
                    "required": ["file"],
                    "additionalProperties": False,
                },
            ]
        },
        "description": "Secret values, read as secrets.NAME and masked in every output: {env: NAME},"
        " {file: PATH} or a !vault value.",
    },
    "vault_key_file": {
        "type": "string",
        "description": "The vault key's file, if neither --vault-key-file nor RUNBOOK_VAULT_KEY gives one.",
    },
    "overlap": {
        "enum": ["skip", "queue", "allow"],
        "default": "skip",
        "description": "A scheduled run due while the last still runs: skip it, queue one, or allow both.",
    },
    "jitter": {**DURATION, "description": "Start each scheduled run up to this much later, at random."},
    "catch_up": {
        "type": "boolean",
        "default": False,
        "description": "Run once when the scheduler starts if a run was missed while it was down.",
    },
    "steps": {"$ref": "#/$defs/steps"},
    "on_failure": {"$ref": "#/$defs/steps", "description": "Runs when a step failed."},
    "finally": {"$ref": "#/$defs/steps", "description": "Always runs, last."},
}

_BASE_DEFS: dict[str, Any] = {
    "template": TEMPLATE,
    "duration": {
        "title": "duration",
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": DURATION_PATTERN},
            {"$ref": "#/$defs/template"},
        ],
        "description": "Seconds, or a number with a unit: 250ms, 5s, 1.5m, 2h, 7d.",
    },
    "size": {
        "title": "size",
        "anyOf": [
            {"type": "integer", "minimum": 0},
            {"type": "string", "pattern": SIZE_PATTERN},
            {"$ref": "#/$defs/template"},
        ],
        "description": "Bytes, or a number with a unit: 10KB (1000s), 5MiB or 5M (1024s).",
    },
    "expression": {
        "type": ["string", "boolean"],
        "description": "A Jinja expression, without braces.",
    },
    "env": {
        "type": "object",
        "additionalProperties": {"type": ["string", "number", "boolean"]},
        "description": "Environment variables for processes.",
    },
    "tags": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "retry": {
        "anyOf": [
            {"type": "integer", "minimum": 1},
            {
                "type": "object",
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1, "description": "Total tries."},
                    "delay": {**DURATION, "description": "Wait before the second try."},
                    "backoff": {"type": "number", "minimum": 1, "description": "Delay multiplier."},
                    "max_delay": {**DURATION, "description": "Cap on the wait."},
                    "jitter": {
                        "anyOf": [{"type": "boolean"}, {"type": "number", "minimum": 0, "maximum": 1}],
                        "description": "true = full jitter, or a fraction of the wait.",
                    },
                    "on": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"enum": ["error", "timeout"]},
                                {
                                    "type": "object",
                                    "properties": {
                                        "rc": {"type": "array", "items": {"type": "integer"}},
                                        "status": {"type": "array", "items": {"type": "integer"}},
                                    },
                                    "additionalProperties": False,
                                    "minProperties": 1,
                                },
                            ]
                        },
                        "description": "What is retried (default [error, timeout]).",
                    },
                },
                "additionalProperties": False,
            },
        ],
        "description": "Attempts (a number), or {attempts, delay, backoff, max_delay, jitter, on}.",
    },
}

_TYPED = {"integer", "number", "boolean", "array", "object", "null"}
_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
_SUBSCHEMA_LISTS = ("anyOf", "allOf", "oneOf", "prefixItems")


def accept_templates(schema: Any) -> Any:
    """A copy of ``schema`` where every typed or constrained value may also be a template."""
    if not isinstance(schema, Mapping):
        return schema
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(out.get(key), Mapping):
            out[key] = {name: accept_templates(sub) for name, sub in out[key].items()}
    for key in _SUBSCHEMA_ONE:
        if isinstance(out.get(key), Mapping):
            out[key] = accept_templates(out[key])
    for key in _SUBSCHEMA_LISTS:
        if isinstance(out.get(key), list):
            out[key] = [accept_templates(sub) for sub in out[key]]
    if _needs_template_branch(out):
        annotations = {k: out.pop(k) for k in ("description", "default") if k in out}
        if "title" in out:
            annotations["title"] = out["title"]
        return {"anyOf": [out, {"$ref": "#/$defs/template"}], **annotations}
    return out


def _needs_template_branch(schema: Mapping[str, Any]) -> bool:
    if "$ref" in schema or "anyOf" in schema or "oneOf" in schema:
        return False  # refs carry their own template branch; unions get one per member
    kinds = schema.get("type")
    kinds = set(kinds) if isinstance(kinds, list) else {kinds} if kinds else set()
    if kinds & _TYPED:
        return True
    return "enum" in schema or "const" in schema or ("pattern" in schema and "string" in kinds)


def handler_args_schema(handler: Any) -> dict[str, Any]:
    """A handler's argument schema as the playbook schema holds it (shorthand, templates)."""
    args = accept_templates(copy.deepcopy(dict(handler.schema)))
    if handler.shorthand:
        # `shell: "ls"` stands for `shell: {cmd: "ls"}`: the value may be the shorthand's.
        short = handler.schema.get("properties", {}).get(handler.shorthand, {"type": "string"})
        args = {"anyOf": [accept_templates(copy.deepcopy(short)), args]}
    args.setdefault("description", handler.summary)
    return args


def build_schema(handlers: Mapping[str, Any]) -> dict[str, Any]:
    """The whole playbook schema for these handlers (name → Handler)."""
    defs: dict[str, Any] = copy.deepcopy(_BASE_DEFS)
    defs["retry"] = accept_templates(defs["retry"])
    defs["args"] = {name: handler_args_schema(h) for name, h in sorted(handlers.items())}
    step_properties = {key: accept_templates(value) for key, value in STEP_KEYS.items()}
    step_properties.update({name: {"$ref": f"#/$defs/args/{name}"} for name in sorted(handlers)})
    defs["task_step"] = {
        "type": "object",
        "properties": step_properties,
        "additionalProperties": False,
        "oneOf": [{"required": [name]} for name in sorted(handlers)],
    }
    defs["group_step"] = {
        "type": "object",
        "properties": {
            **{key: accept_templates(STEP_KEYS[key]) for key in GROUP_KEYS},
            "parallel": {
                "anyOf": [
                    {"$ref": "#/$defs/steps"},
                    {
                        "type": "object",
                        "properties": {
                            "steps": {"$ref": "#/$defs/steps"},
                            "max_workers": accept_templates({"type": "integer", "minimum": 1}),
                            "fail_fast": accept_templates({"type": "boolean", "default": False}),
                        },
                        "required": ["steps"],
                        "additionalProperties": False,
                    },
                ],
                "description": "Steps run concurrently; the group ends when all have ended.",
            },
        },
        "required": ["parallel"],
        "additionalProperties": False,
    }
    defs["step"] = {"anyOf": [{"$ref": "#/$defs/task_step"}, {"$ref": "#/$defs/group_step"}]}
    defs["steps"] = {"type": "array", "items": {"$ref": "#/$defs/step"}}
    top = {key: accept_templates(value) for key, value in PLAYBOOK_KEYS.items()}
    top["defaults"] = {
        **top["defaults"],
        "properties": {key: step_properties[key] for key in DEFAULTABLE_KEYS},
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "runbook playbook",
        "type": "object",
        "properties": top,
        "required": ["name"],
        "additionalProperties": False,
        "$defs": defs,
    }


def dumps(schema: Mapping[str, Any]) -> str:
    """The schema as committed: stable key order, two-space indent, final newline."""
    return json.dumps(schema, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
