"""Run history in SQLite: every run and each of its steps (SPEC §7).

The database is ``$RUNBOOK_HOME/history.db`` (default ``~/.local/state/runbook/``, a
folder created 0700, since results may hold paths and output users consider private).
It is in WAL mode with a busy timeout, and every write is one short ``BEGIN IMMEDIATE``
transaction, so several ``runbook play`` processes and the scheduler's children can
write at once without losing a row.

A run row is written when the run starts (status ``running``, with the pid of the
process) and completed when it ends; steps are written as they
finish, in small batches. A run whose process died (SIGKILL, power cut) keeps
``running`` and no end; the next start of runbook on this host finds its pid gone (or
taken by a process created after the run started) and marks it ``interrupted``.

Pruning keeps the last ``RUNBOOK_HISTORY_KEEP`` runs (default 1,000) of each playbook,
when a run ends. The schema carries a version (``PRAGMA user_version``) and is
migrated forward on open.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from runner.errors import UsageError
from runner.events import Event, now_iso

DEFAULT_KEEP = 1000
BUSY_TIMEOUT_MS = 30_000
# Steps are written in batches at most this far apart (and always when the run ends): a
# playbook of a thousand quick steps must not pay one transaction per step.
FLUSH_EVERY = 0.5
OUTPUT_CAP = 256 * 1024  # bytes of output kept per step: the tail, where failures show

# Each entry migrates the schema from version N to N+1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        playbook TEXT NOT NULL,
        path TEXT NOT NULL,
        trigger TEXT NOT NULL,
        started TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended TEXT,
        duration REAL,
        status TEXT NOT NULL,
        exit_code INTEGER,
        host TEXT NOT NULL,
        user TEXT NOT NULL,
        pid INTEGER,
        vars_digest TEXT,
        dry_run INTEGER NOT NULL DEFAULT 0,
        error TEXT
    );
    CREATE INDEX runs_by_playbook ON runs (playbook, started_at);
    CREATE INDEX runs_by_start ON runs (started_at);
    CREATE INDEX runs_running ON runs (status) WHERE status = 'running';
    CREATE TABLE steps (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        step_id TEXT,
        label TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER,
        started TEXT,
        duration REAL,
        result TEXT,
        error TEXT,
        output TEXT,
        PRIMARY KEY (run_id, seq)
    );
    """,
)

# The writing methods ``apply`` runs in a batch (and a run's process may send over a pipe).
WRITES = ("start_run", "add_steps", "finish_run", "record_skip")

RUN_COLUMNS = ("id", "playbook", "path", "status", "trigger", "started", "ended", "duration", "exit_code")


def history_home() -> Path:
    """``$RUNBOOK_HOME``, or ``~/.local/state/runbook``."""
    configured = os.environ.get("RUNBOOK_HOME")
    return Path(configured) if configured else Path.home() / ".local" / "state" / "runbook"


def keep_per_playbook() -> int:
    """``RUNBOOK_HISTORY_KEEP``; a bad value warns and keeps the default (never costs a run)."""
    text = os.environ.get("RUNBOOK_HISTORY_KEEP", "").strip()
    if not text:
        return DEFAULT_KEEP
    try:
        return max(1, int(text))
    except ValueError:
        sys.stderr.write(
            f"runbook: warning: RUNBOOK_HISTORY_KEEP must be a whole number of runs, not {text!r};"
            f" keeping {DEFAULT_KEEP}\n"
        )
        return DEFAULT_KEEP


