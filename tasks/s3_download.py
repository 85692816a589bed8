"""Download an S3 object to a file, or every object under a prefix to a folder.

With ``key``, ``dest`` is the file to write (a ``dest`` ending with ``/`` or naming a
folder means "into": the key's last part is the file's name). With ``prefix`` (a folder:
a missing trailing ``/`` is added), ``dest`` is a folder and each object lands at its key
less the prefix: ``prefix: db/`` puts ``db/2024/x.gz`` at ``dest/2024/x.gz``. Keys ending
with ``/`` (the console's folder markers) only make folders. A key that would land
outside ``dest`` (``../``, an absolute path) fails the step before anything is written.
Local files with no object are left alone.

Each object is streamed to a temporary file beside its destination and renamed into
place once complete and checked, so an interrupted download never leaves a half-written
file and the old one stays as it was. A downloaded file gets the object's time as its
modification time. Objects of ``multipart_threshold`` or more are fetched in 8 MiB
ranges, ``max_concurrency`` at once; smaller ones ``max_concurrency`` objects at once.

Integrity: every byte is checked before the rename, against the SHA-256 that
``s3_upload`` keeps in the object's metadata (``x-amz-meta-sha256``), else against S3's
own checksum of the object (botocore verifies CRC32/SHA-256 full-object checksums), else
against the ETag when it is a single-part object's MD5. An object changed while it was
being fetched fails the step (the ranges must all come from one version).

Unchanged files are skipped (``skip_unchanged``, default true): a local file of the
object's size is unchanged when its SHA-256 is the one runbook recorded for the object's
ETag (``$RUNBOOK_HOME/s3-digests.db``, shared with ``s3_upload``), or its MD5 is the
single-part ETag, or, asking S3 (one ``HeadObject``), its SHA-256 is the object's
metadata or S3 checksum, or its multipart ETag (8 MiB parts, as ``s3_upload`` and the
AWS CLI make) matches. Anything else is downloaded again. Under ``--dry-run`` nothing is
written: the step lists the objects and reports what it would download.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from runner.errors import HandlerError
from runner.schema import SIZE, string_or_list
from runner.units import parse_size
from tasks import _cloud, _s3
from tasks._files import HASH_CHUNK, default_mode, os_error, temporary_beside
from tasks._walk import Pattern

name = "s3_download"
schema = {
    "type": "object",
    "properties": {
        "bucket": {"type": "string", "minLength": 3},
        "key": {"type": "string", "description": "One object, downloaded to the file dest."},
        "prefix": {
            "type": "string",
            "description": "Every object under this prefix (a folder), to the folder dest.",
        },
        "dest": {
            "type": "string",
            "description": "A file (with key) or a folder (with prefix, or ending in /).",
        },
        "exclude": {
            **string_or_list,
            "description": "Glob patterns of keys (below the prefix) to leave out.",
        },
        "endpoint_url": {"type": "string", "description": "For MinIO, Ceph, R2, B2 and the like."},
        "region": {"type": "string"},
        "profile": {"type": "string", "description": "A profile from ~/.aws/config."},
        "skip_unchanged": {
            "type": "boolean",
            "default": True,
            "description": "Leave alone local files with the object's size and checksum.",
        },
        "max_concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 256,
            "default": 10,
            "description": "Objects, or ranges of a big object, fetched at once.",
        },
        "multipart_threshold": {
            **SIZE,
            "default": "16MiB",
            "description": "Objects this big or bigger are fetched in ranges.",
        },
    },
    "required": ["bucket", "dest"],
    "oneOf": [{"required": ["key"]}, {"required": ["prefix"]}],
    "additionalProperties": False,
}
result = {
    "downloaded": "list of {key, path, size} of the files written",
    "unchanged": "number of objects whose local file was already identical",
    "objects": "number of objects found",
    "bytes": "bytes downloaded",
    "throughput": "bytes per second while downloading",
    "location": "s3://bucket/prefix (or the single key) read from",
    "dest": "the file or folder written to",
    "would_download": "under --dry-run: [{key, path, size}] that would be downloaded",
    "would_skip": "under --dry-run: keys whose file is unchanged",
}
example = """\
- s3_download:
    bucket: backups
    prefix: "db/{{ run.started | strftime('%Y-%m-%d') }}/"
    dest: /var/restore/db/
