"""Check that a TCP port is open (or closed), optionally waiting until it is.

A port is open when a TCP connection to it is accepted within ``timeout``; the
connection is closed at once, nothing is sent. ``host`` may be an IPv4 or IPv6 address
(``::1``) or a name; a name's addresses are tried in the resolver's order until one
accepts. With ``ports``, every entry is probed (duplicates too), all at once from one
thread, and the step holds only if every probe finds the ``state`` asked for.
``wait_for`` keeps checking, every ``interval``, until the state holds or that time has
passed (an unknown host is checked again too, since a name may appear later).
The check changes nothing, so it runs under ``--dry-run`` too.
"""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION
from runner.units import format_duration, parse_duration

_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}

name = "check_port"
schema = {
    "type": "object",
    "properties": {
        "host": {"type": "string", "default": "127.0.0.1", "description": "An address or a host name."},
        "port": {**_PORT, "description": "The TCP port."},
        "ports": {"type": "array", "items": _PORT, "minItems": 1, "description": "Several ports."},
        "state": {"enum": ["open", "closed"], "default": "open"},
        "timeout": {**DURATION, "default": "2s", "description": "Timeout of each connect."},
        "wait_for": {**DURATION, "description": "Poll until the state holds or this passes."},
        "interval": {**DURATION, "default": "250ms", "description": "Time between polls."},
    },
    "oneOf": [{"required": ["port"]}, {"required": ["ports"]}],
    "additionalProperties": False,
}
result = {
    "open": "true when every probed port accepted a connection",
    "latency_ms": "connect time in milliseconds (with ports: the slowest probe's)",
    "address": "the IP address connected to (or last tried)",
    "host": "the host as given",
    "ports": "with ports: one entry per probe ({port, open, latency_ms, address, reason})",
    "reason": "why the port is not open (connection refused, timed out...)",
    "polls": "how many times the ports were checked",
    "waited": "seconds spent checking",
}
example = """\
- check_port: {host: db.internal, port: 5432, wait_for: 1m}
- check_port: {host: 127.0.0.1, ports: [80, 443], timeout: 500ms}
- check_port: {host: "::1", port: 8080, state: closed}
"""

# Probes in flight at once: a listening socket's accept queue (often 128 or 511 entries)
# drops the connections beyond it, which then wait a second for a SYN retry.
BATCH = 128
SELECT_SLICE = 0.1  # longest wait between looks at cancellation
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK, errno.EAGAIN)


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    host = str(args.get("host", "127.0.0.1")).strip()
    ports = [int(p) for p in args["ports"]] if "ports" in args else [int(args["port"])]
    want_open = args.get("state", "open") == "open"
    timeout = parse_duration(args.get("timeout", "2s"))
    wait_for = parse_duration(args["wait_for"]) if args.get("wait_for") is not None else None
    interval = parse_duration(args.get("interval", "250ms"))
    start = time.monotonic()
    polls = 0
    while True:
        polls += 1
        waited = time.monotonic() - start
        connect_timeout = timeout if wait_for is None else max(0.01, min(timeout, wait_for - waited))
        try:
            probes = probe(host, ports, connect_timeout, ctx.cancelled)
            unknown: HandlerError | None = None
        except UnknownHost as exc:
            probes, unknown = [], exc
        waited = time.monotonic() - start
        if ctx.cancelled():
            raise HandlerError(
                f"cancelled while checking {_where(host, ports)}", result=_counts(polls, waited)
            )
        found = {**_summary(host, probes, "ports" in args), **_counts(polls, waited)}
        if unknown is None and all(p.open == want_open for p in probes):
            found["changed"] = False
            return found
        if wait_for is None or waited >= wait_for:
            if unknown is not None:
                raise HandlerError(str(unknown), result=found)
            raise HandlerError(_failure(host, probes, want_open, wait_for, polls), result=found)
        if ctx.wait(min(interval, max(0.0, wait_for - waited))):
            raise HandlerError(f"cancelled while waiting for {_where(host, ports)}", result=found)


# -- probing ------------------------------------------------------------------------------------


class UnknownHost(HandlerError):
    pass


@dataclass(eq=False)
class Probe:
    """One connect attempt to one port, over the host's addresses in turn."""

    port: int
    addresses: list[tuple[int, tuple[Any, ...]]]  # (family, sockaddr without the port)
    tried: int = 0
    sock: socket.socket | None = None
    started: float = 0.0
    deadline: float = 0.0
    open: bool = False
    seconds: float = 0.0
    address: str = ""
    error: str | None = None
    spent: list[float] = field(default_factory=list)

    def entry(self) -> dict[str, Any]:
        found = {
            "port": self.port,
            "open": self.open,
            "latency_ms": round(self.seconds * 1000, 3),
            "address": self.address,
        }
        if self.error is not None:
            found["reason"] = self.error
        return found


