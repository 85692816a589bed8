"""The HTTP client of the ``http`` handler: one shared requests Session, cancellable requests,
and requests' exceptions translated into one-line errors.

Imported only when an ``http`` step runs (it imports requests, which costs a tenth of a
second): ``runbook validate`` and ``runbook tasks`` never load it.

One Session per process, so per run (the scheduler runs each run in its own process),
shared by the worker threads of ``parallel:`` groups and ``loop_parallel``: keep-alive
connections are reused across steps and loop items. Its pools keep up to
``POOL_SIZE`` connections per host, more than the steps that run at once by default.
The Session keeps no cookies between requests (a cookie set for one step must not ride
along with another step's request); within one request's redirects they still apply.

Cancellation: a blocking socket read cannot watch ``ctx.cancelled()``, so every
connection a request uses is enrolled under the request's ticket, and one watcher thread
shuts down the sockets of cancelled tickets (a step ``timeout:`` or Ctrl-C). The blocked
read then returns at once with an error, which the handler reports as cancelled.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookiejar import CookiePolicy, DefaultCookiePolicy
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from runner import __version__
from runner.errors import HandlerError
from runner.units import format_duration

POOL_SIZE = 256  # kept connections per host; a pool only grows as far as it is used
POOL_HOSTS = 64  # hosts whose pools are kept at once
WATCH_EVERY = 0.05  # seconds between the watcher's looks at in-flight requests


# -- the shared session ---------------------------------------------------------------------


class _NoCookies(DefaultCookiePolicy):
    """Refuse to store cookies in the shared Session's jar."""

    def set_ok(self, cookie: Any, request: Any) -> bool:
        return False


_session: requests.Session | None = None
_session_lock = threading.Lock()


def session() -> requests.Session:
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                _session = _new_session()
    return _session


def _new_session() -> requests.Session:
    made = requests.Session()
    # requests re-reads the environment (proxies, CA bundle, ~/.netrc) at every request when
    # trust_env is on, a quarter of its time per request here; it is read once instead
    # (environment_settings). A ~/.netrc is not read: credentials go in the step's auth.
    made.trust_env = False
    policy: CookiePolicy = _NoCookies()
    made.cookies.set_policy(policy)
    adapter = _WatchedAdapter(pool_connections=POOL_HOSTS, pool_maxsize=POOL_SIZE, max_retries=0)
    made.mount("http://", adapter)
    made.mount("https://", adapter)
    made.headers["User-Agent"] = f"runbook/{__version__} python-requests/{requests.__version__}"
    # `verify: false` is the user's explicit choice: no warning per request on stderr.
    warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
    return made


def send(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    params: dict[str, Any],
    body: dict[str, Any],
    auth: tuple[str, str] | None,
    timeout: tuple[float, float],
    verify: bool | str,
    follow_redirects: bool,
) -> requests.Response:
    """Send one request on the shared Session; the answer's body is left to read (stream).

    The request is prepared alone and sent with ``Session.send``, not ``Session.request``:
    merging the Session's settings into every request was a third of requests' own time
    per request here, and the only setting to merge is the default headers.
    """
    current = session()
    merged = requests.structures.CaseInsensitiveDict(current.headers)
    merged.update(headers)
    prepared = requests.Request(method, url, headers=merged, params=params, auth=auth, **body).prepare()
    settings = environment_settings(url, verify)
    return current.send(
        prepared,
        timeout=timeout,
        allow_redirects=follow_redirects,
        stream=True,
        cert=None,
        verify=settings["verify"],
        proxies=settings.get("proxies", {}),
    )


_proxies: dict[str, str] | None = None
_ca_bundle: str | None = None


def environment_settings(url: str, verify: bool | str) -> dict[str, Any]:
    """``proxies`` and ``verify`` for a request, from the environment read once per process:
    HTTP(S)_PROXY, ALL_PROXY and NO_PROXY, and REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE."""
    global _proxies, _ca_bundle
    if _proxies is None:
        found = urllib.request.getproxies()
        _ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None
        _proxies = found
    settings: dict[str, Any] = {"verify": _ca_bundle if verify is True and _ca_bundle else verify}
    wanted = {k: v for k, v in _proxies.items() if k != "no"}
    if wanted and not requests.utils.should_bypass_proxies(url, no_proxy=_proxies.get("no")):
        settings["proxies"] = wanted
    return settings


