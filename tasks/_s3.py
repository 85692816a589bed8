"""S3 plumbing the S3 handlers share: the client, one-line errors, listings, digest records.

**Client.** One botocore client per process and connection settings, shared by every
thread and step that asks for the same ones (botocore clients are thread-safe; sessions
are not, so sessions are only made under a lock). Credentials, region and profile come
from boto3's standard chain (environment, ``~/.aws/config`` and ``credentials``, SSO,
container and instance roles), except that the step's own ``env`` (the playbook's and
the step's ``env:``) is read first for ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``/``AWS_DEFAULT_REGION`` and
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, as it would be by a process the step started.
Retries use botocore's ``standard`` mode (3 attempts, exponential backoff) unless
``AWS_RETRY_MODE`` or the profile's ``retry_mode`` say otherwise; connecting gives up
after 10 s. botocore is imported here only when a client is made, never at start-up.

**Errors.** ``s3_error`` turns botocore's exceptions into one-line ``HandlerError``\\ s
that say what to do: no credentials, unknown profile, no such bucket, access denied,
refused keys, an endpoint that cannot be reached, a checksum the server refused.

**Digest records.** ``DigestRecords`` remembers, per endpoint, bucket and key, the ETag,
size and SHA-256 of objects runbook uploaded or checked, in ``$RUNBOOK_HOME/s3-digests.db``
(SQLite). A listing gives every object's ETag for 1,000 objects a request; an object
whose listed ETag and size are the recorded ones still holds the recorded content (S3
gives an object a new ETag whenever its content is replaced by different content), so
its SHA-256 is known without asking for it. A missing or unusable record only costs a
``HeadObject`` per object; it can never make a changed object look unchanged.

**Multipart uploads.** ``track_multipart`` notes the id of every multipart upload the
client starts; ``abort_unfinished`` aborts those of given keys that did not complete
(the transfer manager aborts a failed upload itself; this is the safety net for when
its abort failed too).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runner.errors import HandlerError
from tasks._aws import CONNECT_TIMEOUT, NO_CREDENTIALS, READ_TIMEOUT, credentials_problem, one_line, reason

_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
)


class S3Error(HandlerError):
    """A failure talking to S3 (as opposed to reading the files): credentials, network, bucket."""


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


@dataclass(frozen=True)
class Where:
    """What a client is made from: the step's arguments and its extra environment."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    token: str | None = None

    @classmethod
    def of(cls, args: Mapping[str, Any], env: Mapping[str, str]) -> Where:
        step_env = {k: v for k in _ENV_KEYS if (v := env.get(k))}
        return cls(
            profile=args.get("profile") or step_env.get("AWS_PROFILE"),
            region=args.get("region") or step_env.get("AWS_REGION") or step_env.get("AWS_DEFAULT_REGION"),
            endpoint_url=args.get("endpoint_url")
            or step_env.get("AWS_ENDPOINT_URL_S3")
            or step_env.get("AWS_ENDPOINT_URL"),
            access_key=step_env.get("AWS_ACCESS_KEY_ID"),
            secret_key=step_env.get("AWS_SECRET_ACCESS_KEY"),
            token=step_env.get("AWS_SESSION_TOKEN"),
        )


def client(where: Where, pool: int = 10) -> Any:
    """The process's S3 client for ``where``, with at least ``pool`` connections."""
    key = (where, pool)
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = _make_client(where, pool)
        return found


def _make_client(where: Where, pool: int) -> Any:
    import botocore.exceptions
    import botocore.session
    from botocore.config import Config

    try:
        session = botocore.session.Session(profile=where.profile)
        # dateutil's general parser takes most of the time of reading a listing (0.5 ms per
        # object); S3's timestamps have two fixed forms, read here directly.
        session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
        if where.access_key or where.secret_key:
            if not (where.access_key and where.secret_key):
                missing = "AWS_SECRET_ACCESS_KEY" if where.access_key else "AWS_ACCESS_KEY_ID"
                raise S3Error(f"incomplete AWS credentials in the step's env: {missing} is missing")
            session.set_credentials(where.access_key, where.secret_key, where.token)
        settings: dict[str, Any] = {
            "max_pool_connections": pool,
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
        }
        # botocore's default "legacy" mode makes 5 attempts with long waits; "standard" is what
        # AWS recommends. A mode the user chose (environment or profile) is kept.
        if not os.environ.get("AWS_RETRY_MODE") and not session.get_scoped_config().get("retry_mode"):
            settings["retries"] = {"mode": "standard"}
        made = session.create_client(
            "s3", region_name=where.region, endpoint_url=where.endpoint_url, config=Config(**settings)
        )
        if session.get_credentials() is None:
            raise S3Error(NO_CREDENTIALS)
    except S3Error:
        raise
    except Exception as exc:
        raise s3_error(exc, "connect to S3", endpoint=where.endpoint_url) from exc
    track_multipart(made)
    _exit_quickly()
    # On "before-call.s3", where botocore adds the header, and after it: handlers of a more
    # specific event ("before-call.s3.PutObject") run before those of a broader one.
    made.meta.events.register_last(
        "before-call.s3", _no_wait_for_small_bodies, unique_id="runbook-small-bodies"
    )
    return made


