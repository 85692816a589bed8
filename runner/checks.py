"""Everything ``runbook validate`` checks, collected in one pass, and the Playbook built from it.

The checks run in the order a reader meets problems: the YAML itself, the top-level
keys, each step's shape and arguments (against the combined schema), ids and
``needs`` (unknown ids, cycles), and every template (syntax, undefined variables,
results of steps that may not have run yet). All problems are collected; none stops
the others, so one ``validate`` shows everything to fix.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.diagnostics import Diagnostic, did_you_mean
from runner.errors import PlaybookError, UsageError
from runner.loader import Document, JsonPath, SourceMap, load_file, parse_cli_var
from runner.playbook import SECTIONS, Group, Node, Playbook, Step, describe_step, format_path
from runner.registry import Handler, all_handlers, handlers_for
from runner.schema import (
    DEFAULTABLE_KEYS,
    GROUP_KEYS,
    PLAYBOOK_KEYS,
    STEP_KEYS,
    accept_templates,
    build_schema,
)
from runner.templating import (
    GLOBALS,
    RESERVED_NAMES,
    RUNTIME_NAMES,
    TemplateSyntax,
    analyze,
    is_template,
    names_read,
)
from runner.validator import Problem, SchemaChecker

# Keys users bring from Ansible or go-task, and what runbook calls them.
FAMILIAR_KEYS = {
    "ignore_errors": "runbook calls it continue_on_error",
    "register": "every step's result is steps.<id>: give the step an id",
    "with_items": "use loop: [...]",
    "loop_control": "the loop variable is always item (and loop.index, loop.first...)",
    "retries": "use retry: {attempts: N, delay: 5s}",
    "delay": "put it under retry: {delay: ...}",
    "become": "runbook runs as the current user; use shell: {argv: [sudo, ...]}",
    "cmds": "one step runs one command: write one shell step each",
    "deps": "use needs: [step_id, ...]",
    "vars": "put variables at the top of the playbook, or pass -e",
    "environment": "use env: {NAME: value}",
    "notify": "use on_failure, finally, or when: on a later step",
    "hosts": "runbook runs on this machine; there is no hosts key",
}

# Keys whose values are expressions, not templates (no braces needed).
EXPRESSION_KEYS = ("when", "until", "failed_when", "changed_when")

# Names templates may read in a looped step only.
LOOP_NAMES = ("item", "loop")


_SCHEMAS: dict[frozenset[str], tuple[dict[str, Any], SchemaChecker]] = {}


def combined_schema(handlers: Mapping[str, Handler] | None = None) -> tuple[dict[str, Any], SchemaChecker]:
    """The combined schema of these handlers (default: all, plugins included), and its checker."""
    handlers = all_handlers() if handlers is None else handlers
    key = frozenset(handlers)
    if key not in _SCHEMAS:
        schema = build_schema(handlers)
        _SCHEMAS[key] = (schema, SchemaChecker(schema))
    return _SCHEMAS[key]


def step_keys_used(data: Any) -> set[str]:
    """Every key of every step in the document (handler names among them), groups included."""
    found: set[str] = set()

    def visit(items: Any) -> None:
        for raw in items if isinstance(items, list) else []:
            if not isinstance(raw, dict):
                continue
            found.update(k for k in raw if k not in STEP_KEYS)
            body = raw.get("parallel")
            visit(body.get("steps") if isinstance(body, dict) else body)

    if isinstance(data, dict):
        for section in SECTIONS:
            visit(data.get(section))
    return found - {"parallel"}


class Checker:
    def __init__(self, document: Document, handlers: Mapping[str, Handler]):
        self.document = document
        self.source = document.source
        self.handlers = handlers
        self.schema, self.checker = combined_schema(handlers)
        self.problems: list[Diagnostic] = list(document.problems)
        self.ids: dict[str, Node] = {}
        self._step_keys_schema: dict[str, Any] | None = None
        # Where each variable was defined: (source map, path prefix, the names and values).
        self.var_sources: list[tuple[SourceMap, JsonPath, dict[str, Any]]] = []

    # -- reporting ------------------------------------------------------------------------

    def report(
        self, path: JsonPath, where: str, message: str, hint: str = "", at_value: bool = False
    ) -> None:
        position = self.source.value(path) if at_value else self.source.key(path)
        self.problems.append(Diagnostic(position, where, message, hint))

    def report_problems(
        self, base: JsonPath, problems: list[Problem], where: Any, prefix: JsonPath = ()
    ) -> None:
        """Schema problems under ``base``; ``where(inner)`` names the place."""
        for problem in problems:
            inner = (*prefix, *problem.path)
            self.report((*base, *problem.path), where(inner), problem.message, problem.hint)

    # -- top level ------------------------------------------------------------------------

    def top_level(self, data: Any) -> bool:
        if data is None:
            self.report(
                (), "playbook", "the file is empty", "a playbook is a mapping with at least name: and steps:"
            )
            return False
        if not isinstance(data, dict):
            self.report(
                (), "playbook", f"a playbook must be a mapping (name:, steps:...), not {type(data).__name__}"
            )
            return False
        shape = {
            **self.schema,
            "properties": {
                **self.schema["properties"],
                **{section: {"type": "array"} for section in SECTIONS},
            },
            "required": ["name", "steps"],
        }
        problems = self.checker.check(data, shape)
        for problem in problems:
            message = problem.message
            if message.startswith("unknown argument"):
                message = message.replace("unknown argument", "unknown key", 1)
                name = problem.path[-1]
                if isinstance(name, str) and not problem.hint and name in FAMILIAR_KEYS:
                    problem = Problem(problem.path, message, FAMILIAR_KEYS[name])
            elif message.startswith("missing required argument"):
                message = message.replace("missing required argument", "missing required key", 1)
            where = "playbook" if len(problem.path) <= 1 else format_path(problem.path)
            self.report(problem.path, where, message, problem.hint)
        self.check_schedule(data)
        return True

    def check_schedule(self, data: dict[str, Any]) -> None:
        """A schedule that cannot be understood is found now, not when the daemon starts it."""
        text, timezone = data.get("schedule"), data.get("timezone")
        if not isinstance(timezone, (str, type(None))):
            return  # the schema check has said so
        from runner.schedules import ScheduleError, parse_schedule, zone

        try:
            if isinstance(text, str):
                parse_schedule(text, timezone)
            elif timezone is not None:
                zone(timezone)
        except ScheduleError as exc:
            key = "schedule" if isinstance(text, str) and "time zone" not in str(exc) else "timezone"
            if key not in data:
                key = "schedule"
            self.report((key,), key, str(exc), at_value=True)

    # -- steps ----------------------------------------------------------------------------

    def steps(self, path: JsonPath, items: Any, section: str, defaults: dict[str, Any]) -> list[Node]:
        if not isinstance(items, list):
            return []
        nodes: list[Node] = []
        for index, raw in enumerate(items):
            node = self.step((*path, index), raw, section, defaults)
            if node is not None:
                nodes.append(node)
        return nodes

    def step(self, path: JsonPath, raw: Any, section: str, defaults: dict[str, Any]) -> Node | None:
        place = format_path(path)
        if not isinstance(raw, dict):
            self.report(
                path,
                place,
                f"a step must be a mapping, got {_kind(raw)}",
                "write a handler key and its arguments, e.g. '- shell: echo hi'",
            )
            return None
        label = raw.get("id") if isinstance(raw.get("id"), str) else raw.get("name")
        kind = "group" if "parallel" in raw else "step"

        def where(inner: JsonPath = ()) -> str:
            return describe_step(kind, label, path, inner)

        if "parallel" in raw:
            return self.group(path, raw, section, defaults, where)

        handler_keys = [key for key in raw if key in self.handlers]
        unknown = [key for key in raw if key not in self.handlers and key not in STEP_KEYS]
        for key in unknown:
            self.unknown_step_key(path, key, bool(handler_keys), where)
        if not handler_keys:
            if not unknown:
                self.report(
                    path,
                    where(),
                    "the step has no handler",
                    "add one handler key such as shell: or copy: (runbook tasks lists them)",
                )
            return None
        if len(handler_keys) > 1:
            names = " and ".join(f"'{k}'" for k in handler_keys)
            self.report(
                (*path, handler_keys[1]),
                where(),
                f"two handlers in one step: {names}",
                "a step runs exactly one handler; split it into two steps",
            )
            return None
        name = handler_keys[0]
        step_keys = {key: value for key, value in raw.items() if key in STEP_KEYS}
        if step_keys:  # one validation for all of a step's keys: problems' paths start at the key
            problems = self.checker.check(step_keys, self.step_keys_schema())
            self.report_problems(path, problems, where)
        args = self.handler_args(path, name, raw[name], where)
        options = merge_defaults(defaults, {k: v for k, v in raw.items() if k in STEP_KEYS})
        step = Step(path=path, section=section, handler=name, args=args, source=self.source)
        apply_options(step, options)
        self.register_id(step, path, where)
        return step

    def step_keys_schema(self) -> Mapping[str, Any]:
        if self._step_keys_schema is None:
            properties = self.schema["$defs"]["task_step"]["properties"]
            self._step_keys_schema = {"type": "object", "properties": {k: properties[k] for k in STEP_KEYS}}
        return self._step_keys_schema

    def unknown_step_key(self, path: JsonPath, key: str, has_handler: bool, where: Any) -> None:
        key_path = (*path, key)
        if key in FAMILIAR_KEYS:
            self.report(key_path, where(), f"unknown step key '{key}'", FAMILIAR_KEYS[key])
            return
        handler_hint = did_you_mean(key, self.handlers)
        key_hint = did_you_mean(key, STEP_KEYS)
        if not has_handler and (handler_hint or not key_hint):
            self.report(
                key_path,
                where(),
                f"unknown handler '{key}'",
                handler_hint or "runbook tasks lists the handlers",
            )
        else:
            self.report(
                key_path,
                where(),
                f"unknown step key '{key}'",
                key_hint or "step keys: " + ", ".join(STEP_KEYS),
            )

    def handler_args(self, path: JsonPath, name: str, raw_args: Any, where: Any) -> Any:
        handler = self.handlers[name]
        args_path = (*path, name)
        if raw_args is None:
            self.report(args_path, where(), f"'{name}' needs arguments", f"runbook tasks {name} shows them")
            return {}
        args = handler.normalize(raw_args)
        if not isinstance(args, dict) and not is_template(args):
            self.report(
                args_path,
                where((name,)),
                f"expected a mapping of arguments, got {_kind(args)}",
                f"write {name}: {{arg: value, ...}}; runbook tasks {name} lists them",
            )
            return args
        schema = _template_args_schema(name, handler)
        problems = self.checker.check(args, schema)
        self.report_problems(args_path, problems, where, (name,))
        return args

    def group(
        self, path: JsonPath, raw: dict[str, Any], section: str, defaults: dict[str, Any], where: Any
    ) -> Group | None:
        group_props = self.schema["$defs"]["group_step"]["properties"]
        for key in raw:
            if key == "parallel":
                continue
            if key in self.handlers:
                self.report(
                    (*path, key),
                    where(),
                    f"a parallel group cannot also run '{key}'",
                    "move the handler into the group's steps",
                )
            elif key not in GROUP_KEYS:
                hint = did_you_mean(key, GROUP_KEYS) or (
                    f"put '{key}' on the steps inside the group"
                    if key in STEP_KEYS
                    else "group keys: " + ", ".join(GROUP_KEYS)
                )
                self.report((*path, key), where(), f"unknown key '{key}' in a parallel group", hint)
            else:
                problems = self.checker.check(raw[key], group_props[key])
                self.report_problems((*path, key), problems, where, (key,))
        body = raw["parallel"]
        steps_path: JsonPath = (*path, "parallel")
        options: dict[str, Any] = {}
        if isinstance(body, dict):
            for key in body:
                if key not in ("steps", "max_workers", "fail_fast"):
                    self.report(
                        (*path, "parallel", key),
                        where(("parallel", key)),
                        f"unknown key '{key}'",
                        did_you_mean(key, ["steps", "max_workers", "fail_fast"]),
                    )
            if "steps" not in body:
                self.report(steps_path, where(("parallel",)), "missing required key 'steps'")
            for key in ("max_workers", "fail_fast"):
                if key in body:
                    schema = group_props["parallel"]["anyOf"][1]["properties"][key]
                    problems = self.checker.check(body[key], schema)
                    self.report_problems((*path, "parallel", key), problems, where, ("parallel", key))
                    options[key] = body[key]
            items = body.get("steps", [])
            steps_path = (*steps_path, "steps")
        elif isinstance(body, list):
            items = body
        else:
            self.report(
                steps_path,
                where(("parallel",)),
                f"expected a list of steps or {{steps: [...], max_workers: N}}, got {_kind(body)}",
            )
            return None
        if not isinstance(items, list):
            self.report(
                steps_path, where(("parallel", "steps")), f"expected a list of steps, got {_kind(items)}"
            )
            items = []
        group = Group(
            path=path,
            section=section,
            source=self.source,
            steps=self.steps(steps_path, items, section, defaults),
            id=raw.get("id") if isinstance(raw.get("id"), str) else None,
            name=raw.get("name"),
            when=raw.get("when"),
            needs=_text_list(raw.get("needs")),
            tags=_as_list(raw.get("tags")),
            max_workers=options.get("max_workers"),
            fail_fast=options.get("fail_fast", False),
        )
        self.register_id(group, path, where)
        return group

    def register_id(self, node: Node, path: JsonPath, where: Any) -> None:
        if not isinstance(node.id, str):
            return
        if node.id in RESERVED_NAMES:
            pass  # ids live under steps.<id>; no clash with top-level names
        first = self.ids.get(node.id)
        if first is not None:
            self.report(
                (*path, "id"),
                where(),
                f"duplicate id '{node.id}' (first at line {self.source.key((*first.path, 'id')).line})",
                "ids must be unique in a playbook",
            )
            return
        self.ids[node.id] = node

    # -- needs ----------------------------------------------------------------------------

    def check_needs(self, playbook: Playbook) -> None:
        top_ids = {n.id: n for n in playbook.steps if n.id}
        for node in playbook.walk():
            if not node.needs:
                continue
            needs_path = (*node.path, "needs")
            where = node.where()
            if node.section != "steps" or len(node.path) != 2:
                self.report(
                    needs_path,
                    where,
                    "needs is allowed only on top-level steps of steps:",
                    "steps inside a parallel group, on_failure or finally run in their own order",
                )
                continue
            for index, name in enumerate(node.needs):
                item_path = (*needs_path, index) if (*needs_path, index) in self.source.keys else needs_path
                if name in top_ids:
                    continue
                if name in self.ids:
                    self.report(
                        item_path,
                        where,
                        f"needs '{name}', which is not a top-level step of steps:",
                        "name the top-level step or group that contains it",
                    )
                else:
                    self.report(
                        item_path,
                        where,
                        f"needs unknown step id '{name}'",
                        did_you_mean(name, top_ids) or "give the step you mean an id:",
                    )
        cycle = _find_cycle({n.id: [x for x in n.needs if x in top_ids] for n in playbook.steps if n.id})
        if cycle:
            first = top_ids[cycle[0]]
            self.report(
                (*first.path, "needs"),
                first.where(),
                "needs cycle: " + " -> ".join(cycle),
                "a step cannot wait, directly or not, for itself",
            )

    # -- templates ------------------------------------------------------------------------

    def check_templates(self, playbook: Playbook, known_vars: set[str]) -> None:
        readable = readable_steps(playbook)
        known = known_vars | RESERVED_NAMES | set(GLOBALS)
        for node in playbook.walk():
            scope = TemplateScope(known, known_vars, readable[id(node)])
            if isinstance(node.when, str):
                # `when: x is defined` guards x in the whole step: unrendered when x is missing.
                with contextlib.suppress(TemplateSyntax):
                    guard = analyze(node.when, True)
                    scope.guarded |= guard.guarded
                    scope.guarded_steps |= guard.guarded_steps
            handler = self.handlers.get(node.handler) if isinstance(node, Step) else None
            unrendered = handler.unrendered if handler is not None else ()
            for inner, value, expression in template_values(node, unrendered):
                scope.looped = isinstance(node, Step) and node.loop is not None and inner[:1] != ("loop",)
                self.check_template(node, inner, value, expression, scope)
        self.check_var_cycles(playbook.vars)
        for source, prefix, defined in self.var_sources:
            for name, value in defined.items():
                if playbook.vars.get(name) is value:  # not overridden by a later source
                    self.check_plain_template(source, (*prefix, name), value, known, known_vars)

    def check_var_cycles(self, variables: Mapping[str, Any]) -> None:
        edges = {}
        for name, value in variables.items():
            try:
                edges[name] = sorted(names_read(value) & set(variables))
            except TemplateSyntax:
                edges[name] = []  # reported with its position by check_plain_template
        cycle = _find_cycle(edges)
        if cycle:
            path = ("vars", cycle[0]) if (("vars", cycle[0])) in self.source.keys else ("vars",)
            self.report(
                path,
                f"vars.{cycle[0]}",
                "variables refer to each other: " + " -> ".join(cycle),
                "one of them must not read the other",
            )

    def syntax_problem(self, source: SourceMap, path: JsonPath, where: str, exc: TemplateSyntax) -> None:
        lineno = exc.lineno
        folded = source.folded.get(source.recorded(path))
        if folded is not None:
            # Folding joined the lines; the raw lines say which one holds the error.
            try:
                analyze(folded)
            except TemplateSyntax as raw:
                lineno = raw.lineno
        self.problems.append(
            Diagnostic(source.text_line(path, lineno), where, f"template syntax error: {exc.message}")
        )

    def check_template(
        self, node: Node, inner: JsonPath, value: str, expression: bool, scope: TemplateScope
    ) -> None:
        path = (*node.path, *inner)
        where = node.where(inner)
        try:
            refs = analyze(value, expression)
        except TemplateSyntax as exc:
            self.syntax_problem(self.source, path, where, exc)
            return
        for name, line in sorted(refs.names.items()):
            position = self.source.text_line(path, line)
            if name in scope.guarded:
                continue
            if name in LOOP_NAMES and not scope.looped:
                self.problems.append(
                    Diagnostic(
                        position,
                        where,
                        f"'{name}' is defined only in a step with loop:",
                        "add loop: to the step, or guard with | default(...)",
                    )
                )
            elif name not in scope.known:
                hint = did_you_mean(name, scope.known_vars) or (
                    "define it in vars:, a vars file, or pass -e NAME=VALUE"
                )
                self.problems.append(Diagnostic(position, where, f"undefined variable '{name}'", hint))
        for step_id in sorted(refs.steps - scope.readable - scope.guarded_steps):
            position = self.source.text_line(path, 1)
            self.problems.append(Diagnostic(position, where, *self.unreadable(node, step_id)))

    def unreadable(self, node: Node, step_id: str) -> tuple[str, str]:
        target = self.ids.get(step_id)
        if target is None:
            return (
                f"no step has id '{step_id}'",
                did_you_mean(step_id, self.ids) or "give the step you mean an id:",
            )
        if target is node:
            return (
                f"the step reads its own result as steps.{step_id}",
                "inside until, failed_when and changed_when the step's result is 'result'",
            )
        return (
            f"steps.{step_id} may not have run yet when this step starts",
            "add it to this step's needs (or order the steps so it runs first), or guard with 'is defined'",
        )

    def check_plain_template(
        self, source: SourceMap, path: JsonPath, value: Any, known: set[str], known_vars: set[str]
    ) -> None:
        for inner, text in _strings(value, ()):
            if not is_template(text):
                continue
            full = (*path, *inner)
            try:
                refs = analyze(text)
            except TemplateSyntax as exc:
                self.syntax_problem(source, full, format_path(full), exc)
                continue
            for name in sorted(refs.names.keys() & RUNTIME_NAMES):
                self.problems.append(
                    Diagnostic(
                        source.text_line(full, refs.names[name]),
                        format_path(full),
                        f"a variable cannot read '{name}': variables are rendered when the run starts",
                        "write the expression in the step that needs it",
                    )
                )
            for name in sorted(refs.names.keys() - known):
                self.problems.append(
                    Diagnostic(
                        source.text_line(full, refs.names[name]),
                        format_path(full),
                        f"undefined variable '{name}'",
                        did_you_mean(name, known_vars),
                    )
                )


# -- helpers ----------------------------------------------------------------------------------


@dataclass
class TemplateScope:
    """What the templates of one step may read."""

    known: set[str]  # every name defined for the run
    known_vars: set[str]  # the user's variables, for "did you mean"
    readable: set[str]  # step ids whose results exist when the step starts
    looped: bool = False  # item and loop are defined
    guarded: set[str] = field(default_factory=set)  # names the step's when tests with is defined
    guarded_steps: set[str] = field(default_factory=set)


_ARGS_SCHEMAS: dict[str, dict[str, Any]] = {}


def _template_args_schema(name: str, handler: Handler) -> dict[str, Any]:
    """The handler's own schema, each typed value also accepting a template."""
    if name not in _ARGS_SCHEMAS:
        _ARGS_SCHEMAS[name] = accept_templates(dict(handler.schema))
    return _ARGS_SCHEMAS[name]


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "nothing (null)"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    return "a mapping" if isinstance(value, dict) else type(value).__name__