- s3_download: {bucket: releases, key: "app/{{ version }}.tar.gz", dest: /opt/app/}
"""

MiB = 1024 * 1024
RANGE = 8 * MiB
PART = 8 * MiB  # the part size of the multipart ETags compared (s3_upload's and the AWS CLI's)
STREAM_CHUNK = 1 * MiB


@dataclass
class Item:
    """One object and the file it lands in."""

    key: str
    path: str
    size: int
    etag: str
    known: dict[str, str] = field(default_factory=dict)  # what a HeadObject told: sha256, ...


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    download = Download(args, ctx)
    if ctx.dry_run:
        return download.dry_run()
    download.connect()
    try:
        download.find()
        download.fetch_all()
    except HandlerError as exc:
        raise HandlerError(str(exc), result=download.summary()) from exc
    finally:
        download.records.save()
    return download.summary()


class Download:
    """One step's download: settings, the objects, what was done."""

    def __init__(self, args: dict[str, Any], ctx: Any):
        self.ctx = ctx
        self.bucket: str = args["bucket"]
        self.key: str | None = args.get("key")
        self.prefix = "" if self.key else _cloud.folder_prefix(args.get("prefix") or "")
        dest = os.path.join(ctx.cwd, os.path.expanduser(args["dest"]))
        self.dest = dest
        self.exclude = [Pattern.parse(p) for p in _cloud.as_list(args.get("exclude"))]
        self.exclude += [Pattern(("**", *p.segments)) for p in self.exclude if len(p.segments) == 1]
        self.where = _s3.Where.of(args, getattr(ctx, "env", {}) or {})
        self.skip_unchanged = bool(args.get("skip_unchanged", True))
        self.concurrency = int(args.get("max_concurrency", 10))
        self.threshold = max(parse_size(args.get("multipart_threshold", "16MiB")), 1)
        self.s3: Any = None
        self.records = _s3.DigestRecords("", self.bucket, ctx.log)
        self.items: list[Item] = []
        self.folders: list[str] = []
        self.downloaded: list[dict[str, Any]] = []
        self.unchanged: list[str] = []
        self.bytes = 0
        self.fetch_time = 0.0
        self.progress = _cloud.Progress(ctx, 0)
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.key if self.key else self.prefix}"

    def connect(self) -> None:
        self.s3 = _s3.client(self.where, pool=self.concurrency + 4)
        self.records.endpoint = _s3.endpoint_of(self.s3)

    def error(self, exc: BaseException, action: str, key: str = "") -> HandlerError:
        return _s3.s3_error(exc, action, self.bucket, key, self.where.endpoint_url)

    # -- what goes where ---------------------------------------------------------------------------

    def find(self) -> None:
        """The objects to fetch and their files; fails before any write on a bad key or path."""
        if self.key:
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=self.key, ChecksumMode="ENABLED")
            except Exception as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    raise HandlerError(f"no object {self.location}: check bucket and key") from exc
                raise self.error(exc, "look at", self.key) from exc
            target = self.dest
            if target.endswith(os.sep) or os.path.isdir(target):
                target = os.path.join(target, self.key.rstrip("/").rsplit("/", 1)[-1])
            item = Item(
                self.key, os.path.normpath(target), int(head["ContentLength"]), _s3.clean_etag(head["ETag"])
            )
            item.known = _what_head_tells(head)
            self.items = [item]
            self.records.load(self.key)
        else:
            try:
                listing = _s3.list_prefix(self.s3, self.bucket, self.prefix, limit=2**62)
            except Exception as exc:
                raise self.error(exc, "list", self.prefix) from exc
            self.items, self.folders = self.plan(listing.objects)
            self.records.load(self.prefix)
        self.progress.total = sum(item.size for item in self.items)

    def plan(self, objects: dict[str, _s3.Remote]) -> tuple[list[Item], list[str]]:
        items: list[Item] = []
        folders: list[str] = []
        root = os.path.normpath(self.dest)
        for key in sorted(objects):
            relative = key[len(self.prefix) :]
            if not relative or any(p.matches(relative.rstrip("/"), hidden=True) for p in self.exclude):
                continue
            path = _inside(root, relative, key)
            if key.endswith("/"):
                folders.append(path)
            else:
                remote = objects[key]
                items.append(Item(key, path, remote.size, remote.etag))
        files = {item.path for item in items}
        for item in items:  # "a" and "a/b" cannot both be files
            parent = os.path.dirname(item.path)
            while parent != root and len(parent) > len(root):
                if parent in files:
                    raise HandlerError(
                        f"objects {item.key!r} and one named like its folder both exist: "
                        f"{parent} cannot be a file and a folder; exclude one of them"
                    )
                parent = os.path.dirname(parent)
        return items, folders

    # -- unchanged ---------------------------------------------------------------------------------

    def is_unchanged(self, item: Item) -> bool:
        """Whether the local file holds the object's content (see the module doc for how)."""
        try:
            if os.path.getsize(item.path) != item.size or not os.path.isfile(item.path):
                return False
        except OSError:
            return False
        sha256, md5 = _local_digests(item.path, self.ctx.cancelled)
        recorded = self.records.sha256_of(item.key, _s3.Remote(item.size, item.etag))
        if recorded is not None:
            return recorded == sha256
        if _is_plain_md5(item.etag) and item.etag == md5:
            self.records.note(item.key, item.etag, item.size, sha256)
            return True
        if not item.known:
            item.known = self.head(item)
        same = item.known.get("sha256") == sha256 or (
            "-" in item.etag and _multipart_etag(item.path, PART) == item.etag
        )
        if same:
            self.records.note(item.key, item.etag, item.size, sha256)
        return same

    def head(self, item: Item) -> dict[str, str]:
        try:
            head = self.s3.head_object(
                Bucket=self.bucket, Key=item.key, IfMatch=item.etag, ChecksumMode="ENABLED"
            )
        except Exception as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound", "412", "PreconditionFailed"):
                return {}
            raise self.error(exc, "look at", item.key) from exc
        return _what_head_tells(head)

    # -- fetching ----------------------------------------------------------------------------------

    def fetch_all(self) -> None:
        for folder in self.folders:
            _make_folder(folder)
        small = [item for item in self.items if item.size < self.threshold]
        big = [item for item in self.items if item.size >= self.threshold]
        start = time.monotonic()
        try:
            _cloud.in_pool(small, self.one, self.concurrency, self.ctx.cancelled)
            for item in big:
                if self.ctx.cancelled():
                    raise HandlerError("cancelled")
                self.one(item)
        finally:
            self.fetch_time = time.monotonic() - start

    def one(self, item: Item) -> None:
        if self.skip_unchanged and self.is_unchanged(item):
            with self._lock:
                self.unchanged.append(item.key)
            self.progress.advance(item.size)
            return
        _make_folder(os.path.dirname(item.path))
        try:
            with temporary_beside(item.path) as temporary:
                if item.size >= self.threshold:
                    modified = self.fetch_ranges(item, temporary)
                    sha256, md5 = _local_digests(temporary, self.ctx.cancelled)
                else:
                    sha256, md5, modified = self.fetch_whole(item, temporary)
                self.check(item, sha256, md5)
                os.chmod(temporary, default_mode(item.path))
                if modified is not None:
                    os.utime(temporary, (modified, modified))
                os.replace(temporary, item.path)
        except OSError as exc:
            raise os_error(exc, "write", item.path) from exc
        self.records.note(item.key, item.etag, item.size, sha256)
        with self._lock:
            self.downloaded.append({"key": item.key, "path": item.path, "size": item.size})
            self.bytes += item.size

    def get(self, item: Item, **extra: Any) -> Any:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=item.key, IfMatch=item.etag, **extra)
        except Exception as exc:
            if _code(exc) in ("412", "PreconditionFailed"):
                raise HandlerError(
                    f"{self.location if self.key else 's3://' + self.bucket + '/' + item.key} changed while "
                    "it was being downloaded; run again"
                ) from exc
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise HandlerError(f"s3://{self.bucket}/{item.key} was deleted while the step ran") from exc
            raise self.error(exc, "download", item.key) from exc

    def fetch_whole(self, item: Item, temporary: str) -> tuple[str, str, float | None]:
        """Stream one object into ``temporary``; (sha256, md5, modification time)."""
        response = self.get(item, ChecksumMode="ENABLED")
        self.note_head(item, response)
        sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        done = 0
        body = response["Body"]
        try:
            with open(temporary, "wb") as handle:
                for chunk in body.iter_chunks(STREAM_CHUNK):
                    handle.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    done += len(chunk)
                    self.progress.advance(len(chunk))
                    if self.ctx.cancelled():
                        raise HandlerError("cancelled")
        except (OSError, HandlerError):
            raise
        except Exception as exc:  # the stream broke, or botocore found a checksum mismatch
            self.progress.advance(-done)
            raise self.error(exc, "download", item.key) from exc
        finally:
            body.close()
        if done != item.size:
            self.progress.advance(-done)
            raise HandlerError(f"s3://{self.bucket}/{item.key}: got {done} bytes of {item.size}; run again")
        return sha256.hexdigest(), md5.hexdigest(), _timestamp(response)

    def fetch_ranges(self, item: Item, temporary: str) -> float | None:
        """Fetch a big object in ranges, ``max_concurrency`` at once, written in place."""
        ranges = [(start, min(start + RANGE, item.size) - 1) for start in range(0, item.size, RANGE)]
        modified: list[float | None] = [None]
        with open(temporary, "r+b") as handle:
            handle.truncate(item.size)
            descriptor = handle.fileno()

            def fetch(span: tuple[int, int]) -> None:
                first, last = span
                response = self.get(item, Range=f"bytes={first}-{last}")
                if span[0] == 0:
                    self.note_head(item, response)
                    modified[0] = _timestamp(response)
                body, offset = response["Body"], first
                try:
                    for chunk in body.iter_chunks(STREAM_CHUNK):
                        os.pwrite(descriptor, chunk, offset)
                        offset += len(chunk)
                        self.progress.advance(len(chunk))
                        if self.ctx.cancelled():
                            raise HandlerError("cancelled")
                except (OSError, HandlerError):
                    raise
                except Exception as exc:
                    raise self.error(exc, "download", item.key) from exc
                finally:
                    body.close()
                if offset != last + 1:
                    raise HandlerError(f"s3://{self.bucket}/{item.key}: a range came short; run again")

            _cloud.in_pool(ranges, fetch, self.concurrency, self.ctx.cancelled)
        return modified[0]

    def note_head(self, item: Item, response: dict[str, Any]) -> None:
        if not item.known:
            item.known = _what_head_tells(response)

    def check(self, item: Item, sha256: str, md5: str) -> None:
        """The bytes are the object's: its runbook SHA-256, S3's checksum or a plain-MD5 ETag."""
        expected = item.known.get("sha256")
        if expected is not None:
            ok, against = expected == sha256, "SHA-256"
        elif _is_plain_md5(item.etag) and not item.known.get("encrypted"):
            ok, against = item.etag == md5, "MD5 ETag"
        else:
            return  # nothing to compare with: botocore checked S3's CRC checksum if there was one
        if not ok:
            raise HandlerError(
                f"checksum mismatch: s3://{self.bucket}/{item.key} does not match its {against}; "
                f"{item.path} was left as it was; run again"
            )

    # -- results -----------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        downloaded = sorted(self.downloaded, key=lambda entry: entry["key"])
        return {
            "downloaded": downloaded,
            "unchanged": len(self.unchanged),
            "objects": len(self.items),
            "bytes": self.bytes,
            "throughput": round(self.bytes / self.fetch_time) if self.fetch_time > 0 else 0,
            "location": self.location,
            "dest": self.dest,
            "changed": bool(downloaded),
        }

    def dry_run(self) -> dict[str, Any]:
        try:
            self.connect()
            self.find()
            todo: list[dict[str, Any]] = []

            def judge(item: Item) -> None:
                if self.skip_unchanged and self.is_unchanged(item):
                    with self._lock:
                        self.unchanged.append(item.key)
                else:
                    with self._lock:
                        todo.append({"key": item.key, "path": item.path, "size": item.size})

            _cloud.in_pool(self.items, judge, self.concurrency, self.ctx.cancelled)
        except _s3.S3Error as exc:
            return {
                "location": self.location,
                "dest": self.dest,
                "dry_run": f"would download {self.location} to {self.dest}; what is there is unknown: {exc}",
            }
        todo.sort(key=lambda entry: entry["key"])
        return {
            "downloaded": [],
            "would_download": todo,
            "would_skip": sorted(self.unchanged),
            "unchanged": len(self.unchanged),
            "objects": len(self.items),
            "bytes": 0,
            "location": self.location,
            "dest": self.dest,
            "changed": bool(todo),
            "dry_run": f"would download {_cloud.count_text(len(todo), 'object')} "
            f"({sum(e['size'] for e in todo)} bytes) to {self.dest}, {len(self.unchanged)} unchanged",
        }


