"""Copy a file, a folder tree or a glob's matches, or write inline content, atomically.

``dest`` is a file, or a folder when it ends with ``/`` or already exists as one. A
folder's contents land under ``dest`` by their path inside it (``src: a`` and ``src: a/``
both give ``dest/x`` for ``a/x``); a glob's matches land by their path below the glob's
fixed leading part. Parent folders are created. Each file is written to a temporary
file beside its destination and renamed into place, so an interrupted run never leaves
a half-written file (the data is not fsync'ed, as ``cp`` does not). By default
(``overwrite: changed``) a destination with the same size and content is left alone and
the step reports ``changed: false``. A new file gets the source's mode less the umask
(as with ``cp``), a replaced one keeps its mode, unless ``mode`` or ``preserve`` say
otherwise. Symbolic links are copied as links unless ``follow_symlinks: true``.
``backup: true`` keeps a replaced file as ``dest.~N~``. Dot files are copied.
Under ``--dry-run`` nothing is written: the step lists what it would copy.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from tasks._files import CHUNK, default_mode, os_error, temporary_beside
from tasks._walk import has_magic, walk_all

name = "copy"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder, or a glob pattern."},
        "content": {"type": "string", "description": "Text to write instead of copying a src."},
        "dest": {"type": "string", "description": "Destination file, or folder (trailing /)."},
        "mode": {
            "type": ["string", "integer"],
            "pattern": "^0?[0-7]{3,4}$",
            "title": 'an octal mode such as "0644"',
            "description": 'File mode as an octal string ("0644") or an int.',
        },
        "preserve": {
            "anyOf": [
                {"type": "boolean"},
                {"type": "array", "items": {"enum": ["mode", "times"]}, "uniqueItems": True},
            ],
            "default": False,
            "description": "Keep the source's mode and times (true), or a list of them.",
        },
        "overwrite": {
            "enum": ["changed", "always", "never"],
            "default": "changed",
            "description": "changed: skip identical files; always: copy anyway; never: keep existing.",
        },
        "exclude": {**string_or_list, "description": "Glob patterns of files to leave out."},
        "backup": {
            "type": "boolean",
            "default": False,
            "description": "Keep a replaced file as dest.~N~ (numbered backups).",
        },
        "follow_symlinks": {
            "type": "boolean",
            "default": False,
            "description": "Copy what links point to instead of the links.",
        },
    },
    "required": ["dest"],
    "oneOf": [{"required": ["src"]}, {"required": ["content"]}],
    "additionalProperties": False,
}
result = {
    "copied": "number of files written",
    "unchanged": "number of files left alone because they were identical",
    "bytes": "bytes written",
    "files": "list of destination paths written",
    "backups": "numbered backups made (dest.~N~)",
    "duration": "seconds spent copying",
}
example = """\
- copy: {src: /etc/app/, dest: /backup/etc-app/, preserve: true, exclude: ["*.tmp"]}
- copy: {content: "port = {{ port }}\\n", dest: /etc/app/port.conf, mode: "0644", backup: true}
"""

BIG_FILE = 32 * 1024 * 1024  # copied in chunks with progress; smaller ones in one call
POOL_FROM = 16  # files; fewer are copied one after the other


@dataclass
class Item:
    """One thing to put at ``dest``: a file's copy, a link, a folder, or inline text."""

    kind: str  # "file", "link", "dir", "content"
    dest: str
    src: str | None = None
    size: int = 0
    text: bytes | None = None


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    start = time.monotonic()
    items = plan(args, ctx.cwd)
    copier = Copier(args, ctx)
    todo = [item for item in items if copier.needs_copy(item)]
    unchanged = sum(1 for item in items if item.kind != "dir") - sum(1 for i in todo if i.kind != "dir")
    files = [item for item in todo if item.kind != "dir"]
    total = sum(item.size for item in files)
    if ctx.dry_run:
        return {
            "copied": 0,
            "unchanged": unchanged,
            "bytes": 0,
            "files": [item.dest for item in files],
            "changed": bool(todo),
            "dry_run": f"would copy {len(files)} file{'s' if len(files) != 1 else ''} ({total} bytes), "
            f"{unchanged} unchanged",
        }
    copier.total = total
    for item in todo:
        if item.kind == "dir":
            copier.make_folder(item.dest)
    if len(files) >= POOL_FROM:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(copier.put, files))
    else:
        for item in files:
            copier.put(item)
    copier.finish_folders([item for item in items if item.kind == "dir"])
    return {
        "copied": len(files),
        "unchanged": unchanged,
        "bytes": copier.done,
        "files": [item.dest for item in files],
        "backups": copier.backups,
        "duration": time.monotonic() - start,
        "changed": bool(todo),
    }


