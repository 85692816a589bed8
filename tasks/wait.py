"""Wait for a duration, for an expression to hold, or for a path to appear or go.

``wait: 5s`` sleeps. With ``until``, the expression is evaluated again at every poll
(every ``interval``) until it is true; with ``path``, polls until the path is
``present`` (default) or ``absent``. ``timeout`` bounds the polling; reaching it fails
the step. Under ``--dry-run`` nothing is waited for.
"""

from __future__ import annotations

import os
import time
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, EXPRESSION
from runner.units import format_duration, parse_duration

name = "wait"
shorthand = "duration"
unrendered = ("until",)  # evaluated afresh at every poll, through ctx.evaluate
schema = {
    "type": "object",
    "properties": {
        "duration": {**DURATION, "description": "How long to wait (e.g. 5s, 250ms)."},
        "until": {**EXPRESSION, "description": "Expression polled until it is true."},
        "path": {"type": "string", "description": "A path to poll for."},
        "state": {
            "enum": ["present", "absent"],
            "default": "present",
            "description": "With path: wait until the path exists (present) or is gone (absent).",
        },
        "interval": {**DURATION, "default": "1s", "description": "Time between polls."},
        "timeout": {**DURATION, "description": "Give up (and fail) after this long."},
    },
    "additionalProperties": False,
}
result = {
    "waited": "seconds spent waiting",
    "polls": "how many times the condition was checked",
}
example = """\
- wait: 5s
- wait: {path: /var/run/app.pid, state: present, timeout: 30s, interval: 500ms}
- wait: {until: "steps.health.status_code == 200", timeout: 2m}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    duration = parse_duration(args.get("duration", 0))
    timeout = parse_duration(args["timeout"]) if "timeout" in args else None
    interval = parse_duration(args.get("interval", "1s"))
    condition = _condition(args, ctx)
    if ctx.dry_run:
        what = f"until {_describe(args)}" if condition else f"{format_duration(duration)}"
        return {"waited": 0.0, "polls": 0, "changed": False, "dry_run": f"would wait {what}"}
    start = time.monotonic()
    if condition is None:
        if timeout is not None and timeout < duration:
            raise HandlerError(
                f"the timeout ({format_duration(timeout)}) is shorter than the duration "
                f"({format_duration(duration)}): nothing to wait for could end in time"
            )
        if ctx.wait(duration):
            raise HandlerError("cancelled while waiting", result={"waited": time.monotonic() - start})
        return {"waited": time.monotonic() - start, "polls": 0, "changed": False}
    polls = 0
    while True:
        polls += 1
        if condition():
            return {"waited": time.monotonic() - start, "polls": polls, "changed": False}
        waited = time.monotonic() - start
        if timeout is not None and waited >= timeout:
            raise HandlerError(
                f"{_describe(args)} still not true after {format_duration(timeout)} ({polls} checks)",
                result={"waited": waited, "polls": polls},
            )
        pause = interval if timeout is None else min(interval, max(0.0, timeout - waited))
        if ctx.wait(pause):
            raise HandlerError("cancelled while waiting", result={"waited": waited, "polls": polls})


def _condition(args: dict[str, Any], ctx: Any) -> Any:
    if "until" in args:
        return lambda: bool(ctx.evaluate(args["until"]))
    if "path" in args:
        path = os.path.join(ctx.cwd, os.path.expanduser(args["path"]))
        want = args.get("state", "present") == "present"
        return lambda: os.path.lexists(path) == want
    return None


def _describe(args: dict[str, Any]) -> str:
    if "until" in args:
        return f"'{args['until']}'"
    return f"{args['path']} {'present' if args.get('state', 'present') == 'present' else 'absent'}"
