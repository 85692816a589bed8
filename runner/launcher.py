"""The scheduler's launcher: a process that holds runbook and the scheduled playbooks
loaded, and forks each run from itself (SPEC §7).

A new interpreter takes half a second to start runbook; a fork of this process takes
a millisecond, and the run finds its playbook already parsed and checked. The
scheduler (``runner.daemon``) never forks itself: it serves HTTP from threads and
writes the history from one, and a fork could copy a lock another thread holds. The
launcher has one thread.

It talks with the scheduler over one Unix socket. The scheduler sends requests, each
a 4-byte length and a JSON object, with a file descriptor attached to ``run``:

- ``{"op": "playbooks", "files": [[path, text], ...]}``: load these (at start and on
  SIGHUP), replacing what was held. A file's vars files and secrets are read then, so
  an edit to them, as to the playbook, takes effect on SIGHUP;
- ``{"op": "run", "run_id", "path", "text"}`` and the writing end of the run's history
  pipe: fork a run. A playbook not held (it failed to load here) is loaded by the run.

The launcher answers with JSON lines: ``{"op": "started", "run_id", "pid"}`` (or
``{"op": "failed", "run_id", "error"}`` if it could not fork) and
``{"op": "exited", "pid", "code"}`` (the exit code, or minus the signal number).
It exits when the scheduler closes the socket; runs still going carry on and record
themselves (``runner.historypipe``).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from typing import Any

HEADER = struct.Struct("!I")
SEND_TIMEOUT = 10.0  # seconds
# Imported before the first fork, so each run starts with them loaded.
PRELOAD = ("runner.play", "runner.historypipe", "runner.templating", "runner.vault", "runner.schedules")


class Launcher:
    """The scheduler's side: starts the launcher process and talks with it."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "runner.launcher", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        theirs.close()
        self.sock = ours
        self.sock.setblocking(False)
        self.buffer = b""
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def load(self, files: list[tuple[str, str]]) -> None:
        self._send({"op": "playbooks", "files": files})

    def run(self, run_id: str, path: str, text: str, history_fd: int) -> None:
        self._send({"op": "run", "run_id": run_id, "path": path, "text": text}, history_fd)

    def read(self) -> list[dict[str, Any]]:
        """The messages that arrived (never blocks); ``closed`` is set once the launcher is gone."""
        chunks = [self.buffer]
        while not self.closed:
            try:
                chunk = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            chunks.append(chunk)
        *lines, self.buffer = b"".join(chunks).split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def close(self, timeout: float = 10.0) -> None:
        """Close the socket (the launcher exits at that) and wait for it."""
        self.sock.close()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _send(self, message: dict[str, Any], fd: int | None = None) -> None:
        body = json.dumps(message).encode()
        data = HEADER.pack(len(body)) + body
        # A request is small and the launcher reads them at once; one that cannot be sent in
        # SEND_TIMEOUT means the launcher is stuck: it counts as gone (and is started again).
        self.sock.settimeout(SEND_TIMEOUT)
        try:
            if fd is None:
                self.sock.sendall(data)
            else:
                sent = socket.send_fds(self.sock, [data], [fd])
                self.sock.sendall(data[sent:])
        except OSError:
            self.closed = True
        finally:
            self.sock.setblocking(False)


# -- the launcher process ------------------------------------------------------------------


