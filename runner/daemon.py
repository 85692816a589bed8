"""``runbook schedule``: run playbooks on their schedules until stopped (SPEC §7).

One loop in the main thread starts runs when they come due, waits for them, and
handles signals; nothing else decides. Each run is a process of its own (trigger
``schedule``), so a crash or a hang in a run cannot stop the daemon. Runs are forked by
the launcher (``runner.launcher``), a process that holds runbook and the playbooks
loaded: a run starts in a millisecond or two, not in the half second a new interpreter
takes.

Every run is recorded: the run sends its history writes over a pipe
(``runner.historypipe``) and one writer thread here commits them in batches; if a run
dies without finishing its row (SIGKILL, a crash), the daemon completes the row from
the exit status; a run not started because the last one still runs
(``overlap: skip``) is recorded as ``skipped``. A run is logged as finished once its
row is committed. A child still running well past its
playbook's ``timeout`` (the run cancels itself at the timeout) is killed and recorded
as failed.

Signals: SIGTERM or SIGINT stop new starts, give running children ``--grace`` seconds
to finish, then cancel them (SIGTERM: they run ``finally`` and record themselves),
kill what is left 10 s later, and exit 0. SIGHUP reloads the playbook files; a file
that no longer loads keeps its old version, and the error is logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import selectors
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.errors import PlaybookError, RunbookError, UsageError
from runner.events import epoch_of, now_iso
from runner.history import History
from runner.historypipe import HistoryWriter, RunPipe, open_run_pipe
from runner.launcher import Launcher
from runner.masking import SECRETS
from runner.playbook import Playbook, load_playbook
from runner.schedules import Schedule, ScheduleError, parse_schedule
from runner.units import format_duration, parse_duration

KILL_AFTER = 10.0  # seconds between cancelling a run (SIGTERM) and killing it (SIGKILL)
# A run cancels itself at its timeout and kills its steps' processes 5 s later; one still
# there this long after the timeout is hung (stopped, or stuck in the kernel): it is killed.
HUNG_AFTER = 10.0
MAX_SLEEP = 1.0  # the loop wakes at least this often, so a lost wake-up costs at most this
# A run's process has exited but something it started still holds its history pipe open:
# what arrived is recorded, and the run counts as finished this long after the exit.
PIPE_LINGER = 2.0
# The history writes gathered by the loop go to the writer thread at most this often: each
# hand-over wakes the thread, and the two then trade the interpreter's lock, which costs
# the loop more than the writes do.
HAND_OVER_EVERY = 0.2


@dataclass
class Child:
    """One run in progress: its process and what the daemon knows of it."""

    run_id: str
    pipe: RunPipe  # the history writes the run sends
    planned: float  # when the run was due (epoch seconds), jitter included
    due: float
    asked: float  # monotonic time the launcher was asked to start it
    deadline: float | None = None  # monotonic time past which it is killed
    pid: int | None = None  # known once the launcher has forked it
    exit_code: int | None = None  # minus the signal number if a signal ended it
    exited_at: float | None = None  # monotonic
    started_row: bool = False  # the run wrote its history row
    final: dict[str, Any] | None = None  # how the run recorded its end
    killed_for: str | None = None  # why the daemon killed it
    orphan: bool = False  # its launcher died: no exit will be reported, the pipe's end tells


@dataclass
class Entry:
    """One scheduled playbook."""

    path: Path
    text: str
    playbook: Playbook
    schedule: Schedule
    resolved: str = ""  # the absolute path, as the history records it
    jitter: float = 0.0
    timeout: float | None = None
    children: list[Child] = field(default_factory=list)
    queued: float | None = None  # planned time of the one run waiting (overlap: queue)
    launch_at: list[tuple[float, float]] = field(default_factory=list)  # (start, due): waiting out jitter
    last_status: str | None = None
    last_duration: float | None = None
    last_run_id: str | None = None
    consecutive_failures: int = 0

    @property
    def name(self) -> str:
        return self.playbook.name

    @property
    def overlap(self) -> str:
        return self.playbook.overlap

    def state(self) -> dict[str, Any]:
        """What /healthz tells of this schedule."""
        return {
            "playbook": self.name,
            "path": str(self.path),
            "schedule": self.schedule.text,
            "timezone": self.schedule.timezone,
            "overlap": self.overlap,
            "next_run": self.schedule.next_run_iso(),
            "running": [child.run_id for child in self.children],
            "last_run": self.last_run_id,
            "last_status": self.last_status,
            "last_duration": self.last_duration,
            "consecutive_failures": self.consecutive_failures,
        }


def load_entry(path: Path) -> Entry:
    """Read, check and parse one playbook file; raise PlaybookError or ScheduleError."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the playbook: {exc.strerror or exc}") from exc
    playbook = load_playbook(path, text=text)
    if not playbook.schedule:
        raise ScheduleError(
            f'{path}: the playbook has no schedule: (add one, such as schedule: "every 5 minutes")'
        )
    schedule = parse_schedule(playbook.schedule, playbook.timezone)
    schedule.spread(playbook.name)
    return Entry(
        path=path,
        text=text,
        playbook=playbook,
        schedule=schedule,
        resolved=str(path.resolve()),
        jitter=_seconds(playbook.jitter),
        timeout=_seconds(playbook.timeout) or None,
    )


