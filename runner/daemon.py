"""``runbook schedule``: run playbooks on their schedules until stopped (SPEC §7).

One loop in the main thread starts runs when they come due, waits for them, and
handles signals; nothing else decides. Each run is a child process running
``runbook play`` (trigger ``schedule``), so a crash or a hang in a run cannot stop the
daemon. Children are forked by a fork server (``multiprocessing``'s ``forkserver``)
that has runbook's modules loaded already: a run starts in milliseconds, not in the
half second a new interpreter takes, and is forked from a process with one thread
(forking the daemon itself, which serves HTTP from threads, could copy a held lock).

Every run is recorded: the child writes its own history (the daemon chose its run id);
if a child dies without finishing its row (SIGKILL, a crash), the daemon completes the
row from the exit status; a run not started because the last one still runs
(``overlap: skip``) is recorded as ``skipped``. A child still running well past its
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
import multiprocessing
import os
import random
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for_ready
from pathlib import Path
from typing import Any

from runner.errors import PlaybookError, RunbookError, UsageError
from runner.events import epoch_of, now_iso
from runner.history import History
from runner.masking import SECRETS
from runner.playbook import Playbook, load_playbook
from runner.schedules import Schedule, ScheduleError, parse_schedule
from runner.units import format_duration, parse_duration

# Modules the fork server imports once, so that each run's process starts with them loaded.
PRELOAD = ["runner.daemon", "runner.play", "runner.forkwarm", "runner.templating", "runner.reports"]
KILL_AFTER = 10.0  # seconds between cancelling a run (SIGTERM) and killing it (SIGKILL)
# A run cancels itself at its timeout and kills its steps' processes 5 s later; one still
# there this long after the timeout is hung (stopped, or stuck in the kernel): it is killed.
HUNG_AFTER = 10.0
MAX_SLEEP = 1.0  # the loop wakes at least this often, so a lost wake-up costs at most this


@dataclass
class Child:
    """One run in progress: its process and what the daemon knows of it."""

    run_id: str
    process: Any  # a multiprocessing Process
    planned: float  # when the run was due (epoch seconds), jitter included
    started: float  # when it was started
    started_monotonic: float
    deadline: float | None  # monotonic time past which it is killed
    cancelled_at: float | None = None


@dataclass
class Entry:
    """One scheduled playbook."""

    path: Path
    text: str
    playbook: Playbook
    schedule: Schedule
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
    return Entry(
        path=path,
        text=text,
        playbook=playbook,
        schedule=schedule,
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


def run_child(path: str, text: str, run_id: str) -> None:
    """The body of a run's process (in a child of the fork server)."""
    os.setsid()  # its own session: a Ctrl-C meant for the daemon does not cancel it at once
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the history keeps the output; stderr stays the daemon's, for crashes
    from runner.play import play_file

    sys.exit(play_file(path, output="plain", trigger="schedule", run_id=run_id, text=text))


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
        self.history = History()
        self.history.mark_interrupted()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self.forks = multiprocessing.get_context("forkserver")
        self.forks.set_forkserver_preload(PRELOAD)

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

    # -- the loop --------------------------------------------------------------------------

    def run(self) -> int:
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
                self._tick()
                self._sleep(self._next_wake())
            self.log("stopping", f"{self.stop_signal}: no new runs; waiting for running ones")
            self._shutdown()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        self.log("stopped", "scheduler stopped")
        return 0

    def _tick(self) -> None:
        now = time.time()
        for entry in self.entries:
            if entry.schedule.next_run <= now:
                planned = entry.schedule.next_run
                entry.schedule.advance()
                offset = random.uniform(0, entry.jitter) if entry.jitter else 0.0
                entry.launch_at.append((planned + offset, planned))
            for launch in [pair for pair in entry.launch_at if pair[0] <= now]:
                entry.launch_at.remove(launch)
                self._due(entry, *launch)
        self._reap()
        self._enforce_deadlines()

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
            self.history.record_skip(run_id, entry.name, str(entry.path.resolve()), reason)
            self.log(
                "skipped", f"{entry.name}: run {run_id} skipped: {reason}", playbook=entry.name, run_id=run_id
            )
            return
        self._start(entry, planned, due)

    def _start(self, entry: Entry, planned: float, due: float | None = None) -> None:
        """Start a run planned for ``planned`` (its ``due`` time plus any jitter)."""
        run_id = _new_run_id()
        process = self.forks.Process(
            target=run_child,
            args=(str(entry.path.resolve()), entry.text, run_id),
            name=f"runbook {entry.name}",
        )
        process.start()
        now = time.time()
        deadline = time.monotonic() + entry.timeout + HUNG_AFTER if entry.timeout else None
        entry.children.append(Child(run_id, process, planned, now, time.monotonic(), deadline))
        self.log(
            "run_started",
            f"{entry.name}: run {run_id} started (pid {process.pid}, {1000 * (now - planned):.0f} ms late)",
            playbook=entry.name,
            run_id=run_id,
            pid=process.pid,
            planned=planned,
            due=planned if due is None else due,
            started=now,
            drift=now - planned,
        )

    def _reap(self) -> None:
        for entry in self.entries:
            for child in list(entry.children):
                if child.process.exitcode is None:
                    continue
                child.process.join()
                entry.children.remove(child)
                self._finished(entry, child)
            if entry.queued is not None and not entry.children and not self.stopping:
                planned, entry.queued = entry.queued, None
                self._start(entry, planned)

    def _finished(self, entry: Entry, child: Child, killed_for: str | None = None) -> None:
        code = child.process.exitcode
        duration = time.monotonic() - child.started_monotonic
        if code is not None and code < 0:
            try:
                signame = signal.Signals(-code).name
            except ValueError:
                signame = f"signal {-code}"
            status = "failed" if killed_for else "interrupted"
            error = killed_for or f"the run's process was killed by {signame}"
            self._complete(entry, child, status, None, duration, error)
        else:
            self._complete(entry, child, None, code, duration, None)

    def _complete(
        self,
        entry: Entry,
        child: Child,
        status: str | None,
        code: int | None,
        duration: float,
        error: str | None,
    ) -> None:
        """Record how a run ended; the child's own row wins when it finished it."""
        path = str(entry.path.resolve())
        if status is not None:  # the process died: finish its row (or write one, if it never did)
            self.history.start_run(child.run_id, entry.name, path, "schedule", pid=0)
            self.history.finish_run(child.run_id, status, None, duration, error, only_if_running=True)
        elif code == 2 and not self.history.runs_by_id([child.run_id]):
            self.history.start_run(child.run_id, entry.name, path, "schedule", pid=0)
            error = "the playbook did not load (see the scheduler's log)"
            self.history.finish_run(child.run_id, "failed", code, duration, error)
        rows = self.history.runs_by_id([child.run_id])
        final = rows[0]["status"] if rows else (status or "failed")
        entry.last_status, entry.last_duration, entry.last_run_id = final, duration, child.run_id
        entry.consecutive_failures = 0 if final == "ok" else entry.consecutive_failures + 1
        self.log(
            "run_finished",
            f"{entry.name}: run {child.run_id} {final} in {format_duration(duration)}"
            + (f" (exit {code})" if code is not None else "")
            + (f": {error}" if error else ""),
            playbook=entry.name,
            run_id=child.run_id,
            status=final,
            exit_code=code,
            duration=duration,
        )

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        for entry in self.entries:
            for child in list(entry.children):
                if child.deadline is not None and now >= child.deadline and child.process.exitcode is None:
                    _kill_group(child.process.pid, signal.SIGKILL)
                    child.process.join(5)
                    entry.children.remove(child)
                    took, limit = (
                        format_duration(now - child.started_monotonic),
                        format_duration(entry.timeout or 0),
                    )
                    reason = f"killed: still running {took} after it started (timeout {limit})"
                    self._finished(entry, child, killed_for=reason)

    def _next_wake(self) -> float:
        now = time.time()
        times = [entry.schedule.next_run for entry in self.entries]
        times += [launch for entry in self.entries for launch, _ in entry.launch_at]
        soonest = min(times, default=now + MAX_SLEEP)
        return max(0.0, min(MAX_SLEEP, soonest - now))

    def _sleep(self, seconds: float) -> None:
        """Wait until the time passes, a child ends, or a signal arrives."""
        sentinels = [c.process.sentinel for e in self.entries for c in e.children]
        ready = wait_for_ready([self._wake_r, *sentinels], timeout=seconds)
        if self._wake_r in ready:
            os.read(self._wake_r, 4096)

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
                _kill_group(child.process.pid, signal.SIGTERM)
            self._wait_children(KILL_AFTER)
        for entry, child in self.running():
            _kill_group(child.process.pid, signal.SIGKILL)
            child.process.join(5)
            entry.children.remove(child)
            self._finished(entry, child, killed_for="killed: still running when the scheduler stopped")

    def _wait_children(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while self.running() and time.monotonic() < deadline:
            self._reap()
            self._sleep(min(MAX_SLEEP, max(0.0, deadline - time.monotonic())))
        self._reap()

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


def _new_run_id() -> str:
    from runner.play import new_run_id

    return new_run_id()


def _iso(epoch: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
