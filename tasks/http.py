"""Send an HTTP request and check the answer: status, body, or a download.

Connection errors, timeouts and answers outside ``expect_status`` (default any 2xx, so
5xx too) fail the attempt, so ``retry`` retries them; an unexpected status fails with
the status and the first 500 characters of the body. ``body_contains`` is text the body
must contain, or ``{regex: PATTERN}``. A JSON answer is parsed into ``json``; ``text``
keeps the first 64 KiB of the body (``text_truncated`` says when there was more).
``download_to`` streams the body to a temporary file beside the destination and renames
it into place: a failed or interrupted download leaves the old file as it was. With
``sha256``, the download is checked, and a destination that already has that digest is
not downloaded again. Secrets (Authorization, cookies, token-like headers and query
parameters, URL passwords, ``auth`` values) print as ``***`` in results and errors.
Under ``--dry-run`` nothing is sent (not even a GET) unless the step says
``dry_run: run``: the step reports the request it would send.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json as jsonlib
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from runner.errors import HandlerError
from runner.schema import DURATION
from runner.units import parse_duration
from tasks._files import default_mode, file_digest, os_error, temporary_beside
from tasks._http_redact import (
    MASK,
    Scrubber,
    basic_credential,
    redact_headers,
    redact_params,
    redact_url,
    secret_header,
    secret_param,
    url_secrets,
)

_STATUS = {
    "anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": "^[1-5](xx|XX|[0-9]{2})$", "title": "a status class such as 2xx"},
    ]
}

name = "http"
shorthand = "url"
schema = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The URL (http or https)."},
        "method": {
            "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            "default": "GET",
        },
        "headers": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "params": {"type": "object", "description": "Query parameters."},
        "json": {"description": "A body sent as JSON."},
        "data": {"type": ["string", "object"], "description": "A form (mapping) or raw body (text)."},
        "auth": {
            "type": "object",
            "properties": {
                "basic": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                "bearer": {"type": "string"},
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "description": "{basic: [user, password]} or {bearer: token}.",
        },
        "timeout": {
            "anyOf": [
                DURATION,
                {
                    "type": "object",
                    "properties": {"connect": DURATION, "read": DURATION},
                    "additionalProperties": False,
                },
            ],
            "default": "30s",
            "description": "One duration for both, or {connect, read}; read is the longest silence.",
        },
        "verify": {
            "type": ["boolean", "string"],
            "default": True,
            "description": "Check TLS certificates (true), skip (false), or a CA bundle path.",
        },
        "expect_status": {
            "anyOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}],
            "default": "2xx",
            "description": "Accepted status: 200, [200, 204], or a class such as 2xx.",
        },
        "body_contains": {
            "anyOf": [
                {"type": "string"},
                {
                    "type": "object",
                    "properties": {"regex": {"type": "string"}},
                    "required": ["regex"],
                    "additionalProperties": False,
                },
            ],
            "description": "Text the body must contain, or {regex: PATTERN} it must match.",
        },
        "download_to": {
            "type": "string",
            "description": "Save the body to this file (or into this folder/).",
        },
        "sha256": {
            "type": "string",
            "pattern": "^[0-9a-fA-F]{64}$",
            "title": "a SHA-256 digest (64 hex digits)",
            "description": "With download_to: the digest the file must have.",
        },
        "follow_redirects": {"type": "boolean", "default": True},
    },
    "required": ["url"],
    "not": {"required": ["json", "data"]},
    "additionalProperties": False,
}
result = {
    "status_code": "HTTP status code",
    "reason": "the status line's text (OK, Not Found...)",
    "headers": "response headers (secret ones as ***)",
    "json": "the parsed body, when the answer is JSON",
    "text": "the body as text, its first 64 KiB",
    "text_truncated": "true when the body was longer than text",
    "bytes": "size of the body received (or downloaded)",
    "elapsed": "seconds until the response's headers arrived",
    "url": "the final URL, after redirects",
    "redirects": "how many redirects were followed",
    "path": "with download_to: the file written",
    "sha256": "with download_to and sha256: the file's digest",
    "throughput": "with download_to: bytes per second",
}
example = """\
- id: health
  http: {url: "https://api.internal/health", expect_status: 200, body_contains: '"ok"'}
  retry: {attempts: 5, delay: 2s, backoff: 2}
