"""Upload a file, a folder or a glob's matches to S3 or an S3-compatible store.

Keys: a single file goes to ``key`` (a ``key`` ending with ``/`` means "into": the file's
name is added), else to ``prefix`` + its name. A folder's files go to ``prefix`` + their
path inside the folder, a glob's matches to ``prefix`` + their path below the glob's fixed
leading part, with ``/`` separators. A ``prefix`` is a folder: a missing trailing ``/`` is
added and a leading one removed. Dot files are uploaded; links are followed.

Credentials come from boto3's standard chain (environment, ``profile``, SSO, instance and
container roles); the step's ``env`` is read first for ``AWS_*`` variables. For MinIO,
Ceph, Cloudflare R2, Backblaze B2 and other S3-compatible stores, set ``endpoint_url``.

Unchanged objects are skipped (``skip_unchanged``, default true): the step lists the
prefix (1 request per 1,000 objects); a file whose object has the same size is hashed,
and is unchanged when its SHA-256 is the object's. The object's SHA-256 is the one runbook
stored in its metadata (``x-amz-meta-sha256``) when it uploaded it, or S3's own SHA-256
checksum; runbook remembers it with the object's ETag in ``$RUNBOOK_HOME/s3-digests.db``,
so an object whose listed ETag is still the remembered one needs no further request;
others cost one ``HeadObject``. Only content counts: new ``extra_args`` alone upload
nothing. Unchanged files count in ``unchanged``; a step that uploaded nothing reports
``changed: false``. A failed run leaves what it uploaded in place, so running it again
(or ``retry:``) sends only the rest. Credentials that may not list the bucket (write-only
backup keys) make every file upload.

Integrity: every upload asks the server to verify it. A file below ``multipart_threshold``
is sent with its SHA-256 (``x-amz-checksum-sha256``), and its MD5 (``Content-MD5``) when
it is at most 16 MiB, so S3 refuses bytes that changed on the way; a bigger one goes
through boto3's transfer manager (``s3transfer``) in parts of 8 MiB (or the threshold, if
lower, but at least 5 MiB), ``max_concurrency`` at once, each part with its own checksum
(CRC32 by default, or the ``ChecksumAlgorithm`` of ``extra_args``). A failed or cancelled
multipart upload is aborted, so no parts are left behind to be billed. Small files are
uploaded ``max_concurrency`` at a time.

``extra_args`` go to S3 as given (``ContentType`` is guessed from the file name when not
given). Under ``--dry-run`` nothing is uploaded: the step lists the prefix and reports
what it would upload and what is unchanged; if S3 cannot be asked (no credentials, no
endpoint, no bucket yet), it says so and leaves ``changed`` unknown.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from runner.errors import HandlerError
from runner.schema import SIZE, string_or_list
from runner.units import parse_size
from tasks import _s3
from tasks._cloud import Uploader, as_list, content_type, folder_prefix, in_pool
from tasks._files import HASH_CHUNK, file_digest, os_error
from tasks._walk import has_magic, walk_all

# What extra_args may hold: s3transfer's upload arguments, less the checksums runbook computes.
EXTRA_ARGS = (
    "ACL",
    "CacheControl",
    "ChecksumAlgorithm",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "ExpectedBucketOwner",
    "Expires",
    "GrantFullControl",
    "GrantRead",
    "GrantReadACP",
    "GrantWriteACP",
    "Metadata",
    "ObjectLockLegalHoldStatus",
    "ObjectLockMode",
    "ObjectLockRetainUntilDate",
    "RequestPayer",
    "ServerSideEncryption",
    "StorageClass",
    "SSECustomerAlgorithm",
    "SSECustomerKey",
    "SSECustomerKeyMD5",
    "SSEKMSKeyId",
    "SSEKMSEncryptionContext",
    "Tagging",
    "WebsiteRedirectLocation",
)
_EXTRA_TYPES: dict[str, Any] = {
    "Metadata": {"type": "object", "additionalProperties": {"type": "string"}},
    "ChecksumAlgorithm": {"enum": ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"]},
    "StorageClass": {
        "type": "string",
        "description": "STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING, GLACIER_IR, GLACIER, "
        "DEEP_ARCHIVE...",
    },
    "ServerSideEncryption": {"type": "string", "description": "AES256, aws:kms, aws:kms:dsse"},
}

name = "s3_upload"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder or a glob."},
        "bucket": {"type": "string", "minLength": 3},
        "key": {"type": "string", "description": "Object key, for a single file (ending in / means into)."},
        "prefix": {"type": "string", "default": "", "description": "Key prefix (a folder) for many files."},
        "exclude": {**string_or_list, "description": "Glob patterns of files to leave out."},
        "endpoint_url": {"type": "string", "description": "For MinIO, Ceph, R2, B2 and the like."},
        "region": {"type": "string"},
        "profile": {"type": "string", "description": "A profile from ~/.aws/config."},
        "extra_args": {
            "type": "object",
            "properties": {arg: _EXTRA_TYPES.get(arg, {}) for arg in EXTRA_ARGS},
            "additionalProperties": False,
            "description": "ContentType, ServerSideEncryption, StorageClass, Metadata, ACL...",
        },
        "skip_unchanged": {
            "type": "boolean",
            "default": True,
            "description": "Leave alone objects with the same size and SHA-256.",
        },
        "max_concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 256,
            "default": 10,
            "description": "Files, or parts of a big file, uploaded at once.",
        },
        "multipart_threshold": {
            **SIZE,
            "default": "8MiB",
            "description": "Files this big or bigger go up in parts.",
        },
    },
    "required": ["src", "bucket"],
    "not": {"required": ["key", "prefix"]},
    "additionalProperties": False,
}
result = {
    "uploaded": "list of {key, size, etag} of the objects written",
    "unchanged": "number of files whose object was already identical (not uploaded)",
    "files": "number of files found at src",
    "bytes": "bytes uploaded",
    "throughput": "bytes per second while uploading",
    "duration": "seconds spent (listing, hashing and uploading)",
    "location": "s3://bucket/prefix (or the single key) written to",
    "would_upload": "under --dry-run: [{key, size}] that would be uploaded",
    "would_skip": "under --dry-run: keys that are unchanged",
}
example = """\
- s3_upload:
    src: /var/backups/db/
    bucket: backups
    prefix: "db/{{ run.started | strftime('%Y-%m-%d') }}/"
    extra_args: {StorageClass: STANDARD_IA}