def process_started(pid: int) -> float | None:
    """When process ``pid`` started (epoch seconds), or None if there is no such process."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def use_wal(db: sqlite3.Connection, timeout: float) -> None:
    """Put ``db`` in WAL mode (it stays so: later opens only read the mode).

    Switching needs the database to itself, and SQLite answers "locked" at once, without
    waiting out the busy timeout, when another process opens it at that moment: processes
    starting together on a new file retry here, for ``timeout`` seconds at most."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class History:
    """One connection to the history database."""

    def __init__(self, path: Path | None = None):
        home = history_home()
        self.path = path or home / "history.db"
        self._lock = threading.RLock()
        self._depth = 0  # transactions open: an inner one joins the outer (see ``apply``)
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if not self.path.exists():  # results and output are the user's business only
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self.db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            self.db.row_factory = sqlite3.Row
            self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            use_wal(self.db, BUSY_TIMEOUT_MS / 1000)
            # In WAL mode NORMAL loses no committed run on a crash of runbook itself, only
            # possibly the last commits on a power cut; FULL would fsync every step.
            self.db.execute("PRAGMA synchronous = NORMAL")
            self.db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except sqlite3.Error as exc:
            raise UsageError(f"cannot open the run history {self.path}: {exc}") from exc
        self.keep = keep_per_playbook()

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; one opened inside another is part of it."""
        with self._lock:
            self._depth += 1
            try:
                if self._depth > 1:
                    yield self.db
                    return
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    yield self.db
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
                self.db.execute("COMMIT")
            finally:
                self._depth -= 1

    def apply(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Several writes, each ``(method, keyword arguments)`` of the methods in ``WRITES``,
        in one transaction: a scheduler recording a hundred runs a second pays one commit
        per batch instead of three per run."""
        with self.transaction():
            for method, arguments in calls:
                if method not in WRITES:
                    raise ValueError(f"not a history write: {method!r}")
                getattr(self, method)(**arguments)

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version >= len(MIGRATIONS):
            return
        with self.transaction() as db:
            # Read again inside the lock: another process may have migrated meanwhile.
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number].split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute(f"PRAGMA user_version = {len(MIGRATIONS)}")

    # -- writing -------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str,
        playbook: str,
        path: str,
        trigger: str,
        started: str | None = None,
        pid: int | None = None,
        vars_digest: str | None = None,
        dry_run: bool = False,
        status: str = "running",
        started_at: float | None = None,
    ) -> None:
        pid = os.getpid() if pid is None else pid
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO runs (id, playbook, path, trigger, started, started_at, status, host,"
                " user, pid, vars_digest, dry_run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    playbook,
                    path,
                    trigger,
                    started or now_iso(),
                    time.time() if started_at is None else started_at,
                    status,
                    socket.gethostname(),
                    _user(),
                    pid,
                    vars_digest,
                    int(dry_run),
                ),
            )

    def add_steps(self, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO steps (run_id, seq, step_id, label, status, attempts, started,"
                " duration, result, error, output) VALUES (:run_id, :seq, :step_id, :label, :status,"
                " :attempts, :started, :duration, :result, :error, :output)",
                [{"run_id": run_id, **row} for row in rows],
            )

    def finish_run(
        self,
        run_id: str,
        status: str,
        exit_code: int | None,
        duration: float | None = None,
        error: str | None = None,
        only_if_running: bool = False,
        ended: str | None = None,
    ) -> bool:
        """Complete a run's row (``ended``: when it ended, if not now); True if a row changed.
        Prunes the playbook's old runs."""
        with self.transaction() as db:
            query = (
                "UPDATE runs SET status = ?, exit_code = ?, ended = ?, duration = ?, error = ? WHERE id = ?"
            )
            if only_if_running:
                query += " AND status = 'running'"
            changed = db.execute(
                query, (status, exit_code, ended or now_iso(), duration, error, run_id)
            ).rowcount
            row = db.execute("SELECT playbook FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                self._prune(db, row["playbook"])
        return bool(changed)

    def _prune(self, db: sqlite3.Connection, playbook: str) -> None:
        """Keep the playbook's last ``keep`` runs (a walk of ``keep`` index entries, no sort)."""
        cutoff = db.execute(
            "SELECT started_at FROM runs WHERE playbook = ? ORDER BY started_at DESC LIMIT 1 OFFSET ?",
            (playbook, self.keep),
        ).fetchone()
        if cutoff is not None:
            db.execute(
                "DELETE FROM runs WHERE playbook = ? AND started_at <= ? AND status != 'running'",
                (playbook, cutoff[0]),
            )

    def record_skip(
        self,
        run_id: str,
        playbook: str,
        path: str,
        reason: str,
        started: str | None = None,
        started_at: float | None = None,
    ) -> None:
        """A scheduled run that did not start (overlap: skip): recorded, so no run goes unexplained."""
        with self.transaction() as db:
            self.start_run(
                run_id, playbook, path, "schedule", started, 0, status="skipped", started_at=started_at
            )
            db.execute(
                "UPDATE runs SET ended = started, duration = 0, error = ? WHERE id = ?", (reason, run_id)
            )

    def mark_interrupted(self) -> list[str]:
        """Runs of this host left ``running`` by a process that is gone: now ``interrupted``."""
        rows = self.db.execute(
            "SELECT id, pid, started_at FROM runs WHERE status = 'running' AND host = ?",
            (socket.gethostname(),),
        ).fetchall()
        dead = []
        for row in rows:
            # A process created after the run started is another one that got the same pid.
            started = process_started(row["pid"]) if row["pid"] else None
            if started is None or started > row["started_at"] + 1.0:
                dead.append(row["id"])
        if dead:
            with self.transaction() as db:
                db.executemany(
                    "UPDATE runs SET status = 'interrupted', error = ? WHERE id = ? AND status = 'running'",
                    [("the runbook process ended without finishing the run", run_id) for run_id in dead],
                )
        return dead

    # -- reading -------------------------------------------------------------------------

    def runs(
        self,
        playbook: str | None = None,
        status: str | None = None,
        limit: int = 20,
        trigger: str | None = None,
        since: float | None = None,
    ) -> list[dict[str, Any]]:
        """Recent runs, newest first, as SPEC §8's ``history --json`` rows."""
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("playbook", playbook), ("status", status), ("trigger", trigger)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            where.append("started_at >= ?")
            params.append(since)
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY started_at DESC LIMIT ?"
        return [dict(row) for row in self.db.execute(query, (*params, limit))]

    def runs_by_id(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        marks = ",".join("?" * len(ids))
        query = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE id IN ({marks})"
        return [dict(row) for row in self.db.execute(query, tuple(ids))]

    def find(self, run_id: str) -> str:
        """The full id of the run ``run_id`` names (a unique prefix is enough, as with git)."""
        rows = self.db.execute(
            "SELECT id FROM runs WHERE id >= ? AND id < ? LIMIT 2", (run_id, run_id + "\uffff")
        ).fetchall()
        if not rows:
            raise UsageError(f"no run {run_id!r} in the history {self.path} (runbook history lists them)")
        if len(rows) > 1:
            raise UsageError(f"run id {run_id!r} is ambiguous: give more of it")
        return str(rows[0]["id"])

    def report(self, run_id: str) -> dict[str, Any]:
        """One run in the ``--report`` format (SPEC §8), each step with its captured output."""
        run = self.db.execute("SELECT * FROM runs WHERE id = ?", (self.find(run_id),)).fetchone()
        steps = self.db.execute("SELECT * FROM steps WHERE run_id = ? ORDER BY seq", (run["id"],)).fetchall()
        return {
            "run": {
                **{column: run[column] for column in RUN_COLUMNS},
                "host": run["host"],
                "user": run["user"],
                "vars_digest": run["vars_digest"],
                "dry_run": bool(run["dry_run"]),
                "error": run["error"],
            },
            "steps": [
                {
                    "id": step["step_id"],
                    "label": step["label"],
                    "status": step["status"],
                    "attempts": step["attempts"],
                    "started": step["started"],
                    "duration": step["duration"],
                    "result": json.loads(step["result"]) if step["result"] else None,
                    "error": step["error"],
                    "output": step["output"] or "",
                }
                for step in steps
            ],
        }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class HistoryRecorder:
    """An event sink that writes the run and its steps to the history as they happen.

    A database that cannot be written (a full disk, a locked file past the timeout)
    costs the run its history, with one warning on stderr, never the run itself."""

    def __init__(self, history: History, vars_digest: str | None = None):
        self.history = history
        self.vars_digest = vars_digest
        self.run_id: str | None = None
        self.pending: list[dict[str, Any]] = []
        self.output: dict[tuple[Any, str], list[str]] = {}
        self.seq = 0
        self.last_flush = time.monotonic()
        self.failed = False

    def handle(self, event: Event) -> None:
        if self.failed:
            return
        kind = event["event"]
        try:
            if kind == "run_started":
                self.run_id = event["run_id"]
                self.history.start_run(
                    event["run_id"],
                    event.get("playbook") or "",
                    str(Path(event.get("path") or "").resolve()),
                    event.get("trigger") or "manual",
                    started=event["time"],
                    vars_digest=self.vars_digest,
                    dry_run=bool(event.get("dry_run")),
                )
            elif kind == "step_output":
                self._keep_output(event)
            elif kind == "step_finished":
                self._add_step(event)
                if time.monotonic() - self.last_flush >= FLUSH_EVERY:
                    self.flush()
            elif kind == "run_finished" and self.run_id:
                self.flush()
                self.history.finish_run(
                    self.run_id,
                    event["status"],
                    event.get("exit_code"),
                    event.get("duration"),
                    event.get("error"),
                )
        except (sqlite3.Error, UsageError) as exc:
            self.failed = True
            sys.stderr.write(f"runbook: warning: this run is not recorded in {self.history.path}: {exc}\n")

    def _keep_output(self, event: Event) -> None:
        lines = self.output.setdefault(_step_key(event), [])
        prefix = "" if event.get("stream") == "stdout" else f"[{event.get('stream')}] "
        lines.append(prefix + str(event.get("line", "")))
        if len(lines) > 4096:  # keep the tail; OUTPUT_CAP trims by bytes when written
            del lines[:1024]

    def _add_step(self, event: Event) -> None:
        output = "\n".join(self.output.pop(_step_key(event), []))
        if len(output) > OUTPUT_CAP:
            output = "…" + output[-OUTPUT_CAP:]
        self.seq += 1
        result = event.get("result")
        self.pending.append(
            {
                "seq": self.seq,
                "step_id": event["step"].get("id"),
                "label": event["step"].get("label") or "",
                "status": event.get("status") or "",
                "attempts": event.get("attempts"),
                "started": event.get("started"),
                "duration": event.get("duration"),
                "result": None if result is None else json.dumps(result, ensure_ascii=False, default=str),
                "error": event.get("error"),
                "output": output,
            }
        )

    def flush(self) -> None:
        if self.run_id and self.pending:
            rows, self.pending = self.pending, []
            self.history.add_steps(self.run_id, rows)
        self.last_flush = time.monotonic()

    def close(self) -> None:
        if not self.failed:
            with contextlib.suppress(sqlite3.Error, UsageError):
                self.flush()


def _step_key(event: Event) -> tuple[Any, str]:
    step = event.get("step") or {}
    return (step.get("id"), step.get("label") or "")


def open_history(warn: bool = True, find_interrupted: bool = True) -> History | None:
    """The history, with runs of dead processes marked interrupted; None (and a warning) if it cannot open.

    The scheduler's runs skip that search: the scheduler itself finds its dead children."""
    try:
        history = History()
        if find_interrupted:
            history.mark_interrupted()
        return history
    except (UsageError, sqlite3.Error) as exc:
        if warn:
            sys.stderr.write(f"runbook: warning: runs are not being recorded: {exc}\n")
        return None
