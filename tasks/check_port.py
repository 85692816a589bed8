"""Check that a TCP port is open (or closed), optionally waiting until it is.

With ``ports``, every port is probed concurrently and the step holds only if all
match ``state``. ``wait_for`` keeps polling until the state holds or that time has
passed. IPv4 and IPv6 addresses and host names all work.
"""

from runner.schema import DURATION
from tasks._pending import not_built

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

name = "check_port"
schema = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "default": "127.0.0.1"},
        "port": {**_PORT, "description": "The TCP port."},
        "ports": {"type": "array", "items": _PORT, "minItems": 1},
        "state": {"enum": ["open", "closed"], "default": "open"},
        "timeout": {**DURATION, "default": "2s", "description": "Timeout of each connect."},
        "wait_for": {**DURATION, "description": "Poll until the state holds or this passes."},
        "interval": {**DURATION, "default": "250ms", "description": "Time between polls."},
    },
    "oneOf": [{"required": ["port"]}, {"required": ["ports"]}],
    "additionalProperties": False,
}
result = {
    "open": "true when every probed port is in the expected state",
    "latency_ms": "connect time in milliseconds",
    "address": "the address connected to",
    "ports": "per-port results, when ports is given",
}
example = """\
- check_port: {host: db.internal, port: 5432, wait_for: 1m}
- check_port: {host: 127.0.0.1, ports: [80, 443], timeout: 500ms}
"""
run = not_built(name)
