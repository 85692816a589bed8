"""A real threaded HTTP(S) server on 127.0.0.1 for the tests, with scripted routes.

Each route is a function of the received request returning a ``Reply``: a status, a body,
headers, and optionally a hold before answering (``hold``: until that many seconds pass or
the server stops) or a connection dropped after part of the body (``drop_after``). Every
request is recorded (method, path, query, headers, body, arrival time, client port) before
its route runs, so a test can assert what the server saw. ``stop`` releases held
requests, shuts down open connections and joins every handler thread: nothing outlives
the test.

``make_certificates`` makes a private CA and a server certificate for 127.0.0.1 and
localhost signed by it, with ``cryptography`` (EC keys: fast to generate).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() at arrival
    client_port: int

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: float = 0.0  # seconds to hold the request before answering (released by stop)
    drop_after: int | None = None  # send this many body bytes, then close the connection

    def data(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value), {"Content-Type": "application/json"})


Route = Callable[[Seen], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers=dict(self.headers.items()),
            body=body,
            at=time.monotonic(),
            client_port=self.client_address[1],
        )
        owner = self.server.owner
        owner.record(seen)
        route = owner.routes.get(parts.path)
        reply = route(seen) if route is not None else Reply(404, f"no route {parts.path}\n")
        if reply.hold:
            owner.hold(self.connection, reply.hold)
        data = reply.data()
        self.send_response(reply.status)
        headers = {"Content-Length": str(len(data)), **reply.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        if reply.drop_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if reply.drop_after is not None:
            self.wfile.write(data[: reply.drop_after])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True  # server_close joins the handler threads
    owner: Server

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = super().get_request()
        self.owner.connections.add(conn)
        return conn, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hangs up or refuses the certificate is what some tests do

    def shutdown_request(self, request: Any) -> None:
        self.owner.connections.discard(request)
        super().shutdown_request(request)


class Server:
    """A threaded HTTP server on 127.0.0.1; HTTPS when given a certificate and key."""

    def __init__(self, tls: tuple[Path, Path] | None = None):
        self.routes: dict[str, Route] = {}
        self.seen: list[Seen] = []
        self.connections: set[socket.socket] = set()
        self.released = threading.Event()
        self.hung_up: list[float] = []  # when clients of held requests went away
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            # The handshake happens in each handler thread, not in the accepting one.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._httpd.server_address[1]
        self.scheme = "https" if tls is not None else "http"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def route(self, path: str, reply: Route | Reply) -> None:
        self.routes[path] = reply if callable(reply) else (lambda _seen: reply)

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def requests(self, path: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path == path]

    def hold(self, conn: socket.socket, seconds: float) -> None:
        """Wait until ``seconds`` pass or the server stops; note a client that hangs up meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.released.is_set() and time.monotonic() < deadline:
            try:
                readable, _, _ = select.select([conn], [], [], 0.05)
                if readable and not conn.recv(1, socket.MSG_PEEK):
                    with self._lock:
                        self.hung_up.append(time.monotonic())
                    return
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self.released.set()
        self._httpd.shutdown()
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        self._thread.join(10)


@contextlib.contextmanager
def serving(tls: tuple[Path, Path] | None = None) -> Iterator[Server]:
    server = Server(tls)
    try:
        yield server
    finally:
        server.stop()


# -- certificates -------------------------------------------------------------------------------


def make_certificates(folder: Path) -> dict[str, Path]:
    """A private CA (``ca.pem``) and a certificate it signed for 127.0.0.1 and localhost
    (``server.pem``, key ``server.key``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runbook test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths
