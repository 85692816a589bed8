"""Jinja2 templates: a sandboxed environment, runbook's filters, rendering and analysis.

Rendering is lazy: the executor calls ``render`` right before a step runs, with a
context holding the results of earlier steps. A value that is exactly one
``{{ expr }}`` keeps the expression's native type (a list stays a list); anything
else renders to a string. Undefined names fail loudly (StrictUndefined).

``analyze`` reads a template without running it, for ``runbook validate``: which
top-level names it needs and which ``steps.<id>`` it reads, leaving out names guarded
by ``| default(...)`` or ``is defined``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache, lru_cache
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import SandboxedEnvironment

from runner.errors import TemplateError
from runner.units import format_size, parse_duration

# Names the engine puts in every context (SPEC §8); vars may not reuse them.
RESERVED_NAMES = frozenset(
    {"env", "facts", "steps", "item", "loop", "run", "secrets", "result", "attempt", "vars"}
)
# Names a variable's template may not read: they do not exist when the run starts.
RUNTIME_NAMES = frozenset({"steps", "item", "loop", "result", "attempt"})
_GUARD_FILTERS = {"default", "d"}
_GUARD_TESTS = {"defined", "undefined"}
_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.DOTALL)


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


# --- filters and tests -----------------------------------------------------------------


def _flags(ignorecase: bool, multiline: bool) -> int:
    return (re.IGNORECASE if ignorecase else 0) | (re.MULTILINE if multiline else 0)


def regex_search(
    value: Any, pattern: str, *groups: Any, ignorecase: bool = False, multiline: bool = False
) -> Any:
    match = re.search(pattern, str(value), _flags(ignorecase, multiline))
    if match is None:
        return None
    if not groups:
        return match.group(0)
    return [match.group(_group_ref(g)) for g in groups]


def _group_ref(ref: Any) -> int | str:
    """``'\\1'`` → 1 and ``'\\g<name>'`` → ``'name'``, as Ansible's regex_search takes them."""
    if isinstance(ref, str):
        named = re.fullmatch(r"\\g<(\w+)>", ref)
        if named:
            ref = named.group(1)
        elif ref.startswith("\\"):
            ref = ref[1:]
        return int(ref) if ref.isdigit() else ref
    return ref


def regex_replace(
    value: Any,
    pattern: str,
    replacement: str = "",
    ignorecase: bool = False,
    multiline: bool = False,
    count: int = 0,
) -> str:
    return re.sub(pattern, replacement, str(value), count=count, flags=_flags(ignorecase, multiline))


def regex_findall(value: Any, pattern: str, ignorecase: bool = False, multiline: bool = False) -> list[Any]:
    return re.findall(pattern, str(value), _flags(ignorecase, multiline))


def _to_bytes(value: Any, encoding: str = "utf-8") -> bytes:
    return value if isinstance(value, bytes) else str(value).encode(encoding)


def b64encode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64encode(_to_bytes(value, encoding)).decode("ascii")


def b64decode(value: Any, encoding: str = "utf-8") -> str:
    return base64.b64decode(_to_bytes(value)).decode(encoding)


def hash_filter(value: Any, algorithm: str = "sha256") -> str:
    try:
        digest = hashlib.new(algorithm)
    except ValueError:
        raise TemplateError(f"hash: unknown algorithm '{algorithm}'") from None
    digest.update(_to_bytes(value))
    return digest.hexdigest()