# -- helpers ---------------------------------------------------------------------------------------


def _inside(root: str, relative: str, key: str) -> str:
    """The path of ``relative`` (a key less the prefix) below ``root``; refuses escapes."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if not parts and relative.endswith("/"):
        return root
    if not parts or ".." in parts or any(os.sep in part or "\0" in part for part in parts):
        raise HandlerError(
            f"object key {key!r} would land outside {root} (or has no name): exclude it, or download it "
            "with key: and dest:"
        )
    return os.path.join(root, *parts)


def _make_folder(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError as exc:
        raise HandlerError(f"cannot make the folder {path}: a file of that name is in the way") from exc
    except OSError as exc:
        raise os_error(exc, "make the folder", path) from exc


def _what_head_tells(head: dict[str, Any]) -> dict[str, str]:
    """What a HeadObject or GetObject answer tells about the content's checksums."""
    known = {"seen": "1"}
    sha256 = (head.get("Metadata") or {}).get("sha256")
    if not sha256 and head.get("ChecksumSHA256") and head.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
        try:
            sha256 = base64.b64decode(head["ChecksumSHA256"]).hex()
        except ValueError:
            sha256 = None
    if sha256:
        known["sha256"] = sha256
    if head.get("SSECustomerAlgorithm") or head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse"):
        known["encrypted"] = "1"  # the ETag is not the content's MD5 then
    return known


def _is_plain_md5(etag: str) -> bool:
    return len(etag) == 32 and all(c in "0123456789abcdef" for c in etag.lower())


def _local_digests(path: str, cancelled: Any) -> tuple[str, str]:
    """(sha256, md5) of a file in one read."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                sha256.update(view[:count])
                md5.update(view[:count])
                if cancelled():
                    raise HandlerError(f"cancelled while hashing {path}")
    except OSError as exc:
        raise os_error(exc, "read", path) from exc
    return sha256.hexdigest(), md5.hexdigest()


def _multipart_etag(path: str, part: int) -> str | None:
    """The ETag S3 gives a multipart upload of this file in ``part``-byte parts."""
    digests = []
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(part):
                digests.append(hashlib.md5(chunk, usedforsecurity=False).digest())
    except OSError:
        return None
    if len(digests) < 2:
        return None
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def _timestamp(response: dict[str, Any]) -> float | None:
    modified = response.get("LastModified")
    return modified.timestamp() if modified is not None else None


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""