def serve(sock: socket.socket) -> None:
    """The launcher's loop: requests from the scheduler, exits of the runs."""
    for name in PRELOAD:
        __import__(name)
    from runner.checks import combined_schema
    from runner.registry import builtin_handlers

    combined_schema(builtin_handlers())
    _warm_up()
    _freeze()
    # The scheduler decides about signals; a Ctrl-C at its terminal reaches this process too.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # only to wake the loop
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    playbooks: dict[tuple[str, str], Any] = {}
    closing = (sock, selector, wake_r, wake_w)
    while True:
        for key, _ in selector.select():
            if key.fileobj == wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
                continue
            message, fds = _receive(sock)
            if message is None:
                return
            if message.get("op") == "playbooks":
                playbooks = _load_all(message["files"])
            elif message.get("op") == "run" and fds:
                try:
                    pid = _fork_run(message, fds[0], playbooks, closing)
                except OSError as exc:  # no more processes or memory: this run fails, not the launcher
                    _answer(sock, {"op": "failed", "run_id": message["run_id"], "error": str(exc)})
                else:
                    _answer(sock, {"op": "started", "run_id": message["run_id"], "pid": pid})
                finally:
                    os.close(fds[0])
        _reap(sock)


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """One request and the descriptors sent with it; (None, []) when the scheduler is gone."""
    sock.setblocking(True)
    header, fds, _, _ = socket.recv_fds(sock, HEADER.size, 1)
    for fd in fds:
        os.set_inheritable(fd, False)  # a run's own processes must not hold its history pipe
    header += _exactly(sock, HEADER.size - len(header)) if header else b""
    if len(header) < HEADER.size:
        return None, fds
    body = _exactly(sock, HEADER.unpack(header)[0])
    return json.loads(body), fds


def _exactly(sock: socket.socket, size: int) -> bytes:
    parts = []
    while size > 0:
        part = sock.recv(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _answer(sock: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the scheduler is gone: the loop ends at the next read
        sock.sendall(json.dumps(message).encode() + b"\n")


def _load_all(files: list[list[str]]) -> dict[tuple[str, str], Any]:
    from runner.errors import PlaybookError, RunbookError
    from runner.playbook import load_playbook

    loaded = {}
    for path, text in files:
        # A file that fails here (the scheduler loaded it a moment ago) is loaded by each run,
        # which then reports the problem the usual way.
        with contextlib.suppress(PlaybookError, RunbookError):
            loaded[(path, text)] = load_playbook(path, text=text)
    _freeze()
    return loaded


def _warm_up() -> None:
    """Run a one-step playbook here once, before any fork, recording nothing.

    Python 3.11 specialises a function's bytecode in place as it runs: a run that is the
    first to call the engine writes to (and so copies) the pages of every function it
    calls. Run once here, they are shared by every run; measured, a run then costs ~10%
    less CPU (~150 fewer pages copied)."""
    from runner.play import play
    from runner.playbook import load_playbook

    try:
        playbook = load_playbook("<warm-up>", text='name: warm-up\nsteps:\n  - shell: "true"\n')
        play(playbook, output="none", record=False)
    except Exception:  # a faster run is not worth a launcher that does not start
        pass
    # The run's step thread ends once the run is over; forks wait for it (forking a
    # process with threads is unsafe), a second at most.
    deadline = time.monotonic() + 1.0
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.001)


def _freeze() -> None:
    # What exists now lives until the next load: out of the collector's sight, a run's
    # collections do not touch (and so copy) the pages it lives on.
    gc.collect()
    gc.freeze()


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _answer(sock, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})


def _fork_run(message: dict[str, Any], history_fd: int, playbooks: dict[Any, Any], closing: Any) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        code = _run(message, history_fd, playbooks.get((message["path"], message["text"])), closing)
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _run(message: dict[str, Any], history_fd: int, playbook: Any, closing: Any) -> int:
    """The body of a run's process."""
    sock, selector, wake_r, wake_w = closing
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    selector.close()
    sock.close()
    os.close(wake_r)
    os.close(wake_w)
    os.setsid()  # its own session: a Ctrl-C meant for the scheduler does not cancel it at once
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # the history keeps the output; stderr stays the scheduler's, for crashes
    os.close(devnull)
    from runner.historypipe import HistoryPipe
    from runner.play import play, play_file

    history = HistoryPipe(history_fd)
    options = {"output": "none", "trigger": "schedule", "run_id": message["run_id"], "history": history}
    if playbook is None:
        return play_file(message["path"], text=message["text"], **options)
    return play(playbook, **options)


def main() -> None:
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
