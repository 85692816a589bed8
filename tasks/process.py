"""Find processes, check that they run or do not, or stop them (psutil).

Processes are selected by every criterion given: ``name`` (the program's name, as
``pgrep -x`` matches it; a name longer than the 15 characters Linux keeps is matched
against the base name of the first argument), ``cmdline`` (a regex
searched in the command line joined with spaces), ``pid``, ``pidfile`` (a file holding
the pid; a missing file selects nothing) and ``user``. runbook itself and the processes
above it are never selected. ``state``:

- ``running`` (default): fails when fewer than ``min_count`` (default 1) or more than
  ``max_count`` match;
- ``absent``: fails when any matches;
- ``stopped``: sends ``signal`` (default ``TERM``) to each, waits up to ``timeout``
  (default 10s) for them to exit, then sends ``KILL`` to those still there. The result
  says which were stopped and which needed ``KILL``. Nothing matching is not an error
  (``changed: false``). Under ``--dry-run`` it lists what it would stop.

The result lists the matching processes with pid, name, user, command line, CPU use
(over ``interval`` when given, else since the process started, as ``ps`` shows it),
resident memory and start time. Checks only read: they run under ``--dry-run`` too.
"""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime, timezone
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION
from runner.units import format_duration, parse_duration

name = "process"
schema = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Program name, matched exactly (as pgrep -x)."},
        "cmdline": {"type": "string", "description": "Regex searched in the command line."},
        "pid": {"type": "integer", "minimum": 1},
        "pidfile": {"type": "string", "description": "File holding the pid."},
        "user": {"type": "string", "description": "Owner's user name."},
        "state": {"enum": ["running", "absent", "stopped"], "default": "running"},
        "min_count": {"type": "integer", "minimum": 0, "description": "running: at least this many."},
        "max_count": {"type": "integer", "minimum": 0, "description": "running: at most this many."},
        "signal": {
            "type": ["string", "integer"],
            "default": "TERM",
            "description": "stopped: the first signal (TERM, SIGTERM, INT, HUP, or a number).",
        },
        "timeout": {**DURATION, "default": "10s", "description": "stopped: time to exit before KILL."},
        "interval": {**DURATION, "description": "Sample CPU use over this long (default: since start)."},
    },
    "anyOf": [{"required": [k]} for k in ("name", "cmdline", "pid", "pidfile", "user")],
    "additionalProperties": False,
}
result = {
    "processes": "list of {pid, name, user, cmdline, cpu_percent, memory_rss, memory_percent, started, "
    "status}",
    "count": "number of matching processes",
    "stopped": "stopped: list of {pid, name, signal} (signal: the one that ended it, TERM or KILL)",
}
example = """\
- process: {name: nginx, min_count: 2}
- process: {cmdline: "celery.*worker", state: absent}
- process: {pidfile: /run/app.pid, state: stopped, timeout: 30s}
"""

FIELDS = ["pid", "name", "username", "cmdline", "cpu_times", "memory_info", "create_time", "status"]


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    import psutil

    state = args.get("state", "running")
    first = _signal(args.get("signal", "TERM"))  # a bad signal fails before anything is looked at
    found = find(psutil, args, ctx.cwd)
    interval = parse_duration(args["interval"]) if args.get("interval") is not None else None
    processes = describe(psutil, found, interval, ctx)
    out: dict[str, Any] = {"processes": processes, "count": len(processes), "changed": False}
    what = _criteria(args)
    if state == "running":
        low, high = args.get("min_count", 1), args.get("max_count")
        if len(processes) < low:
            problem = "no process matches" if not processes else f"only {len(processes)} match"
            raise HandlerError(f"{problem} {what} (expected at least {low})", result=out)
        if high is not None and len(processes) > high:
            raise HandlerError(
                f"{_count(len(processes))} {what} (expected at most {high}): {_pids(processes)}",
                result=out,
            )
        return out
    if state == "absent":
        if processes:
            raise HandlerError(
                f"{_count(len(processes))} {what}, expected none: {_pids(processes)}",
                result=out,
            )
        return out
    timeout = parse_duration(args.get("timeout", "10s"))
    out["changed"] = bool(found)
    if ctx.dry_run:
        out["stopped"] = []
        out["dry_run"] = (
            f"would send {first.name} to {_pids(processes)}, KILL after {format_duration(timeout)}"
            if processes
            else f"nothing to stop: no process matches {what}"
        )
        return out
    out["stopped"] = stop(psutil, found, first, timeout, ctx)
    return out


def find(psutil: Any, args: dict[str, Any], cwd: str) -> list[Any]:
    """The processes matching every criterion, runbook and its ancestors left out."""
    own = {os.getpid()}
    with _gone(psutil):
        own.update(p.pid for p in psutil.Process().parents())
    pids: set[int] | None = None
    if args.get("pid") is not None:
        pids = {int(args["pid"])}
    if args.get("pidfile"):
        from_file = _read_pidfile(os.path.join(cwd, os.path.expanduser(args["pidfile"])))
        pids = from_file if pids is None else pids & from_file
    try:
        pattern = re.compile(args["cmdline"]) if args.get("cmdline") else None
    except re.error as exc:
        raise HandlerError(f"cmdline {args['cmdline']!r} is not a valid regular expression: {exc}") from None
    wanted_name, user = args.get("name"), args.get("user")
    if pids is not None:
        candidates = []
        for pid in sorted(pids):
            with _gone(psutil):
                candidates.append(psutil.Process(pid))
    else:
        candidates = list(psutil.process_iter())
    found = []
    for proc in candidates:
        if proc.pid in own:
            continue
        with _gone(psutil), proc.oneshot():  # status, name and user come from one read of /proc
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue  # already dead, waiting for its parent to reap it
            if user is not None and proc.username() != user:
                continue
            # psutil completes a name Linux cut to 15 characters from the first argument.
            if wanted_name is not None and proc.name() != wanted_name:
                continue
            if pattern is not None and not pattern.search(" ".join(proc.cmdline())):
                continue
            found.append(proc)
    return found


