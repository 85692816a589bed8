"""AWS plumbing for any service: clients from boto3's chain, one-line errors, JSON-safe responses.

**Clients.** As ``tasks/_s3.py`` does for S3, and from the same places: credentials,
region and profile come from botocore's standard chain (environment, ``~/.aws/config``
and ``credentials``, SSO, container and instance roles), except that the step's own
``env`` is read first for ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION``, and
``AWS_ENDPOINT_URL_<SERVICE>``/``AWS_ENDPOINT_URL`` (``AWS_ENDPOINT_URL_EC2``, say). One
botocore session per process and credentials (sessions are not thread-safe: clients are
made under a lock), one client per service and settings, shared by every step (clients
are thread-safe). Retries use botocore's ``standard`` mode unless ``AWS_RETRY_MODE`` or
the profile says otherwise; connecting gives up after 10 s.

**Errors.** ``aws_error`` gives one line with AWS's error code and message and, where the
cause is clear, what to do (no credentials, an unknown profile, an endpoint that cannot
be reached, a missing region, invalid parameters).

**Responses.** ``json_safe`` makes a response JSON-able: datetimes in ISO 8601, binary
fields (``bytes``) in base64 as the AWS CLI shows them, streamed bodies read (up to a cap)
as text, or base64 when they are not UTF-8.
"""

from __future__ import annotations

import base64
import datetime
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from runner.errors import HandlerError

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
BODY_CAP = 1024 * 1024  # bytes of a streamed body kept in a result

NO_CREDENTIALS = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
    "(or the step's profile:) to a profile of ~/.aws/config"
)


class AwsError(HandlerError):
    """A failure talking to AWS, or a call AWS refused."""


@dataclass(frozen=True)
class Where:
    """What a client is made from: the step's arguments and its extra environment."""

    service: str
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    token: str | None = None

    @classmethod
    def of(cls, service: str, args: Mapping[str, Any], env: Mapping[str, str]) -> Where:
        def step(name: str) -> str | None:
            return env.get(name) or None

        specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_").replace(" ", "_")
        return cls(
            service=service,
            profile=args.get("profile") or step("AWS_PROFILE"),
            region=args.get("region") or step("AWS_REGION") or step("AWS_DEFAULT_REGION"),
            endpoint_url=args.get("endpoint_url") or step(specific) or step("AWS_ENDPOINT_URL"),
            access_key=step("AWS_ACCESS_KEY_ID"),
            secret_key=step("AWS_SECRET_ACCESS_KEY"),
            token=step("AWS_SESSION_TOKEN"),
        )

    def session_key(self) -> tuple[Any, ...]:
        return (self.profile, self.access_key, self.secret_key, self.token)


_sessions: dict[tuple[Any, ...], Any] = {}
_clients: dict[Where, Any] = {}
_lock = threading.Lock()


def session(where: Where) -> Any:
    """The botocore session for ``where``'s profile and credentials (call under ``_lock``)."""
    import botocore.session

    key = where.session_key()
    found = _sessions.get(key)
    if found is None:
        found = botocore.session.Session(profile=where.profile)
        if where.access_key or where.secret_key:
            if not (where.access_key and where.secret_key):
                missing = "AWS_SECRET_ACCESS_KEY" if where.access_key else "AWS_ACCESS_KEY_ID"
                raise AwsError(f"incomplete AWS credentials in the step's env: {missing} is missing")
            found.set_credentials(where.access_key, where.secret_key, where.token)
        _sessions[key] = found
    return found


def available_services(where: Where) -> list[str]:
    with _lock:
        return list(session(where).get_available_services())


def names(where: Where) -> tuple[dict[str, str], list[str]]:
    """The service's methods (snake_case name -> API name) and waiters, without credentials."""
    import botocore.exceptions as bex
    from botocore import xform_name

    with _lock:
        made_session = session(where)
        try:
            model = made_session.get_service_model(where.service)
        except bex.UnknownServiceError:
            raise UnknownName("AWS service", where.service, made_session.get_available_services()) from None
        except Exception as exc:
            raise aws_error(exc, where, where.service) from exc
        try:
            waiters = [xform_name(n) for n in made_session.get_waiter_model(where.service).waiter_names]
        except bex.DataNotFoundError:
            waiters = []
    return {xform_name(api): api for api in model.operation_names}, waiters


class UnknownName(AwsError):
    """A service, action or waiter AWS does not have; the message says which is close."""

    def __init__(self, what: str, given: str, known: Any):
        from runner.diagnostics import did_you_mean

        hint = did_you_mean(given, known)
        super().__init__(f"unknown {what} {given!r}" + (f": {hint}" if hint else ""))


def client(where: Where) -> Any:
    """The process's client for ``where.service`` with these settings."""
    with _lock:
        found = _clients.get(where)
        if found is None:
            found = _clients[where] = _make_client(where)
        return found


def _make_client(where: Where) -> Any:
    from botocore.config import Config

    try:
        made_session = session(where)
        settings: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}
        if not os.environ.get("AWS_RETRY_MODE") and not made_session.get_scoped_config().get("retry_mode"):
            settings["retries"] = {"mode": "standard"}
        made = made_session.create_client(
            where.service,
            region_name=where.region,
            endpoint_url=where.endpoint_url,
            config=Config(**settings),
        )
        if made_session.get_credentials() is None:
            raise AwsError(NO_CREDENTIALS)
    except HandlerError:
        raise
    except Exception as exc:
        raise aws_error(exc, where, "connect") from exc
    return made


