"""What the cloud upload handlers share (``azure_blob_upload``, ``gcs_upload``): sources to
object names, a worker pool, byte progress, content types, and their optional SDKs.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from runner.errors import HandlerError
from tasks._files import os_error
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