# -- cancellation ---------------------------------------------------------------------------


@dataclass(eq=False)
class Ticket:
    """One request in flight: how to know it is cancelled, and the connections it uses."""

    cancelled: Callable[[], bool]
    connections: list[Any] = field(default_factory=list)


_local = threading.local()


class _Watcher:
    """One daemon thread that shuts down the sockets of cancelled requests."""

    def __init__(self) -> None:
        self._tickets: set[Ticket] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, ticket: Ticket) -> None:
        with self._changed:
            self._tickets.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="http-cancel", daemon=True)
                self._thread.start()
            elif len(self._tickets) == 1:
                self._changed.notify()

    def discard(self, ticket: Ticket) -> None:
        with self._changed:
            self._tickets.discard(ticket)

    def _watch(self) -> None:
        while True:
            with self._changed:
                while not self._tickets:
                    self._changed.wait()
                tickets = list(self._tickets)
            for ticket in tickets:
                if ticket.cancelled():
                    for connection in list(ticket.connections):
                        # Only while the request still has it: a connection already back in
                        # the pool may be serving another step's request now.
                        if getattr(connection, "runbook_ticket", None) is ticket:
                            _shut_down(connection)
            time.sleep(WATCH_EVERY)


def _shut_down(connection: Any) -> None:
    sock = getattr(connection, "sock", None)
    if sock is None:
        return
    # The plain socket's shutdown, also for a TLS socket: ssl.SSLSocket.shutdown would
    # drop the TLS state under the thread still reading it. Never close here: the fd
    # belongs to the reading thread.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_watcher = _Watcher()


@contextlib.contextmanager
def cancellable(cancelled: Callable[[], bool]) -> Iterator[Ticket]:
    """Within this block, the requests this thread sends stop when ``cancelled()`` turns true."""
    ticket = Ticket(cancelled)
    _local.ticket = ticket
    _watcher.add(ticket)
    try:
        yield ticket
    finally:
        _local.ticket = None
        _watcher.discard(ticket)