SMALL_BODY = 1024 * 1024
_exit_registered = False


def _exit_quickly() -> None:
    """Spare the process the collection of botocore's objects when it exits.

    A process that made a botocore client spends 0.4 s at exit in the interpreter's last
    garbage collection over the service model's hundreds of thousands of objects (measured
    here); frozen objects are left out of it. Once the process exits nothing needs them.
    """
    global _exit_registered
    if not _exit_registered:
        import atexit
        import gc

        atexit.register(gc.freeze)
        _exit_registered = True


def _no_wait_for_small_bodies(params: dict[str, Any], model: Any = None, **_: Any) -> None:
    """Send a small PUT's body at once instead of waiting for the server's "100 Continue".

    botocore asks for ``Expect: 100-continue`` on every PUT with a body, which costs a round
    trip before the body goes: a whole network latency per small file (most of the time of
    a 8 KiB upload to a distant region). For a body of at most 1 MiB, sending it to a server
    that will refuse it (wrong credentials, say) costs less than waiting.
    """
    headers = params.get("headers") or {}
    if getattr(model, "name", "") == "PutObject" and headers.get("Expect") == "100-continue":
        from botocore.utils import determine_content_length

        length = determine_content_length(params.get("body"))
        if length is not None and length <= SMALL_BODY:
            del headers["Expect"]


def parse_timestamp(value: str) -> Any:
    """S3's ISO 8601 (listings) and HTTP-date (headers) timestamps, quickly; others by botocore."""
    from datetime import datetime, timezone
    from email.utils import parsedate_to_datetime

    try:
        if value[:4].isdigit():
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        parsed = parsedate_to_datetime(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        from botocore.utils import parse_timestamp as slow

        return slow(value)


def endpoint_of(s3: Any) -> str:
    return str(s3.meta.endpoint_url)


# -- errors ---------------------------------------------------------------------------------


def s3_error(
    exc: BaseException, action: str, bucket: str = "", key: str = "", endpoint: str | None = None
) -> S3Error:
    """One line saying what failed and what to do, for any botocore or s3transfer exception."""
    import botocore.exceptions as bex

    target = f"s3://{bucket}/{key}" if bucket else "S3"
    where = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, S3Error):
        return exc
    problem = credentials_problem(exc)
    if problem:
        return S3Error(problem)
    if isinstance(exc, bex.SSLError):
        return S3Error(
            f"TLS failure talking to S3{where}: {one_line(exc)} (a proxy or private CA? set AWS_CA_BUNDLE)"
        )
    if isinstance(exc, bex.ConnectTimeoutError):
        return S3Error(
            f"cannot {action}: connecting to S3{where} timed out; check endpoint_url and the network"
        )
    if isinstance(exc, bex.ReadTimeoutError):
        return S3Error(f"cannot {action}: S3{where} did not answer within {READ_TIMEOUT:.0f} s")
    if isinstance(exc, bex.EndpointConnectionError):
        url = exc.kwargs.get("endpoint_url", "")
        base = endpoint or url.split("?")[0]
        return S3Error(
            f"cannot reach the S3 endpoint {base}: {reason(exc)}; check endpoint_url, region and the network"
        )
    if isinstance(exc, bex.ConnectionClosedError):
        return S3Error(
            f"cannot {action} {target}: the connection to S3{where} was closed before an answer came; "
            "run again (retry:)"
        )
    if isinstance(exc, (bex.ConnectionError, bex.HTTPClientError)):  # the connection broke mid-request
        return S3Error(f"cannot {action} {target}: the connection to S3{where} broke ({reason(exc)}); retry")
    if isinstance(exc, bex.ParamValidationError):
        return S3Error(f"cannot {action} {target}: invalid parameters: {one_line(exc)}")
    if isinstance(exc, bex.ClientError):
        return _client_error(exc, action, bucket, target, where)
    if isinstance(exc, bex.BotoCoreError):
        return S3Error(f"cannot {action} {target}: {one_line(exc)}")
    return S3Error(f"cannot {action} {target}: {type(exc).__name__}: {one_line(exc)}")