- http:
    url: "{{ webhook }}"
    method: POST
    json: {text: "deploy of {{ version }} done"}
- http:
    url: https://example.com/app-1.2.tar.gz
    download_to: /opt/releases/
    sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
- http:
    url: https://api.internal/items
    auth: {bearer: "{{ secrets.api_token }}"}
    timeout: {connect: 3s, read: 1m}
"""

TEXT_CAP = 64 * 1024  # bytes of the body kept as ``text``
BODY_CAP = 16 * 1024 * 1024  # bytes read into memory at most (use download_to beyond)
EXCERPT = 500  # characters of the body an unexpected-status error shows
READ_CHUNK = 256 * 1024
DOWNLOAD_CHUNK = 1024 * 1024
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    request = Request.from_args(args, ctx.cwd)
    if request.download_to is not None and request.sha256 is not None:
        kept = request.already_downloaded(ctx)
        if kept is not None:
            return kept
    if ctx.dry_run:
        return {"changed": request.changes, "dry_run": request.describe()}
    from tasks import _http_client as client

    with client.cancellable(ctx.cancelled):
        try:
            response = request.send(client)
            try:
                if request.download_to is not None:
                    return request.download(response, ctx)
                return request.answer(response)
            finally:
                response.close()
        except HandlerError:
            raise
        except Exception as exc:
            if ctx.cancelled():
                raise HandlerError(f"{request.what}: cancelled") from exc
            raise client.translate(exc, request.what, request.address, request.timeout) from exc


@dataclass
class Request:
    """One step's request, checked and ready to send, and what it knows of its secrets."""

    method: str
    url: str
    address: str  # host:port, for errors
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)  # json= or data= for requests
    auth: tuple[str, str] | None = None
    timeout: tuple[float, float] = (30.0, 30.0)
    verify: bool | str = True
    expect: list[Any] = field(default_factory=lambda: ["2xx"])
    body_contains: str | re.Pattern[str] | None = None
    download_to: str | None = None
    into_folder: bool = False
    sha256: str | None = None
    follow_redirects: bool = True
    scrub: Scrubber = field(default_factory=lambda: Scrubber(()))

    @classmethod
    def from_args(cls, args: dict[str, Any], cwd: str) -> Request:
        method = str(args.get("method", "GET")).upper()
        url = str(args["url"]).strip()
        address = _check_url(url, method)
        headers = {str(k): _header_value(k, v) for k, v in (args.get("headers") or {}).items()}
        params = {str(k): _param_value(v) for k, v in (args.get("params") or {}).items() if v is not None}
        secrets = url_secrets(url)
        secrets += [v for k, v in headers.items() if secret_header(k)]
        secrets += [str(v) for k, v in params.items() if secret_param(k)]
        auth = None
        given = args.get("auth") or {}
        if "basic" in given:
            user, password = (str(part) for part in given["basic"])
            auth = (user, password)
            secrets += [password, basic_credential(user, password)]
        elif "bearer" in given:
            token = str(given["bearer"])
            headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {token}"
            secrets.append(token)
        body: dict[str, Any] = {}
        if "json" in args:
            body["json"] = args["json"]
        elif "data" in args:
            data = args["data"]
            body["data"] = data.encode("utf-8") if isinstance(data, str) else _form(data)
        download_to = None
        into_folder = False
        if args.get("download_to") is not None:
            download_to = os.path.join(cwd, os.path.expanduser(str(args["download_to"])))
            into_folder = str(args["download_to"]).endswith("/") or os.path.isdir(download_to)
        if args.get("sha256") is not None and download_to is None:
            raise HandlerError("sha256 checks a download: give download_to too")
        if args.get("body_contains") is not None and download_to is not None:
            raise HandlerError(
                "body_contains and download_to do not go together: check the downloaded file "
                "with a later step (grep or hash)"
            )
        expect = args.get("expect_status", "2xx")
        return cls(
            method=method,
            url=url,
            address=address,
            headers=headers,
            params=params,
            body=body,
            auth=auth,
            timeout=_timeouts(args.get("timeout", "30s")),
            verify=_verify(args.get("verify", True), cwd),
            expect=expect if isinstance(expect, list) else [expect],
            body_contains=_body_pattern(args.get("body_contains")),
            download_to=download_to,
            into_folder=into_folder,
            sha256=str(args["sha256"]).lower() if args.get("sha256") is not None else None,
            follow_redirects=bool(args.get("follow_redirects", True)),
            scrub=Scrubber(secrets),
        )

    # -- describing, without secrets ------------------------------------------------------

    @property
    def what(self) -> str:
        """``METHOD URL`` as errors start, secrets masked."""
        return f"{self.method} {self.scrub.text(redact_url(self.url))}"

    @property
    def changes(self) -> bool:
        return self.download_to is not None or self.method not in SAFE_METHODS

    def expected(self) -> str:
        return " or ".join(str(e) for e in self.expect)

    def describe(self) -> str:
        """The dry-run line: the request as it would be sent, secrets masked."""
        parts = []
        if self.params:
            shown = ", ".join(f"{k}={v}" for k, v in redact_params(self.params).items())
            parts.append(f"params: {shown}")
        if self.headers:
            shown = ", ".join(f"{k}: {v}" for k, v in redact_headers(self.headers).items())
            parts.append(f"headers: {shown}")
        if self.auth is not None:
            parts.append(f"auth: basic {self.auth[0]}:{MASK}")
        if "json" in self.body:
            parts.append(f"JSON body of {len(jsonlib.dumps(self.body['json']))} bytes")
        elif "data" in self.body:
            data = self.body["data"]
            parts.append(f"body of {len(data)} bytes" if isinstance(data, bytes) else "form body")
        parts.append(f"expect {self.expected()}")
        text = f"would send {self.what} ({'; '.join(self.scrub.text(p) for p in parts)})"
        if self.download_to is not None:
            target = self.download_to.rstrip("/") + "/…" if self.into_folder else self.download_to
            text += f" and save the body to {target}"
        return text

    # -- sending --------------------------------------------------------------------------

    def send(self, client: Any) -> Any:
        return client.send(
            self.method,
            self.url,
            headers=self.headers,
            params=self.params,
            body=self.body,
            auth=self.auth,
            timeout=self.timeout,
            verify=self.verify,
            follow_redirects=self.follow_redirects,
        )

    def answer(self, response: Any) -> dict[str, Any]:
        """The result of a request whose body is read into memory (up to BODY_CAP)."""
        body, complete = _read_body(response)
        found = self.outline(response)
        kind = response.headers.get("Content-Type", "")
        text = _decode(body[:TEXT_CAP], kind)
        found["text"] = self.scrub.text(text)
        found["text_truncated"] = len(body) > TEXT_CAP or not complete
        found["bytes"] = len(body)
        if complete and body and _is_json(kind):
            with contextlib.suppress(ValueError):
                found["json"] = self.scrub.value(jsonlib.loads(body))
        self.check_status(response, found, text)
        if self.body_contains is not None:
            full = text if len(body) <= TEXT_CAP else _decode(body, kind)
            if not _contains(full, self.body_contains):
                wanted = (
                    f"match the regex {self.body_contains.pattern!r}"
                    if isinstance(self.body_contains, re.Pattern)
                    else f"contain {self.body_contains!r}"
                )
                raise HandlerError(
                    f"{self.what}: status {response.status_code}, but the body does not {wanted}; "
                    f"body: {self.excerpt(text)}",
                    result=found,
                )
        found["changed"] = self.changes
        return found

    def outline(self, response: Any) -> dict[str, Any]:
        """What every result holds: status, headers, final URL, timing."""
        headers = redact_headers(dict(response.headers))
        return {
            "status_code": response.status_code,
            "reason": response.reason,
            "headers": {k: self.scrub.text(str(v)) for k, v in headers.items()},
            "elapsed": response.elapsed.total_seconds(),
            "url": self.scrub.text(redact_url(response.url)),
            "redirects": len(response.history),
        }

    def check_status(self, response: Any, found: dict[str, Any], text: str) -> None:
        if _status_matches(response.status_code, self.expect):
            return
        found["changed"] = False
        raise HandlerError(
            f"{self.what}: status {response.status_code} {response.reason or ''}".rstrip()
            + f", expected {self.expected()}; body: {self.excerpt(text)}",
            result=found,
        )

    def excerpt(self, text: str) -> str:
        """The body's first EXCERPT characters on one line, secrets masked."""
        shown = " ".join(self.scrub.text(text[:EXCERPT]).split())
        if not shown:
            return "(empty)"
        return shown + (" …" if len(text) > EXCERPT else "")

    # -- downloading ----------------------------------------------------------------------

    def destination(self, final_url: str) -> str:
        assert self.download_to is not None
        if not self.into_folder:
            return self.download_to
        leaf = unquote(os.path.basename(urlsplit(final_url).path.rstrip("/")))
        # The name comes from the server (after redirects): it must stay inside the folder.
        if leaf in ("", ".", "..") or "/" in leaf or "\0" in leaf:
            raise HandlerError(
                f"{self.what}: download_to is a folder and the URL names no usable file: give a file name"
            )
        return os.path.join(self.download_to, leaf)

    def already_downloaded(self, ctx: Any) -> dict[str, Any] | None:
        """The result of a download that need not happen: the file has the expected digest."""
        if self.into_folder:
            return None  # the name comes from the answer
        assert self.download_to is not None and self.sha256 is not None
        try:
            digest, size = file_digest(self.download_to, "sha256", cancelled=ctx.cancelled)
        except OSError:
            return None
        if digest != self.sha256:
            return None
        found = {"path": self.download_to, "bytes": size, "sha256": digest, "changed": False}
        if ctx.dry_run:
            found["dry_run"] = f"{self.download_to} already has sha256 {digest}: nothing to download"
        return found

    def download(self, response: Any, ctx: Any) -> dict[str, Any]:
        found = self.outline(response)
        if not _status_matches(response.status_code, self.expect):
            body, _ = _read_body(response, limit=4 * EXCERPT)
            self.check_status(response, found, _decode(body, response.headers.get("Content-Type", "")))
        path = self.destination(response.url)
        total = int(response.headers.get("Content-Length") or 0)
        if response.headers.get("Content-Encoding"):
            total = 0  # the length is the compressed one; the file gets the decoded bytes
        digest = hashlib.sha256() if self.sha256 is not None else None
        start = time.monotonic()
        done = 0
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with temporary_beside(path) as temporary:
                with open(temporary, "wb") as out:
                    for chunk in response.iter_content(DOWNLOAD_CHUNK):
                        out.write(chunk)
                        if digest is not None:
                            digest.update(chunk)
                        done += len(chunk)
                        ctx.progress(done, total)
                        if ctx.cancelled():
                            raise HandlerError(f"{self.what}: cancelled; {path} was left as it was")
                if total and done < total:
                    raise HandlerError(
                        f"{self.what}: the connection closed after {done} of {total} bytes; "
                        f"{path} was left as it was"
                    )
                if digest is not None and digest.hexdigest() != self.sha256:
                    raise HandlerError(
                        f"{self.what}: checksum mismatch: the download's sha256 is {digest.hexdigest()}, "
                        f"expected {self.sha256}; {path} was left as it was",
                        result={**found, "sha256": digest.hexdigest(), "bytes": done},
                    )
                os.chmod(temporary, default_mode(path))
                os.replace(temporary, path)
        except HandlerError:
            raise
        except Exception as exc:
            from tasks import _http_client as client

            if isinstance(exc, OSError) and not client.from_the_network(exc):
                raise os_error(exc, "write the download to", path) from exc
            if ctx.cancelled():
                raise HandlerError(f"{self.what}: cancelled; {path} was left as it was") from exc
            error = client.translate(exc, self.what, self.address, self.timeout)
            got = f" (after {done} of {total} bytes)" if total else f" (after {done} bytes)"
            raise HandlerError(f"{error}{got}; {path} was left as it was") from exc
        seconds = time.monotonic() - start
        found.update(path=path, bytes=done, throughput=done / seconds if seconds > 0 else None)
        if digest is not None:
            found["sha256"] = digest.hexdigest()
        found["changed"] = True
        return found