- s3_upload: {src: dist/app.tar.gz, bucket: releases, key: "app/{{ version }}.tar.gz"}
- s3_upload: {src: "reports/*.csv", bucket: reports, endpoint_url: "http://minio.internal:9000"}
"""

MiB = 1024 * 1024
IN_MEMORY = 16 * MiB  # a single-part file up to this size is read once, hashed and sent from memory
MIN_PART = 5 * MiB  # S3's smallest part (but the last)
PART = 8 * MiB
PART_CHECKSUM = "CRC32"
LIST_BEYOND = 10_000  # list at most this many objects more than there are files, then ask one by one


@dataclass
class Item:
    """One file to upload and where."""

    path: str
    key: str
    size: int

    @property
    def name(self) -> str:
        return self.key


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    started = time.monotonic()
    items, prefix, single = plan(args, ctx.cwd)
    return Upload(args, ctx, items, single, started).run(prefix)


# -- what goes where ------------------------------------------------------------------------------


def plan(args: dict[str, Any], cwd: str) -> tuple[list[Item], str, bool]:
    """(files with their keys sorted by key, the prefix to list, whether it is a single file)."""
    src_text = args["src"]
    prefix = folder_prefix(args.get("prefix") or "")
    exclude = as_list(args.get("exclude"))
    found: dict[str, Item] = {}
    if has_magic(src_text):
        if args.get("key"):
            raise HandlerError("key names one object; for a glob's matches use prefix")
        matches = list(walk_all([src_text], cwd, exclude, hidden=False, follow_symlinks=True))
        if not matches:
            raise HandlerError(f"no file matches {src_text}")
        for entry in matches:
            if entry.is_dir:
                _add_tree(found, entry.path, prefix + entry.relative + "/", exclude)
            elif entry.is_file:
                _add(found, Item(entry.path, prefix + entry.relative, entry.size))
        return _sorted(found), prefix, False
    src = os.path.join(cwd, os.path.expanduser(src_text))
    try:
        info = os.stat(src)
    except FileNotFoundError:
        raise HandlerError(f"source {src} does not exist") from None
    except OSError as exc:
        raise os_error(exc, "read", src) from exc
    if os.path.isdir(src):
        if args.get("key"):
            raise HandlerError(f"key names one object but {src} is a folder: use prefix")
        _add_tree(found, src, prefix, exclude)
        return _sorted(found), prefix, False
    if not os.path.isfile(src):
        raise HandlerError(f"source {src} is not a regular file or a folder")
    base = os.path.basename(src)
    key = args.get("key") or prefix
    if not args.get("key") or key.endswith("/"):
        key += base
    item = Item(src, key, info.st_size)
    _check_key(item)
    return [item], key, True


def _add_tree(found: dict[str, Item], folder: str, prefix: str, exclude: list[str]) -> None:
    for entry in walk_all(["**"], folder, exclude, hidden=True, follow_symlinks=True):
        if entry.is_file:
            _add(found, Item(entry.path, prefix + entry.relative, entry.size))


def _add(found: dict[str, Item], item: Item) -> None:
    _check_key(item)
    found.setdefault(item.key, item)


def _check_key(item: Item) -> None:
    try:
        length = len(item.key.encode("utf-8"))
    except UnicodeEncodeError:
        raise HandlerError(
            f"file name {item.path!r} is not valid UTF-8, which S3 keys must be: rename it or exclude it"
        ) from None
    if length > 1024:
        raise HandlerError(f"key {item.key[:60]}... is {length} bytes long; S3 keys are at most 1024")
    if not item.key:
        raise HandlerError(f"{item.path} would get an empty key: give key or prefix")


def _sorted(found: dict[str, Item]) -> list[Item]:
    return [found[key] for key in sorted(found)]


# -- the upload ------------------------------------------------------------------------------------


class Upload(Uploader):
    """One step's upload: settings, the listing, what was done, and the byte progress."""

    FIELD = "key"
    DIGEST = "sha256"
    FAILURE = _s3.S3Error

    def __init__(self, args: dict[str, Any], ctx: Any, items: list[Item], single: bool, started: float):
        super().__init__(args, ctx, items, concurrency=10)
        self.started = started  # the step's start, before planning: the summary's ``duration``
        self.single = single  # one file: list its key only
        self.bucket: str = args["bucket"]
        self.where = _s3.Where.of(args, getattr(ctx, "env", {}) or {})
        self.threshold = parse_size(args.get("multipart_threshold", "8MiB"))
        extra = dict(args.get("extra_args") or {})
        self.metadata = dict(extra.pop("Metadata", None) or {})
        self.checksum = extra.pop("ChecksumAlgorithm", None)
        self.extra = extra
        self.s3: Any = None
        self.listing: _s3.Listing | None = None
        self.records = _s3.DigestRecords("", self.bucket, ctx.log)
        self._denied_head = False
        self._stop = threading.Event()
        self._hasher: ThreadPoolExecutor | None = None
        self._digests: dict[str, Future[tuple[str, int]]] = {}

    def run(self, prefix: str) -> dict[str, Any]:
        """As ``Uploader.run``, but the big files are hashed ahead, a failure to connect gets the
        summary too, and what runbook learnt of the objects' digests is saved at the end."""
        if self.ctx.dry_run:
            return self.dry_run(prefix)
        self.hash_ahead()
        try:
            self.connect()
            if self.skip_unchanged:
                self.look(prefix)
            self.send()
        except HandlerError as exc:
            raise HandlerError(str(exc), result=self.summary(prefix)) from exc
        finally:
            self.finish()
        return self.summary(prefix)

    def is_big(self, item: Item) -> bool:
        return item.size >= self.threshold and item.size > 0

    def hash_ahead(self) -> None:
        """Hash the files that go up in parts in a thread, from now on, one after the other.

        Their SHA-256 goes into the object's metadata, which S3 takes when an upload starts,
        so each is read once before its upload: meanwhile botocore loads, the prefix is
        listed, and the file before is uploaded (hashlib lets go of the interpreter's lock).
        """
        big = [item for item in self.items if self.is_big(item)]
        if not big:
            return
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="s3-upload-hash")

        def stopped() -> bool:
            return self._stop.is_set() or self.ctx.cancelled()

        for item in big:
            self._digests[item.key] = self._hasher.submit(file_digest, item.path, "sha256", None, stopped)

    def finish(self) -> None:
        self._stop.set()
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)
        if self.s3 is not None:
            self.records.save()

    # -- S3 ------------------------------------------------------------------------------------

    def connect(self) -> None:
        # One connection per thread, and a few more for listings and aborts beside them.
        self.s3 = _s3.client(self.where, pool=self.concurrency + 4)
        self.records.endpoint = _s3.endpoint_of(self.s3)

    def error(self, exc: BaseException, action: str, key: str = "") -> HandlerError:
        return _s3.s3_error(exc, action, self.bucket, key, self.where.endpoint_url)

    def location(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{self.items[0].key if self.single else prefix}"

    def look(self, prefix: str) -> None:
        """List what is there, and load what runbook recorded of it."""
        limit = len(self.items) + LIST_BEYOND
        try:
            self.listing = _s3.list_prefix(self.s3, self.bucket, prefix, limit, self.single)
        except Exception as exc:
            if not _s3.is_denied(exc):
                raise self.error(exc, "list", prefix) from exc
            # Write-only credentials are common for backups: upload everything instead.
            self.ctx.log(f"may not list s3://{self.bucket}/{prefix} (access denied): uploading every file")
            self.listing = None
            return
        self.records.load(prefix)

    def may_be_unchanged(self, item: Item, size: int) -> bool:
        """False when the listing alone shows the object is missing or of another size."""
        if self.listing is None:
            return False
        if not self.listing.knows(item.key):
            return True
        remote = self.listing.objects.get(item.key)
        return remote is not None and remote.size == size

    def is_unchanged(self, item: Item, size: int, digest: bytes) -> bool:
        """Whether the object of ``item`` already holds this content (size and SHA-256)."""
        if self.listing is None:
            return False
        if self.listing.knows(item.key):
            remote = self.listing.objects.get(item.key)
            if remote is None or remote.size != size:
                return False
            recorded = self.records.sha256_of(item.key, remote)
            if recorded is not None:
                return recorded == digest.hex()
        return self.head_says_same(item, size, digest)

    def head_says_same(self, item: Item, size: int, digest: bytes) -> bool:
        if self._denied_head:
            return False
        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=item.key, ChecksumMode="ENABLED")
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            if code == "403":  # may write but not read: upload rather than fail
                self._denied_head = True
                return False
            raise self.error(exc, "look at", item.key) from exc
        if int(head.get("ContentLength", -1)) != size:
            return False
        same = head.get("Metadata", {}).get("sha256") == digest.hex()
        if not same and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            same = head.get("ChecksumSHA256") == base64.b64encode(digest).decode()
        if same:
            self.records.note(item.key, head.get("ETag", ""), size, digest.hex())
        return same

    # -- sending ---------------------------------------------------------------------------------

    def send(self) -> None:
        small = [item for item in self.items if not self.is_big(item)]
        big = [item for item in self.items if self.is_big(item)]
        start = time.monotonic()
        try:
            in_pool(small, self.put_small, self.concurrency, self.ctx.cancelled)
            if big:
                self.put_big(big)
        finally:
            self.upload_time = time.monotonic() - start

    def put_small(self, item: Item) -> None:
        """Read, hash and PUT one file below the multipart threshold (one read when it fits in memory)."""
        try:
            with open(item.path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size <= IN_MEMORY:
                    data = handle.read()
                    size = len(data)
                    digest = hashlib.sha256(data).digest()
                    if self.is_unchanged(item, size, digest):
                        self.skip(item, size)
                        return
                    md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
                    self.put(item, data, size, digest, md5)
                else:
                    digest = _sha256_of_handle(handle)
                    if self.is_unchanged(item, size, digest):
                        self.skip(item, size)
                        return
                    handle.seek(0)
                    self.put(item, handle, size, digest, None)
        except OSError as exc:
            raise os_error(exc, "read", item.path) from exc

    def put(self, item: Item, body: Any, size: int, digest: bytes, md5: str | None) -> None:
        params = self.object_args(item, digest)
        if self.checksum in (None, "SHA256"):
            params["ChecksumSHA256"] = base64.b64encode(digest).decode()
        else:
            params["ChecksumAlgorithm"] = self.checksum
        if md5 is not None:
            params["ContentMD5"] = md5
        try:
            response = self.s3.put_object(Bucket=self.bucket, Key=item.key, Body=body, **params)
        except Exception as exc:
            raise self.error(exc, "upload to", item.key) from exc
        self.sent(item, size, response.get("ETag", ""), digest)

    def object_args(self, item: Item, digest: bytes) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.extra)
        params["Metadata"] = {**self.metadata, "sha256": digest.hex()}
        if "ContentType" not in params:
            params["ContentType"] = content_type(item.key)
        return params

    def sent(self, item: Item, size: int, etag: str, digest: bytes) -> None:
        with self._lock:
            self.uploaded.append({"key": item.key, "size": size, "etag": _s3.clean_etag(etag)})
            self.bytes += size
        self.records.note(item.key, etag, size, digest.hex())
        self.progress.advance(size)

    def dry_skip(self, item: Item, size: int) -> None:
        self.skip(item, size)  # a dry run's progress counts the unchanged files, as an upload's does

    def put_big(self, items: list[Item]) -> None:
        """Multipart uploads through s3transfer's manager, one file after the other."""
        from s3transfer.manager import TransferConfig, TransferManager

        part = min(max(self.threshold, MIN_PART), PART)
        config = TransferConfig(
            multipart_threshold=self.threshold,
            multipart_chunksize=part,
            max_request_concurrency=self.concurrency,
        )
        manager = TransferManager(self.s3, config)
        try:
            for item in items:
                if self.ctx.cancelled():
                    raise HandlerError("cancelled")
                self.put_multipart(manager, item)
        finally:
            manager.shutdown()

    def put_multipart(self, manager: Any, item: Item) -> None:
        hexdigest, size = self._digests[item.key].result()
        digest = bytes.fromhex(hexdigest)
        if self.is_unchanged(item, size, digest):
            self.skip(item, size)
            return
        extra = self.object_args(item, digest)
        extra["ChecksumAlgorithm"] = self.checksum or PART_CHECKSUM
        _s3.forget_uploads(self.s3, self.bucket, item.key)
        _s3.completed_etag(self.s3, self.bucket, item.key)
        future = manager.upload(
            item.path, self.bucket, item.key, extra_args=extra, subscribers=[_Progress(self.progress.advance)]
        )
        while not future.done():
            if self.ctx.wait(0.05):
                future.cancel()
                break
        try:
            future.result()
        except BaseException as exc:
            left = _s3.abort_unfinished(self.s3, self.bucket, [item.key])
            if self.ctx.cancelled():
                raise HandlerError("cancelled") from exc
            error = self.error(exc, "upload to", item.key)
            if left:
                raise HandlerError(
                    f"{error}; its unfinished multipart upload could not be aborted either: "
                    "a lifecycle rule AbortIncompleteMultipartUpload on the bucket removes such uploads"
                ) from exc
            raise error from exc
        _s3.forget_uploads(self.s3, self.bucket, item.key)
        etag = _s3.completed_etag(self.s3, self.bucket, item.key)
        with self._lock:
            self.uploaded.append({"key": item.key, "size": size, "etag": _s3.clean_etag(etag)})
            self.bytes += size
        self.records.note(item.key, etag, size, hexdigest)


class _Progress:
    """An s3transfer subscriber that passes byte counts on (negative ones when a part is retried)."""

    def __init__(self, advance: Callable[[int], None]):
        self.advance = advance

    def on_queued(self, **_: Any) -> None:
        pass

    def on_progress(self, bytes_transferred: int = 0, **_: Any) -> None:
        self.advance(bytes_transferred)

    def on_done(self, **_: Any) -> None:
        pass


def _sha256_of_handle(handle: Any) -> bytes:
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    while count := handle.readinto(buffer):
        digest.update(view[:count])
    return digest.digest()
