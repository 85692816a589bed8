"""Google Cloud Storage plumbing: the client from the step's credentials, retries, one-line errors.

**Credentials.** With ``STORAGE_EMULATOR_HOST`` (an emulator such as ``fake-gcs-server``
or ``gcp-storage-emulator``: ``http://127.0.0.1:9023``), no credentials, that endpoint.
Else application default credentials: ``GOOGLE_APPLICATION_CREDENTIALS`` (a service
account key or an external account file), then ``gcloud auth application-default login``'s
file, then the metadata server of GCE, GKE, Cloud Run and the like. The step's ``env`` is
read first for ``STORAGE_EMULATOR_HOST``, ``GOOGLE_APPLICATION_CREDENTIALS`` and
``GOOGLE_CLOUD_PROJECT``.

The SDK (``google-cloud-storage``, the extra ``runbook[gcp]``) is imported only here,
only when a step runs. One client per process and settings, shared by the step's threads.

**Retries.** The SDK's own list of transient failures (429, 5xx, broken connections),
backing off 1, 2, 4, 8 s, for at most 30 s, but a refused connection or an unknown host is
not retried: the endpoint is wrong, and waiting will not fix it (the step's ``retry:``
can still try again).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from runner.errors import HandlerError
from tasks._cloud import env_value, one_line, sdk

EXTRA = "gcp"
PACKAGE = "google-cloud-storage"
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"

NO_CREDENTIALS = (
    "no Google Cloud credentials found: run 'gcloud auth application-default login', set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account key file, or STORAGE_EMULATOR_HOST for an emulator"
)


class GcsError(HandlerError):
    """A failure talking to Cloud Storage (as opposed to reading the files)."""


@dataclass(frozen=True)
class Where:
    """What a client is made from."""

    emulator: str | None
    credentials_file: str | None
    project: str | None

    @classmethod
    def of(cls, args: dict[str, Any], ctx: Any) -> Where:
        emulator = env_value(ctx, "STORAGE_EMULATOR_HOST")
        if emulator and "://" not in emulator:
            emulator = f"http://{emulator}"
        return cls(
            emulator=emulator.rstrip("/") if emulator else None,
            credentials_file=env_value(ctx, "GOOGLE_APPLICATION_CREDENTIALS"),
            project=args.get("project") or env_value(ctx, "GOOGLE_CLOUD_PROJECT"),
        )

    def describe(self) -> str:
        return self.emulator or "Cloud Storage"


_clients: dict[tuple[Where, int], Any] = {}
_lock = threading.Lock()


def client(where: Where, pool: int) -> Any:
    """The process's ``storage.Client`` for ``where``, with ``pool`` connections."""
    key = (where, pool)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _make(where, pool)
        return found


def _make(where: Where, pool: int) -> Any:
    storage = sdk("google.cloud.storage", PACKAGE, EXTRA)
    import google.auth
    from google.auth import exceptions as auth_exceptions

    options: dict[str, Any] = {}
    try:
        if where.emulator:
            from google.auth.credentials import AnonymousCredentials

            credentials: Any = AnonymousCredentials()
            options = {
                "client_options": {"api_endpoint": where.emulator},
                "use_auth_w_custom_endpoint": False,
            }
            found_project = None
        elif where.credentials_file:
            credentials, found_project = google.auth.load_credentials_from_file(
                where.credentials_file, scopes=[SCOPE]
            )
        else:
            credentials, found_project = google.auth.default(scopes=[SCOPE])
    except auth_exceptions.DefaultCredentialsError as exc:
        if where.credentials_file:
            raise GcsError(
                f"GOOGLE_APPLICATION_CREDENTIALS={where.credentials_file} is not usable: "
                f"{_first_line(exc).rstrip('.')}; point it at a service account key file"
            ) from exc
        raise GcsError(NO_CREDENTIALS) from exc
    project = where.project or found_project
    # Without a project the client would look for one (the metadata server, for seconds); an
    # upload needs none, so a placeholder is passed and removed, as the SDK does for emulators.
    made = storage.Client(project=project or "<none>", credentials=credentials, **options)
    if not project:
        made.project = None
    _size_pool(made, pool)
    return made