def _seconds(value: Any) -> float:
    if value is None:
        return 0.0
    try:
        return parse_duration(value)
    except ValueError:
        return 0.0  # a templated value: rendered by the run itself, unknown to the daemon


class Logger:
    """One line per event on stderr: plain text, or JSON objects (``--log-format json``)."""

    def __init__(self, fmt: str = "plain", stream: Any = None):
        self.fmt = fmt
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()

    def __call__(self, event: str, message: str, **fields: Any) -> None:
        message = SECRETS.text(message)
        if self.fmt == "json":
            line = json.dumps({"time": now_iso(), "event": event, **fields, "message": message}, default=str)
        else:
            line = f"{now_iso()} {message}"
        with self.lock:
            self.stream.write(line + "\n")
            self.stream.flush()


class Daemon:
    def __init__(
        self,
        files: Sequence[str],
        grace: float = 30.0,
        unhealthy_after: int = 3,
        log: Logger | None = None,
    ):
        self.files = [Path(f) for f in files]
        self.grace = grace
        self.unhealthy_after = unhealthy_after
        self.log = log or Logger()
        self.entries: list[Entry] = []
        self.started = time.time()
        self.stopping = False
        self.stop_signal = ""
        self.reload_requested = False
        self.lock = threading.Lock()  # guards what the HTTP threads read: entries and their state
        self.history = History()  # read by this thread; written by ``writer``
        self.history.mark_interrupted()
        self.writer: HistoryWriter | None = None
        self.launcher: Launcher | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        # What the loop waits on: the wake-up pipe, the launcher, and each run's history pipe.
        self.selector = selectors.DefaultSelector()
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._unstarted: dict[str, tuple[Entry, Child]] = {}  # by run id, until the launcher forks it
        self._by_pid: dict[int, tuple[Entry, Child]] = {}  # forked, exit not reported yet
        self._exited: list[tuple[Entry, Child]] = []  # exited (or orphaned), not yet finished here
        self._outbox: list[Any] = []  # history writes and after-commit logs for the writer
        self._handed_over = 0.0  # monotonic time of the last hand-over to the writer
        self._soonest = 0.0  # the next time a run comes due (epoch seconds)

    # -- loading ---------------------------------------------------------------------------

    def load(self) -> None:
        """Load every file; any problem is an error before anything runs (exit 2)."""
        entries: list[Entry] = []
        problems: list[str] = []
        for path in self.files:
            try:
                entries.append(load_entry(path))
            except PlaybookError as exc:
                problems.extend(d.format() for d in exc.diagnostics)
            except RunbookError as exc:
                problems.append(str(exc))
        names = [entry.name for entry in entries]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(
                f"two scheduled playbooks are named {name!r}: names must differ (history keys on them)"
            )
        if problems:
            raise UsageError("\n".join(problems))
        for entry in entries:
            self._restore(entry)
        self.entries = entries

    def _restore(self, entry: Entry) -> None:
        """Last status and failure streak from the history, so a restart forgets no failure."""
        runs = self.history.runs(playbook=entry.name, trigger="schedule", limit=50)
        finished = [r for r in runs if r["status"] not in ("running", "skipped")]
        if finished:
            entry.last_status, entry.last_duration = finished[0]["status"], finished[0]["duration"]
            entry.last_run_id = finished[0]["id"]
        for run in finished:
            if run["status"] in ("ok",):
                break
            entry.consecutive_failures += 1
        if entry.playbook.catch_up and finished:
            last = epoch_of(finished[0]["started"])
            if last is not None and entry.schedule.missed_since(last):
                self.log(
                    "catch_up", f"{entry.name}: a run was missed while the scheduler was down: running it now"
                )
                entry.launch_at.append((time.time(), time.time()))

    def reload(self) -> None:
        """SIGHUP: load the files again; a file that no longer loads keeps its old version."""
        by_path = {entry.path: entry for entry in self.entries}
        fresh: list[Entry] = []
        for path in self.files:
            old = by_path.get(path)
            try:
                entry = load_entry(path)
            except (PlaybookError, RunbookError) as exc:
                lines = (
                    [d.format() for d in exc.diagnostics] if isinstance(exc, PlaybookError) else [str(exc)]
                )
                self.log(
                    "reload_failed", f"{path}: keeping the loaded version: {'; '.join(lines)}", path=str(path)
                )
                if old is not None:
                    fresh.append(old)
                continue
            if old is not None:  # the runs going on and the record so far carry over
                self._rebind(old, entry)
                entry.children, entry.queued, entry.launch_at = old.children, old.queued, old.launch_at
                entry.last_status, entry.last_duration = old.last_status, old.last_duration
                entry.last_run_id, entry.consecutive_failures = old.last_run_id, old.consecutive_failures
                if (
                    old.schedule.text == entry.schedule.text
                    and old.schedule.timezone == entry.schedule.timezone
                ):
                    entry.schedule = old.schedule  # same rhythm: keep its next run time
            else:
                self._restore(entry)
            fresh.append(entry)
        with self.lock:
            self.entries = fresh
        self.log("reloaded", f"reloaded {len(fresh)} playbook(s)", playbooks=[e.name for e in fresh])

    def _rebind(self, old: Entry, new: Entry) -> None:
        """The runs of ``old`` now belong to ``new``, its reloaded version."""
        for table in (self._unstarted, self._by_pid):
            for key, (entry, child) in list(table.items()):
                if entry is old:
                    table[key] = (new, child)
        self._exited = [(new if entry is old else entry, child) for entry, child in self._exited]
        for child in old.children:
            if not child.pipe.eof:
                self.selector.modify(child.pipe.fd, selectors.EVENT_READ, (new, child))

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
        self.writer = HistoryWriter()
        self._start_launcher()
        self.log(
            "started",
            f"scheduler started with {len(self.entries)} playbook(s): "
            + ", ".join(
                f"{e.name} ({e.schedule.text}, next {e.schedule.next_run_iso()})" for e in self.entries
            ),
            pid=os.getpid(),
        )
        previous = self._install_signals()
        try:
            while not self.stopping:
                if self.reload_requested:
                    self.reload_requested = False
                    self.reload()
                    self._send_playbooks()
                    self._soonest = 0.0  # look at every schedule again
                self._tick()
                self._sleep(self._next_wake())
            self.log("stopping", f"{self.stop_signal}: no new runs; waiting for running ones")
            self._shutdown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._flush(now=True)
            self.writer.close()  # every write committed and every run logged before this returns
            assert self.launcher is not None
            self.launcher.close()
        self.log("stopped", "scheduler stopped")
        return 0

    def _start_launcher(self) -> None:
        self.launcher = Launcher()
        self.selector.register(self.launcher, selectors.EVENT_READ, "launcher")
        self._send_playbooks()

    def _send_playbooks(self) -> None:
        assert self.launcher is not None
        self.launcher.load([(entry.resolved, entry.text) for entry in self.entries])

    def _tick(self) -> None:
        now = time.time()
        if now >= self._soonest:
            self._start_due(now)
        self._collect()
        self._enforce_deadlines()
        self._flush()

    def _start_due(self, now: float) -> None:
        """Start (or queue, or skip) the runs due by ``now``; note when the next one is."""
        soonest = now + MAX_SLEEP
        for entry in self.entries:
            if entry.schedule.next_run <= now:
                planned = entry.schedule.next_run
                entry.schedule.advance()
                offset = random.uniform(0, entry.jitter) if entry.jitter else 0.0
                entry.launch_at.append((planned + offset, planned))
            if entry.launch_at:
                for launch in [pair for pair in entry.launch_at if pair[0] <= now]:
                    entry.launch_at.remove(launch)
                    self._due(entry, *launch)
                soonest = min([soonest, *(launch for launch, _ in entry.launch_at)])
            soonest = min(soonest, entry.schedule.next_run)
        self._soonest = soonest

    def _due(self, entry: Entry, planned: float, due: float) -> None:
        """A run came due: start it, or queue or skip it when the last one still runs."""
        if entry.children and entry.overlap != "allow":
            if entry.overlap == "queue" and entry.queued is None:
                entry.queued = planned
                self.log(
                    "queued", f"{entry.name}: due while the last run still runs: queued", playbook=entry.name
                )
                return
            run_id = _new_run_id()
            reason = f"due while run {entry.children[0].run_id} still runs (overlap: {entry.overlap})"
            self._write(
                "record_skip",
                run_id=run_id,
                playbook=entry.name,
                path=entry.resolved,
                reason=reason,
                started=now_iso(),
                started_at=time.time(),
            )
            self.log(
                "skipped",
                f"{entry.name}: run {run_id} skipped: {reason}",
                playbook=entry.name,
                run_id=run_id,
                due=due,
            )
            return
        self._start(entry, planned, due)

    def _start(self, entry: Entry, planned: float, due: float | None = None) -> None:
        """Ask the launcher for a run planned for ``planned`` (its ``due`` time plus any jitter);
        it is logged as started when the launcher has forked it."""
        assert self.launcher is not None
        run_id = _new_run_id()
        pipe, history_fd = open_run_pipe()
        try:
            self.launcher.run(run_id, entry.resolved, entry.text, history_fd)
        finally:
            os.close(history_fd)
        child = Child(run_id, pipe, planned, planned if due is None else due, time.monotonic())
        if entry.timeout:
            child.deadline = child.asked + entry.timeout + HUNG_AFTER
        entry.children.append(child)
        self._unstarted[run_id] = (entry, child)
        self.selector.register(pipe.fd, selectors.EVENT_READ, (entry, child))

    def _from_launcher(self) -> None:
        """Forks and exits the launcher reports."""
        assert self.launcher is not None
        for message in self.launcher.read():
            if message.get("op") == "started" and message.get("run_id") in self._unstarted:
                entry, child = self._unstarted.pop(message["run_id"])
                child.pid = message["pid"]
                self._by_pid[child.pid] = (entry, child)
                self._log_started(entry, child)
            elif message.get("op") == "failed" and message.get("run_id") in self._unstarted:
                entry, child = self._unstarted.pop(message["run_id"])
                child.exit_code, child.exited_at = 70, time.monotonic()
                child.killed_for = f"the run's process could not be started: {message.get('error')}"
                self._exited.append((entry, child))
            elif message.get("op") == "exited" and message.get("pid") in self._by_pid:
                entry, child = self._by_pid.pop(message["pid"])
                child.exit_code, child.exited_at = message["code"], time.monotonic()
                self._exited.append((entry, child))

    def _collect(self) -> None:
        """Finish the runs that ended: exited, and everything they sent read."""
        assert self.launcher is not None
        if self.launcher.closed and not self.stopping:
            self._restart_launcher()
        for entry, child in list(self._exited):
            if not child.pipe.eof:
                self._read_pipe(entry, child)
            if child.pipe.eof or (
                child.exit_code is not None and time.monotonic() - (child.exited_at or 0.0) > PIPE_LINGER
            ):
                self._exited.remove((entry, child))
                self._forget_pipe(child)
                entry.children.remove(child)
                self._finished(entry, child)
                if entry.queued is not None and not entry.children and not self.stopping:
                    planned, entry.queued = entry.queued, None
                    self._start(entry, planned)

    def _log_started(self, entry: Entry, child: Child) -> None:
        now = time.time()
        self.log(
            "run_started",
            f"{entry.name}: run {child.run_id} started"
            f" (pid {child.pid}, {1000 * (now - child.planned):.0f} ms late)",
            playbook=entry.name,
            run_id=child.run_id,
            pid=child.pid,
            planned=child.planned,
            due=child.due,
            started=now,
            drift=now - child.planned,
        )

    def _read_pipe(self, entry: Entry, child: Child) -> None:
        for method, arguments in child.pipe.read():
            if arguments.get("run_id") != child.run_id:
                continue  # a run writes its own rows only
            if method == "start_run":
                child.started_row = True
            elif method == "finish_run":
                child.final = arguments
            self._write(method, **arguments)
        if child.pipe.eof:
            self._forget_pipe(child)

    def _forget_pipe(self, child: Child) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(child.pipe.fd)
        child.pipe.close()

    def _restart_launcher(self) -> None:
        """The launcher died (killed, out of memory): start another. Runs it had started go on
        and record themselves (the end of their pipe tells when they end); those it had not
        started are recorded as failed."""
        self.log("launcher_restarted", "the launcher process ended: starting a new one")
        for entry, child in self._unstarted.values():
            child.exit_code, child.exited_at = 70, time.monotonic()
            child.killed_for = "not started: the launcher process ended"
            self._exited.append((entry, child))
        for entry, child in self._by_pid.values():
            child.orphan = True
            self._exited.append((entry, child))
        self._unstarted, self._by_pid = {}, {}
        assert self.launcher is not None
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(self.launcher)
        self.launcher.close(timeout=1.0)
        self._start_launcher()

    def _finished(self, entry: Entry, child: Child) -> None:
        code = child.exit_code
        duration = time.monotonic() - child.asked
        error = child.killed_for
        if child.final is not None:  # the run recorded its own end
            final = child.final["status"]
        else:
            final = "failed"
            if code is None or code < 0:
                if code is None:
                    reason = "the run's process ended without finishing its record (its launcher died)"
                else:
                    try:
                        signame = signal.Signals(-code).name
                    except ValueError:
                        signame = f"signal {-code}"
                    reason = f"the run's process was killed by {signame}"
                final = "failed" if child.killed_for else "interrupted"
                error = error or reason
            elif not child.started_row:
                error = error or "the playbook did not load (see the scheduler's log)"
            else:
                error = error or f"the run's process ended (exit {code}) without finishing its record"
            self._write(
                "start_run",
                run_id=child.run_id,
                playbook=entry.name,
                path=entry.resolved,
                trigger="schedule",
                pid=0,
            )
            self._write(
                "finish_run",
                run_id=child.run_id,
                status=final,
                exit_code=None if code is None or code < 0 else code,
                duration=duration,
                error=error,
                only_if_running=True,
                ended=now_iso(),
            )
        with self.lock:
            entry.last_status, entry.last_duration, entry.last_run_id = final, duration, child.run_id
            entry.consecutive_failures = 0 if final == "ok" else entry.consecutive_failures + 1
        shown = code if code is not None and code >= 0 else None
        message = (
            f"{entry.name}: run {child.run_id} {final} in {format_duration(duration)}"
            + (f" (exit {shown})" if shown is not None else "")
            + (f": {error}" if error else "")
        )
        fields = {
            "playbook": entry.name, "run_id": child.run_id, "status": final,
            "exit_code": shown, "duration": duration,
        }  # fmt: skip
        self._outbox.append(lambda: self.log("run_finished", message, **fields))

    def _write(self, method: str, **arguments: Any) -> None:
        self._outbox.append((method, arguments))

    def _flush(self, now: bool = False) -> None:
        """Hand the writes gathered so far to the writer, in one piece (at most every
        ``HAND_OVER_EVERY`` seconds, unless ``now``)."""
        if not self._outbox or self.writer is None:
            return
        if now or time.monotonic() - self._handed_over >= HAND_OVER_EVERY:
            self.writer.submit(self._outbox)
            self._outbox = []
            self._handed_over = time.monotonic()

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for entry, child in [*self._by_pid.values(), *self._unstarted.values()]:  # not exited yet
            if child.deadline is not None and now >= child.deadline:
                child.deadline = None
                took, limit = format_duration(now - child.asked), format_duration(entry.timeout or 0)
                child.killed_for = f"killed: still running {took} after it started (timeout {limit})"
                _kill_group(child.pid, signal.SIGKILL)

    def _next_wake(self) -> float:
        wake = max(0.0, min(MAX_SLEEP, self._soonest - time.time()))
        if self._outbox:  # writes waiting for their hand-over
            wake = min(wake, max(0.0, self._handed_over + HAND_OVER_EVERY - time.monotonic()))
        return wake

    def _sleep(self, seconds: float) -> None:
        """Wait until the time passes, a run sends something or ends, or a signal arrives;
        take in what arrived."""
        if self._exited:
            seconds = min(seconds, 0.1)  # a run lingering on its pipe: look again soon
        for key, _ in self.selector.select(seconds):
            if key.data is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif key.data == "launcher":
                self._from_launcher()
            else:
                self._read_pipe(*key.data)

    # -- stopping --------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        # Handlers only set flags and wake the loop: one that logged could wait forever for the
        # log's lock, held by the very code it interrupted.
        def stop(signum: int, frame: Any) -> None:
            self.stop_signal = self.stop_signal or signal.Signals(signum).name
            self.stopping = True
            self._wake()

        def reload(signum: int, frame: Any) -> None:
            self.reload_requested = True
            self._wake()

        previous: dict[int, Any] = {}
        for signum, handler in ((signal.SIGTERM, stop), (signal.SIGINT, stop), (signal.SIGHUP, reload)):
            previous[signum] = signal.signal(signum, handler)
        return previous

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a full pipe: the loop is awake already
            os.write(self._wake_w, b".")

    def running(self) -> list[tuple[Entry, Child]]:
        return [(entry, child) for entry in self.entries for child in entry.children]

    def _shutdown(self) -> None:
        for entry in self.entries:
            entry.queued, entry.launch_at = None, []
        self._wait_children(self.grace)
        if self.running():
            self.log("cancelling", f"grace period over: cancelling {len(self.running())} run(s)")
            for _, child in self.running():
                _kill_group(child.pid, signal.SIGTERM)
            self._wait_children(KILL_AFTER)
        if self.running():
            for _, child in self.running():
                child.killed_for = "killed: still running when the scheduler stopped"
                _kill_group(child.pid, signal.SIGKILL)
            self._wait_children(5.0)
        for entry, child in self.running():  # not even a kill was reported: recorded as it stands
            child.exit_code = -signal.SIGKILL if child.exit_code is None else child.exit_code
            self._read_pipe(entry, child)
            self._forget_pipe(child)
            entry.children.remove(child)
            self._finished(entry, child)

    def _wait_children(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running() and time.monotonic() < deadline:
            self._collect()
            self._flush()
            if self.running():
                self._sleep(min(MAX_SLEEP, HAND_OVER_EVERY, max(0.0, deadline - time.monotonic())))
        self._collect()
        self._flush(now=True)

    # -- what the status page and /healthz read ----------------------------------------------

    def health(self) -> dict[str, Any]:
        with self.lock:
            schedules = [entry.state() for entry in self.entries]
        failing = [s for s in schedules if s["consecutive_failures"] >= self.unhealthy_after]
        return {
            "status": "failing" if failing else "ok",
            "uptime": round(time.time() - self.started, 3),
            "started": _iso(self.started),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "unhealthy_after": self.unhealthy_after,
            "schedules": schedules,
        }


def _kill_group(pid: int | None, sig: int) -> None:
    """Signal the run's whole session (the run and the processes it started)."""
    if pid is None:
        return
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _new_run_id() -> str:
    from runner.play import new_run_id

    return new_run_id()


def _iso(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