def strftime(value: Any, fmt: str = "%Y-%m-%dT%H:%M:%S%z") -> str:
    """Format a datetime, an ISO 8601 string or a Unix timestamp."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value).astimezone()
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value)
    elif isinstance(value, datetime):
        moment = value
    else:
        raise TemplateError(f"strftime: expected a date, got {type(value).__name__}")
    return moment.strftime(fmt)


def to_json(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False, default=str)


def to_yaml(value: Any, indent: int = 2) -> str:
    import yaml

    return yaml.safe_dump(value, indent=indent, sort_keys=False, default_flow_style=False, allow_unicode=True)


def from_yaml(value: str) -> Any:
    import yaml

    return yaml.safe_load(value)


def from_ini(value: str) -> dict[str, dict[str, str]]:
    import configparser  # imported when used: it costs milliseconds at every start

    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(value)
    sections = {name: dict(parser[name]) for name in parser.sections()}
    if parser.defaults():
        sections["DEFAULT"] = dict(parser.defaults())
    return sections


def random_token(nbytes: int = 32) -> str:
    """``nbytes`` random bytes as URL-safe text."""
    return secrets.token_urlsafe(nbytes)


_PASSWORD_ALPHABET = string.ascii_letters + string.digits + string.punctuation


def random_password(length: int = 20) -> str:
    """Exactly ``length`` printable ASCII characters, no spaces."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(length))


def now(utc: bool = False) -> datetime:
    """The current time, timezone-aware (local unless ``utc``)."""
    return datetime.now(timezone.utc) if utc else datetime.now().astimezone()


FILTERS = {
    "quote": lambda value: shlex.quote(str(value)),
    "to_json": to_json,
    "from_json": json.loads,
    "to_yaml": to_yaml,
    "from_yaml": from_yaml,
    "from_ini": from_ini,
    "regex_search": regex_search,
    "regex_replace": regex_replace,
    "regex_findall": regex_findall,
    "b64encode": b64encode,
    "b64decode": b64decode,
    "basename": lambda path: os.path.basename(str(path)),
    "dirname": lambda path: os.path.dirname(str(path)),
    "expanduser": lambda path: os.path.expanduser(str(path)),
    "hash": hash_filter,
    "strftime": strftime,
    "duration": parse_duration,
    "filesize": format_size,
}

TESTS = {
    "match": lambda value, pattern, ignorecase=False, multiline=False: (
        re.match(pattern, str(value), _flags(ignorecase, multiline)) is not None
    ),
    "search": lambda value, pattern, ignorecase=False, multiline=False: (
        re.search(pattern, str(value), _flags(ignorecase, multiline)) is not None
    ),
}

GLOBALS = {"now": now, "random_token": random_token, "random_password": random_password}


@cache
def environment() -> SandboxedEnvironment:
    """The one sandboxed environment: strict undefined, no autoescape, runbook's filters."""
    env = SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=_check_defined,  # an undefined name inside a printed list or dict fails too
        extensions=["jinja2.ext.loopcontrols"],
    )
    env.filters.update(FILTERS)
    env.tests.update(TESTS)
    env.globals.update(GLOBALS)
    return env


# --- rendering -------------------------------------------------------------------------


def single_expression(source: str) -> str | None:
    """The expression of a value that is exactly one ``{{ expr }}``, else None."""
    match = _SINGLE_EXPRESSION.match(source)
    if not match:
        return None
    expr = match.group("expr")
    if "{{" in expr or "}}" in expr or "{%" in expr:
        return None
    return expr


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> jinja2.Template:
    return environment().from_string(source)


@lru_cache(maxsize=4096)
def _compiled_expression(expression: str) -> Any:
    return environment().compile_expression(expression, undefined_to_none=False)


def render(value: Any, context: Mapping[str, Any], path: tuple[str | int, ...] = ()) -> Any:
    """Render every template inside ``value`` (strings, lists, mappings) against ``context``.

    Raises TemplateError with ``.path`` set to where inside ``value`` it failed.
    """
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        return _render_string(value, context, path)
    if isinstance(value, dict):
        return {key: render(item, context, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, context, (*path, index)) for index, item in enumerate(value)]
    return value


