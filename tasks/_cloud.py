"""What the cloud upload handlers share (``azure_blob_upload``, ``gcs_upload``): sources to
object names, a worker pool, byte progress, content types, and their optional SDKs; with
``s3_upload`` too, ``Uploader``: the steps' run, dry run and results.

**Names.** A single file goes to ``name`` (``name`` ending with ``/`` means "into": the
file's own name is added), else to ``prefix`` + its name; a folder's files go to
``prefix`` + their path inside the folder; a glob's matches to ``prefix`` + their path
below the glob's fixed leading part; always with ``/`` separators, as ``s3_upload`` does.
A ``prefix`` is a folder: a missing trailing ``/`` is added and a leading one removed.

**Optional SDKs.** Each cloud's SDK is an optional extra (``runbook[azure]``,
``runbook[gcp]``) imported only when its handler runs, through ``sdk()``: a missing one
fails the step with one line that names the extra to install.
"""

from __future__ import annotations

import importlib
import mimetypes
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from runner.errors import HandlerError
from tasks._files import file_digest, os_error
from tasks._walk import has_magic, walk_all


@dataclass
class Item:
    """One file to upload, and the object name it gets."""

    path: str
    name: str
    size: int


# -- what goes where -----------------------------------------------------------------------------


def plan(
    src_text: str, name: str | None, prefix: str, exclude: Sequence[str], cwd: str, what: str = "object"
) -> tuple[list[Item], str, bool]:
    """(files with their names, sorted by name; the prefix to list; whether it is one file).

    ``what`` is what the store calls an object ("blob"), for messages."""
    prefix = folder_prefix(prefix)
    found: dict[str, Item] = {}
    if has_magic(src_text):
        if name:
            raise HandlerError(f"{what} names one file; for a glob's matches use prefix")
        matches = list(walk_all([src_text], cwd, exclude, hidden=False, follow_symlinks=True))
        if not matches:
            raise HandlerError(f"no file matches {src_text}")
        for entry in matches:
            if entry.is_dir:
                _add_tree(found, entry.path, prefix + entry.relative + "/", exclude)
            elif entry.is_file:
                found.setdefault(
                    prefix + entry.relative, Item(entry.path, prefix + entry.relative, entry.size)
                )
        return _sorted(found), prefix, False
    src = os.path.join(cwd, os.path.expanduser(src_text))
    try:
        info = os.stat(src)
    except FileNotFoundError:
        raise HandlerError(f"source {src} does not exist") from None
    except OSError as exc:
        raise os_error(exc, "read", src) from exc
    if os.path.isdir(src):
        if name:
            raise HandlerError(f"{what} names one file but {src} is a folder: use prefix")
        _add_tree(found, src, prefix, exclude)
        return _sorted(found), prefix, False
    if not os.path.isfile(src):
        raise HandlerError(f"source {src} is not a regular file or a folder")
    target = name or prefix
    if not name or target.endswith("/"):
        target += os.path.basename(src)
    return [Item(src, target.lstrip("/"), info.st_size)], target, True


def named_items(args: dict[str, Any], cwd: str, what: str) -> tuple[list[Item], str]:
    """(the step's files with their names, the prefix to list), for a step whose single-file
    argument is called as the store calls an object (``blob``, ``object``); names checked."""
    exclude = as_list(args.get("exclude"))
    items, prefix, _ = plan(args["src"], args.get(what), args.get("prefix") or "", exclude, cwd, what)
    check_names(items, 1024, what)
    return items, prefix