def _read_pidfile(path: str) -> set[int]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise HandlerError(f"cannot read pidfile {path}: {exc.strerror or exc}") from None
    first = text.split()[0] if text else ""
    if not first.isdigit():
        raise HandlerError(f"pidfile {path} does not hold a process id (found {text[:40]!r})")
    return {int(first)}


class _gone:
    """Ignore processes that end, or cannot be read, while they are looked at."""

    def __init__(self, psutil: Any):
        # A process we may not read (another user's, under hidepid) cannot be checked: skipped.
        self.errors = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, trace: Any) -> bool:
        return kind is not None and issubclass(kind, self.errors)


def describe(psutil: Any, found: list[Any], interval: float | None, ctx: Any) -> list[dict[str, Any]]:
    if interval is not None:
        for proc in found:
            with _gone(psutil):
                proc.cpu_percent(None)
        if ctx.wait(interval):
            raise HandlerError("cancelled while measuring CPU use")
    now = time.time()
    total_memory = psutil.virtual_memory().total
    out = []
    for proc in found:
        with _gone(psutil):
            info = proc.as_dict(FIELDS, ad_value=None)
            if interval is not None:
                cpu = proc.cpu_percent(None)
            else:
                times, started = info["cpu_times"], info["create_time"]
                lifetime = max(now - started, 1e-6) if started else None
                cpu = 100.0 * (times.user + times.system) / lifetime if times and lifetime else None
            rss = info["memory_info"].rss if info["memory_info"] else None
            out.append(
                {
                    "pid": info["pid"],
                    "name": info["name"],
                    "user": info["username"],
                    "cmdline": " ".join(info["cmdline"] or []),
                    "cpu_percent": round(cpu, 1) if cpu is not None else None,
                    "memory_rss": rss,
                    "memory_percent": round(100.0 * rss / total_memory, 2) if rss is not None else None,
                    "started": datetime.fromtimestamp(info["create_time"], timezone.utc)
                    .astimezone()
                    .isoformat(timespec="seconds")
                    if info["create_time"]
                    else None,
                    "status": info["status"],
                }
            )
    return out


def _signal(value: Any) -> signal.Signals:
    try:
        if isinstance(value, int) or str(value).isdigit():
            return signal.Signals(int(value))
        text = str(value).upper()
        return signal.Signals[text if text.startswith("SIG") else f"SIG{text}"]
    except (KeyError, ValueError):
        raise HandlerError(
            f"unknown signal {value!r}: use a name such as TERM, INT, HUP, or a number"
        ) from None


def stop(
    psutil: Any, found: list[Any], first: signal.Signals, timeout: float, ctx: Any
) -> list[dict[str, Any]]:
    """Send ``first``, wait up to ``timeout``, then KILL; who ended, and by which signal."""
    stopped: list[dict[str, Any]] = []
    waiting = []
    for proc in found:
        try:
            name = proc.name()
            proc.send_signal(first)
            waiting.append((proc, name))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # it ended on its own meanwhile
        except psutil.AccessDenied:
            raise HandlerError(
                f"cannot stop process {proc.pid}: permission denied (run as its owner or as root)",
                result={"stopped": stopped},
            ) from None
    waiting = _wait_gone(psutil, waiting, timeout, ctx, stopped, first.name.removeprefix("SIG"))
    for proc, _name in waiting:
        try:
            proc.kill()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        except psutil.AccessDenied:
            raise HandlerError(
                f"cannot kill process {proc.pid}: permission denied", result={"stopped": stopped}
            ) from None
    left = _wait_gone(psutil, waiting, 5.0, ctx, stopped, "KILL")
    if left:
        raise HandlerError(
            f"process {_pids([{'pid': p.pid, 'name': n} for p, n in left])} still there 5s after KILL",
            result={"stopped": stopped},
        )
    return stopped


def _wait_gone(
    psutil: Any, waiting: list[Any], timeout: float, ctx: Any, stopped: list[dict[str, Any]], by: str
) -> list[Any]:
    """Poll until the processes are gone or ``timeout`` passes; return those still running."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        still = []
        for proc, name in waiting:
            try:
                # A zombie is dead (only its parent must still reap it); is_running() is false
                # also when the pid now belongs to another process.
                ended = not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                ended = True
            if ended:
                stopped.append({"pid": proc.pid, "name": name, "signal": by})
            else:
                still.append((proc, name))
        waiting = still
        left = deadline - time.monotonic()
        if not waiting or left <= 0:
            return waiting
        if ctx.wait(min(pause, left)):
            raise HandlerError("cancelled while waiting for processes to stop", result={"stopped": stopped})
        pause = min(pause * 2, 0.2)


def _count(n: int) -> str:
    return "1 process matches" if n == 1 else f"{n} processes match"


def _criteria(args: dict[str, Any]) -> str:
    parts = [f"{key} {args[key]!r}" for key in ("name", "cmdline", "pid", "pidfile", "user") if key in args]
    return " and ".join(parts)


def _pids(processes: list[dict[str, Any]]) -> str:
    shown = ", ".join(f"{p['pid']} ({p['name']})" for p in processes[:10])
    return shown + (f" and {len(processes) - 10} more" if len(processes) > 10 else "")
