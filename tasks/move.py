"""Move (rename) files, folders or a glob's matches, filtered by age and size.

``dest`` is the new path, or a folder to move into when it ends with ``/`` or is an
existing folder (always so for a glob or several sources). A glob's matches keep their
path below the glob's fixed leading part (``logs/**/*.log`` into ``archive/`` gives
``archive/app/x.log`` for ``logs/app/x.log``). Missing parent folders are created. On one
file system a move is a rename, atomic; across file systems a file is copied to a
temporary file beside its destination, renamed into place, and only then removed from
its source, so an interrupted move never loses data. An existing destination file is
replaced (as ``mv`` does) unless ``overwrite: false``, which leaves both alone; a
folder is never merged into an existing one. A source that is gone while its
destination exists counts as already moved (``changed: false``), so the step can run
again. Under ``--dry-run`` it lists what it would move.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, SIZE, string_or_list
from tasks._files import copy_fd, os_error, temporary_beside
from tasks._select import FolderFd, absolute, as_list, one_entry, select, tree_size
from tasks._walk import Entry, has_magic, split_base

name = "move"
schema = {
    "type": "object",
    "properties": {
        "src": {**string_or_list, "description": "A file, a folder, a glob pattern, or a list of them."},
        "dest": {"type": "string", "description": "New path, or a folder to move into (trailing /)."},
        "older_than": {**DURATION, "description": "Only entries modified longer ago than this."},
        "newer_than": {**DURATION, "description": "Only entries modified more recently than this."},
        "min_size": {**SIZE, "description": "Only files at least this big."},
        "overwrite": {
            "type": "boolean",
            "default": True,
            "description": "Replace an existing destination file (false: leave it, and the source).",
        },
    },
    "required": ["src", "dest"],
    "additionalProperties": False,
}
result = {
    "moved": "list of {src, dest, bytes} moved (under --dry-run: that would be moved)",
    "count": "number of paths moved",
    "bytes": "bytes moved (files inside moved folders included)",
    "not_moved": "sources left where they were because their destination exists (overwrite: false)",
}
example = """\
- move: {src: "/var/log/app/*.log.1", dest: /var/log/app/archive/, older_than: 1d}
- move: {src: /srv/app/releases/new, dest: /srv/app/current}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    sources = as_list(args["src"])
    dest_text = args["dest"]
    dest = absolute(dest_text, ctx.cwd)
    several = len(sources) > 1 or any(has_magic(s) for s in sources)
    into = several or dest_text.endswith(("/", os.sep)) or os.path.isdir(dest)
    plan: list[tuple[Entry, str]] = []
    already = 0
    for source in sources:
        entries = select([source], ctx.cwd, args)
        if not entries and not has_magic(source):
            path = absolute(source, ctx.cwd)
            target = os.path.join(dest, os.path.basename(path)) if into else dest
            if one_entry(path) is None and one_entry(target) is not None:
                already += 1  # moved by an earlier run
                continue
            if one_entry(path) is None:
                raise HandlerError(f"source {path} does not exist")
            continue  # it exists but the filters leave it out
        base = split_base(source, ctx.cwd)[0] if has_magic(source) else None
        for entry in entries:
            if base is not None:  # the walk gives each match's path below the glob's fixed part
                target = os.path.join(dest, entry.relative)
            else:
                target = os.path.join(dest, os.path.basename(entry.path)) if into else dest
            plan.append((entry, os.path.normpath(target)))
    if into and os.path.lexists(dest) and not os.path.isdir(dest):
        raise HandlerError(f"dest {dest} is a file where a folder is needed")
    overwrite = args.get("overwrite", True)
    todo, skipped = [], []
    for entry, target in plan:
        if entry.path == target:
            continue  # already there
        existing = one_entry(target)
        if existing is None:
            todo.append((entry, target))
        elif not overwrite:
            skipped.append(entry.path)
        elif existing.is_dir and not entry.is_dir:
            raise HandlerError(f"cannot move {entry.path} to {target}: a folder is there")
        elif existing.is_dir:
            raise HandlerError(f"cannot move folder {entry.path} to {target}: a folder is already there")
        else:
            todo.append((entry, target))
    sizes = [tree_size(entry)[0] for entry, _ in todo]
    if ctx.dry_run:
        moved = [{"src": e.path, "dest": t, "bytes": s} for (e, t), s in zip(todo, sizes, strict=True)]
        return {
            **_result(moved, skipped),
            "changed": bool(todo),
            "dry_run": f"would move {len(todo)} path{'s' if len(todo) != 1 else ''} ({sum(sizes)} bytes)",
        }
    moved = []
    folders: set[str] = set()  # destination folders known to exist
    with FolderFd() as source_folders, FolderFd() as target_folders:
        for (entry, target), size in zip(todo, sizes, strict=True):
            if ctx.cancelled():
                raise HandlerError("cancelled while moving", result=_result(moved, skipped))
            try:
                _move(entry, target, folders, source_folders, target_folders)
            except HandlerError as exc:
                raise HandlerError(str(exc), result=_result(moved, skipped)) from exc
            moved.append({"src": entry.path, "dest": target, "bytes": size})
    return _result(moved, skipped)


def _result(moved: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any]:
    return {
        "moved": moved,
        "count": len(moved),
        "bytes": sum(m["bytes"] for m in moved),
        "not_moved": skipped,
        "changed": bool(moved),
    }


def _move(entry: Entry, target: str, folders: set[str], sources: FolderFd, targets: FolderFd) -> None:
    if entry.is_dir and (target + os.sep).startswith(entry.path.rstrip(os.sep) + os.sep):
        raise HandlerError(f"cannot move folder {entry.path} into itself ({target})")
    folder = os.path.dirname(target)
    if folder not in folders:
        try:
            os.makedirs(folder, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise HandlerError(f"cannot create folder {folder}: a part of it is a file") from exc
        except OSError as exc:
            raise os_error(exc, "create folder", folder) from exc
        folders.add(folder)
    try:
        name, source_fd = sources.split(entry.path)
        new_name, target_fd = targets.split(target)
        os.replace(name, new_name, src_dir_fd=source_fd, dst_dir_fd=target_fd)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise os_error(exc, "move", f"{entry.path} to {target}") from exc
    _move_across(entry, target)


def _move_across(entry: Entry, target: str) -> None:
    """Another file system: copy beside the target, rename into place, then remove the source."""
    try:
        if entry.is_dir:
            staging = f"{target}.{os.getpid()}.moving"
            try:
                shutil.copytree(entry.path, staging, symlinks=True)
                os.rename(staging, target)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            shutil.rmtree(entry.path)
            return
        with temporary_beside(target) as temporary:
            if entry.is_link:
                os.unlink(temporary)
                os.symlink(os.readlink(entry.path), temporary)
            else:
                with open(entry.path, "rb") as source, open(temporary, "wb") as copy:
                    copy_fd(source.fileno(), copy.fileno(), os.fstat(source.fileno()).st_size)
                shutil.copystat(entry.path, temporary)
            os.replace(temporary, target)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)
    except OSError as exc:
        raise os_error(exc, "move", f"{entry.path} to {target}") from exc