def redact(args: Any) -> Any:
    """The step's arguments as they may be shown (a dry-run plan, a label): secrets as ``***``.

    For the engine, which prints a dry-run step's rendered arguments: the URL's password and
    secret query values, secret headers, params and form fields, ``auth`` values, and JSON
    keys named like secrets.
    """
    if not isinstance(args, dict):
        return redact_url(str(args)) if isinstance(args, str) else args
    shown = dict(args)
    if isinstance(shown.get("url"), str):
        shown["url"] = redact_url(shown["url"])
    if isinstance(shown.get("headers"), dict):
        shown["headers"] = redact_headers(shown["headers"])
    if isinstance(shown.get("params"), dict):
        shown["params"] = redact_params(shown["params"])
    if isinstance(shown.get("data"), dict):
        shown["data"] = redact_params(shown["data"])
    if "json" in shown:
        shown["json"] = _redact_keys(shown["json"])
    auth = shown.get("auth")
    if isinstance(auth, dict):
        basic = auth.get("basic")
        user = basic[0] if isinstance(basic, list) and basic else None
        shown["auth"] = {"basic": [user, MASK]} if "basic" in auth else {"bearer": MASK}
    return shown


def _redact_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MASK if secret_param(str(k)) else _redact_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_keys(v) for v in value]
    return value