def _text_list(value: Any) -> list[str]:
    """A ``needs``/``tags`` value as a list of its strings (the schema reports anything else)."""
    return [item for item in _as_list(value) if isinstance(item, str)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def merge_defaults(defaults: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """Step keys win; ``retry`` and ``env`` mappings merge one level deep."""
    merged = dict(defaults)
    for key, value in options.items():
        base = merged.get(key)
        if key in ("retry", "env") and isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


def apply_options(step: Step, options: Mapping[str, Any]) -> None:
    for key, value in options.items():
        if key in ("needs", "tags"):
            value = _text_list(value)
        elif key in ("id", "name") and not isinstance(value, str):
            value = None  # the schema check has reported it; later checks need text
        elif key == "retry" and isinstance(value, int) and not isinstance(value, bool):
            value = {"attempts": value}
        elif key == "env" and value is None:
            value = {}
        setattr(step, key, value)


def _strings(value: Any, path: JsonPath) -> list[tuple[JsonPath, str]]:
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _strings(item, (*path, i))]
    return []


def template_values(node: Node, unrendered: Sequence[str] = ()) -> list[tuple[JsonPath, str, bool]]:
    """(path inside the node, text, is-an-expression) of every template the node holds.

    Strings under a handler's ``unrendered`` arguments (``wait.until``, ``assert.that``) are
    expressions the handler evaluates itself: checked as such, braces or not."""
    found: list[tuple[JsonPath, str, bool]] = []
    for key in EXPRESSION_KEYS:
        value = getattr(node, key, None)
        if isinstance(value, str):
            found.append(((key,), value, True))
    if isinstance(node, Step):
        for key in ("loop", "loop_parallel", "timeout", "continue_on_error", "retry", "env"):
            for inner, text in _strings(getattr(node, key), (key,)):
                if is_template(text):
                    found.append((inner, text, False))
        for inner, text in _strings(node.args, (node.handler,)):
            if isinstance(node.args, dict) and len(inner) > 1 and inner[1] in unrendered:
                found.append((inner, text, True))
            elif is_template(text):
                found.append((inner, text, False))
    else:
        for key in ("max_workers", "fail_fast"):
            value = getattr(node, key)
            if isinstance(value, str) and is_template(value):
                found.append((("parallel", key), value, False))
    return found


def _ids_within(node: Node) -> set[str]:
    ids = {node.id} if node.id else set()
    if isinstance(node, Group):
        ids.update(n.id for n in node.walk() if n.id)
    return ids


def readable_steps(playbook: Playbook) -> dict[int, set[str]]:
    """For each node (by ``id()``), the step ids whose results exist when it starts."""
    readable: dict[int, set[str]] = {}

    def sequence(nodes: Sequence[Node], before: set[str]) -> set[str]:
        seen = set(before)
        for node in nodes:
            mark(node, seen)
            seen |= _ids_within(node)
        return seen

    def mark(node: Node, allowed: set[str]) -> None:
        readable[id(node)] = set(allowed)
        if isinstance(node, Group):
            for member in node.steps:  # siblings run at once: none reads another
                mark(member, allowed)

    if playbook.dag:
        by_id = {n.id: n for n in playbook.steps if n.id}
        for node in playbook.steps:
            ancestors = _ancestors(node, by_id)
            mark(node, set().union(*(_ids_within(by_id[a]) for a in ancestors)) if ancestors else set())
    else:
        sequence(playbook.steps, set())
    every_step = set().union(*(_ids_within(n) for n in playbook.steps)) if playbook.steps else set()
    after_failure = sequence(playbook.on_failure, every_step)
    sequence(playbook.finally_, after_failure)
    return readable


def _ancestors(node: Node, by_id: Mapping[str, Node]) -> set[str]:
    found: set[str] = set()
    stack = [n for n in node.needs if n in by_id]
    while stack:
        current = stack.pop()
        if current in found:
            continue
        found.add(current)
        stack.extend(n for n in by_id[current].needs if n in by_id)
    return found


def _find_cycle(edges: Mapping[str, list[str]]) -> list[str] | None:
    """A cycle in the needs graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for nxt in edges.get(name, []):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[name] = 2
        return None

    for start in edges:
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


# -- variables --------------------------------------------------------------------------------


def gather_vars(
    checker: Checker,
    data: dict[str, Any],
    playbook_dir: Path,
    cli_vars: Sequence[str],
    vars_files: Sequence[Path],
) -> dict[str, Any]:
    """Variables by precedence: vars < vars_files < --vars-file < -e (SPEC §8)."""
    merged: dict[str, Any] = {}
    if isinstance(data.get("vars"), dict):
        merged.update(data["vars"])
        checker.var_sources.append((checker.source, ("vars",), data["vars"]))
        for name in data["vars"]:
            if name in RESERVED_NAMES:
                checker.report(
                    ("vars", name),
                    f"vars.{name}",
                    f"'{name}' is a built-in name and cannot be a variable",
                    "built-in names: " + ", ".join(sorted(RESERVED_NAMES)),
                )
    listed = data.get("vars_files")
    if isinstance(listed, list):
        for index, name in enumerate(listed):
            if isinstance(name, str):
                merged.update(_vars_file(checker, playbook_dir / name, ("vars_files", index)))
    for path in vars_files:
        merged.update(_vars_file(checker, path, None))
    for text in cli_vars:
        if text.startswith("@"):
            merged.update(_vars_file(checker, Path(text[1:]), None))
        else:
            key, value = parse_cli_var(text)
            merged[key] = value
    return merged


def gather_secrets(checker: Checker, entries: Any, playbook_dir: Path) -> dict[str, str]:
    """``secrets:``: each from the environment, a file, or a ``!vault`` value; all masked from now on."""
    from runner.masking import SECRETS
    from runner.vault import SecretText

    found: dict[str, str] = {}
    if not isinstance(entries, dict):
        return found
    for name, spec in entries.items():
        where, value = f"secrets.{name}", None
        if isinstance(spec, SecretText):
            value = str(spec)
        elif isinstance(spec, str):
            checker.report(
                ("secrets", name),
                where,
                "a secret in clear text would end up in git",
                "write {env: NAME}, {file: PATH}, or a !vault value (runbook vault encrypt-string makes one)",
                at_value=True,
            )
        elif isinstance(spec, dict) and isinstance(spec.get("env"), str):
            value = os.environ.get(spec["env"])
            if value is None:
                checker.report(
                    ("secrets", name, "env"),
                    where,
                    f"the environment variable {spec['env']} is not set",
                    at_value=True,
                )
        elif isinstance(spec, dict) and isinstance(spec.get("file"), str):
            file = playbook_dir / os.path.expanduser(spec["file"])
            try:
                value = file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                checker.report(
                    ("secrets", name, "file"),
                    where,
                    f"cannot read {file}: {exc.strerror or exc}",
                    at_value=True,
                )
        if value is not None:
            SECRETS.add(value)
            found[str(name)] = value
    return found


MAX_INCLUDE_DEPTH = 10


def check_includes(checker: Checker, playbook: Playbook, chain: tuple[Path, ...]) -> None:
    """Each ``include`` of a written (not templated) path: the included playbook is checked
    too, with the names its ``vars`` pass, and a playbook that includes itself, directly
    or not, is a cycle."""
    for node in playbook.walk():
        if not isinstance(node, Step) or node.handler != "include":
            continue
        args = node.args if isinstance(node.args, dict) else {"path": node.args}
        target, passed = args.get("path"), args.get("vars")
        if not isinstance(target, str) or is_template(target):
            continue  # known at run time only; the run checks it then
        where = (*node.path, "include", "path") if isinstance(node.args, dict) else (*node.path, "include")
        label = describe_step("step", node.id or node.name, node.path, ("include", "path"))
        full = (playbook.path.parent / os.path.expanduser(target)).resolve()
        if full in chain:
            cycle = " -> ".join(p.name for p in chain[chain.index(full) :]) + f" -> {full.name}"
            hint = "a playbook cannot include itself, directly or not"
            checker.report(where, label, f"include cycle: {cycle}", hint, at_value=True)
            continue
        if len(chain) >= MAX_INCLUDE_DEPTH:
            checker.report(where, label, f"includes nested more than {MAX_INCLUDE_DEPTH} deep", at_value=True)
            continue
        if not full.is_file():
            hint = "include paths are relative to the including playbook"
            checker.report(where, label, f"no playbook {full}", hint, at_value=True)
            continue
        names = dict.fromkeys(passed, None) if isinstance(passed, dict) else {}
        try:
            check_playbook(full, (), (), extra_vars=names, including=chain)
        except PlaybookError as exc:
            checker.problems.extend(exc.diagnostics)
        except UsageError as exc:
            checker.report(where, label, str(exc), at_value=True)


def _vars_file(checker: Checker, path: Path, listed_at: JsonPath | None) -> dict[str, Any]:
    if not path.is_file():
        if listed_at is None:
            raise UsageError(f"{path}: no such vars file")
        checker.report(
            listed_at,
            format_path(listed_at),
            f"vars file not found: {path}",
            "vars_files are relative to the playbook's folder",
        )
        return {}
    document = load_file(path)
    checker.problems.extend(document.problems)
    if document.data is None:
        return {}
    if not isinstance(document.data, dict):
        checker.problems.append(
            Diagnostic(
                document.source.key(()), "vars file", "a vars file must be a mapping of names to values"
            )
        )
        return {}
    checker.var_sources.append((document.source, (), document.data))
    return document.data


def check_playbook(
    path: Path,
    cli_vars: Sequence[str],
    vars_files: Sequence[Path],
    text: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    including: tuple[Path, ...] = (),
) -> Playbook:
    """Load and check one playbook. ``extra_vars`` come from an ``include`` step (they win
    over everything), and ``including`` lists the playbooks that include this one, to
    find cycles."""
    document = load_file(path, text)
    checker = Checker(document, handlers_for(step_keys_used(document.data)))
    data = document.data
    # Syntax errors leave no document to check; other YAML problems (a duplicate key, an
    # unknown tag) leave one, and every other problem in it is worth reporting too.
    if (data is None and document.problems) or not checker.top_level(data):
        raise PlaybookError(sorted(checker.problems, key=Diagnostic.sort_key))
    variables = gather_vars(checker, data, path.parent, cli_vars, vars_files)
    variables.update(extra_vars or {})
    secrets = gather_secrets(checker, data.get("secrets"), path.parent)
    defaults = data.get("defaults") if isinstance(data.get("defaults"), dict) else {}
    defaults = {k: v for k, v in defaults.items() if k in DEFAULTABLE_KEYS}
    sections = {s: checker.steps((s,), data.get(s), s, defaults) for s in SECTIONS}
    env = data.get("env") if isinstance(data.get("env"), dict) else {}
    playbook = Playbook(
        path=path,
        name=str(data.get("name", "")),
        source=document.source,
        steps=sections["steps"],
        on_failure=sections["on_failure"],
        finally_=sections["finally"],
        description=str(data.get("description", "") or ""),
        vars=variables,
        secrets=secrets,
        env=dict(env),
        defaults=defaults,
        max_parallel=data.get("max_parallel"),
        timeout=data.get("timeout"),
        schedule=data.get("schedule"),
        timezone=data.get("timezone"),
        overlap=data.get("overlap", "skip"),
        jitter=data.get("jitter"),
        catch_up=bool(data.get("catch_up", False)),
        dag=any(n.needs for n in sections["steps"]),
    )
    checker.check_needs(playbook)
    checker.check_templates(playbook, set(variables))
    check_includes(checker, playbook, (*including, path.resolve()))
    if checker.problems:
        raise PlaybookError(sorted(set(checker.problems), key=Diagnostic.sort_key))
    return playbook


__all__ = ["PLAYBOOK_KEYS", "Checker", "check_playbook", "readable_steps"]
