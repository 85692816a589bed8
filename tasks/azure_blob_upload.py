"""Upload a file, a folder or a glob's matches to an Azure Blob Storage container.

Names: a single file goes to ``blob`` (ending with ``/`` means "into": the file's name is
added), else to ``prefix`` + its name; a folder's files go to ``prefix`` + their path
inside the folder, a glob's matches to ``prefix`` + their path below the glob's fixed
leading part, with ``/`` separators (as ``s3_upload`` does). Dot files are uploaded;
links are followed.

Credentials, first found wins: ``connection_string``; ``account_url`` with
``AZURE_STORAGE_KEY``, ``AZURE_STORAGE_SAS_TOKEN`` or an Azure AD login (through
``azure-identity``: service principal variables, managed identity, ``az login``);
``AZURE_STORAGE_CONNECTION_STRING``; ``AZURE_STORAGE_ACCOUNT`` with the same. The step's
``env`` is read before the process's environment. Needs ``pip install 'runbook[azure]'``.

Unchanged blobs are skipped (``skip_unchanged``, default true): the step lists the
prefix once (5,000 blobs a request); a file whose blob has the same size and the same
Content-MD5 is left alone. Every blob runbook uploads gets its Content-MD5 set (Azure
keeps it only for single-request uploads on its own), so the next run can compare; a
blob without one (uploaded by another tool in blocks) is uploaded again.

Integrity: every request carries the MD5 of its bytes (``validate_content``), so Azure
refuses bytes that changed on the way. Files up to 8 MiB go in one request,
``max_concurrency`` at once; bigger ones in blocks of 8 MiB, ``max_concurrency`` blocks
at once, committed only when all arrived: an interrupted upload leaves the old blob as it
was (Azure drops uncommitted blocks after 7 days). Under ``--dry-run`` nothing is
uploaded: the step lists the prefix and reports what it would upload.
"""

from __future__ import annotations

import hashlib
import io
import time
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from tasks import _azure, _cloud
from tasks._files import file_digest, os_error

name = "azure_blob_upload"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder or a glob."},
        "container": {
            "type": "string",
            "minLength": 3,
            "maxLength": 63,
            "description": "The container (it must exist).",
        },
        "blob": {"type": "string", "description": "Blob name, for a single file (ending in / means into)."},
        "prefix": {"type": "string", "default": "", "description": "Name prefix (a folder) for many files."},
        "exclude": {**string_or_list, "description": "Glob patterns of files to leave out."},
        "connection_string": {
            "type": "string",
            "description": "Default: AZURE_STORAGE_CONNECTION_STRING. Keep it in secrets:.",
        },
        "account_url": {
            "type": "string",
            "description": "https://ACCOUNT.blob.core.windows.net, with AZURE_STORAGE_KEY, "
            "AZURE_STORAGE_SAS_TOKEN or an Azure AD login.",
        },
        "content_type": {"type": "string", "description": "Default: guessed from each file's name."},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "tier": {"enum": ["Hot", "Cool", "Cold", "Archive"], "description": "Access tier of the blobs."},
        "skip_unchanged": {
            "type": "boolean",
            "default": True,
            "description": "Leave alone blobs with the same size and Content-MD5.",
        },
        "max_concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "default": 8,
            "description": "Files, or blocks of a big file, uploaded at once.",
        },
    },
    "required": ["src", "container"],
    "not": {"anyOf": [{"required": ["blob", "prefix"]}, {"required": ["connection_string", "account_url"]}]},
    "additionalProperties": False,
}
result = {
    "uploaded": "list of {name, size, etag} of the blobs written",
    "unchanged": "number of files whose blob was already identical (not uploaded)",
    "files": "number of files found at src",
    "bytes": "bytes uploaded",
    "throughput": "bytes per second while uploading",
    "location": "the container's URL and the prefix (or the single blob)",
    "would_upload": "under --dry-run: [{name, size}] that would be uploaded",
    "would_skip": "under --dry-run: names that are unchanged",
}
example = """\
- azure_blob_upload:
    src: /var/backups/db/
    container: backups
    prefix: "db/{{ run.started | strftime('%Y-%m-%d') }}/"
    connection_string: "{{ secrets.azure_storage }}"
- azure_blob_upload:
    src: dist/app.tar.gz
    container: releases
    blob: "app/{{ version }}.tar.gz"
    account_url: https://mycompany.blob.core.windows.net
"""

IN_MEMORY = _azure.BLOCK  # files up to this size are read once, hashed and sent from memory
LIST_BEYOND = 10_000  # list at most this many blobs more than there are files, then ask one by one


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    items, prefix = _cloud.named_items(args, ctx.cwd, "blob")
    return Upload(args, ctx, items).run(prefix)


