"""Run a command through /bin/sh, or a program with its arguments and no shell.

``cmd`` runs with ``/bin/sh -c`` (or ``executable``); ``argv`` runs the program
directly, with no shell quoting to get wrong. The command runs in its own process
group: on timeout or cancellation the whole group is stopped (TERM, then KILL).
stdout and stderr are captured (the tail is kept when they are long) and streamed.
``creates`` / ``removes`` skip the step when that path already exists / is absent.
"""

from runner.schema import string_or_list
from tasks._pending import not_built

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
    "rc": "exit code",
    "stdout": "standard output (the tail, when longer than the cap)",
    "stderr": "standard error (the tail, when longer than the cap)",
    "pid": "process id of the command",
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
run = not_built(name)