# -- arguments ----------------------------------------------------------------------------------


def _check_url(url: str, method: str) -> str:
    """``host:port`` of a usable http(s) URL; a one-line error for any other."""
    shown = f"{method} {redact_url(url)}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise HandlerError(f"{shown}: invalid URL: the port is not a number from 0 to 65535") from None
    if parts.scheme.lower() not in ("http", "https"):
        what = f"the scheme is '{parts.scheme}'" if parts.scheme else "it has no scheme"
        raise HandlerError(f"{shown}: invalid URL: {what}; it must start with http:// or https://")
    host = parts.hostname
    if not host:
        raise HandlerError(f"{shown}: invalid URL: it names no host")
    if port is None:
        port = 443 if parts.scheme.lower() == "https" else 80
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _header_value(key: Any, value: Any) -> str:
    text = str(value)
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise HandlerError(
            f"headers.{key}: HTTP header values must be Latin-1 text; encode others (say, percent-encode)"
        ) from None
    if "\n" in text or "\r" in text:
        raise HandlerError(f"headers.{key}: a header value cannot hold a line break")
    return text


def _param_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_param_value(v) for v in value]
    return value


def _form(data: dict[str, Any]) -> dict[str, Any]:
    return {str(k): _param_value(v) for k, v in data.items() if v is not None}