def evaluate(expression: Any, context: Mapping[str, Any], path: tuple[str | int, ...] = ()) -> Any:
    """The value of a ``when``/``until``-style expression (braces around it are tolerated)."""
    if isinstance(expression, bool) or expression is None:
        return expression
    source = str(expression)
    if is_template(source):
        return _render_string(source, context, path)
    return _run(lambda: _check_defined(_compiled_expression(source)(context)), path)


def render_text(source: str, context: Mapping[str, Any], name: str = "<template>") -> str:
    """A whole template (a file's text) rendered to text, never to a native value.

    Not cached: a template file is rendered once per step. A failure raises
    TemplateError naming ``name`` and the template's line.
    """
    try:
        template = environment().from_string(source)
        return template.render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"{name}:{exc.lineno}: template syntax error: {exc.message}") from exc
    except Exception as exc:
        line = _template_line(exc.__traceback__)
        raise TemplateError(f"{name}:{line or '?'}: {_failure_message(exc)}") from exc


def _template_line(trace: Any) -> int | None:
    """The line of the template where rendering failed (Jinja rewrites tracebacks to show it)."""
    line = None
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == "<template>":
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


def _render_string(source: str, context: Mapping[str, Any], path: tuple[str | int, ...]) -> Any:
    expression = single_expression(source)
    if expression is not None:
        return _run(lambda: _check_defined(_compiled_expression(expression)(context)), path)
    return _run(lambda: _compiled_template(source).render(context), path)


