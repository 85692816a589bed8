"""Run a command through /bin/sh, or a program with its arguments and no shell.

``cmd`` runs with ``/bin/sh -c`` (or ``executable``); ``argv`` runs the program
directly, with no shell quoting to get wrong. The command runs in its own process
group: on timeout or cancellation the whole group gets SIGTERM, then SIGKILL after a
grace period, so no child survives. stdout and stderr are streamed line by line and
captured (the last 1 MiB of each is kept, and the result says when it was cut).
``creates`` / ``removes`` skip the step when that path already exists / is absent.
Under ``--dry-run`` the command is shown, not run, unless the step says ``dry_run: run``.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from runner.taskctx import env_text

name = "shell"
shorthand = "cmd"
schema = {
    "type": "object",
    "properties": {
        "cmd": {"type": "string", "description": "Command line run by /bin/sh -c."},
        "argv": {
            "type": "array",
            "items": {"type": ["string", "number"]},
            "minItems": 1,
            "description": "Program and arguments, run without a shell.",
        },
        "cwd": {"type": "string", "description": "Working folder (default: the current one)."},
        "env": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
            "description": "Extra environment variables.",
        },
        "stdin": {"type": "string", "description": "Text written to the command's standard input."},
        "expect_rc": {
            "type": ["integer", "array"],
            "items": {"type": "integer"},
            "default": [0],
            "description": "Exit codes that count as success.",
        },
        "creates": {**string_or_list, "description": "Skip when this path exists."},
        "removes": {**string_or_list, "description": "Skip when this path does not exist."},
        "executable": {"type": "string", "default": "/bin/sh", "description": "Shell used for cmd."},
    },
    "oneOf": [{"required": ["cmd"]}, {"required": ["argv"]}],
    "additionalProperties": False,
}
result = {
    "rc": "exit code (negative: killed by that signal)",
    "stdout": "standard output (the tail, when longer than the cap)",
    "stderr": "standard error (the tail, when longer than the cap)",
    "pid": "process id of the command",
    "cmd": "the command as run",
}
example = """\
- shell: "df -h / | tail -1"
- id: build
  shell:
    argv: [make, -j4, all]
    cwd: /srv/app
    env: {CC: clang}
    expect_rc: [0, 2]