def folder_prefix(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _add_tree(found: dict[str, Item], folder: str, prefix: str, exclude: Sequence[str]) -> None:
    for entry in walk_all(["**"], folder, exclude, hidden=True, follow_symlinks=True):
        if entry.is_file:
            found.setdefault(prefix + entry.relative, Item(entry.path, prefix + entry.relative, entry.size))


def _sorted(found: dict[str, Item]) -> list[Item]:
    return [found[key] for key in sorted(found)]


def check_names(items: Sequence[Item], limit: int, what: str) -> None:
    """Names must be UTF-8 and at most ``limit`` bytes long (both stores say so)."""
    for item in items:
        try:
            length = len(item.name.encode("utf-8"))
        except UnicodeEncodeError:
            raise HandlerError(
                f"file name {item.path!r} is not valid UTF-8, which {what} names must be: "
                "rename or exclude it"
            ) from None
        if length > limit:
            raise HandlerError(
                f"{what} name {item.name[:60]}... is {length} bytes long; the limit is {limit}"
            )
        if not item.name:
            raise HandlerError(f"{item.path} would get an empty {what} name: give {what} or prefix")


def as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


# -- doing it ------------------------------------------------------------------------------------


class Progress:
    """Bytes done out of a total, passed to ``ctx.progress``; thread-safe."""

    def __init__(self, ctx: Any, total: int):
        self.ctx = ctx
        self.total = total
        self.done = 0
        self._lock = threading.Lock()

    def advance(self, count: int) -> None:
        with self._lock:
            self.done = max(0, self.done + count)
            done = self.done
        self.ctx.progress(done, self.total)


def in_pool(
    items: Sequence[Any], work: Callable[[Any], None], workers: int, cancelled: Callable[[], bool]
) -> None:
    """``work`` on every item, ``workers`` threads taking the next item in turn.

    The first failure stops the taking of new items and is raised once the running ones end;
    a cancellation stops it too and raises "cancelled".
    """
    pending = iter(items)
    take = threading.Lock()
    failures: list[BaseException] = []

    def worker() -> None:
        while not failures and not cancelled():
            with take:
                item = next(pending, None)
            if item is None:
                return
            try:
                work(item)
            except BaseException as exc:
                failures.append(exc)
                return

    count = min(workers, len(items))
    if count <= 1:
        worker()
    else:
        threads = [threading.Thread(target=worker, name=f"cloud-{n}", daemon=True) for n in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    if cancelled():
        raise HandlerError("cancelled")


def listed(
    listing: Iterable[Any], entry: Callable[[Any], Any], limit: int, cancelled: Callable[[], bool]
) -> tuple[dict[str, Any], bool, str]:
    """(name -> ``entry`` of each listed object, whether the listing ended, the last name listed).

    The listing stops once it holds ``limit`` objects; past its last name, ask one by one."""
    remote: dict[str, Any] = {}
    last = ""
    for blob in listing:
        if cancelled():
            raise HandlerError("cancelled")
        remote[blob.name] = entry(blob)
        last = blob.name
        if len(remote) >= limit:
            return remote, False, last
    return remote, True, last


class Uploader:
    """One upload step: its files, what was done, its run, dry run and results.

    A store's subclass says how to ``connect``, ``look`` at the prefix (list it), ``send``
    the files, the ``location`` written to, whether the listing alone leaves a file possibly
    unchanged (``may_be_unchanged``) and whether the file with this digest is
    (``is_unchanged``). ``FIELD`` is what results call an item's name, ``DIGEST`` the hash
    ``is_unchanged`` compares, ``FAILURE`` the store's error: a dry run that meets it says
    which files are unchanged is unknown.
    """

    FIELD = "name"
    DIGEST = "md5"
    FAILURE: type[Exception] = HandlerError

    def __init__(self, args: dict[str, Any], ctx: Any, items: Sequence[Any], concurrency: int = 8):
        self.ctx = ctx
        self.items = items
        self.skip_unchanged = bool(args.get("skip_unchanged", True))
        self.concurrency = int(args.get("max_concurrency", concurrency))
        self.uploaded: list[dict[str, Any]] = []
        self.unchanged: list[str] = []
        self.bytes = 0
        self.upload_time = 0.0
        self.started: float | None = None  # when set, the summary has the step's ``duration``
        self.progress = Progress(ctx, sum(item.size for item in items))
        self._lock = threading.Lock()

    def connect(self) -> None:
        raise NotImplementedError

    def look(self, prefix: str) -> None:
        raise NotImplementedError

    def send(self) -> None:
        raise NotImplementedError

    def location(self, prefix: str) -> str:
        raise NotImplementedError

    def may_be_unchanged(self, item: Any, size: int) -> bool:
        raise NotImplementedError

    def is_unchanged(self, item: Any, size: int, digest: bytes) -> bool:
        raise NotImplementedError

    def run(self, prefix: str) -> dict[str, Any]:
        if self.ctx.dry_run:
            return self.dry_run(prefix)
        self.connect()
        try:
            if self.skip_unchanged:
                self.look(prefix)
            self.send()
        except HandlerError as exc:
            raise HandlerError(str(exc), result=self.summary(prefix)) from exc
        return self.summary(prefix)

    def skip(self, item: Any, size: int) -> None:
        with self._lock:
            self.unchanged.append(item.name)
        self.progress.advance(size)

    def dry_skip(self, item: Any, size: int) -> None:
        """A dry run found ``item`` unchanged."""
        with self._lock:
            self.unchanged.append(item.name)

    def summary(self, prefix: str) -> dict[str, Any]:
        uploaded = sorted(self.uploaded, key=lambda entry: entry[self.FIELD])
        result = {
            "uploaded": uploaded,
            "unchanged": len(self.unchanged),
            "files": len(self.items),
            "bytes": self.bytes,
            "throughput": round(self.bytes / self.upload_time) if self.upload_time > 0 else 0,
        }
        if self.started is not None:
            result["duration"] = time.monotonic() - self.started
        return {**result, "location": self.location(prefix), "changed": bool(uploaded)}

    def dry_run(self, prefix: str) -> dict[str, Any]:
        """What would be uploaded and what is unchanged; nothing is written."""
        everything = [{self.FIELD: item.name, "size": item.size} for item in self.items]
        total = sum(item.size for item in self.items)
        base = {"files": len(self.items), "uploaded": [], "bytes": 0}
        if not self.skip_unchanged or not self.items:
            return {
                **base,
                "location": self.location(prefix),
                "would_upload": everything,
                "would_skip": [],
                "unchanged": 0,
                "changed": bool(self.items),
                "dry_run": f"would upload {count_text(len(everything))} ({total} bytes) to "
                f"{self.location(prefix)}",
            }
        todo: list[dict[str, Any]] = []
        try:
            self.connect()
            self.look(prefix)

            def judge(item: Any) -> None:
                try:
                    size = os.path.getsize(item.path)
                except OSError as exc:
                    raise os_error(exc, "read", item.path) from exc
                if self.may_be_unchanged(item, size):
                    hexdigest = file_digest(item.path, self.DIGEST, cancelled=self.ctx.cancelled)[0]
                    if self.is_unchanged(item, size, bytes.fromhex(hexdigest)):
                        self.dry_skip(item, size)
                        return
                with self._lock:
                    todo.append({self.FIELD: item.name, "size": size})

            in_pool(self.items, judge, self.concurrency, self.ctx.cancelled)
        except self.FAILURE as exc:
            return {
                **base,
                "location": self.location(prefix),
                "would_upload": everything,
                "dry_run": f"would upload up to {count_text(len(everything))} ({total} bytes) to "
                f"{self.location(prefix)}; which are unchanged is unknown: {exc}",
            }
        todo.sort(key=lambda entry: entry[self.FIELD])
        return {
            **base,
            "location": self.location(prefix),
            "would_upload": todo,
            "would_skip": sorted(self.unchanged),
            "unchanged": len(self.unchanged),
            "changed": bool(todo),
            "dry_run": f"would upload {count_text(len(todo))} ({sum(e['size'] for e in todo)} "
            f"bytes) to {self.location(prefix)}, {len(self.unchanged)} unchanged",
        }


def content_type(name: str) -> str:
    """The MIME type for a file name; compressed files are what they are (no Content-Encoding)."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if encoding:
        return _COMPRESSED.get(encoding, "application/octet-stream")
    return kind or "application/octet-stream"


_COMPRESSED = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}


def env_value(ctx: Any, name: str) -> str | None:
    """A variable from the step's ``env`` first (as a process it started would see), else ours.

    An empty value means unset, also in the step's ``env``, where it hides the process's."""
    step_env = getattr(ctx, "env", None) or {}
    value = step_env[name] if name in step_env else os.environ.get(name)
    return value or None


def count_text(number: int, what: str = "file") -> str:
    return f"{number} {what}{'s' if number != 1 else ''}"


def one_line(value: Any) -> str:
    return " ".join(str(value).split())


# -- optional SDKs -------------------------------------------------------------------------------


def sdk(module: str, package: str, extra: str) -> ModuleType:
    """Import ``module`` of the optional ``package``; if it is missing, say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        missing = isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == top
        if missing:
            raise HandlerError(
                f"this step needs the {package} package, which is not installed: "
                f"pip install 'runbook[{extra}]'"
            ) from exc
        raise HandlerError(
            f"the {package} package failed to load ({one_line(exc)}): reinstall it with "
            f"pip install --force-reinstall 'runbook[{extra}]'"
        ) from exc
