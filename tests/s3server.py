"""A real S3-compatible server for the tests: moto's server mode over HTTP on 127.0.0.1.

``MotoServer`` runs ``moto.server.ThreadedMotoServer`` in this process, on a free port.
``FaultProxy`` is a TCP proxy put between runbook and that server to produce network
faults for real: it can reset the connection of chosen requests (a TCP RST, as a dropped
connection gives) or hold them for a while before passing them on, and it records the
head of every request it sees (method, target and headers), so tests can check what
runbook asked the server to verify. The moto server answers every request with
``Connection: close``, so each connection carries one request and the proxy sees them all.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

REGION = "us-east-1"
# Dummy credentials: moto accepts any. The metadata service is switched off so that a test
# without credentials does not wait for (or reach beyond loopback to) 169.254.169.254.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
NO_CREDENTIALS = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": REGION}


class MotoServer:
    """moto's S3 (and every other service) over HTTP at ``url``; ``stop()`` closes its socket."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.url = f"http://{host}:{port}"

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def stop(self) -> None:
        self._server.stop()
        inner = getattr(self._server, "_server", None)
        if inner is not None:
            inner.server_close()


class AuthMotoServer:
    """moto's server in a child process that checks credentials and IAM policies for real.

    moto lets the first ``setup_requests`` requests in unauthenticated (to make the bucket,
    the users and their keys), then checks every request's signature and the policies of
    the user whose key signed it. The child exits when its stdin closes (``stop()``).
    """

    def __init__(self, setup_requests: int) -> None:
        import os
        import subprocess
        import sys

        code = (
            "import sys; from moto.server import ThreadedMotoServer; "
            "s = ThreadedMotoServer(ip_address='127.0.0.1', port=0, verbose=False); s.start(); "
            "print(s.get_host_and_port()[1], flush=True); sys.stdin.read(); s.stop()"
        )
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(setup_requests)}
        self._process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline()  # the port, once the server listens
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("moto's server did not start")
        self.url = f"http://127.0.0.1:{int(line)}"

    def client(self, service: str, key: str = "setup", secret: str = "setup") -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=REGION,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )

    def stop(self) -> None:
        import subprocess

        assert self._process.stdin is not None
        with contextlib.suppress(OSError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


@dataclass
class Request:
    """The head of one request the proxy saw."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case

    def is_part(self, number: int | None = None) -> bool:
        """An UploadPart (of part ``number``, if given)."""
        return (
            self.method == "PUT"
            and "uploadId" in self.query
            and (number is None or self.query.get("partNumber") == [str(number)])
        )

    def is_abort(self) -> bool:
        return self.method == "DELETE" and "uploadId" in self.query

    def is_put_object(self) -> bool:
        return self.method == "PUT" and "uploadId" not in self.query and self.path.count("/") >= 2


@dataclass
class Rule:
    """What to do to requests that ``match``: "reset" them or "hold" them ``seconds``.

    ``times`` bounds how many requests the rule applies to (None: all)."""

    match: Callable[[Request], bool]
    action: str
    times: int | None = None
    seconds: float = 0.0
    applied: int = 0


@dataclass
class FaultProxy:
    """A proxy on 127.0.0.1 in front of ``target_port``; ``url`` is what runbook talks to."""

    target_port: int
    rules: list[Rule] = field(default_factory=list)
    seen: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()

    def add(
        self, match: Callable[[Request], bool], action: str, times: int | None = None, seconds: float = 0
    ):
        with self._lock:
            self.rules.append(Rule(match, action, times, seconds))

    def requests(self, match: Callable[[Request], bool] = lambda r: True) -> list[Request]:
        with self._lock:
            return [r for r in self.seen if match(r)]

    def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way
        self._listener.close()
        self._acceptor.join(timeout=10)
        for thread in list(self._threads):
            thread.join(timeout=10)

    # -- inside ------------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _rule_for(self, request: Request) -> Rule | None:
        with self._lock:
            self.seen.append(request)
            for rule in self.rules:
                if (rule.times is None or rule.applied < rule.times) and rule.match(request):
                    rule.applied += 1
                    return rule
        return None

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data and len(data) < 65536:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            if b"\r\n\r\n" not in data:
                return
            request = _parse(data.split(b"\r\n\r\n", 1)[0])
            rule = self._rule_for(request)
            if rule is not None and rule.action == "reset":
                # SO_LINGER with a zero timeout: close() sends a RST, as a dropped connection does.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            if rule is not None and rule.action == "hold":
                self._closing.wait(rule.seconds)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            except OSError:
                return
            with upstream:
                upstream.sendall(data)
                pump = threading.Thread(target=_copy, args=(conn, upstream), daemon=True)
                pump.start()
                _copy(upstream, conn)
                pump.join(timeout=30)


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Bytes from ``source`` to ``target`` until ``source`` ends; then end ``target``'s writing."""
    deadline = time.monotonic() + 60
    with contextlib.suppress(OSError):
        while time.monotonic() < deadline:
            chunk = source.recv(1 << 20)
            if not chunk:
                break
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _parse(head: bytes) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
    parts = urlsplit(target)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, parts.path, parse_qs(parts.query, keep_blank_values=True), headers)