PERMISSIONS = {
    "upload to": "s3:PutObject",
    "list": "s3:ListBucket",
    "look at": "s3:GetObject",
    "download": "s3:GetObject",
}


def _client_error(exc: Any, action: str, bucket: str, target: str, where: str) -> S3Error:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = str(error.get("Message", "")).rstrip(".")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code == "NoSuchBucket":
        return S3Error(
            f"bucket {bucket!r} does not exist{where}: create it first, or check bucket, region "
            "and endpoint_url"
        )
    if code in ("InvalidAccessKeyId", "InvalidToken"):
        return S3Error(
            f"the AWS access key was refused ({code}){where}: check AWS_ACCESS_KEY_ID or the profile's keys"
        )
    if code == "SignatureDoesNotMatch":
        return S3Error(
            f"the AWS secret key was refused (SignatureDoesNotMatch){where}: check AWS_SECRET_ACCESS_KEY "
            "or the profile's keys"
        )
    if code in ("ExpiredToken", "TokenRefreshRequired", "RequestExpired"):
        return S3Error(f"the AWS credentials have expired ({code}): refresh them (aws sso login, new keys)")
    if code in ("AccessDenied", "AllAccessDisabled", "403") or status == 403:
        needed = PERMISSIONS.get(action, "the permission")
        return S3Error(
            f"access denied: cannot {action} {target}: the credentials lack {needed}, "
            "or a bucket policy forbids it"
        )
    if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch") or "checksum" in code.lower():
        return S3Error(
            f"checksum mismatch: S3 refused {target} ({code}): the data changed on the way or the file "
            "changed while it was read; run again"
        )
    if code in (
        "PermanentRedirect",
        "AuthorizationHeaderMalformed",
        "301",
        "IllegalLocationConstraintException",
    ):
        region = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        hint = f"set region: {region}" if region else "set region: to the bucket's region"
        return S3Error(f"bucket {bucket!r} is in another region: {hint}")
    detail = f"{code}: {message}" if message else code or f"HTTP {status}"
    return S3Error(f"cannot {action} {target}: {one_line(detail)}")


def is_missing_bucket(exc: BaseException) -> bool:
    return _code(exc) == "NoSuchBucket"


def is_denied(exc: BaseException) -> bool:
    return _code(exc) in ("AccessDenied", "403", "AllAccessDisabled")


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


# -- listings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Remote:
    """An object as a listing shows it."""

    size: int
    etag: str


@dataclass
class Listing:
    """The objects under a prefix; past ``last`` (when not ``complete``) nothing is known."""

    objects: dict[str, Remote]
    complete: bool
    last: str = ""

    def knows(self, key: str) -> bool:
        return self.complete or key <= self.last


def list_prefix(s3: Any, bucket: str, prefix: str, limit: int, single: bool = False) -> Listing:
    """Objects whose keys start with ``prefix``, up to about ``limit`` of them.

    ``single`` asks for one object only (the key itself sorts first among its extensions).
    """
    objects: dict[str, Remote] = {}
    token = None
    while True:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if single:
            params["MaxKeys"] = 1
        if token:
            params["ContinuationToken"] = token
        page = s3.list_objects_v2(**params)
        last = ""
        for entry in page.get("Contents", ()):
            last = entry["Key"]
            objects[last] = Remote(int(entry["Size"]), clean_etag(entry.get("ETag", "")))
        token = page.get("NextContinuationToken")
        if single or not page.get("IsTruncated") or not token:
            return Listing(objects, complete=True)
        if len(objects) >= limit:  # a bucket far bigger than the upload: ask per object past here
            return Listing(objects, complete=False, last=last)


def clean_etag(etag: str) -> str:
    return etag.strip().strip('"')


# -- digest records -------------------------------------------------------------------------

RECORDS_FILE = "s3-digests.db"
KEEP_RECORDS = 180 * 86400.0  # records unused this long are dropped


@dataclass(frozen=True)
class Record:
    etag: str
    size: int
    sha256: str


