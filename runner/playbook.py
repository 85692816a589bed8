"""A loaded, validated playbook: plain data the executor consumes without re-parsing.

``load_playbook`` is the load stage: read the YAML with positions, gather variables
(playbook ``vars`` < ``vars_files`` < ``--vars-file`` < ``-e``), check everything
(``runner.checks``) and return a ``Playbook`` of ``Step``s and ``Group``s, or raise a
``PlaybookError`` holding every problem found.

Values inside steps stay unrendered: templates are rendered lazily by the executor,
right before a step runs (``Step.render_args``). Every step keeps its place in the
file so later errors point into it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from runner.diagnostics import Position
from runner.errors import TemplateError
from runner.loader import JsonPath, SourceMap

SECTIONS = ("steps", "on_failure", "finally")


def format_path(path: JsonPath) -> str:
    """``("steps", 2, "parallel", "steps", 0)`` → ``steps[2].parallel.steps[0]``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def describe_step(kind: str, label: Any, path: JsonPath, inner: JsonPath = ()) -> str:
    """How messages name a step: ``step 'upload' (s3_upload.bucket)`` or ``step steps[3]``."""
    text = f"{kind} '{label}'" if isinstance(label, str) and label else f"{kind} {format_path(path)}"
    if inner:
        text += f" ({format_path(inner)})"
    return text


@dataclass
class Step:
    """One handler call, with the step keys of SPEC §2 (defaults already merged)."""

    path: JsonPath
    section: str
    handler: str
    args: Any
    source: SourceMap
    id: str | None = None
    name: str | None = None
    when: Any = None
    loop: Any = None
    loop_parallel: Any = None
    needs: list[str] = field(default_factory=list)
    retry: dict[str, Any] | None = None
    until: Any = None
    timeout: Any = None
    continue_on_error: Any = False
    failed_when: Any = None
    changed_when: Any = None
    env: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    dry_run: str | None = None

    @property
    def position(self) -> Position:
        return self.source.key(self.path)

    @cached_property
    def label(self) -> str:
        return self.name or self.id or short_label(self.handler, self.args)

    def where(self, inner: JsonPath = ()) -> str:
        """``step 'upload' (s3_upload.bucket)`` for an argument path inside the step."""
        return describe_step("step", self.id or self.name, self.path, inner)

    def locate(self, inner: JsonPath = ()) -> Position:
        return self.source.key((*self.path, *inner))

    def render_args(self, context: Mapping[str, Any], args: Any = None) -> Any:
        """The handler's arguments (or a part of them) with every template rendered."""
        from runner.templating import render

        try:
            return render(self.args if args is None else args, context, (self.handler,))
        except TemplateError as exc:
            raise self.template_error(exc) from exc

    def template_error(self, exc: TemplateError) -> TemplateError:
        """``exc`` restated with the file position and the step's name."""
        inner = getattr(exc, "path", ())
        return TemplateError(f"{self.locate(inner)}: {self.where(inner)}: {exc}")


@dataclass
class Group:
    """A ``parallel:`` group: its steps run concurrently, at most ``max_workers`` at once."""

    path: JsonPath
    section: str
    source: SourceMap
    steps: list[Node]
    id: str | None = None
    name: str | None = None
    when: Any = None
    needs: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    max_workers: Any = None
    fail_fast: Any = False

    @property
    def position(self) -> Position:
        return self.source.key(self.path)

    @property
    def label(self) -> str:
        return self.name or self.id or f"parallel ({len(self.steps)} steps)"

    def where(self, inner: JsonPath = ()) -> str:
        return describe_step("group", self.id or self.name, self.path, inner)

    def walk(self) -> Iterator[Node]:
        for step in self.steps:
            yield step
            if isinstance(step, Group):
                yield from step.walk()


Node = Step | Group


@dataclass
class Playbook:
    """A validated playbook. ``dag`` is true when any top-level step uses ``needs``."""

    path: Path
    name: str
    source: SourceMap
    steps: list[Node]
    on_failure: list[Node] = field(default_factory=list)
    finally_: list[Node] = field(default_factory=list)
    description: str = ""
    vars: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # plaintext: never printed, only masked
    env: dict[str, Any] = field(default_factory=dict)  # unrendered, as written
    defaults: dict[str, Any] = field(default_factory=dict)
    max_parallel: Any = None
    timeout: Any = None
    schedule: str | None = None
    timezone: str | None = None
    overlap: str = "skip"
    jitter: Any = None
    catch_up: bool = False
    dag: bool = False

    def section(self, name: str) -> list[Node]:
        return {"steps": self.steps, "on_failure": self.on_failure, "finally": self.finally_}[name]

    def walk(self, sections: Sequence[str] = SECTIONS) -> Iterator[Node]:
        """Every step and group, depth first, in file order."""
        for name in sections:
            for node in self.section(name):
                yield node
                if isinstance(node, Group):
                    yield from node.walk()

    def find(self, step_id: str) -> Node | None:
        return next((n for n in self.walk() if n.id == step_id), None)


_URL_PASSWORD = re.compile(r"(//[^/@:\s]*:)[^/@\s]*@")
_SECRET_QUERY = re.compile(
    r"([?&][^=&#\s]*(?:token|secret|passw|key|signature|auth|session|credential)[^=&#\s]*=)[^&#\s]*",
    re.IGNORECASE,
)


def _masked_url_secrets(text: str) -> str:
    """A URL's password and secret-looking query values as ``***``: labels print everywhere."""
    return _SECRET_QUERY.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def short_label(handler: str, args: Any, width: int = 48) -> str:
    """``shell: df -h`` — the handler and a short form of its main argument."""
    if isinstance(args, dict):
        main = next((v for v in args.values() if isinstance(v, (str, int, float, list))), None)
    else:
        main = args
    if isinstance(main, list):
        main = " ".join(str(part) for part in main)
    if main is None:
        return handler
    text = _masked_url_secrets(" ".join(str(main).split()))
    if len(text) > width:
        text = text[: width - 1] + "…"
    return f"{handler}: {text}"


def load_playbook(
    path: str | Path,
    cli_vars: Sequence[str] = (),
    vars_files: Sequence[str | Path] = (),
    text: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    including: tuple[Path, ...] = (),
) -> Playbook:
    """Load and check a playbook file (or ``text``, its content read earlier); raise
    PlaybookError listing every problem. ``extra_vars`` and ``including``: see ``include``."""
    from runner.checks import check_playbook

    return check_playbook(Path(path), cli_vars, [Path(p) for p in vars_files], text, extra_vars, including)