def _check_defined(value: Any) -> Any:
    """``value``, unless it is or holds an undefined name (``[1, missing]``): then fail."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_defined(item)
    elif isinstance(value, dict):
        for item in value.values():
            _check_defined(item)
    return value


_UNDEFINED_NAME = re.compile(r"^'([^']+)' is undefined$")


def _run(produce: Any, path: tuple[str | int, ...]) -> Any:
    try:
        return produce()
    except Exception as exc:
        raise _template_error(_failure_message(exc), path) from exc


def _failure_message(exc: Exception) -> str:
    """One line for a failed rendering: an undefined name, bad syntax, the sandbox, a filter."""
    if isinstance(exc, jinja2.UndefinedError):
        match = _UNDEFINED_NAME.match(str(exc))
        return f"undefined variable '{match.group(1)}'" if match else str(exc)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"template syntax error: {exc.message}"
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return f"blocked by the template sandbox: {exc}"
    if isinstance(exc, TemplateError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"  # a filter's own failure: from_json on bad text, say


def _template_error(message: str, path: tuple[str | int, ...]) -> TemplateError:
    error = TemplateError(message)
    error.path = path  # type: ignore[attr-defined]
    return error


# --- analysis --------------------------------------------------------------------------


@dataclass
class TemplateRefs:
    """What a template reads, found without running it."""

    names: dict[str, int] = field(default_factory=dict)  # name read without a guard → first line
    steps: set[str] = field(default_factory=set)  # step ids read as steps.<id>, unguarded
    guarded: set[str] = field(default_factory=set)  # names under `is defined` / `| default`
    guarded_steps: set[str] = field(default_factory=set)  # steps.<id> under such a guard


class TemplateSyntax(Exception):
    """A template that does not parse; ``lineno`` is 1-based within the template."""

    def __init__(self, message: str, lineno: int):
        super().__init__(message)
        self.message = message
        self.lineno = lineno


# `{{ name }}` or `{{ name.attr.attr }}`: most templates are only these, and reading them
# needs no parse (a Jinja parse costs about a millisecond; validate reads every template).
_SIMPLE_PRINT = re.compile(r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # as Jinja counts lines
# Words a dotted name may not contain: constants, and Jinja's operators and keywords.
_NOT_NAMES = {
    "true",
    "false",
    "none",
    "True",
    "False",
    "None",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "elif",
    "for",
    "recursive",
    "with",
    "without",
    "context",
    "import",
    "block",
}


def _analyze_simple(source: str) -> TemplateRefs | None:
    """What a template of text and simple ``{{ dotted.names }}`` reads; None for anything else."""
    if "{%" in source or "{#" in source:
        return None
    refs = TemplateRefs()
    for match in _SIMPLE_PRINT.finditer(source):
        name, attrs = match.groups()
        if name in _NOT_NAMES or any(part in _NOT_NAMES for part in attrs.split(".")):
            return None
        refs.names.setdefault(name, len(_NEWLINE.findall(source, 0, match.start())) + 1)
        if name == "steps" and attrs:
            refs.steps.add(attrs.split(".")[1])
    rest = _SIMPLE_PRINT.sub("", source)
    if "{{" in rest or "}}" in rest:
        return None
    return refs


@lru_cache(maxsize=4096)
def analyze(source: str, expression: bool = False) -> TemplateRefs:
    """Parse ``source`` (a template, or a bare expression) and list what it reads."""
    if not expression:
        simple = _analyze_simple(source)
        if simple is not None:
            return simple
    text = source if (not expression or is_template(source)) else "{{ " + source + " }}"
    try:
        tree = environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        message = exc.message or "invalid template"
        if text is not source:  # the braces are ours, not the user's
            message = message.replace("unexpected 'end of print statement'", "the expression ends too early")
            message = message.replace("end of print statement", "end of the expression")
        raise TemplateSyntax(message, exc.lineno or 1) from None
    guarded_names: set[str] = set()
    guarded_steps: set[str] = set()
    for guard in tree.find_all((nodes.Filter, nodes.Test)):
        if guard.name not in (_GUARD_FILTERS if isinstance(guard, nodes.Filter) else _GUARD_TESTS):
            continue
        if guard.node is None:
            continue
        guarded_names.update(n.name for n in _names_in(guard.node))
        guarded_steps.update(_step_ids_in(guard.node))
    try:
        undeclared = meta.find_undeclared_variables(tree) - guarded_names
    except jinja2.TemplateAssertionError as exc:  # an unknown filter or test
        raise TemplateSyntax(_unknown_name_message(exc.message or ""), exc.lineno or 1) from None
    first_line: dict[str, int] = {}
    for name_node in sorted(tree.find_all(nodes.Name), key=lambda n: n.lineno):
        if name_node.name in undeclared:
            first_line.setdefault(name_node.name, name_node.lineno)
    return TemplateRefs(
        names={name: first_line.get(name, 1) for name in undeclared},
        steps=set(_step_ids_in(tree)) - guarded_steps,
        guarded=guarded_names,
        guarded_steps=guarded_steps,
    )


def _unknown_name_message(message: str) -> str:
    """``No filter named 'qoute'.`` → ``no filter named 'qoute'; did you mean 'quote'?``."""
    from runner.diagnostics import did_you_mean

    found = re.match(r"No (filter|test) named '([^']+)'", message)
    if not found:
        return message
    kind, name = found.groups()
    known = environment().filters if kind == "filter" else environment().tests
    hint = did_you_mean(name, known)
    return f"no {kind} named '{name}'" + (f"; {hint}" if hint else "")


def names_read(value: Any) -> set[str]:
    """Top-level names read by the templates anywhere inside ``value`` (lists, mappings)."""
    names: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str) and is_template(item):
            names.update(analyze(item).names)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return names


def _names_in(node: nodes.Node) -> list[nodes.Name]:
    found = [node] if isinstance(node, nodes.Name) else []
    return found + list(node.find_all(nodes.Name))


def _step_ids_in(node: nodes.Node) -> list[str]:
    ids = []
    candidates = [node, *node.find_all((nodes.Getattr, nodes.Getitem))]
    for item in candidates:
        target = getattr(item, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == "steps"):
            continue
        if isinstance(item, nodes.Getattr):
            ids.append(item.attr)
        elif isinstance(item, nodes.Getitem) and isinstance(item.arg, nodes.Const):
            ids.append(str(item.arg.value))
    return ids
