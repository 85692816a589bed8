"""Delete files, folders or a glob's matches, filtered by age and size, for cleanups.

``path`` is a file, a folder (deleted with everything in it), a glob such as
``/var/log/app/*.log.gz``, or a list of them. ``older_than``, ``newer_than`` and
``min_size`` keep only matching entries (``min_size``: regular files only). Symbolic
links are deleted, never followed. A path that is already gone is not an error: the step
reports ``changed: false``, as ``rm -f`` would. For safety the step refuses, unless
``force: true``, to delete ``/``, the home folder, the playbook's folder, or any folder
holding one of them. Under ``--dry-run`` it lists what it would delete and the bytes
that would be freed, touching nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, SIZE, string_or_list
from tasks._files import os_error
from tasks._select import FolderFd, as_list, select, tree_size
from tasks._walk import Entry

name = "delete"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {**string_or_list, "description": "A file, a folder, a glob pattern, or a list of them."},
        "older_than": {**DURATION, "description": "Only entries modified longer ago than this."},
        "newer_than": {**DURATION, "description": "Only entries modified more recently than this."},
        "min_size": {**SIZE, "description": "Only files at least this big."},
        "force": {
            "type": "boolean",
            "default": False,
            "description": "Allow deleting /, the home folder, the playbook's folder or a folder above them.",
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}
result = {
    "deleted": "paths deleted (under --dry-run: that would be deleted)",
    "count": "number of paths deleted",
    "files": "number of files deleted, those inside deleted folders included",
    "bytes_freed": "sum of the deleted files' sizes",
}
example = """\
- delete: {path: "/var/log/app/*.log.gz", older_than: 30d}
- delete: {path: ["/tmp/build-*", /tmp/cache/], older_than: 2d}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    entries = select(as_list(args["path"]), ctx.cwd, args)
    if not args.get("force"):
        protected = protected_folders(ctx)
        for entry in entries:
            if entry.is_dir:  # a file or a link cannot be, nor hold, a protected folder
                _refuse_protected(entry, protected)
    sizes = [tree_size(entry) for entry in entries]
    freed = sum(size for size, _ in sizes)
    files = sum(count for _, count in sizes)
    paths = [entry.path for entry in entries]
    if ctx.dry_run:
        return {
            "deleted": paths,
            "count": len(paths),
            "files": files,
            "bytes_freed": freed,
            "changed": bool(paths),
            "dry_run": f"would delete {_count(len(paths), 'path')} ({freed} bytes)"
            if paths
            else "nothing to delete",
        }
    done: list[str] = []
    done_bytes = done_files = 0
    with FolderFd() as folders:
        for entry, (size, count) in zip(entries, sizes, strict=True):
            if ctx.cancelled():
                raise HandlerError("cancelled while deleting", result=_result(done, done_files, done_bytes))
            try:
                _remove(entry, folders)
            except HandlerError as exc:
                raise HandlerError(str(exc), result=_result(done, done_files, done_bytes)) from exc
            done.append(entry.path)
            done_bytes += size
            done_files += count
    return _result(done, done_files, done_bytes)


def _result(done: list[str], files: int, freed: int) -> dict[str, Any]:
    return {"deleted": done, "count": len(done), "files": files, "bytes_freed": freed, "changed": bool(done)}


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def protected_folders(ctx: Any) -> dict[str, str]:
    """Folders a delete must not remove, nor any folder holding them: real path → what it is."""
    named = {
        "/": "the root folder",
        os.path.expanduser("~"): "the home folder",
        ctx.cwd: "the playbook's folder",
    }
    # A playbook's own folder, when the engine tells handlers where the playbook is.
    playbook_dir = getattr(ctx, "playbook_dir", None)
    if playbook_dir:
        named[playbook_dir] = "the playbook's folder"
    return {os.path.realpath(path): what for path, what in reversed(named.items())}


def _refuse_protected(entry: Entry, protected: dict[str, str]) -> None:
    target = os.path.realpath(entry.path)
    if target in protected:
        raise HandlerError(
            f"refusing to delete {entry.path}: it is {protected[target]}; "
            "set force: true if you really mean it"
        )
    for folder, what in protected.items():
        if folder.startswith(target.rstrip(os.sep) + os.sep):
            raise HandlerError(
                f"refusing to delete {entry.path}: it holds {folder}, {what}; "
                "set force: true if you really mean it"
            )


def _remove(entry: Entry, folders: FolderFd) -> None:
    if not entry.is_dir:
        try:
            folders.unlink(entry.path)
        except FileNotFoundError:
            pass  # gone meanwhile: what was wanted
        except OSError as exc:
            raise os_error(exc, "delete", entry.path) from exc
        return
    failures: list[tuple[str, OSError]] = []

    def note(function: Any, path: str, error: Any) -> None:
        if isinstance(error, tuple):  # onerror (before Python 3.12) passes exc_info
            error = error[1]
        if not isinstance(error, FileNotFoundError):
            failures.append((path, error))

    if sys.version_info >= (3, 12):
        shutil.rmtree(entry.path, onexc=note)
    else:
        shutil.rmtree(entry.path, onerror=note)
    if failures:
        path, error = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        raise HandlerError(f"{os_error(error, 'delete', path)}{more}")
