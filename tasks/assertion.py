"""Check that expressions hold; fail listing every one that does not, with its values.

``that`` is an expression (as in ``when``, no braces) or a list of them, evaluated over
the run's context when the step runs: ``steps``, vars, ``facts``, ``env``... Every
expression is evaluated (the step does not stop at the first false one) and the error
lists each false one with the values it read, such as
``steps.disk.free_percent > 10 is false (steps.disk.free_percent = 4.2)``; an expression
that cannot be evaluated (an undefined name, say) counts as false, with the reason.
``message`` (a template) starts the error. assert only reads: it runs under
``--dry-run`` too (where earlier steps' results are those of the dry run).
"""

from __future__ import annotations

import json
from typing import Any

from runner.errors import HandlerError, RunbookError

name = "assert"
shorthand = "that"
unrendered = ("that",)  # evaluated by the handler, which then shows the values involved
schema = {
    "type": "object",
    "properties": {
        "that": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": ["string", "boolean"]}, "minItems": 1},
            ],
            "description": "An expression, or a list of expressions, that must all be true.",
        },
        "message": {"type": "string", "description": "Text that starts the error when one is false."},
    },
    "required": ["that"],
    "additionalProperties": False,
}
result = {
    "passed": "number of expressions that held",
    "failed_checks": "list of {that, values, error} for each expression that did not hold",
}
example = """\
- assert:
    that:
      - steps.disk.disks["/"].percent < 90
      - steps.health.status_code == 200
      - "'ERROR' not in steps.log.stdout"
    message: "pre-deploy checks failed on {{ facts.hostname }}"
"""

SHOWN = 80  # characters of a value shown in the error


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    checks = args["that"] if isinstance(args["that"], list) else [args["that"]]
    failed: list[dict[str, Any]] = []
    for check in checks:
        if isinstance(check, bool):  # YAML's true/false written as a check
            if not check:
                failed.append({"that": "false", "values": {}})
            continue
        try:
            held = bool(ctx.evaluate(check))
            reason = None
        except RunbookError as exc:
            held, reason = False, str(exc)
        if not held:
            entry: dict[str, Any] = {"that": check, "values": _values(check, ctx)}
            if reason:
                entry["error"] = reason
            failed.append(entry)
    out = {"passed": len(checks) - len(failed), "failed_checks": failed, "changed": False}
    if failed:
        lead = args.get("message") or (
            f"{len(failed)} of {len(checks)} assertions failed" if len(checks) > 1 else "assertion failed"
        )
        raise HandlerError(f"{lead}: " + "; ".join(_describe(f) for f in failed), result=out)
    return out


def _describe(failure: dict[str, Any]) -> str:
    if failure.get("error"):
        return f"{failure['that']}: {failure['error']}"
    values = ", ".join(f"{name} = {_short(value)}" for name, value in failure["values"].items())
    return f"{failure['that']} is false" + (f" ({values})" if values else "")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _values(expression: str, ctx: Any) -> dict[str, Any]:
    """The values an expression reads (its variables and the operands of its comparisons)."""
    values: dict[str, Any] = {}
    for part in operands(expression):
        try:
            value = ctx.evaluate(part)
        except RunbookError:
            continue  # the whole expression's error says why
        values[part] = value
        if len(values) >= 6:
            break
    return values


def operands(expression: str) -> list[str]:
    """Source texts of the parts worth showing: variables, attributes, filters over them.

    Parsed with the template environment's parser (no rendering); a part is rebuilt as text
    only when it is made of names, attributes, constant subscripts and filters.
    """
    from jinja2 import nodes

    from runner.templating import environment

    try:
        tree = environment().parse("{{ " + expression + " }}")
    except Exception:
        return []
    found: list[str] = []

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.Const):
            return
        text = _source(node)
        if text is not None:
            if text not in found:
                found.append(text)
            return
        for child in node.iter_child_nodes():
            visit(child)

    for output in tree.find_all(nodes.Output):
        for child in output.nodes:
            visit(child)
    return found


def _source(node: Any) -> str | None:
    from jinja2 import nodes

    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Const):
        return json.dumps(node.value) if isinstance(node.value, (str, int, float, bool)) else None
    if isinstance(node, nodes.Getattr):
        inner = _source(node.node)
        return f"{inner}.{node.attr}" if inner else None
    if isinstance(node, nodes.Getitem):
        inner, key = _source(node.node), _source(node.arg)
        return f"{inner}[{key}]" if inner and key and isinstance(node.arg, nodes.Const) else None
    if isinstance(node, (nodes.Filter, nodes.Call)) and not (node.kwargs or node.dyn_args or node.dyn_kwargs):
        if node.node is None or not all(isinstance(a, nodes.Const) for a in node.args):
            return None
        inner = _source(node.node)
        args = [_source(a) for a in node.args]
        if inner is None or None in args:
            return None
        listed = ", ".join(a for a in args if a is not None)
        if isinstance(node, nodes.Call):
            return f"{inner}({listed})"
        return f"{inner} | {node.name}" + (f"({listed})" if args else "")
    return None