class DigestRecords:
    """What runbook knows of objects' SHA-256, by endpoint, bucket and key (see the module doc).

    Never fails the step: a record that cannot be read or written is a note in the log and
    the work goes on without it.
    """

    def __init__(self, endpoint: str, bucket: str, log: Any = None, path: str | None = None):
        self.endpoint = endpoint
        self.bucket = bucket
        self.log = log
        self.path = path or _records_path()
        self.known: dict[str, Record] = {}
        self._pending: dict[str, Record] = {}
        self._touched: list[str] = []
        self._lock = threading.Lock()

    def load(self, prefix: str) -> None:
        upper = prefix + "\U0010ffff"
        rows = self._with_db(
            lambda db: db.execute(
                "SELECT key, etag, size, sha256 FROM objects WHERE endpoint = ? AND bucket = ? "
                "AND key >= ? AND key < ?",
                (self.endpoint, self.bucket, prefix, upper),
            ).fetchall()
        )
        self.known = {key: Record(etag, size, sha) for key, etag, size, sha in rows or ()}

    def sha256_of(self, key: str, remote: Remote) -> str | None:
        """The recorded SHA-256 of ``key`` if the object is still the one recorded."""
        record = self.known.get(key)
        if record is not None and record.etag == remote.etag and record.size == remote.size:
            with self._lock:
                self._touched.append(key)
            return record.sha256
        return None

    def note(self, key: str, etag: str, size: int, sha256: str) -> None:
        if etag:
            with self._lock:
                self._pending[key] = Record(clean_etag(etag), size, sha256)

    def save(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
            touched, self._touched = self._touched, []
        if not pending and not touched:
            return
        now = time.time()

        def write(db: sqlite3.Connection) -> None:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (self.endpoint, self.bucket, k, r.etag, r.size, r.sha256, now)
                        for k, r in pending.items()
                    ],
                )
                db.executemany(
                    "UPDATE objects SET used = ? WHERE endpoint = ? AND bucket = ? AND key = ?",
                    [(now, self.endpoint, self.bucket, key) for key in touched],
                )
                db.execute("DELETE FROM objects WHERE used < ?", (now - KEEP_RECORDS,))

        self._with_db(write)

    def _with_db(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            from runner.history import use_wal

            db = sqlite3.connect(self.path, timeout=10)
            try:
                use_wal(db, 10)
                db.execute(
                    "CREATE TABLE IF NOT EXISTS objects (endpoint TEXT, bucket TEXT, key TEXT, etag TEXT, "
                    "size INTEGER, sha256 TEXT, used REAL, PRIMARY KEY (endpoint, bucket, key)) WITHOUT ROWID"
                )
                return work(db)
            finally:
                db.close()
        except (sqlite3.Error, OSError) as exc:
            if self.log is not None:
                self.log(
                    f"digest records at {self.path} unusable ({one_line(exc)}); "
                    "objects are checked one by one"
                )
            return None


def _records_path() -> str:
    from runner.history import history_home

    return str(history_home() / RECORDS_FILE)


# -- multipart uploads ------------------------------------------------------------------------

_started: dict[tuple[int, str, str], set[str]] = {}  # (client id, bucket, key) -> upload ids
_completed: dict[tuple[int, str, str], str] = {}  # (client id, bucket, key) -> ETag
_tracking_lock = threading.Lock()


def track_multipart(s3: Any) -> None:
    """Note the id of each multipart upload ``s3`` starts, and the ETag of each it completes."""

    def started(parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict) and parsed.get("UploadId"):
            with _tracking_lock:
                where = (id(s3), parsed.get("Bucket", ""), parsed.get("Key", ""))
                _started.setdefault(where, set()).add(parsed["UploadId"])

    def completed(parsed: Any = None, **_: Any) -> None:
        if isinstance(parsed, dict) and parsed.get("ETag"):
            with _tracking_lock:
                _completed[(id(s3), parsed.get("Bucket", ""), parsed.get("Key", ""))] = parsed["ETag"]

    events = s3.meta.events
    events.register("after-call.s3.CreateMultipartUpload", started, unique_id="runbook-multipart-started")
    events.register("after-call.s3.CompleteMultipartUpload", completed, unique_id="runbook-multipart-done")


def completed_etag(s3: Any, bucket: str, key: str) -> str:
    """The ETag of the multipart upload of ``key`` that completed last ("" if none); forgets it."""
    with _tracking_lock:
        return _completed.pop((id(s3), bucket, key), "")


def forget_uploads(s3: Any, bucket: str, key: str) -> set[str]:
    """The ids of the uploads of ``key`` started since the last call, forgotten from now on."""
    with _tracking_lock:
        return _started.pop((id(s3), bucket, key), set())


def abort_unfinished(s3: Any, bucket: str, keys: Iterable[str]) -> list[str]:
    """Abort the multipart uploads of ``keys`` this process started; the keys that could not be."""
    import botocore.exceptions as bex

    failed = []
    for key in keys:
        for upload_id in forget_uploads(s3, bucket, key):
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except bex.ClientError as exc:
                if _code(exc) != "NoSuchUpload":  # already aborted (by the transfer manager): fine
                    failed.append(key)
            except Exception:
                failed.append(key)
    return failed
