"""What a handler receives besides its arguments: the run context ``ctx`` (SPEC §8).

``ctx.log(message)``, ``ctx.output(line, stream)``, ``ctx.dry_run``, ``ctx.cancelled()``,
``ctx.wait(seconds)``, ``ctx.cwd``, ``ctx.playbook_dir`` (the folder of the step's playbook
file), ``ctx.env`` (variables to add to the environment of
processes: the playbook's and the step's ``env``),
``ctx.evaluate(expression)`` (for arguments the handler polls, such as ``wait.until``),
``ctx.render(text, extra_vars, name)`` (a whole template, such as the file ``template``
reads, over the run's context plus ``extra_vars``; errors name ``name`` and the line) and
``ctx.processes`` (where a handler registers the process groups it starts, so the engine
can kill them when it must exit at once).

Nothing here is handler-specific, and all a handler returns is a JSON-able mapping.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


def env_text(value: Any) -> str:
    """How a YAML value reads as an environment variable: true/false, numbers, "" for null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


class ProcessGroups:
    """The process groups of running steps, so a second Ctrl-C can kill them all at once."""

    def __init__(self) -> None:
        self._groups: set[int] = set()
        self._lock = threading.Lock()

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        with self._lock:
            groups = list(self._groups)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)


@dataclass
class TaskContext:
    """One attempt's view of the run. ``cancel_event`` is set on timeout or cancellation."""

    step_label: str
    dry_run: bool = False
    cwd: str = field(default_factory=os.getcwd)
    playbook_dir: str | None = None  # the folder of the playbook file the step is in
    env: dict[str, str] = field(default_factory=dict)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    processes: ProcessGroups = field(default_factory=ProcessGroups)
    kill_grace: float = 5.0
    emit_output: Callable[[str, str], None] = lambda line, stream: None
    emit_progress: Callable[[int, int], None] = lambda done, total: None
    evaluator: Callable[[Any], Any] | None = None
    renderer: Callable[[str, Mapping[str, Any], str], str] | None = None
    run_end: list[Callable[[], None]] = field(default_factory=list)
    includer: Callable[[str, Mapping[str, Any]], dict[str, Any]] | None = None

    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True if cancelled meanwhile (stop working then)."""
        return self.cancel_event.wait(max(0.0, seconds))

    def log(self, message: str) -> None:
        self.emit_output(message, "log")

    def output(self, line: str, stream: str = "stdout") -> None:
        self.emit_output(line, stream)

    def progress(self, done: int, total: int) -> None:
        """Bytes done out of ``total``: a progress bar on a terminal, nothing elsewhere."""
        self.emit_progress(done, total)

    def evaluate(self, expression: Any) -> Any:
        """The value of an expression over the run's context, now (re-read at every call)."""
        if self.evaluator is None:
            raise RuntimeError("this context cannot evaluate expressions")
        return self.evaluator(expression)

    def run_playbook(self, path: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Run another playbook (relative to this one) as this step, with ``variables``;
        return its steps' results. Its steps appear nested in the run's output."""
        if self.includer is None:
            raise RuntimeError("this context cannot run playbooks")
        return self.includer(path, variables or {})

    def at_run_end(self, stop: Callable[[], None]) -> None:
        """Call ``stop`` when the run ends (after ``finally``, also after a failure or a
        cancellation): how a handler leaves something running for the rest of the run."""
        self.run_end.append(stop)

    def render(self, text: str, extra_vars: Mapping[str, Any] | None = None, name: str = "<template>") -> str:
        """``text`` rendered as a Jinja template over the run's context plus ``extra_vars``.

        Raises TemplateError naming ``name`` (the template's file) and the line that failed.
        """
        if self.renderer is None:
            raise RuntimeError("this context cannot render templates")
        return self.renderer(text, extra_vars or {}, name)
