"""Handlers: the built-in ones in the ``tasks`` package and plugins from entry points.

A handler is any object (a module or a class instance) with:

- ``name``: the YAML key that selects it (``shell``);
- ``schema``: the JSON Schema of its arguments;
- a docstring: its first line is the summary ``runbook tasks`` lists;
- ``run(args, ctx) -> dict``: does the work and returns a JSON-able result.

A handler signals "nothing to do" with ``skip_reason`` in its result, and failure by
raising ``HandlerError``. The keys ``status``, ``ok``, ``changed``, ``failed``,
``skipped``, ``attempts``, ``duration``, ``started`` and ``error`` of a result are the
engine's (SPEC §2); a handler sets only ``changed`` among them.

Optional: ``shorthand`` (the argument a scalar value stands for: ``shell: "ls"`` is
``shell: {cmd: "ls"}``), ``result`` (field → description), ``example`` (YAML),
``redact(args)`` (the arguments as they may be printed, such as in a dry-run plan, with
the secrets the handler knows of masked), and ``unrendered`` (arguments the engine
passes as written, because the handler evaluates them itself through ``ctx.evaluate``,
like ``wait``'s ``until``).

Plugins register in the entry-point group ``runbook.tasks``; two handlers with the
same name are refused, naming both.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from runner.errors import UsageError

ENTRY_POINT_GROUP = "runbook.tasks"


@dataclass(frozen=True)
class Handler:
    """What the engine knows of a handler; nothing handler-specific beyond this."""

    name: str
    schema: Mapping[str, Any]
    run: Callable[..., Any]
    doc: str
    origin: str
    shorthand: str | None = None
    result: Mapping[str, str] = field(default_factory=dict)
    example: str = ""
    unrendered: tuple[str, ...] = ()
    redact: Callable[[Any], Any] | None = None  # the arguments as they may be shown (secrets masked)

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def normalize(self, args: Any) -> Any:
        """Expand the scalar shorthand (``wait: 5s``) into the argument mapping."""
        if self.shorthand and not isinstance(args, dict):
            return {self.shorthand: args}
        return args


def _as_handler(obj: Any, origin: str) -> Handler:
    name = getattr(obj, "name", None)
    schema = getattr(obj, "schema", None)
    run = getattr(obj, "run", None)
    missing = [
        what
        for what, ok in (
            ("name (a string)", isinstance(name, str) and name),
            ("schema (a mapping)", isinstance(schema, Mapping)),
            ("run(args, ctx)", callable(run)),
        )
        if not ok
    ]
    if missing:
        raise UsageError(f"handler {origin} is missing: {', '.join(missing)}")
    assert isinstance(name, str) and isinstance(schema, Mapping) and run is not None
    return Handler(
        name=name,
        schema=schema,
        run=run,
        doc=inspect.getdoc(obj) or "",
        origin=origin,
        shorthand=getattr(obj, "shorthand", None),
        result=getattr(obj, "result", {}) or {},
        example=getattr(obj, "example", "") or "",
        unrendered=tuple(getattr(obj, "unrendered", ()) or ()),
        redact=getattr(obj, "redact", None),
    )


@cache
def builtin_handlers() -> dict[str, Handler]:
    """The handlers shipped in the ``tasks`` package, by name."""
    import tasks

    found: dict[str, Handler] = {}
    for info in sorted(pkgutil.iter_modules(tasks.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"tasks.{info.name}")
        handler = _as_handler(module, f"built-in tasks.{info.name}")
        found[handler.name] = handler
    return found


def handlers_for(names: Iterable[str]) -> dict[str, Handler]:
    """The built-in handlers when they cover ``names``, else every handler, plugins included.

    Reading entry points costs tens of milliseconds at start-up; a playbook that uses
    only built-in handlers does not pay for it.
    """
    builtins = builtin_handlers()
    if all(name in builtins for name in names):
        return builtins
    return all_handlers()


@cache
def all_handlers() -> dict[str, Handler]:
    """Built-in handlers plus every plugin of the ``runbook.tasks`` entry-point group."""
    from importlib.metadata import entry_points

    handlers = dict(builtin_handlers())
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(entry.dist, "name", "?")
        origin = f"plugin '{entry.name} = {entry.value}' (distribution {dist})"
        try:
            obj = entry.load()
        except Exception as exc:
            raise UsageError(f"handler {origin} failed to load: {exc}") from exc
        if inspect.isclass(obj):
            obj = obj()
        handler = _as_handler(obj, origin)
        if handler.name in handlers:
            raise UsageError(
                f"handler '{handler.name}' is defined twice: by {handlers[handler.name].origin} "
                f"and by {origin}; uninstall one of them"
            )
        handlers[handler.name] = handler
    return handlers