def _size_pool(made: Any, pool: int) -> None:
    """Give the client's HTTP session as many connections as the step has threads."""
    import requests

    session = getattr(made, "_http", None)
    if isinstance(session, requests.Session):
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool)
        session.mount("https://", adapter)
        session.mount("http://", adapter)


def retry_policy() -> Any:
    """The SDK's retry, less refused connections and unknown hosts, for at most 30 s."""
    from google.api_core.retry import Retry
    from google.cloud.storage.retry import _should_retry

    def transient(exc: BaseException) -> bool:
        return _should_retry(exc) and not _endpoint_is_wrong(exc)

    return Retry(predicate=transient, initial=1.0, maximum=8.0, multiplier=2.0, timeout=30.0)


def timeout() -> tuple[float, float]:
    return (CONNECT_TIMEOUT, READ_TIMEOUT)


def _endpoint_is_wrong(exc: BaseException) -> bool:
    text = _chain_text(exc).lower()
    return any(
        known in text
        for known in (
            "connection refused",
            "name or service not known",
            "nodename nor servname",
            "name resolution",
        )
    )


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 10:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
        seen += 1
    return " ".join(parts)


# -- errors ---------------------------------------------------------------------------------------


def gcs_error(exc: BaseException, action: str, bucket: str, name: str, where: Where) -> HandlerError:
    """One line saying what failed and what to do, for any google-cloud-storage exception."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth_exceptions

    if isinstance(exc, HandlerError):
        return exc
    target = f"gs://{bucket}/{name}"
    at = f" at {where.emulator}" if where.emulator else ""
    message = _api_message(exc)
    if isinstance(exc, api.NotFound) and (action == "list" or "bucket" in message.lower() or not message):
        return GcsError(
            f"bucket {bucket!r} does not exist{at}: create it first (gcloud storage buckets create), "
            "or check bucket"
        )
    if isinstance(exc, (api.Unauthorized, auth_exceptions.RefreshError)):
        return GcsError(
            f"Cloud Storage refused the credentials ({_first_line(exc)[:200]}): run 'gcloud auth "
            "application-default login' again, or check GOOGLE_APPLICATION_CREDENTIALS"
        )
    if isinstance(exc, api.Forbidden):
        return GcsError(
            f"access denied: cannot {action} {target}: the credentials lack the permission "
            "(roles/storage.objectCreator and storage.objects.list, or roles/storage.objectAdmin)"
        )
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return GcsError(NO_CREDENTIALS)
    if "md5" in message.lower() or "crc32c" in message.lower() or type(exc).__name__ == "DataCorruption":
        return GcsError(
            f"checksum mismatch: Cloud Storage refused {target}: the data changed on the way or the file "
            "changed while it was read; run again"
        )
    if isinstance(exc, api.GoogleAPICallError):
        return GcsError(f"cannot {action} {target}: HTTP {exc.code}: {message or type(exc).__name__}")
    text = _chain_text(exc).lower()
    if _endpoint_is_wrong(exc) or ("connection" in text and "refused" in text):
        reason = "connection refused" if "refused" in text else "unknown host"
        hint = "STORAGE_EMULATOR_HOST" if where.emulator else "the network and DNS"
        return GcsError(f"cannot reach {where.describe()}: {reason}; check {hint}")
    if "timed out" in text or "timeout" in text:
        return GcsError(
            f"cannot {action} {target}: {where.describe()} did not answer in time; run again (retry:)"
        )
    return GcsError(f"cannot {action} {target}: {type(exc).__name__}: {_first_line(exc)[:300]}")


def _api_message(exc: BaseException) -> str:
    """The service's own message, without the request line the SDK puts before it."""
    errors = getattr(exc, "errors", None) or []
    for error in errors:
        if isinstance(error, dict) and error.get("message"):
            return one_line(error["message"])
    message = getattr(exc, "message", "") or ""
    if "Request failed with status code" in message:
        return ""
    return one_line(message)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return one_line(text.splitlines()[0]) if text else type(exc).__name__
