"""Upload a file, a folder or a glob's matches to a Google Cloud Storage bucket.

Names: a single file goes to ``object`` (ending with ``/`` means "into": the file's name
is added), else to ``prefix`` + its name; a folder's files go to ``prefix`` + their path
inside the folder, a glob's matches to ``prefix`` + their path below the glob's fixed
leading part, with ``/`` separators (as ``s3_upload`` does). Dot files are uploaded;
links are followed.

Credentials: application default credentials (``GOOGLE_APPLICATION_CREDENTIALS``, the
file of ``gcloud auth application-default login``, the metadata server on Google Cloud);
with ``STORAGE_EMULATOR_HOST`` set, that emulator and no credentials. The step's ``env``
is read before the process's environment. Needs ``pip install 'runbook[gcp]'``.

Unchanged objects are skipped (``skip_unchanged``, default true): the step lists the
prefix once (1,000 objects a request); a file whose object has the same size and MD5 is
left alone (for a composite object, which has no MD5, its CRC32C is compared instead).

Integrity: each object is sent with its MD5, which Cloud Storage checks before it keeps
the object, and the MD5 it answers is checked again here. Files up to 8 MiB go in one
request; bigger ones in a resumable upload, 16 MiB a request, that Cloud Storage makes
visible only once complete: an interrupted upload leaves the old object as it was. Up to
``max_concurrency`` files go at once. Under ``--dry-run`` nothing is uploaded: the step
lists the prefix and reports what it would upload.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from tasks import _cloud, _gcs
from tasks._files import file_digest, os_error

name = "gcs_upload"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder or a glob."},
        "bucket": {"type": "string", "minLength": 3, "maxLength": 222},
        "object": {
            "type": "string",
            "description": "Object name, for a single file (ending in / means into).",
        },
        "prefix": {"type": "string", "default": "", "description": "Name prefix (a folder) for many files."},
        "exclude": {**string_or_list, "description": "Glob patterns of files to leave out."},
        "project": {"type": "string", "description": "Default: GOOGLE_CLOUD_PROJECT or the credentials'."},
        "content_type": {"type": "string", "description": "Default: guessed from each file's name."},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "storage_class": {
            "enum": ["STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"],
            "description": "Storage class of the objects (default: the bucket's).",
        },
        "skip_unchanged": {
            "type": "boolean",
            "default": True,
            "description": "Leave alone objects with the same size and MD5.",
        },
        "max_concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "default": 8,
            "description": "Files uploaded at once.",
        },
    },
    "required": ["src", "bucket"],
    "not": {"required": ["object", "prefix"]},
    "additionalProperties": False,
}
result = {
    "uploaded": "list of {name, size, generation} of the objects written",
    "unchanged": "number of files whose object was already identical (not uploaded)",
    "files": "number of files found at src",
    "bytes": "bytes uploaded",
    "throughput": "bytes per second while uploading",
    "location": "gs://bucket/prefix (or the single object) written to",
    "would_upload": "under --dry-run: [{name, size}] that would be uploaded",
    "would_skip": "under --dry-run: names that are unchanged",
}
example = """\
- gcs_upload:
    src: /var/backups/db/
    bucket: my-backups
    prefix: "db/{{ run.started | strftime('%Y-%m-%d') }}/"
    storage_class: NEARLINE
