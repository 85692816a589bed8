"""Run another playbook as a step, with variables of its own.

The path is relative to the including playbook. The included playbook is checked when
the including one is (a written path; a templated one when the step runs), with the
names ``vars`` passes counted as defined; a playbook that includes itself, directly or
not, is an error. Its steps run as a nested run: they appear as ``STEP / their label``
in the output, the report and the history, and its result maps each step's id to its
result. The step fails when the included run fails.
"""

from __future__ import annotations

from typing import Any

name = "include"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "The playbook file, relative to this one."},
        "vars": {"type": "object", "description": "Variables for it (they win over its own)."},
    },
    "required": ["path"],
    "additionalProperties": False,
}
result = {
    "playbook": "the included playbook's name",
    "path": "its file",
    "run_status": "ok, failed or cancelled",
    "steps": "each of its steps' results, by id",
}
example = """\
- id: backup
  include: {path: backup.yml, vars: {target: /srv/db}}
- include: common/notify.yml
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    outcome: dict[str, Any] = ctx.run_playbook(args["path"], args.get("vars") or {})
    changed = any(step.get("changed") for step in outcome.get("steps", {}).values())
    return {**outcome, "changed": changed}