def resolve(host: str) -> list[tuple[int, tuple[Any, ...]]]:
    """The host's TCP addresses, in the resolver's order of preference, without duplicates."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        infos = socket.getaddrinfo(bare, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_AGAIN,):
            reason = "the DNS server did not answer (a temporary failure; try again or check the resolver)"
        else:
            reason = "DNS cannot resolve it (check the name)"
        raise UnknownHost(f"unknown host {host}: {reason}") from None
    except UnicodeError:
        raise UnknownHost(f"unknown host {host}: not a valid host name") from None
    seen: list[tuple[int, tuple[Any, ...]]] = []
    for family, _kind, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr) not in seen:
            seen.append((family, sockaddr))
    return seen


def probe(host: str, ports: list[int], timeout: float, cancelled: Any) -> list[Probe]:
    """Connect to every port at once (BATCH in flight) from this thread; return the probes in order."""
    addresses = resolve(host)
    probes = [Probe(port, addresses) for port in ports]
    waiting = list(reversed(probes))
    in_flight: dict[int, Probe] = {}  # fd -> probe
    batch = min(BATCH, max(8, _free_descriptors() // 2))
    with selectors.DefaultSelector() as selector:
        while waiting or in_flight:
            while waiting and len(in_flight) < batch:
                _start(waiting.pop(), timeout, selector, in_flight, waiting)
            if not in_flight:
                continue
            now = time.monotonic()
            nearest = min(p.deadline for p in in_flight.values())
            for key, _events in selector.select(max(0.0, min(nearest - now, SELECT_SLICE))):
                current = in_flight.pop(key.fd)
                selector.unregister(key.fd)
                assert current.sock is not None
                code = current.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                _settle(current, code, timeout, selector, in_flight, waiting)
            now = time.monotonic()
            for fd, late in [(fd, p) for fd, p in in_flight.items() if p.deadline <= now]:
                del in_flight[fd]
                selector.unregister(fd)
                _settle(late, errno.ETIMEDOUT, timeout, selector, in_flight, waiting)
            if cancelled():
                for fd, left in in_flight.items():
                    selector.unregister(fd)
                    _close(left)
                return probes
    return probes


def _start(
    current: Probe, timeout: float, selector: Any, in_flight: dict[int, Probe], waiting: list[Probe]
) -> None:
    family, sockaddr = current.addresses[current.tried]
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise HandlerError(f"cannot open a socket: {os.strerror(exc.errno or 0)}") from None
    sock.setblocking(False)
    current.sock = sock
    current.address = sockaddr[0]
    current.started = time.monotonic()
    current.deadline = current.started + timeout
    code = sock.connect_ex((sockaddr[0], current.port, *sockaddr[2:]))
    if code in _IN_PROGRESS:
        in_flight[sock.fileno()] = current
        selector.register(sock, selectors.EVENT_WRITE)
    else:
        _settle(current, code, timeout, selector, in_flight, waiting)


def _settle(
    current: Probe,
    code: int,
    timeout: float,
    selector: Any,
    in_flight: dict[int, Probe],
    waiting: list[Probe],
) -> None:
    """Record how a connect ended; on failure, queue the host's next address if any."""
    current.seconds = time.monotonic() - current.started
    _close(current)
    current.tried += 1
    if code == 0:
        current.open, current.error = True, None
        return
    current.error = (
        f"timed out after {format_duration(timeout)}" if code == errno.ETIMEDOUT else _reason(code)
    )
    if current.tried < len(current.addresses):
        waiting.append(current)


def _close(current: Probe) -> None:
    if current.sock is not None:
        current.sock.close()
        current.sock = None


def _reason(code: int) -> str:
    return {
        errno.ECONNREFUSED: "connection refused",
        errno.ENETUNREACH: "network unreachable",
        errno.EHOSTUNREACH: "no route to host",
        errno.EADDRNOTAVAIL: "address not available here",
        errno.ECONNRESET: "connection reset",
    }.get(code, os.strerror(code).lower())


def _free_descriptors() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 16


# -- results and messages -----------------------------------------------------------------------


def _summary(host: str, probes: list[Probe], many: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "host": host,
        "open": bool(probes) and all(p.open for p in probes),
        "latency_ms": round(max((p.seconds for p in probes), default=0.0) * 1000, 3),
        "address": probes[0].address if probes else None,
    }
    if many:
        found["ports"] = [p.entry() for p in probes]
    elif probes and probes[0].error is not None:
        found["reason"] = probes[0].error
    return found


def _counts(polls: int, waited: float) -> dict[str, Any]:
    return {"polls": polls, "waited": round(waited, 6)}


def _label(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _where(host: str, ports: list[int]) -> str:
    return _label(host, ports[0]) if len(ports) == 1 else f"{len(ports)} ports on {host}"


def _failure(host: str, probes: list[Probe], want_open: bool, wait_for: float | None, polls: int) -> str:
    """One line: which probes did not find the state asked for, and why."""
    state = "open" if want_open else "closed"
    wrong = [p for p in probes if p.open != want_open]
    after = f" after {format_duration(wait_for)} ({polls} checks)" if wait_for is not None else ""
    if len(probes) == 1:
        (one,) = probes
        shown = _label(one.address, one.port)
        if host not in (one.address, f"[{one.address}]"):
            shown = f"{_label(host, one.port)} ({one.address})"
        if want_open:
            return f"{shown} is {'still ' if after else ''}not open{after}: {one.error}"
        return (
            f"{shown} is {'still ' if after else ''}open{after} (it accepted a connection); expected closed"
        )
    listed = ", ".join(f"{p.port} ({p.error})" if want_open else str(p.port) for p in wrong[:5])
    more = f" and {len(wrong) - 5} more" if len(wrong) > 5 else ""
    still = "still " if after else ""
    return f"{len(wrong)} of {len(probes)} ports on {host} are {still}not {state}{after}: {listed}{more}"