def plan(args: dict[str, Any], cwd: str) -> list[Item]:
    """What to copy where: folders first (parents before children), then files and links."""
    dest_text = args["dest"]
    dest = os.path.join(cwd, os.path.expanduser(dest_text))
    into = dest_text.endswith(("/", os.sep)) or os.path.isdir(dest)
    if "content" in args:
        if into:
            raise HandlerError(f"dest {dest} is a folder: content needs a file path")
        return [Item("content", dest, text=args["content"].encode())]
    follow = bool(args.get("follow_symlinks"))
    exclude = _list(args.get("exclude"))
    src_text = args["src"]
    src = os.path.join(cwd, os.path.expanduser(src_text))
    if has_magic(src_text):
        matches = list(walk_all([src_text], cwd, exclude, hidden=False, follow_symlinks=follow))
        if not matches:
            raise HandlerError(f"no file matches {src_text}")
        _need_folder(dest)
        items: list[Item] = []
        for entry in matches:
            target = os.path.join(dest, entry.relative)
            if entry.is_dir:
                items += _tree(entry.path, target, exclude, follow)
            else:
                items.append(_one(entry.path, target, follow))
        return _ordered(items, dest)
    if not os.path.lexists(src):
        raise HandlerError(f"source {src} does not exist")
    if os.path.isdir(src) and (follow or not os.path.islink(src)):
        _need_folder(dest)
        return _ordered(_tree(src, dest, exclude, follow), dest)
    target = os.path.join(dest, os.path.basename(src.rstrip(os.sep))) if into else dest
    if os.path.isdir(target) and not os.path.islink(target):
        raise HandlerError(f"dest {target} is a folder; give a file path, or end dest with / to copy into it")
    return _ordered([_one(src, target, follow)], os.path.dirname(target))


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _need_folder(dest: str) -> None:
    if os.path.lexists(dest) and not os.path.isdir(dest):
        raise HandlerError(f"dest {dest} is a file where a folder is needed")


def _one(src: str, dest: str, follow: bool) -> Item:
    try:
        info = os.stat(src) if follow else os.lstat(src)
    except OSError as exc:
        raise os_error(exc, "read", src) from exc
    if stat.S_ISLNK(info.st_mode):
        return Item("link", dest, src)
    if not stat.S_ISREG(info.st_mode):
        raise HandlerError(f"source {src} is not a regular file, a folder or a link")
    return Item("file", dest, src, info.st_size)


def _tree(src: str, dest: str, exclude: list[str], follow: bool) -> list[Item]:
    items = [Item("dir", dest, src)]
    for entry in walk_all(["**"], src, exclude, hidden=True, follow_symlinks=follow):
        target = os.path.join(dest, entry.relative)
        if entry.is_dir:
            items.append(Item("dir", target, entry.path))
        elif entry.is_link and not follow:
            items.append(Item("link", target, entry.path))
        elif entry.is_file:
            items.append(Item("file", target, entry.path, entry.size))
    return items


def _ordered(items: list[Item], top: str) -> list[Item]:
    """Missing parent folders first, then folders by depth, then files and links."""
    parents = {os.path.dirname(i.dest) for i in items if i.kind != "dir"} | {top}
    listed = {i.dest for i in items if i.kind == "dir"}
    extra = [Item("dir", p) for p in sorted(parents - listed) if p]
    folders = sorted([i for i in items if i.kind == "dir"] + extra, key=lambda i: i.dest.count(os.sep))
    return folders + [i for i in items if i.kind != "dir"]