- gcs_upload: {src: dist/app.tar.gz, bucket: my-releases, object: "app/{{ version }}.tar.gz"}
"""

MiB = 1024 * 1024
IN_MEMORY = 8 * MiB  # files up to this size are read once, hashed and sent in one request
CHUNK = 16 * MiB  # a resumable upload's request size (a multiple of 256 KiB)
LIST_BEYOND = 10_000  # list at most this many objects more than there are files, then ask one by one


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    items, prefix = _cloud.named_items(args, ctx.cwd, "object")
    return Upload(args, ctx, items).run(prefix)


class Upload(_cloud.Uploader):
    """One step's upload: settings, the listing, what was done."""

    FAILURE = _gcs.GcsError

    def __init__(self, args: dict[str, Any], ctx: Any, items: list[_cloud.Item]):
        super().__init__(args, ctx, items)
        self.bucket_name: str = args["bucket"]
        self.where = _gcs.Where.of(args, ctx)
        self.content_type = args.get("content_type")
        self.metadata = dict(args.get("metadata") or {})
        self.storage_class = args.get("storage_class")
        self.client: Any = None
        self.bucket: Any = None
        self.retry: Any = None
        # name -> (size, md5 base64 or None, crc32c base64 or None)
        self.remote: dict[str, tuple[int, str | None, str | None]] = {}
        self.complete = False
        self.last = ""

    def connect(self) -> None:
        self.client = _gcs.client(self.where, self.concurrency + 2)
        self.bucket = self.client.bucket(self.bucket_name)
        self.retry = _gcs.retry_policy()

    def error(self, exc: BaseException, action: str, name: str = "") -> HandlerError:
        return _gcs.gcs_error(exc, action, self.bucket_name, name, self.where)

    def look(self, prefix: str) -> None:
        try:
            listing = self.client.list_blobs(
                self.bucket_name,
                prefix=prefix or None,
                fields="items(name,size,md5Hash,crc32c),nextPageToken",
                retry=self.retry,
                timeout=_gcs.timeout(),
            )
            self.remote, self.complete, self.last = _cloud.listed(
                listing,
                lambda blob: (int(blob.size or 0), blob.md5_hash, blob.crc32c),
                len(self.items) + LIST_BEYOND,
                self.ctx.cancelled,
            )
        except Exception as exc:
            raise self.error(exc, "list", prefix) from exc

    def known(self, item: _cloud.Item) -> tuple[int, str | None, str | None] | None:
        if self.complete or item.name <= self.last:
            return self.remote.get(item.name)
        try:
            blob = self.bucket.get_blob(item.name, retry=self.retry, timeout=_gcs.timeout())
        except Exception as exc:
            raise self.error(exc, "look at", item.name) from exc
        return None if blob is None else (int(blob.size or 0), blob.md5_hash, blob.crc32c)

    def may_be_unchanged(self, item: _cloud.Item, size: int) -> bool:
        if not self.skip_unchanged:
            return False
        if not (self.complete or item.name <= self.last):
            return True
        remote = self.remote.get(item.name)
        return remote is not None and remote[0] == size

    def is_unchanged(self, item: _cloud.Item, size: int, md5: bytes) -> bool:
        remote = self.known(item)
        if remote is None or remote[0] != size:
            return False
        if remote[1]:
            return remote[1] == _b64(md5)
        if remote[2]:  # a composite object has a CRC32C but no MD5
            return remote[2] == _crc32c_of(item.path)
        return False

    # -- sending -----------------------------------------------------------------------------------

    def send(self) -> None:
        start = time.monotonic()
        try:
            _cloud.in_pool(self.items, self.put, self.concurrency, self.ctx.cancelled)
        finally:
            self.upload_time = time.monotonic() - start

    def put(self, item: _cloud.Item) -> None:
        try:
            if item.size <= IN_MEMORY:
                with open(item.path, "rb") as handle:
                    data = handle.read()
                size, md5 = len(data), hashlib.md5(data, usedforsecurity=False).digest()
            else:
                data = None
                hexdigest, size = file_digest(item.path, "md5", cancelled=self.ctx.cancelled)
                md5 = bytes.fromhex(hexdigest)
        except OSError as exc:
            raise os_error(exc, "read", item.path) from exc
        if self.may_be_unchanged(item, size) and self.is_unchanged(item, size, md5):
            self.skip(item, size)
            return
        blob = self.bucket.blob(item.name, chunk_size=CHUNK)
        blob.md5_hash = _b64(md5)  # sent with the object: Cloud Storage refuses other bytes
        if self.metadata:
            blob.metadata = self.metadata
        if self.storage_class:
            blob.storage_class = self.storage_class
        content_type = self.content_type or _cloud.content_type(item.name)
        common = {
            "content_type": content_type,
            "checksum": "md5",
            "retry": self.retry,
            "timeout": _gcs.timeout(),
        }
        try:
            if data is not None:
                blob.upload_from_string(data, **common)
                self.progress.advance(size)
            else:
                with open(item.path, "rb") as handle:
                    reader = _Reader(handle, self.progress.advance, self.ctx.cancelled)
                    try:
                        blob.upload_from_file(reader, size=size, **common)
                    finally:
                        reader.settle(size)
        except Exception as exc:
            if self.ctx.cancelled():
                raise HandlerError("cancelled") from exc
            if isinstance(exc, OSError) and not _is_network(exc):
                raise os_error(exc, "read", item.path) from exc
            raise self.error(exc, "upload to", item.name) from exc
        with self._lock:
            self.uploaded.append({"name": item.name, "size": size, "generation": blob.generation})
            self.bytes += size

    # -- results -----------------------------------------------------------------------------------

    def location(self, prefix: str) -> str:
        return f"gs://{self.bucket_name}/{prefix}"


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _crc32c_of(path: str) -> str | None:
    """A file's CRC32C as Cloud Storage shows it (base64 of 4 big-endian bytes)."""
    try:
        import google_crc32c
    except ImportError:
        return None
    checksum = google_crc32c.Checksum()
    with open(path, "rb") as handle:
        while chunk := handle.read(MiB):
            checksum.update(chunk)
    return _b64(checksum.digest())


def _is_network(exc: OSError) -> bool:
    return type(exc).__module__.split(".")[0] in (
        "requests",
        "urllib3",
        "http",
        "socket",
        "ssl",
    ) or isinstance(exc, ConnectionError)


class _Reader(io.RawIOBase):
    """The file a resumable upload reads: reports progress, and stops once the step is cancelled.

    The SDK seeks back to resend a chunk after a failure; progress counts each byte once."""

    def __init__(self, handle: Any, advance: Any, cancelled: Any):
        super().__init__()
        self.handle = handle
        self.advance = advance
        self.cancelled = cancelled
        self.reported = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.cancelled():
            raise HandlerError("cancelled")
        data = self.handle.read(size)
        position = self.handle.tell()
        if position > self.reported:
            self.advance(position - self.reported)
            self.reported = position
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()

    def settle(self, size: int) -> None:
        """Count the bytes never read (the upload failed): progress stays within the total."""
        if self.reported < size:
            self.advance(size - self.reported)
            self.reported = size
