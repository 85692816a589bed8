"""The executor: runs a playbook's steps as one dependency graph, on threads.

Every shape becomes the same graph of *units*. A plain step list is a chain (each
step depends on the one before); with ``needs`` the top-level steps depend on the
steps they name and nothing else; a ``parallel:`` group is a start unit, its members
(which depend only on the start) and an end unit (which depends on every member).
One scheduling loop, in the calling (main) thread, starts every unit whose
predecessors have all ended, and learns of ends through a queue. When a unit fails,
the units that depend on it are not run (in a chain, that is the rest of the run);
units on other branches go on. Then ``on_failure`` (if anything failed), then
``finally`` (always, also after cancellation), each as a chain of its own.

Why threads: steps spend their time waiting for processes, sockets, sleeps and
cloud SDKs, not running Python, and those are blocking APIs. A thread per running
step keeps every handler a plain function, and the GIL costs nothing while threads
wait. Concurrency is capped where handlers run: each attempt takes a slot of
``max_parallel`` and of every enclosing group's ``max_workers`` (groups themselves
take none), and gives them back before a retry's wait. The main thread stays free
for signals: SIGINT/SIGTERM cancel the run (see ``cancel``).

What crosses into a handler is its rendered arguments (plain JSON-able data) and a
``TaskContext``; what comes back is a JSON-able mapping (SPEC §9).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runner.context import run_context, step_context
from runner.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    HandlerError,
    PlaybookError,
    TemplateError,
)
from runner.events import EventBus, NestedEvents
from runner.playbook import Group, Node, Playbook, Step
from runner.registry import Handler, handlers_for
from runner.retry import Failure, RetryPolicy
from runner.taskctx import ProcessGroups, TaskContext, env_text
from runner.templating import evaluate, is_template, render, render_text
from runner.units import format_duration, parse_duration

CANCEL_EXIT_CODES = {"SIGINT": EXIT_SIGINT, "SIGTERM": EXIT_SIGTERM, "timeout": EXIT_FAILED}


@dataclass
class RunOptions:
    dry_run: bool = False
    tags: Sequence[str] = ()
    skip_tags: Sequence[str] = ()
    max_parallel: int | None = None
    cwd: str = field(default_factory=os.getcwd)
    kill_grace: float = 5.0
    trigger: str = "manual"


@dataclass
class RunResult:
    run_id: str
    status: str  # ok, failed, cancelled
    exit_code: int
    duration: float
    steps: dict[str, dict[str, Any]]


@dataclass(eq=False)
class Unit:
    """One node of the graph: a step, or the start or end of a parallel group."""

    kind: str  # "step", "start", "end"
    node: Node
    groups: tuple[Group, ...]  # enclosing groups, outermost first
    preds: set[Unit] = field(default_factory=set)
    succs: list[Unit] = field(default_factory=list)
    outcome: str | None = None  # ok, skipped, failed, blocked, cancelled
    reason: str = ""  # why it was not run, for skipped and blocked units
    start: Unit | None = None  # for a group's end unit: the group's start unit


BLOCKING = ("failed", "blocked", "cancelled")


class Executor:
    def __init__(
        self,
        playbook: Playbook,
        events: EventBus | NestedEvents,
        options: RunOptions | None = None,
        run_id: str | None = None,
        including: tuple[Path, ...] = (),
    ):
        self.playbook = playbook
        self.including = including  # the playbooks that include this one, outermost first
        self.options = options or RunOptions()
        self.run_id = run_id or events.run_id or uuid.uuid4().hex[:12]
        self.events = events
        self.handlers = handlers_for(n.handler for n in playbook.walk() if isinstance(n, Step))
        self.processes = ProcessGroups()
        self.run_end: list[Callable[[], None]] = []  # stops for what steps leave running (serve)
        self.cancel_reason: str | None = None
        self.run_error: str | None = None  # why the run failed outside any step
        self.run_timeout: float | None = None
        self.cancelled = threading.Event()
        self.results: dict[str, dict[str, Any]] = {}  # by step id, for templates
        self._done: queue.Queue[tuple[Unit, dict[str, Any]]] = queue.Queue()
        # The cancel event of each running attempt, with the ids of its enclosing groups.
        self._active: dict[threading.Event, frozenset[int]] = {}
        self._active_lock = threading.Lock()
        self.max_parallel = self.options.max_parallel or (os.cpu_count() or 1) * 4
        self._slots = threading.BoundedSemaphore(self.max_parallel)
        self._group_slots: dict[int, threading.BoundedSemaphore] = {}
        self._cancelled_groups: set[int] = set()  # groups a fail_fast failure stopped
        self.started_at = datetime.now().astimezone()
        self.workers = Workers()
        from runner.checks import combined_schema

        self.schema_checker = combined_schema(self.handlers)[1]

    # -- the run --------------------------------------------------------------------------

    def run_included(
        self, step: Step, path: str, variables: Mapping[str, Any], cancel: threading.Event, dry_run: bool
    ) -> dict[str, Any]:
        """Run another playbook as ``step`` (what ``include`` asks through ``ctx.run_playbook``).

        Its steps' events go out nested under the step's label; cancelling the step
        cancels the included run; its result is every step's result."""
        from runner.playbook import load_playbook

        chain = (*self.including, self.playbook.path.resolve())
        full = (self.playbook.path.parent / os.path.expanduser(path)).resolve()
        if full in chain:
            cycle = " -> ".join(p.name for p in chain[chain.index(full) :])
            raise HandlerError(f"include cycle: {cycle} -> {full.name}")
        if not full.is_file():
            raise HandlerError(f"no playbook {full} (include paths are relative to the including playbook)")
        try:
            included = load_playbook(full, extra_vars=variables, including=chain)
        except PlaybookError as exc:
            more = len(exc.diagnostics) - 1
            raise HandlerError(
                f"{exc.diagnostics[0].format()}" + (f" (and {more} more problems)" if more > 0 else "")
            ) from exc
        nested = Executor(
            included,
            NestedEvents(self.events, _step_ref(step)),
            replace(self.options, dry_run=dry_run),
            run_id=self.run_id,
            including=chain,
        )
        nested.processes = self.processes
        done = threading.Event()

        def pass_cancel() -> None:
            while not done.wait(0.1):
                if cancel.is_set():
                    nested.cancel("cancelled")
                    return

        watcher = threading.Thread(target=pass_cancel, name="include-cancel", daemon=True)
        watcher.start()
        try:
            outcome = nested.run()
        finally:
            done.set()
            watcher.join()
        result = {
            "playbook": included.name,
            "path": str(full),
            "run_status": outcome.status,
            "steps": {key: dict(value) for key, value in outcome.steps.items()},
        }
        if outcome.status != "ok":
            why = _why(nested)
            raise HandlerError(f"the included playbook {included.name} {outcome.status}{why}", result)
        return result

    def _stop_background(self) -> None:
        """Stop what steps left running for the run (``ctx.at_run_end``), last started first."""
        while self.run_end:
            stop = self.run_end.pop()
            try:
                stop()
            except Exception as exc:  # one that fails to stop must not keep the others running
                self.run_error = self.run_error or f"stopping a background task failed: {exc}"

    def run(self) -> RunResult:
        start = time.monotonic()
        self.events.emit(
            "run_started",
            playbook=self.playbook.name,
            path=str(self.playbook.path),
            dry_run=self.options.dry_run,
            trigger=self.options.trigger,
        )
        run_info = {
            "id": self.run_id,
            "playbook": self.playbook.name,
            "started": self.started_at,
            "dry_run": self.options.dry_run,
            "path": str(self.playbook.path),
        }
        failed = False
        try:
            self.base = run_context(
                self.playbook.vars, run_info, env=self.playbook.env, secrets=self.playbook.secrets
            )
        except TemplateError as exc:
            self.run_error = f"{self.playbook.path}: {exc}"
            failed = True
            self.base = run_context({}, run_info, env=self.playbook.env)
        self.base["steps"] = MappingProxyType(self.results)
        deadline = None
        try:
            if self.playbook.max_parallel is not None and not self.options.max_parallel:
                self.max_parallel = _render_int(self.playbook.max_parallel, self.base) or self.max_parallel
                self._slots = threading.BoundedSemaphore(self.max_parallel)
            if self.playbook.timeout is not None:
                self.run_timeout = parse_duration(_render(self.playbook.timeout, self.base))
                deadline = start + self.run_timeout
        except (TemplateError, ValueError) as exc:
            self.run_error = f"{self.playbook.path}: playbook: {exc}"
            failed = True
        if not failed:
            failed = self.run_section(self.playbook.steps, self.playbook.dag, deadline, use_tags=True)
        if failed and self.playbook.on_failure and not self.cancelled.is_set():
            self.run_section(self.playbook.on_failure, False, None)
        if self.playbook.finally_:
            interrupted = self.cancelled.is_set()
            self.cancelled.clear()  # finally runs in full, even after cancellation
            finally_failed = self.run_section(self.playbook.finally_, False, None)
            failed = failed or finally_failed
            if interrupted:
                self.cancelled.set()
        self._stop_background()
        self.workers.close()
        duration = time.monotonic() - start
        if self.cancel_reason in ("SIGINT", "SIGTERM"):
            status, exit_code = "cancelled", CANCEL_EXIT_CODES[self.cancel_reason]
        elif failed or self.cancel_reason == "timeout":
            status, exit_code = "failed", EXIT_FAILED
        else:
            status, exit_code = "ok", EXIT_OK
        if self.cancel_reason == "timeout" and self.run_error is None:
            self.run_error = f"the run timed out after {format_duration(self.run_timeout or 0)}"
        self.events.emit(
            "run_finished",
            status=status,
            exit_code=exit_code,
            duration=duration,
            reason=self.cancel_reason,
            error=self.run_error,
        )
        return RunResult(self.run_id, status, exit_code, duration, dict(self.results))

    def cancel(self, reason: str) -> None:
        """Stop the run: running steps are cancelled, pending ones are not started.

        Safe to call from a signal handler: it only sets events.
        """
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.cancelled.set()
        with self._active_lock:
            for event in self._active:
                event.set()

    # -- scheduling -----------------------------------------------------------------------

    def run_section(
        self, nodes: Sequence[Node], dag: bool, deadline: float | None, use_tags: bool = False
    ) -> bool:
        """Run one section's graph to the end; True if a step in it failed."""
        units = build_graph(nodes, dag)
        self.use_tags = use_tags
        waiting = {u: len(u.preds) for u in units}
        ready = [u for u in units if not u.preds]
        remaining = len(units)
        failed = False
        while remaining:
            for unit in ready:
                self.start(unit)
            ready = []
            if deadline is not None and time.monotonic() >= deadline:
                self.cancel("timeout")
                deadline = None
            try:
                timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
                unit, result = self._done.get(timeout=timeout)
            except queue.Empty:
                continue
            remaining -= 1
            unit.outcome = self.outcome_of(unit, result)
            failed = failed or unit.outcome == "failed"
            if unit.kind == "step" and unit.node.id:
                self.results[unit.node.id] = result
            if (
                unit.outcome == "failed"
                and unit.groups
                and _render_bool(unit.groups[-1].fail_fast, self.base)
            ):
                self.cancel_group(unit.groups[-1])
            for succ in unit.succs:
                waiting[succ] -= 1
                if waiting[succ] == 0:
                    ready.append(succ)
        return failed

    def outcome_of(self, unit: Unit, result: dict[str, Any]) -> str:
        status = result.get("status")
        if status == "failed":
            return "ok" if result.get("ignored") else "failed"
        if status == "cancelled":
            return "cancelled"
        if status == "skipped" and result.get("blocked"):
            return "blocked"
        return "skipped" if status == "skipped" else "ok"

    def start(self, unit: Unit) -> None:
        blocker = next((p for p in unit.preds if p.outcome in BLOCKING), None)
        if unit.kind == "end":
            self._done.put((unit, self.group_result(unit)))
            return
        if blocker is not None or self.cancelled.is_set() or self.group_cancelled(unit):
            self.block(unit, blocker)
            return
        skipped_group = next((p for p in unit.preds if p.kind == "start" and p.outcome == "skipped"), None)
        if skipped_group is not None:  # the group's `when` or tags left it out: its members too
            self.skip(unit, skipped_group.reason)
            return
        if unit.kind == "start":
            self._done.put((unit, self.start_group(unit)))
            return
        self.workers.submit(self.run_unit, unit)

    def block(self, unit: Unit, blocker: Unit | None) -> None:
        """Record a unit that will not run because of a failure or a cancellation."""
        if self.cancelled.is_set():
            reason = f"not run: the run was cancelled ({self.cancel_reason})"
        elif blocker is None:
            reason = "not run: a step of its group failed (fail_fast)"
        else:
            reason = blocker.reason or f"not run: {blocker.node.label} {blocker.outcome}"
        result = _result_record("skipped", 0, 0.0, None, skip_reason=reason)
        result["blocked"] = True
        unit.reason = reason
        if unit.kind == "step":
            self.events.emit(
                "step_finished",
                step=_step_ref(unit.node),
                status=result["status"],
                attempts=0,
                duration=0.0,
                started=None,
                result=result,
                error=None,
            )
        self._done.put((unit, result))

    def skip(self, unit: Unit, reason: str) -> None:
        """Record a unit left out with its group (not a failure: dependents still run)."""
        unit.reason = reason
        result = _result_record("skipped", 0, 0.0, None, skip_reason=reason)
        if unit.kind == "step":
            self.events.emit(
                "step_finished",
                step=_step_ref(unit.node),
                status="skipped",
                attempts=0,
                duration=0.0,
                started=None,
                result=result,
                error=None,
            )
        self._done.put((unit, result))

    def start_group(self, unit: Unit) -> dict[str, Any]:
        group = unit.node
        assert isinstance(group, Group)
        try:
            skip = self.skip_reason(group, unit.groups)
        except TemplateError as exc:
            error = f"{group.source.key((*group.path, 'when'))}: {group.where(('when',))}: {exc}"
            return _result_record("failed", 0, 0.0, None, error=error)
        if skip:
            unit.reason = f"group skipped: {skip}"
            return _result_record("skipped", 0, 0.0, None, skip_reason=skip)
        workers = _render_int(group.max_workers, self.base)
        if workers:
            self._group_slots[id(group)] = threading.BoundedSemaphore(workers)
        return _result_record("ok", 0, 0.0, None)

    def group_result(self, unit: Unit) -> dict[str, Any]:
        group = unit.node
        members = list(unit.preds)
        outcomes = {p.outcome for p in members}
        start = unit.start
        if start is not None and start.outcome == "failed":
            status = "failed"
        elif start is not None and start.outcome in ("skipped", "blocked"):
            status = "skipped"
        elif "failed" in outcomes:
            status = "failed"
        elif "cancelled" in outcomes:
            status = "cancelled"
        elif "blocked" in outcomes:
            status = "skipped"
        else:
            status = "ok"
        result = _result_record(status, 0, 0.0, None)
        if status == "skipped" and (start is None or start.outcome == "blocked" or "blocked" in outcomes):
            result["blocked"] = True
            unit.reason = next((p.reason for p in members if p.reason), "")
        if group.id:
            self.results[group.id] = result
        return result

    def group_cancelled(self, unit: Unit) -> bool:
        return any(id(g) in self._cancelled_groups for g in unit.groups)

    def cancel_group(self, group: Group) -> None:
        """fail_fast: stop the group's running members; pending ones will not start."""
        self._cancelled_groups.add(id(group))
        with self._active_lock:
            for event, group_ids in self._active.items():
                if id(group) in group_ids:
                    event.set()

    def skip_reason(
        self,
        node: Node,
        groups: Sequence[Group],
        check_when: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Why a node is skipped before it starts (tags, ``when``), or None.

        A looped step's ``when`` is checked per item (it may read ``item``), as Ansible does.
        """
        if self.use_tags and not self.selected_by_tags(node, groups):
            return "not selected by --tags/--skip-tags"
        context = context if context is not None else self.base
        if check_when and node.when is not None and not evaluate(node.when, context, ("when",)):
            return f"when: {node.when}"
        return None

    def selected_by_tags(self, node: Node, groups: Sequence[Group]) -> bool:
        tags = set(node.tags).union(*(g.tags for g in groups)) if groups else set(node.tags)
        if tags & set(self.options.skip_tags):
            return False
        if not self.options.tags:
            return True
        return bool(tags & set(self.options.tags)) or "always" in tags

    # -- one step -------------------------------------------------------------------------

    def run_unit(self, unit: Unit) -> None:
        step = unit.node
        assert isinstance(step, Step)
        try:
            result = self.run_step(step, unit.groups)
        except Exception as exc:  # a bug in the engine must still end the unit
            result = _result_record(
                "failed", 0, 0.0, None, error=f"internal error: {type(exc).__name__}: {exc}"
            )
        self._done.put((unit, result))

    def run_step(self, step: Step, groups: tuple[Group, ...]) -> dict[str, Any]:
        started = datetime.now().astimezone()
        clock = time.monotonic()
        ref = _step_ref(step)
        try:
            skip = self.skip_reason(step, groups, check_when=step.loop is None)
        except TemplateError as exc:
            skip = None
            error = str(step.template_error(exc))
            result = _result_record("failed", 0, 0.0, started, error=error)
            return self.finish(step, result, clock)
        if skip:
            result = _result_record("skipped", 0, 0.0, started, skip_reason=skip)
            return self.finish(step, result, clock)
        self.events.emit("step_started", step=ref)
        if step.loop is not None:
            result = self.run_loop(step, groups, started)
        else:
            result = self.run_attempts(step, groups, step_context(self.base), started)
        return self.finish(step, result, clock)

    def finish(self, step: Step, result: dict[str, Any], clock: float) -> dict[str, Any]:
        result["duration"] = time.monotonic() - clock
        if result["status"] == "failed" and _render_bool(step.continue_on_error, self.base):
            result["ignored"] = True
        self.events.emit(
            "step_finished",
            step=_step_ref(step),
            status=result["status"],
            attempts=result["attempts"],
            duration=result["duration"],
            started=result["started"],
            result=result,
            error=result.get("error"),
        )
        return result

    def run_loop(self, step: Step, groups: tuple[Group, ...], started: datetime) -> dict[str, Any]:
        context = step_context(self.base)
        try:
            items = render(step.loop, context, ("loop",))
            parallel = _render_int(step.loop_parallel, context) or 1
        except TemplateError as exc:
            return _result_record("failed", 0, 0.0, started, error=str(step.template_error(exc)))
        if isinstance(items, dict):
            items = [{"key": k, "value": v} for k, v in items.items()]
        if not isinstance(items, list):
            return _result_record(
                "failed",
                0,
                0.0,
                started,
                error=f"{step.locate(('loop',))}: {step.where(('loop',))}: "
                f"loop must give a list, got {type(items).__name__}",
            )

        def one(index: int) -> dict[str, Any]:
            loop = {
                "index": index + 1,
                "index0": index,
                "first": index == 0,
                "last": index == len(items) - 1,
                "length": len(items),
            }
            item_context = step_context(self.base, item=items[index], loop=loop)
            item_started = datetime.now().astimezone()
            try:
                skip = self.skip_reason(step, groups, context=item_context) if step.when is not None else None
            except TemplateError as exc:
                return {
                    **_result_record("failed", 0, 0.0, item_started, error=str(step.template_error(exc))),
                    "item": items[index],
                }
            if skip:
                return {
                    **_result_record("skipped", 0, 0.0, item_started, skip_reason=skip),
                    "item": items[index],
                }
            outcome = self.run_attempts(step, groups, item_context, item_started)
            outcome["item"] = items[index]
            return outcome

        if parallel > 1 and len(items) > 1:
            with ThreadPoolExecutor(
                max_workers=min(parallel, len(items)), thread_name_prefix=f"loop-{step.label}"
            ) as pool:
                results = list(pool.map(one, range(len(items))))
        else:
            results = []
            for index in range(len(items)):
                if self.cancelled.is_set():
                    break
                results.append(one(index))
        statuses = {r["status"] for r in results}
        if "failed" in statuses:
            status = "failed"
        elif "cancelled" in statuses or len(results) < len(items):
            status = "cancelled"
        elif "changed" in statuses:
            status = "changed"
        elif results and statuses == {"skipped"}:
            status = "skipped"
        else:
            status = "ok"
        failures = [r for r in results if r["status"] == "failed"]
        error = None
        if failures:
            error = f"{len(failures)} of {len(items)} items failed; first: {failures[0]['error']}"
        record = _result_record(
            status, max((r["attempts"] for r in results), default=0), 0.0, started, error=error
        )
        record["results"] = results
        return record

    def run_attempts(
        self, step: Step, groups: tuple[Group, ...], context: dict[str, Any], started: datetime
    ) -> dict[str, Any]:
        """The retry loop of one step (or one loop item)."""
        handler = self.handlers[step.handler]
        try:
            policy = RetryPolicy.from_options(
                render(step.retry, context, ("retry",)), has_until=step.until is not None
            )
            timeout = _duration(step.timeout, context)
            env = {**self.base["run_env"], **{k: env_text(v) for k, v in render(step.env, context).items()}}
        except (TemplateError, ValueError) as exc:
            error = str(step.template_error(exc)) if isinstance(exc, TemplateError) else str(exc)
            return _result_record("failed", 0, 0.0, started, error=error)
        history: list[dict[str, Any]] = []
        attempt = 0
        while True:
            attempt += 1
            begin = time.monotonic()
            result, failure = self.attempt(
                step, handler, groups, {**context, "attempt": attempt}, timeout, env
            )
            history.append(
                {
                    "attempt": attempt,
                    "status": result["status"],
                    "error": result.get("error"),
                    "duration": time.monotonic() - begin,
                }
            )
            if failure is None or attempt >= policy.attempts or self.cancelled.is_set():
                break
            if result["status"] == "cancelled" or not policy.retries(failure):
                break
            wait = policy.wait_before(attempt)
            self.events.emit(
                "step_retry",
                step=_step_ref(step),
                attempt=attempt,
                attempts=policy.attempts,
                error=failure.error,
                wait=wait,
            )
            if self.cancelled.wait(wait):
                break
        result["attempts"] = attempt
        result["started"] = started.isoformat(timespec="milliseconds")
        if attempt > 1:
            result["history"] = history
        return result

    def attempt(
        self,
        step: Step,
        handler: Handler,
        groups: tuple[Group, ...],
        context: dict[str, Any],
        timeout: float | None,
        env: dict[str, str],
    ) -> tuple[dict[str, Any], Failure | None]:
        """One call of the handler, with its verdict: (result, failure or None)."""
        try:
            args = self.render_args(step, handler, context)
        except TemplateError as exc:
            return _result_record("failed", 1, 0.0, None, error=str(exc)), Failure(str(exc))
        except HandlerError as exc:
            return _result_record("failed", 1, 0.0, None, error=str(exc)), Failure(str(exc))
        dry_run = self.options.dry_run and step.dry_run != "run"
        cancel = threading.Event()
        group_ids = frozenset(id(g) for g in groups)
        task = TaskContext(
            step_label=step.label,
            dry_run=dry_run,
            cwd=self.options.cwd,
            playbook_dir=str(self.playbook.path.resolve().parent),
            env=env,
            cancel_event=cancel,
            processes=self.processes,
            kill_grace=self.options.kill_grace,
            emit_output=lambda line, stream: self.emit_output(step, line, stream),
            emit_progress=lambda done, total: self.events.progress(_step_ref(step), done, total),
            evaluator=lambda expression: evaluate(expression, {**context, "steps": self.base["steps"]}),
            renderer=lambda text, extra, name: render_text(
                text, {**context, "steps": self.base["steps"], **extra}, name
            ),
            run_end=self.run_end,
            includer=lambda path, variables: self.run_included(step, path, variables, cancel, dry_run),
        )
        timed_out = threading.Event()
        timer = None
        if timeout is not None:

            def expire() -> None:
                timed_out.set()
                cancel.set()

            timer = threading.Timer(timeout, expire)
            timer.daemon = True
        slots = [self._group_slots[id(g)] for g in groups if id(g) in self._group_slots]
        for slot in slots:
            slot.acquire()
        self._slots.acquire()
        with self._active_lock:
            self._active[cancel] = group_ids
        if self.cancelled.is_set():
            cancel.set()
        raw: Any = None
        error: str | None = None
        try:
            if timer is not None:
                timer.start()
            if not cancel.is_set():
                raw = handler.run(args, task)
        except HandlerError as exc:
            raw, error = exc.result, str(exc)
        except Exception as exc:  # a handler's own bug: report it as this step's failure
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if timer is not None:
                timer.cancel()
            with self._active_lock:
                self._active.pop(cancel, None)
            self._slots.release()
            for slot in reversed(slots):
                slot.release()
        if raw is not None and not isinstance(raw, dict):
            raw, error = {}, f"handler '{handler.name}' returned {type(raw).__name__}, not a mapping"
        result = dict(raw or {})
        if timed_out.is_set():
            error = f"timed out after {format_duration(timeout or 0)}"
            result["timed_out"] = True
            status = "failed"
        elif cancel.is_set() and (self.cancelled.is_set() or group_ids & self._cancelled_groups):
            error = "cancelled" + (f" ({self.cancel_reason})" if self.cancel_reason else "")
            status = "cancelled"
        elif error is not None:
            status = "failed"
        elif result.get("skip_reason"):  # the handler found nothing to do (creates/removes)
            status = "skipped"
        else:
            status = "changed" if result.get("changed") else "ok"
        if status in ("ok", "changed", "failed") and not dry_run:
            try:
                status, error = self.verdict(step, {**context, "result": result}, status, error)
            except TemplateError as exc:
                status, error = "failed", str(step.template_error(exc))
        record = {**result, **_result_record(status, 1, 0.0, None, error=error)}
        if status == "changed" or (status == "failed" and result.get("changed")):
            record["changed"] = True
        if dry_run:
            record["dry_run"] = result.get("dry_run") or _dry_run_verdict(result)
            record["verdict"] = _dry_run_verdict(result)
            record["args"] = handler.redact(args) if handler.redact else args
        failure = None
        if status == "failed":
            failure = Failure(error or "failed", timed_out=timed_out.is_set(), result=result)
        return record, failure

    def emit_output(self, step: Step, line: str, stream: str) -> None:
        self.events.emit("step_output", step=_step_ref(step), stream=stream, line=line)

    def verdict(
        self, step: Step, context: dict[str, Any], status: str, error: str | None
    ) -> tuple[str, str | None]:
        """Apply ``changed_when``, ``failed_when`` and ``until`` to one attempt."""
        if step.changed_when is not None and status != "failed":
            status = "changed" if evaluate(step.changed_when, context, ("changed_when",)) else "ok"
        if step.failed_when is not None:
            if evaluate(step.failed_when, context, ("failed_when",)):
                return "failed", error or f"failed_when is true: {step.failed_when}"
            if status == "failed":
                status, error = "ok", None
        if step.until is not None and status != "failed" and not evaluate(step.until, context, ("until",)):
            return "failed", f"until is not true yet: {step.until}"
        return status, error

    def render_args(self, step: Step, handler: Handler, context: Mapping[str, Any]) -> Any:
        args = step.args
        if isinstance(args, dict) and handler.unrendered:
            kept = {k: args[k] for k in handler.unrendered if k in args}
            rest = {k: v for k, v in args.items() if k not in kept}
            rendered = {**step.render_args(context, rest), **kept}
        else:
            rendered = step.render_args(context)
        if _has_template(args):
            rendered = handler.normalize(rendered)
            problems = self.schema_checker.check(rendered, handler.schema)
            if problems:
                first = problems[0]
                inner = (step.handler, *first.path)
                raise HandlerError(
                    f"{step.locate(inner)}: {step.where(inner)}: {first.message} "
                    "(after rendering its templates)"
                )
        return rendered


class Workers:
    """Daemon threads reused from step to step; a new one starts only when none is idle.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, so one handler
    stuck in a blocking call would keep runbook from exiting after a cancelled run, and
    its fixed size would let steps waiting out a retry delay hold back steps ready to run.
    """

    def __init__(self) -> None:
        self._tasks: queue.SimpleQueue[tuple[Any, tuple[Any, ...]] | None] = queue.SimpleQueue()
        self._idle = 0
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, function: Any, *args: Any) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1
        self._tasks.put((function, args))
        if spawn:
            threading.Thread(target=self._work, daemon=True, name="runbook-step").start()

    def close(self) -> None:
        """The run is over: idle threads end now, busy ones when their step returns.

        A process that goes on after the run (the scheduler's launcher warms itself up
        with one) is then left with no thread of the run's, so it can fork safely."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._tasks.put(None)

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            function, args = task
            try:
                function(*args)
            finally:
                with self._lock:
                    closed = self._closed
                    if not closed:
                        self._idle += 1
            if closed:
                return


# -- the graph ------------------------------------------------------------------------------


def build_graph(nodes: Sequence[Node], dag: bool) -> list[Unit]:
    """Units for ``nodes`` with their edges (see the module docstring)."""
    units: list[Unit] = []

    def link(pred: Unit, succ: Unit) -> None:
        succ.preds.add(pred)
        pred.succs.append(succ)

    def expand(node: Node, groups: tuple[Group, ...]) -> tuple[Unit, Unit]:
        """Units of ``node``; returns (entry, exit)."""
        if isinstance(node, Step):
            unit = Unit("step", node, groups)
            units.append(unit)
            return unit, unit
        start, end = Unit("start", node, groups), Unit("end", node, groups)
        end.start = start
        units.append(start)
        inner = (*groups, node)
        for member in node.steps:
            entry, exit_ = expand(member, inner)
            link(start, entry)
            link(exit_, end)
        if not node.steps:
            link(start, end)
        units.append(end)
        return start, end

    spans = [expand(node, ()) for node in nodes]
    if dag:
        exits = {node.id: span[1] for node, span in zip(nodes, spans, strict=True) if node.id}
        for node, (entry, _) in zip(nodes, spans, strict=True):
            for name in node.needs:
                link(exits[name], entry)
    else:
        for (_, previous_exit), (entry, _) in itertools.pairwise(spans):
            link(previous_exit, entry)
    return units


# -- helpers --------------------------------------------------------------------------------


def _why(run: Executor) -> str:
    """``: step X: its error``, for the first failure of a run that failed."""
    if run.run_error:
        return f": {run.run_error}"
    for key, result in run.results.items():
        if result.get("status") == "failed" and not result.get("ignored"):
            return f": step {key}: {result.get('error')}"
    return ""


def _step_ref(node: Node) -> dict[str, Any]:
    return {"id": node.id, "label": node.label}


def _result_record(
    status: str,
    attempts: int,
    duration: float,
    started: datetime | None,
    error: str | None = None,
    skip_reason: str | None = None,
) -> dict[str, Any]:
    record = {
        "status": status,
        "ok": status in ("ok", "changed"),
        "changed": status == "changed",
        "failed": status == "failed",
        "skipped": status == "skipped",
        "attempts": attempts,
        "duration": duration,
        "started": started.isoformat(timespec="milliseconds") if started else None,
        "error": error,
    }
    if skip_reason:
        record["skip_reason"] = skip_reason
    return record


def _dry_run_verdict(result: Mapping[str, Any]) -> str:
    changed = result.get("changed")
    return "would change" if changed else "no change" if changed is False else "unknown"


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    return render(value, context) if is_template(value) else value


def _render_int(value: Any, context: Mapping[str, Any] | None = None) -> int | None:
    if value is None:
        return None
    value = _render(value, context or {})
    return int(value)


def _render_bool(value: Any, context: Mapping[str, Any]) -> bool:
    if isinstance(value, str):
        value = _render(value, context)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "yes", "1", "on")
    return bool(value)


def _duration(value: Any, context: Mapping[str, Any]) -> float | None:
    if value is None:
        return None
    return parse_duration(_render(value, context))
