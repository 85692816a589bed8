"""History writes sent over a pipe, for the scheduler's runs (SPEC §7).

A scheduled run does not open the history database itself: its ``HistoryRecorder``
writes to a ``HistoryPipe``, which sends each write (``start_run``, ``add_steps``,
``finish_run``) as one JSON line to the scheduler. The scheduler reads every run's
pipe and hands the writes to one ``HistoryWriter`` thread, which commits whatever has
arrived in one transaction. At a hundred runs a second that is a few commits a second
instead of three connections and three commits per run, and the scheduler learns how
each run ended from the run itself.

The same calls, as plain JSON, are what a run on another host will send (SPEC §9).

If the scheduler is gone (the pipe is broken), the run opens the database itself and
goes on recording there: the run row is written again (``INSERT OR IGNORE``) first,
in case the scheduler died before writing it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from runner.events import now_iso
from runner.history import WRITES, History

MAX_BATCH = 500  # writes per transaction, so a flood of output does not hold the lock long


class HistoryPipe:
    """The run's end: the ``History`` writing methods, sent as JSON lines to ``fd``."""

    def __init__(self, fd: int):
        self.fd = fd
        self.path = "the scheduler's history"
        self._started: dict[str, Any] | None = None
        self._direct: History | None = None

    def start_run(self, run_id: str, playbook: str, path: str, trigger: str, **more: Any) -> None:
        arguments = {
            "run_id": run_id, "playbook": playbook, "path": path, "trigger": trigger,
            "pid": os.getpid(), "started": now_iso(), "started_at": time.time(), **more,
        }  # fmt: skip
        self._started = arguments
        self._send("start_run", arguments)

    def add_steps(self, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self._send("add_steps", {"run_id": run_id, "rows": list(rows)})

    def finish_run(
        self,
        run_id: str,
        status: str,
        exit_code: int | None,
        duration: float | None = None,
        error: str | None = None,
    ) -> bool:
        arguments = {"run_id": run_id, "status": status, "exit_code": exit_code, "duration": duration}
        self._send("finish_run", {**arguments, "error": error, "ended": now_iso()})
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        if self._direct is not None:
            self._direct.close()

    def _send(self, method: str, arguments: dict[str, Any]) -> None:
        if self._direct is None:
            line = json.dumps([method, arguments], ensure_ascii=False, default=str) + "\n"
            try:
                _write_all(self.fd, line.encode())
                return
            except OSError:  # the scheduler is gone: record in the database directly
                self._direct = History()  # a UsageError if it cannot: the recorder warns
                if self._started is not None and method != "start_run":
                    self._direct.start_run(**self._started)
        getattr(self._direct, method)(**arguments)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RunPipe:
    """The scheduler's end of one run's pipe: reads what arrived, returns whole writes."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, False)
        self.buffer = b""
        self.eof = False

    def read(self) -> list[tuple[str, dict[str, Any]]]:
        """The writes that arrived whole since the last call (never blocks)."""
        chunks = [self.buffer]
        while not self.eof:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
                os.close(self.fd)
            chunks.append(chunk)
        *lines, self.buffer = b"".join(chunks).split(b"\n")
        writes = []
        for line in lines:
            try:
                method, arguments = json.loads(line)
            except ValueError:
                continue  # not a write (nothing else writes here): ignored, never fatal
            if method in WRITES and isinstance(arguments, dict):
                writes.append((method, arguments))
        return writes

    def close(self) -> None:
        if not self.eof:
            self.eof = True
            with contextlib.suppress(OSError):
                os.close(self.fd)


class HistoryWriter:
    """A thread that commits the history writes queued to it, in batches.

    ``submit`` queues a list of writes, each ``(method, keyword arguments)``, and of
    functions to call once everything before them is committed (so the scheduler logs
    a run as finished only when its row is in the history). ``close`` commits what is
    left and stops the thread."""

    def __init__(self, history: History | None = None):
        self.history = history
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="history writer", daemon=True)
        self.thread.start()

    def submit(self, items: list[tuple[str, dict[str, Any]] | Callable[[], None]]) -> None:
        if items:
            self.queue.put(items)

    def close(self, timeout: float = 60.0) -> None:
        self.queue.put(None)
        self.thread.join(timeout)

    def _loop(self) -> None:
        history = self.history or History()  # opened in this thread: it alone writes with it
        stopping = False
        while not stopping:
            batch: list[Any] = []
            item = self.queue.get()
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.extend(item)
                if stopping or len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            writes = [item for item in batch if isinstance(item, tuple)]
            if writes:
                self._commit(history, writes)
            for item in batch:
                if callable(item):
                    try:
                        item()
                    except Exception as exc:  # a callback's bug must not stop the recording
                        sys.stderr.write(f"runbook: warning: after a history write: {exc!r}\n")
        if self.history is None:
            history.close()

    @staticmethod
    def _commit(history: History, writes: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            history.apply(writes)
            return
        except (sqlite3.Error, OSError, TypeError, ValueError):
            pass
        for write in writes:  # one bad write must not cost the others: each on its own
            try:
                history.apply([write])
            except (sqlite3.Error, OSError, TypeError, ValueError) as exc:
                sys.stderr.write(f"runbook: warning: a history write ({write[0]}) was lost: {exc}\n")


def open_run_pipe() -> tuple[RunPipe, int]:
    """A pipe for one run: the scheduler's reading end and the run's writing end (an fd)."""
    read_fd, write_fd = os.pipe()
    return RunPipe(read_fd), write_fd


__all__ = ["HistoryPipe", "HistoryWriter", "RunPipe", "open_run_pipe"]