def _enlist(connection: Any) -> None:
    ticket = getattr(_local, "ticket", None)
    connection.runbook_ticket = ticket
    if ticket is not None:
        ticket.connections.append(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _enlist(self)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        _enlist(self)
        super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """An adapter whose connections (direct or through an HTTP proxy) can be cancelled."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = _POOLS
        return manager


# -- errors ---------------------------------------------------------------------------------


def from_the_network(exc: BaseException) -> bool:
    """Whether an error came from requests or urllib3 (requests' errors are OSErrors too)."""
    return isinstance(exc, (requests.exceptions.RequestException, urllib3.exceptions.HTTPError))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3 reasons, exception arguments)."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 50:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked += [arg for arg in getattr(current, "args", ()) if isinstance(arg, BaseException)]
        todo += [e for e in linked if isinstance(e, BaseException)]


def _find(exc: BaseException, kind: type[BaseException] | tuple[type[BaseException], ...]) -> Any:
    return next((e for e in _causes(exc) if isinstance(e, kind)), None)


def translate(exc: BaseException, what: str, address: str, timeouts: tuple[float, float]) -> HandlerError:
    """A one-line error for a requests exception. ``what`` is the redacted ``METHOD URL``;
    ``address`` is ``host:port``; nothing of the exception's own text (which may hold the
    URL's secrets) is used except the TLS library's reason."""
    connect, read = timeouts
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return HandlerError(
            f"{what}: connect timeout: no connection to {address} within {format_duration(connect)} "
            "(check the address and any firewall; raise timeout.connect if the network is slow)"
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return HandlerError(
            f"{what}: read timeout: the server sent nothing for {format_duration(read)} "
            "(raise it with timeout: {connect: 10s, read: 2m})"
        )
    if isinstance(exc, requests.exceptions.SSLError):
        return _tls_error(exc, what, address)
    if isinstance(exc, (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema)):
        return HandlerError(f"{what}: invalid URL: it must start with http:// or https://")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.URLRequired)):
        return HandlerError(f"{what}: invalid URL: {_url_reason(exc)}")
    if isinstance(exc, requests.exceptions.InvalidHeader):
        return HandlerError(
            f"{what}: invalid header: a name or value holds a line break or a character HTTP forbids"
        )
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return HandlerError(
            f"{what}: more than {session().max_redirects} redirects (a redirect loop?); "
            "set follow_redirects: false to see the first answer"
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return HandlerError(
            f"{what}: the proxy refused or failed the request (check HTTP(S)_PROXY and NO_PROXY)"
        )
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return HandlerError(f"{what}: the connection to {address} broke while the body was arriving")
    if isinstance(exc, requests.exceptions.ContentDecodingError):
        return HandlerError(f"{what}: the body could not be decompressed (Content-Encoding is wrong?)")
    if isinstance(exc, requests.exceptions.ConnectionError):
        return _connection_error(exc, what, address, read)
    if isinstance(exc, OSError) and "CA certificate bundle" in str(exc):
        return HandlerError(f"{what}: the CA bundle given as verify cannot be read: {exc}")
    return HandlerError(f"{what}: {type(exc).__name__}")


def _connection_error(exc: BaseException, what: str, address: str, read: float) -> HandlerError:
    if _find(exc, socket.gaierror) is not None or "NameResolutionError" in {
        type(e).__name__ for e in _causes(exc)
    }:
        host = address.rsplit(":", 1)[0]
        return HandlerError(f"{what}: unknown host {host}: DNS cannot resolve it (check the name)")
    if _find(exc, ConnectionRefusedError) is not None:
        return HandlerError(
            f"{what}: connection refused by {address} (is the service running and listening there?)"
        )
    if _find(exc, (ConnectionResetError, BrokenPipeError)) is not None:
        return HandlerError(f"{what}: the connection to {address} was reset by the server")
    if _find(exc, TimeoutError) is not None or _find(exc, socket.timeout) is not None:
        return HandlerError(
            f"{what}: read timeout: the server sent nothing for {format_duration(read)} "
            "(raise it with timeout: {connect: 10s, read: 2m})"
        )
    unreachable = _find(exc, OSError)
    if unreachable is not None and unreachable.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return HandlerError(f"{what}: {address} is unreachable from here (no route to it)")
    if "RemoteDisconnected" in {type(e).__name__ for e in _causes(exc)}:
        return HandlerError(f"{what}: {address} closed the connection without answering")
    return HandlerError(f"{what}: the connection to {address} failed")


def _tls_error(exc: BaseException, what: str, address: str) -> HandlerError:
    check = _find(exc, ssl.SSLCertVerificationError)
    if check is not None:
        reason = getattr(check, "verify_message", "") or "the certificate is not trusted"
        return HandlerError(
            f"{what}: TLS certificate verification failed ({reason}); if a private CA signed it, "
            "pass that CA's certificate with verify: /path/to/ca.pem (verify: false skips the check)"
        )
    tls = _find(exc, ssl.SSLError)
    reason = getattr(tls, "reason", None) or "handshake failed"
    if reason in ("NO_CERTIFICATE_OR_CRL_FOUND", "PEM_LIB"):
        return HandlerError(f"{what}: the CA bundle given as verify holds no usable PEM certificate")
    hint = " (is it an http:// port?)" if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE") else ""
    return HandlerError(f"{what}: TLS error with {address}: {str(reason).lower().replace('_', ' ')}{hint}")


def _url_reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else ""
    if "No host" in text:
        return "it names no host"
    if "Failed to parse" in text or "Invalid URL" in text:
        return "it cannot be parsed (check the host, the port and any special characters)"
    return "it cannot be used"