"""

CAPTURE_BYTES = 1024 * 1024  # per stream
LONGEST_LINE = 64 * 1024  # a longer "line" is emitted in pieces
DRAIN_AFTER_EXIT = 0.2  # seconds to keep reading pipes a background child still holds


class Tail:
    """The last ``cap`` bytes written, and how many were dropped before them."""

    def __init__(self, cap: int = CAPTURE_BYTES):
        self.cap = cap
        self.data = bytearray()
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.cap
        if excess > 0:
            del self.data[:excess]
            self.dropped += excess

    def text(self) -> str:
        start = 0
        if self.dropped:  # the cut may have split a character: start at the next one
            while start < min(4, len(self.data)) and (self.data[start] & 0xC0) == 0x80:
                start += 1
        body = self.data[start:].decode("utf-8", errors="replace")
        if self.dropped:
            return f"[... {self.dropped} bytes cut: only the last {self.cap} are kept ...]\n" + body
        return body


def _paths(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _guard(args: dict[str, Any], cwd: str) -> str | None:
    """Why ``creates``/``removes`` skip the step, or None."""
    for path in _paths(args.get("creates")):
        if (Path(cwd) / os.path.expanduser(path)).exists():
            return f"{path} exists (creates)"
    for path in _paths(args.get("removes")):
        if not (Path(cwd) / os.path.expanduser(path)).exists():
            return f"{path} does not exist (removes)"
    return None


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    cwd = str(Path(ctx.cwd) / os.path.expanduser(args["cwd"])) if args.get("cwd") else ctx.cwd
    reason = _guard(args, cwd)
    if reason:
        return {"skip_reason": reason, "changed": False}
    if "argv" in args:
        argv = [str(part) for part in args["argv"]]
        display = shlex.join(argv)
    else:
        argv = [args.get("executable", "/bin/sh"), "-c", args["cmd"]]
        display = args["cmd"]
    if ctx.dry_run:
        return {"cmd": display, "changed": None, "dry_run": f"would run: {display}"}
    if not os.path.isdir(cwd):
        raise HandlerError(f"working folder {cwd} does not exist")
    added = {**ctx.env, **{key: env_text(value) for key, value in (args.get("env") or {}).items()}}
    # Without additions the child inherits our environment: building one costs a copy per spawn.
    env = {**os.environ, **added} if added else None
    expect = args.get("expect_rc", [0])
    expect = [expect] if isinstance(expect, int) else list(expect)
    try:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE if "stdin" in args else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, killed as a whole
        )
    except FileNotFoundError:
        raise HandlerError(f"command not found: {argv[0]} (is it installed and on PATH?)") from None
    except PermissionError:
        raise HandlerError(f"permission denied running {argv[0]} (is it executable?)") from None
    except OSError as exc:
        raise HandlerError(f"cannot run {argv[0]}: {exc.strerror}") from None
    ctx.processes.add(process.pid)
    try:
        stdout, stderr, killed = _communicate(process, args.get("stdin"), ctx)
    finally:
        ctx.processes.discard(process.pid)
    rc = process.returncode
    outcome = {
        "rc": rc,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "pid": process.pid,
        "cmd": display,
        "changed": True,
    }
    if stdout.dropped:
        outcome["stdout_truncated"] = True
    if stderr.dropped:
        outcome["stderr_truncated"] = True
    if killed:
        raise HandlerError("the command was stopped", result=outcome)
    if rc not in expect:
        detail = f"killed by signal {-rc}" if rc < 0 else f"exited with {rc}"
        wanted = expect[0] if len(expect) == 1 else expect
        raise HandlerError(f"command {detail} (expected {wanted})", result=outcome)
    return outcome


def _communicate(process: subprocess.Popen[bytes], stdin: str | None, ctx: Any) -> tuple[Tail, Tail, bool]:
    """Stream and capture both pipes until the command ends; stop its group if cancelled."""
    if stdin is not None:
        threading.Thread(target=_feed, args=(process, stdin), daemon=True).start()
    tails = {"stdout": Tail(), "stderr": Tail()}
    partial = {"stdout": b"", "stderr": b""}
    selector = selectors.DefaultSelector()
    assert process.stdout is not None and process.stderr is not None
    selector.register(process.stdout, selectors.EVENT_READ, "stdout")
    selector.register(process.stderr, selectors.EVENT_READ, "stderr")
    killed = False
    drain_until: float | None = None
    try:
        while selector.get_map():
            for key, _ in selector.select(timeout=0.05):
                stream = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                tails[stream].add(chunk)
                partial[stream] = _emit_lines(partial[stream] + chunk, stream, ctx)
            if not killed and ctx.cancelled():
                killed = True
                _stop_group(process, ctx.kill_grace)
            if process.poll() is not None:
                # A background child may hold the pipes open; read what is there, then stop.
                drain_until = drain_until or time.monotonic() + DRAIN_AFTER_EXIT
                if time.monotonic() >= drain_until:
                    break
    finally:
        selector.close()
        for pipe in (process.stdout, process.stderr):
            pipe.close()
        process.wait()
        if killed:
            _signal_group(process.pid, signal.SIGKILL)  # stragglers that outlived the leader
    for stream, rest in partial.items():
        if rest:
            ctx.output(rest.decode("utf-8", errors="replace"), stream)
    return tails["stdout"], tails["stderr"], killed


def _emit_lines(buffer: bytes, stream: str, ctx: Any) -> bytes:
    """Emit every complete line of ``buffer``; return the incomplete rest."""
    *lines, rest = buffer.split(b"\n")
    for line in lines:
        ctx.output(line.rstrip(b"\r").decode("utf-8", errors="replace"), stream)
    while len(rest) > LONGEST_LINE:
        cut = _char_boundary(rest, LONGEST_LINE)
        ctx.output(rest[:cut].decode("utf-8", errors="replace"), stream)
        rest = rest[cut:]
    return rest


def _char_boundary(data: bytes | bytearray, index: int) -> int:
    """The nearest index at or before ``index`` that does not split a UTF-8 character."""
    limit = max(0, index - 3)
    while index > limit and (data[index] & 0xC0) == 0x80:  # 0b10xxxxxx: inside a character
        index -= 1
    return index or len(data)


def _feed(process: subprocess.Popen[bytes], text: str) -> None:
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError, OSError):
        process.stdin.write(text.encode())
    with contextlib.suppress(BrokenPipeError, OSError):
        process.stdin.close()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _stop_group(process: subprocess.Popen[bytes], grace: float) -> None:
    """SIGTERM to the whole group, SIGKILL if the command has not ended after ``grace``."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace)
    _signal_group(process.pid, signal.SIGKILL)
