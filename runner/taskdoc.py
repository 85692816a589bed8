"""Text for ``runbook tasks``: the handler list, and one handler's page, from its declaration."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from runner.registry import Handler

Styler = Callable[..., str]
_KIND_NAMES = {"object": "mapping", "array": "list"}


def plain(text: str) -> str:
    """Docstrings use reStructuredText's double backticks; terminals read single ones better."""
    return text.replace("``", "`")


def type_name(schema: Mapping[str, Any]) -> str:
    """A short human name for a schema: ``duration``, ``list of string``, ``open | closed``."""
    ref = schema.get("$ref", "")
    if ref:
        return ref.rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(dict.fromkeys(type_name(s) for s in schema[union]))
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_KIND_NAMES.get(str(k), str(k)) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return f"list of {type_name(items)}" if isinstance(items, Mapping) else "list"
    return _KIND_NAMES.get(kind, kind) if kind else "any"


def _required_groups(schema: Mapping[str, Any]) -> list[str]:
    notes = []
    required = schema.get("required", [])
    if required:
        notes.append("required: " + ", ".join(required))
    for union in ("oneOf", "anyOf"):
        branches = schema.get(union, [])
        if branches and all(set(b) == {"required"} for b in branches):
            names = [n for b in branches for n in b["required"]]
            word = "exactly one of" if union == "oneOf" else "at least one of"
            notes.append(f"{word}: " + ", ".join(names))
    excluded = schema.get("not", {}).get("required")
    if excluded:
        notes.append("not together: " + ", ".join(excluded))
    return notes


def list_handlers(handlers: Mapping[str, Handler], style: Styler) -> str:
    width = max((len(n) for n in handlers), default=0)
    lines = [
        f"{style(name.ljust(width), bold=True)}  {plain(h.summary)}" for name, h in sorted(handlers.items())
    ]
    lines.append("")
    lines.append("runbook tasks NAME shows a handler's arguments, results and an example.")
    return "\n".join(lines)


def describe_handler(handler: Handler, style: Styler) -> str:
    schema = handler.schema
    out = [style(handler.name, bold=True) + f"  ({handler.origin})", ""]
    out.append(plain(handler.doc.strip()))
    out += ["", style("Arguments", bold=True)]
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    rows = []
    for name, sub in properties.items():
        default = f" (default: {json.dumps(sub['default'])})" if "default" in sub else ""
        star = " *" if name in required else ""
        rows.append((f"{name}{star}", type_name(sub), (sub.get("description", "") + default).strip()))
    if rows:
        w1 = max(len(r[0]) for r in rows)
        w2 = min(max(len(r[1]) for r in rows), 24)
        indent = " " * (2 + w1 + 2 + w2 + 2)
        for name, kind, text in rows:
            wrapped = textwrap.wrap(text, 96 - len(indent)) or [""]
            if len(kind) > w2:
                out.append(f"  {name.ljust(w1)}  {kind}")
                out += [indent + line for line in wrapped if line]
            else:
                out.append(f"  {name.ljust(w1)}  {kind.ljust(w2)}  {wrapped[0]}".rstrip())
                out += [indent + line for line in wrapped[1:]]
    for note in _required_groups(schema):
        out.append(f"  ({note})")
    if handler.shorthand:
        out.append(
            f"  Shorthand: {handler.name}: VALUE  means  {handler.name}: {{{handler.shorthand}: VALUE}}"
        )
    if handler.result:
        out += ["", style("Result", bold=True)]
        width = max(len(k) for k in handler.result)
        out += [f"  {key.ljust(width)}  {text}" for key, text in handler.result.items()]
        out.append("  (plus status, ok, changed, failed, skipped, attempts, duration, started, error)")
    if handler.example:
        out += ["", style("Example", bold=True)]
        out += ["  " + line for line in handler.example.rstrip().splitlines()]
    return "\n".join(out)