class Copier:
    def __init__(self, args: dict[str, Any], ctx: Any):
        self.ctx = ctx
        self.overwrite = args.get("overwrite", "changed")
        self.mode = _parse_mode(args["mode"]) if args.get("mode") is not None else None
        preserve = args.get("preserve", False)
        self.keep = {"mode", "times"} if preserve is True else set(preserve or [])
        self.backup = bool(args.get("backup"))
        self.done = 0  # bytes written, by every copying thread
        self.total = 0
        self._count = threading.Lock()
        self.backups: list[str] = []
        umask = os.umask(0)
        os.umask(umask)
        self.umask = umask

    # -- deciding ---------------------------------------------------------------------------

    def needs_copy(self, item: Item) -> bool:
        if item.kind == "dir":
            if os.path.isdir(item.dest):
                return False
            if os.path.lexists(item.dest):
                raise HandlerError(f"dest {item.dest} is a file where a folder is needed")
            return True
        if not os.path.lexists(item.dest):
            return True
        if self.overwrite == "never":
            return False
        if item.kind != "link" and os.path.isdir(item.dest) and not os.path.islink(item.dest):
            raise HandlerError(f"dest {item.dest} is a folder where a file is needed")
        if self.overwrite == "always":
            return True
        return not self.same(item)

    def same(self, item: Item) -> bool:
        """Whether ``item.dest`` already holds what would be written: size first, then bytes."""
        if item.kind == "link":
            return os.path.islink(item.dest) and os.readlink(item.dest) == os.readlink(item.src or "")
        if os.path.islink(item.dest):
            return False
        try:
            if item.kind == "content":
                assert item.text is not None
                if os.path.getsize(item.dest) != len(item.text):
                    return False
                with open(item.dest, "rb") as handle:
                    return handle.read() == item.text
            assert item.src is not None
            if os.path.getsize(item.dest) != item.size:
                return False
            return _same_bytes(item.src, item.dest)
        except OSError:
            return False

    # -- doing ------------------------------------------------------------------------------

    def make_folder(self, path: str) -> None:
        try:
            os.makedirs(path, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise HandlerError(f"cannot create folder {path}: a part of it is a file") from exc
        except OSError as exc:
            raise os_error(exc, "create folder", path) from exc

    def put(self, item: Item) -> None:
        if self.ctx.cancelled():
            raise HandlerError("cancelled")
        dest = item.dest
        try:
            if item.kind == "link":
                self.put_link(item)
                return
            with temporary_beside(dest) as temporary:
                if item.kind == "content":
                    assert item.text is not None
                    with open(temporary, "wb") as handle:
                        handle.write(item.text)
                    self.count(len(item.text))
                    mode = self.mode if self.mode is not None else default_mode(dest)
                    os.chmod(temporary, mode)
                else:
                    assert item.src is not None
                    self.copy_bytes(item.src, temporary, item.size)
                    self.set_metadata(item.src, temporary, dest)
                self.keep_backup(dest)
                os.replace(temporary, dest)
        except HandlerError:
            raise
        except OSError as exc:
            if item.src is not None and exc.filename == item.src:
                raise os_error(exc, "read", item.src) from exc
            raise os_error(exc, "write", dest) from exc

    def put_link(self, item: Item) -> None:
        assert item.src is not None
        target = os.readlink(item.src)
        temporary = os.path.join(
            os.path.dirname(item.dest), f".{os.path.basename(item.dest)}.{os.getpid()}.lnk"
        )
        os.symlink(target, temporary)
        try:
            self.keep_backup(item.dest)
            os.replace(temporary, item.dest)
        except OSError:
            os.unlink(temporary)
            raise

    def count(self, written: int) -> None:
        with self._count:
            self.done += written

    def copy_bytes(self, src: str, dest: str, size: int) -> None:
        if size < BIG_FILE:
            shutil.copyfile(src, dest)
            self.count(size)
            return
        # Big files: the kernel copies (sendfile), in chunks, so progress shows and a
        # cancellation stops between chunks.
        with open(src, "rb") as source, open(dest, "wb") as target:
            offset = 0
            while True:
                sent = os.sendfile(target.fileno(), source.fileno(), offset, 64 * CHUNK)
                if sent == 0:
                    break
                offset += sent
                self.count(sent)
                self.ctx.progress(self.done, self.total)
                if self.ctx.cancelled():
                    raise HandlerError(f"cancelled while copying {src}")

    def set_metadata(self, src: str, temporary: str, dest: str) -> None:
        info = os.stat(src)
        if "mode" in self.keep:
            mode = stat.S_IMODE(info.st_mode)
        elif self.mode is not None:
            mode = self.mode
        elif os.path.exists(dest):
            mode = stat.S_IMODE(os.stat(dest).st_mode)
        else:
            mode = stat.S_IMODE(info.st_mode) & ~self.umask
        os.chmod(temporary, mode)
        if "times" in self.keep:
            os.utime(temporary, ns=(info.st_atime_ns, info.st_mtime_ns))

    def keep_backup(self, dest: str) -> None:
        if not self.backup or not os.path.lexists(dest):
            return
        number = 1
        while os.path.lexists(f"{dest}.~{number}~"):
            number += 1
        backup = f"{dest}.~{number}~"
        os.link(dest, backup, follow_symlinks=False)  # the old file itself, kept under a new name
        self.backups.append(backup)

    def finish_folders(self, folders: list[Item]) -> None:
        """Folders' modes and times, deepest first (writing into a folder changes its mtime)."""
        if not self.keep:
            return
        for item in sorted(folders, key=lambda i: i.dest.count(os.sep), reverse=True):
            if item.src is None:
                continue
            info = os.stat(item.src)
            if "mode" in self.keep:
                os.chmod(item.dest, stat.S_IMODE(info.st_mode))
            if "times" in self.keep:
                os.utime(item.dest, ns=(info.st_atime_ns, info.st_mtime_ns))


def _parse_mode(value: Any) -> int:
    """``"0644"`` or ``"644"`` (octal text) or an int (YAML reads an unquoted 0644 as octal)."""
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as first, open(b, "rb") as second:
        while True:
            left = first.read(CHUNK)
            if left != second.read(CHUNK):
                return False
            if not left:
                return True