# -- errors ---------------------------------------------------------------------------------------


def credentials_problem(exc: BaseException) -> str | None:
    """What is wrong with the AWS credentials, if ``exc`` says they are missing or incomplete."""
    import botocore.exceptions as bex

    if isinstance(exc, bex.NoCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, bex.PartialCredentialsError):
        return f"incomplete AWS credentials: {one_line(exc)}"
    if isinstance(exc, bex.ProfileNotFound):
        return (
            f"AWS profile {exc.kwargs.get('profile')!r} is not in ~/.aws/config or ~/.aws/credentials: "
            "check profile: or AWS_PROFILE"
        )
    return None


def aws_error(exc: BaseException, where: Where, call: str) -> HandlerError:
    """One line for any botocore exception raised while doing ``call`` (``ec2.run_instances``)."""
    import botocore.exceptions as bex

    endpoint = f" at {where.endpoint_url}" if where.endpoint_url else ""
    if isinstance(exc, HandlerError):
        return exc
    problem = credentials_problem(exc)
    if problem:
        return AwsError(problem)
    if isinstance(exc, bex.NoRegionError):
        return AwsError(f"{call}: no AWS region: set region: (or AWS_REGION, or the profile's region)")
    if isinstance(exc, bex.ParamValidationError):
        return AwsError(f"{call}: invalid params: {one_line(exc.kwargs.get('report', exc))}")
    if isinstance(exc, bex.SSLError):
        return AwsError(
            f"{call}: TLS failure{endpoint}: {one_line(exc)} (a proxy or private CA? set AWS_CA_BUNDLE)"
        )
    if isinstance(exc, bex.ConnectTimeoutError):
        return AwsError(
            f"{call}: connecting to AWS{endpoint} timed out; check endpoint_url, region and the network"
        )
    if isinstance(exc, bex.ReadTimeoutError):
        return AwsError(
            f"{call}: AWS{endpoint} did not answer within {READ_TIMEOUT:.0f} s; run again (retry:)"
        )
    if isinstance(exc, bex.EndpointConnectionError):
        url = where.endpoint_url or str(exc.kwargs.get("endpoint_url", "")).split("?")[0]
        return AwsError(
            f"{call}: cannot reach {url}: {reason(exc)}; check endpoint_url, region and the network"
        )
    if isinstance(exc, (bex.ConnectionClosedError, bex.ConnectionError, bex.HTTPClientError)):
        return AwsError(f"{call}: the connection to AWS{endpoint} broke ({reason(exc)}); run again (retry:)")
    if isinstance(exc, bex.UnknownServiceError):
        return AwsError(f"unknown AWS service {where.service!r}")
    if isinstance(exc, bex.ClientError):
        return _client_error(exc, call)
    if isinstance(exc, bex.WaiterError):
        return AwsError(f"{call}: {one_line(exc)}")
    if isinstance(exc, bex.BotoCoreError):
        return AwsError(f"{call}: {one_line(exc)}")
    return AwsError(f"{call}: {type(exc).__name__}: {one_line(exc)}")


def _client_error(exc: Any, call: str) -> AwsError:
    error = exc.response.get("Error", {})
    code = (
        str(error.get("Code", "")) or f"HTTP {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')}"
    )
    message = one_line(error.get("Message", "")).rstrip(".")
    hint = ""
    if code in ("InvalidClientTokenId", "UnrecognizedClientException", "InvalidAccessKeyId", "AuthFailure"):
        hint = ": check AWS_ACCESS_KEY_ID or the profile's keys"
    elif code in ("SignatureDoesNotMatch",):
        hint = ": check AWS_SECRET_ACCESS_KEY or the profile's keys"
    elif code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
        hint = ": refresh the credentials (aws sso login, new keys)"
    elif code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        hint = ": the credentials lack this permission"
    return AwsError(f"{call} failed: {code}: {message}{hint}" if message else f"{call} failed: {code}{hint}")


def reason(exc: Any) -> str:
    """The innermost cause's words: 'connection refused' rather than botocore's wrapping."""
    error = exc.kwargs.get("error") if hasattr(exc, "kwargs") else None
    text = str(error or exc)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if known.lower() in text.lower():
            return known.lower()
    if "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return "unknown host"
    return one_line(text)[:200]


def one_line(value: Any) -> str:
    return " ".join(str(value).split())


# -- responses ------------------------------------------------------------------------------------


def json_safe(value: Any, truncated: list[str] | None = None, path: str = "") -> Any:
    """``value`` with only JSON types; the paths of bodies cut at ``BODY_CAP`` go to ``truncated``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, truncated, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, truncated, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((json_safe(v, truncated, path) for v in value), key=str)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "read") and callable(value.read):  # botocore's StreamingBody
        return _read_body(value, truncated, path)
    return str(value)


def _read_body(body: Any, truncated: list[str] | None, path: str) -> str:
    try:
        data = body.read(BODY_CAP + 1)
    finally:
        close = getattr(body, "close", None)
        if callable(close):
            close()
    cut = len(data) > BODY_CAP
    if cut:
        data = data[:BODY_CAP]
        if truncated is not None:
            truncated.append(path)
    # A cut may fall inside a character: then up to 3 bytes of it are dropped.
    for drop in range(4 if cut else 1):
        try:
            return data[: len(data) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return base64.b64encode(data).decode()
