"""Wait for a duration, for an expression to hold, or for a path to appear or go.

``wait: 5s`` sleeps. With ``until``, the expression is rendered again at every poll
(every ``interval``) until it is true; with ``path``, polls until the path is
``present`` (default) or ``absent``. ``timeout`` bounds the polling; reaching it fails
the step.
"""

from runner.schema import DURATION, EXPRESSION
from tasks._pending import not_built

name = "wait"
shorthand = "duration"
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
run = not_built(name)