def _timeouts(value: Any) -> tuple[float, float]:
    if isinstance(value, dict):
        return (parse_duration(value.get("connect", "30s")), parse_duration(value.get("read", "30s")))
    seconds = parse_duration(value)
    return (seconds, seconds)


def _verify(value: Any, cwd: str) -> bool | str:
    if isinstance(value, bool):
        return value
    path = os.path.join(cwd, os.path.expanduser(str(value)))
    if not os.path.exists(path):
        raise HandlerError(
            f"verify: CA bundle {path} not found (give a PEM file of CA certificates, or true or false)"
        )
    return path


def _body_pattern(value: Any) -> str | re.Pattern[str] | None:
    if value is None or isinstance(value, str):
        return value
    try:
        return re.compile(value["regex"])
    except re.error as exc:
        raise HandlerError(f"body_contains.regex is not a valid regular expression: {exc}") from None


# -- answers ------------------------------------------------------------------------------------


def _status_matches(status: int, expect: list[Any]) -> bool:
    for wanted in expect:
        text = str(wanted).lower()
        if text.endswith("xx"):
            if status // 100 == int(text[0]):
                return True
        elif status == int(text):
            return True
    return False


def _read_body(response: Any, limit: int = BODY_CAP) -> tuple[bytes, bool]:
    """(body, whether it is whole): at most ``limit`` bytes are read."""
    chunks = []
    size = 0
    for chunk in response.iter_content(READ_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return b"".join(chunks)[:limit], False
    return b"".join(chunks), True


_CHARSET = re.compile(r"charset\s*=\s*\"?([\w.:-]+)", re.IGNORECASE)


def _decode(body: bytes, content_type: str) -> str:
    """Text by the charset the server names, else UTF-8 (no guessing: it is slow and often wrong)."""
    match = _CHARSET.search(content_type)
    encoding = "utf-8"
    if match:
        with contextlib.suppress(LookupError):
            encoding = codecs.lookup(match.group(1)).name
    return body.decode(encoding, errors="replace")


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind in ("application/json", "text/json") or kind.endswith("+json")


def _contains(text: str, pattern: str | re.Pattern[str]) -> bool:
    if isinstance(pattern, re.Pattern):
        return pattern.search(text) is not None
    return pattern in text