class Upload(_cloud.Uploader):
    """One step's upload: settings, the listing, what was done."""

    FAILURE = _azure.AzureError

    def __init__(self, args: dict[str, Any], ctx: Any, items: list[_cloud.Item]):
        super().__init__(args, ctx, items)
        self.container_name: str = args["container"]
        self.creds = _azure.credentials(args, ctx)
        self.content_type = args.get("content_type")
        self.metadata = dict(args.get("metadata") or {})
        self.tier = args.get("tier")
        self.account = self.creds.describe()
        self.container: Any = None
        self.remote: dict[str, tuple[int, bytes | None]] = {}  # name -> (size, Content-MD5)
        self.complete = False  # the listing saw every blob under the prefix
        self.last = ""

    def connect(self) -> None:
        service = _azure.service_client(self.creds, self.concurrency + 2)
        self.account = _azure.public_url(service.url)
        self.container = service.get_container_client(self.container_name)

    def error(self, exc: BaseException, action: str, blob: str = "") -> HandlerError:
        target = f"{self.container_name}/{blob}" if blob else self.container_name
        return _azure.azure_error(exc, action, target, self.account)

    def look(self, prefix: str) -> None:
        """List the blobs under the prefix: their sizes and Content-MD5."""
        try:
            self.remote, self.complete, self.last = _cloud.listed(
                self.container.list_blobs(name_starts_with=prefix or None),
                lambda blob: (int(blob.size), _md5_of(blob)),
                len(self.items) + LIST_BEYOND,
                self.ctx.cancelled,
            )
        except Exception as exc:
            raise self.error(exc, "list", prefix) from exc

    def known(self, item: _cloud.Item) -> tuple[int, bytes | None] | None:
        """The listed (size, MD5) of the item's blob; asks Azure past the end of a cut listing."""
        if self.complete or item.name <= self.last:
            return self.remote.get(item.name)
        from azure.core.exceptions import ResourceNotFoundError

        try:
            props = self.container.get_blob_client(item.name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise self.error(exc, "look at", item.name) from exc
        return int(props.size), _md5_of(props)

    def is_unchanged(self, item: _cloud.Item, size: int, md5: bytes) -> bool:
        if not self.skip_unchanged:
            return False
        remote = self.known(item)
        return remote is not None and remote[0] == size and remote[1] == md5

    def may_be_unchanged(self, item: _cloud.Item, size: int) -> bool:
        """False when the listing alone shows the blob is missing, of another size, or has no MD5."""
        if not (self.complete or item.name <= self.last):
            return True
        remote = self.remote.get(item.name)
        return remote is not None and remote[0] == size and remote[1] is not None

    # -- sending -----------------------------------------------------------------------------------

    def send(self) -> None:
        small = [item for item in self.items if item.size <= IN_MEMORY]
        big = [item for item in self.items if item.size > IN_MEMORY]
        start = time.monotonic()
        try:
            _cloud.in_pool(small, self.put_small, self.concurrency, self.ctx.cancelled)
            for item in big:  # one after the other, each in blocks max_concurrency at once
                if self.ctx.cancelled():
                    raise HandlerError("cancelled")
                self.put_big(item)
        finally:
            self.upload_time = time.monotonic() - start

    def put_small(self, item: _cloud.Item) -> None:
        try:
            with open(item.path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise os_error(exc, "read", item.path) from exc
        md5 = hashlib.md5(data, usedforsecurity=False).digest()
        if self.may_be_unchanged(item, len(data)) and self.is_unchanged(item, len(data), md5):
            self.skip(item, len(data))
            return
        self.put(item, data, len(data), md5, concurrency=1)

    def put_big(self, item: _cloud.Item) -> None:
        hexdigest, size = file_digest(item.path, "md5", cancelled=self.ctx.cancelled)
        md5 = bytes.fromhex(hexdigest)
        if self.may_be_unchanged(item, size) and self.is_unchanged(item, size, md5):
            self.skip(item, size)
            return
        try:
            with open(item.path, "rb") as handle:
                stream = _Cancellable(handle, self.ctx.cancelled)
                self.put(item, stream, size, md5, concurrency=self.concurrency)
        except OSError as exc:
            raise os_error(exc, "read", item.path) from exc

    def put(self, item: _cloud.Item, body: Any, size: int, md5: bytes, concurrency: int) -> None:
        from azure.storage.blob import ContentSettings, StandardBlobTier

        reported = [0]

        def hook(current: int, _total: int | None) -> None:
            self.progress.advance(current - reported[0])
            reported[0] = current

        settings = ContentSettings(
            content_type=self.content_type or _cloud.content_type(item.name), content_md5=bytearray(md5)
        )
        try:
            response = self.container.get_blob_client(item.name).upload_blob(
                body,
                length=size,
                overwrite=True,
                content_settings=settings,
                metadata=self.metadata or None,
                standard_blob_tier=StandardBlobTier(self.tier) if self.tier else None,
                validate_content=True,
                max_concurrency=concurrency,
                progress_hook=hook,
            )
        except Exception as exc:
            self.progress.advance(-reported[0])
            if self.ctx.cancelled():
                raise HandlerError("cancelled") from exc
            raise self.error(exc, "upload to", item.name) from exc
        if reported[0] < size:
            self.progress.advance(size - reported[0])
        with self._lock:
            self.uploaded.append(
                {"name": item.name, "size": size, "etag": str(response.get("etag", "")).strip('"')}
            )
            self.bytes += size

    # -- results -----------------------------------------------------------------------------------

    def location(self, prefix: str) -> str:
        return f"{self.account}/{self.container_name}/{prefix}"


def _md5_of(blob: Any) -> bytes | None:
    settings = getattr(blob, "content_settings", None)
    md5 = getattr(settings, "content_md5", None)
    return bytes(md5) if md5 else None


class _Cancellable(io.RawIOBase):
    """A file the SDK reads blocks from, which stops the upload once the step is cancelled."""

    def __init__(self, handle: Any, cancelled: Any):
        super().__init__()
        self.handle = handle
        self.cancelled = cancelled

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.cancelled():
            raise OSError("the step was cancelled")
        return self.handle.readinto(buffer)

    def read(self, size: int = -1) -> bytes:
        if self.cancelled():
            raise OSError("the step was cancelled")
        return self.handle.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        return self.handle.tell()
