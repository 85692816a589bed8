"""Copy a file, a folder tree or a glob's matches, or write inline content, atomically.

``dest`` is a file, or a folder when it ends with ``/`` or already exists as one. A
folder's contents land under ``dest`` by their path inside it (``src: a`` and ``src: a/``
both give ``dest/x`` for ``a/x``); a glob's matches land by their path below the glob's
fixed leading part. Parent folders are created. Each file is written to a temporary
file beside its destination and renamed into place, so an interrupted run never leaves
a half-written file (the data is not fsync'ed, as ``cp`` does not). By default
(``overwrite: changed``) a destination with the same size and content is left alone and
the step reports ``changed: false``; reading it to compare leaves its access time as it
was, where the file's owner may ask that (as ``rsync --open-noatime``). A new file gets
the source's mode less the umask (as with ``cp``), a replaced one keeps its mode, unless
``mode`` or ``preserve`` say otherwise. Symbolic links are copied as links unless
``follow_symlinks: true``. ``backup: true`` keeps a replaced file as ``dest.~N~``. Dot
files are copied. Under ``--dry-run`` nothing is written: the step lists what it would copy.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import stat
import threading
import time
from dataclasses import dataclass
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from tasks._files import (
    CHUNK,
    MODE,
    copy_fd,
    default_mode,
    numbered_backup,
    os_error,
    parse_mode,
    temporary_beside,
)
from tasks._walk import has_magic, walk_all

name = "copy"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder, or a glob pattern."},
        "content": {"type": "string", "description": "Text to write instead of copying a src."},
        "dest": {"type": "string", "description": "Destination file, or folder (trailing /)."},
        "mode": MODE,
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
SMALL_FILE = CHUNK  # copied in one read and one write
# Files shorter than this are compared in one read each. A buffer this size comes from
# malloc's heap (glibc maps blocks from 128 KiB, and may unmap them at each free) and
# stays in the CPU's L2 cache.
COMPARE_READ = 64 * 1024
UNKNOWN = -1  # the size of a file planned from a walk's listing, until it is measured
# Files are copied one after the other. A pool of 2, 4 or 8 threads was measured slower
# on this project's machines (ext4): creating and renaming files in one folder serialises
# on the folder's lock, and the threads then only add switching (bench/files.sh). Nor are
# unchanged files compared by a pool: on the shared 2-core machine (other work on both
# cores) 2 to 4 threads took 0.9-1.2x as long as one; twice as fast only with a core idle.


@dataclass(slots=True)
class Item:
    """One thing to put at ``dest``: a file's copy, a link, a folder, or inline text."""

    kind: str  # "file", "link", "dir", "content"
    dest: str
    src: str | None = None
    size: int = 0
    mode: int = 0  # the source's st_mode as planned (0: not known, look it up)
    text: bytes | None = None
    exists: bool = True  # whether dest existed when planned (False spares a look-up)


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    start = time.monotonic()
    items = plan(args, ctx.cwd)
    copier = Copier(args, ctx)
    todo: list[Item] = []
    kept: list[Item] = []  # files and links left as they are
    for item in items:
        if copier.needs_copy(item):
            todo.append(item)
        elif item.kind != "dir":
            kept.append(item)
    files = [item for item in todo if item.kind != "dir"]
    for item in files:
        if item.size == UNKNOWN:
            measure(item)
    # Identical content, but the mode or times asked for differ: fix those in place.
    retouch = [item for item in kept if item.kind != "link" and copier.metadata_differs(item)]
    unchanged = len(kept)
    total = sum(item.size for item in files)
    if ctx.dry_run:
        return {
            "copied": 0,
            "unchanged": unchanged,
            "bytes": 0,
            "files": [item.dest for item in files],
            "changed": bool(todo or retouch),
            "dry_run": f"would copy {len(files)} file{'s' if len(files) != 1 else ''} ({total} bytes), "
            f"{unchanged} unchanged",
        }
    copier.total = total
    created = [item for item in todo if item.kind == "dir"]
    for item in created:
        copier.make_folder(item)
    for item in retouch:
        copier.retouch(item)
    for item in files:
        copier.put(item)
    copier.finish_folders([item for item in items if item.kind == "dir"], created)
    return {
        "copied": len(files),
        "unchanged": unchanged,
        "bytes": copier.done,
        "files": [item.dest for item in files],
        "backups": copier.backups,
        "duration": time.monotonic() - start,
        "changed": bool(todo or retouch),
    }


def plan(args: dict[str, Any], cwd: str) -> list[Item]:
    """What to copy where: folders first (parents before children), then files and links."""
    dest_text = args["dest"]
    dest = os.path.join(cwd, os.path.expanduser(dest_text))
    into = dest_text.endswith(("/", os.sep)) or os.path.isdir(dest)
    if "content" in args:
        if into:
            raise HandlerError(f"dest {dest} is a folder: content needs a file path")
        return _ordered([Item("content", dest, text=args["content"].encode())], os.path.dirname(dest))
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
    try:
        os.lstat(src)
    except FileNotFoundError:
        raise HandlerError(f"source {src} does not exist") from None
    except OSError as exc:
        raise os_error(exc, "read", src) from exc
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
    return Item("file", dest, src, info.st_size, info.st_mode)


def _tree(src: str, dest: str, exclude: list[str], follow: bool) -> list[Item]:
    """A folder's entries, planned from the listings alone: an unchanged file needs no stat
    (its comparison reads it anyway), one to copy is measured once it is known to be."""
    items = [Item("dir", dest, src)]
    head = os.path.join(dest, "")  # the relative paths are joined by concatenation: one per entry
    for entry in walk_all(["**"], src, exclude, hidden=True, follow_symlinks=follow, stat=False):
        target = head + entry.relative
        if entry.is_dir:
            items.append(Item("dir", target, entry.path))
        elif entry.is_link and not follow:
            items.append(Item("link", target, entry.path))
        elif entry.is_file:
            items.append(Item("file", target, entry.path, UNKNOWN))
    return items


def measure(item: Item) -> None:
    """Set the size and mode of a file planned without them (its stat, through links)."""
    assert item.src is not None
    try:
        info = os.stat(item.src)
    except OSError as exc:
        raise os_error(exc, "read", item.src) from exc
    if not stat.S_ISREG(info.st_mode):
        raise HandlerError(f"source {item.src} is not a regular file, a folder or a link")
    item.size, item.mode = info.st_size, info.st_mode


def _ordered(items: list[Item], top: str) -> list[Item]:
    """Missing parent folders first, then folders by depth, then files and links."""
    # os.path.dirname once per folder, not once per file: a tree has many files in each.
    one_per_folder = {i.dest.rpartition(os.sep)[0]: i.dest for i in items if i.kind != "dir"}
    parents = {os.path.dirname(dest) for dest in one_per_folder.values()} | {top}
    listed = {i.dest for i in items if i.kind == "dir"}
    extra = [Item("dir", p) for p in sorted(parents - listed) if p]
    folders = sorted([i for i in items if i.kind == "dir"] + extra, key=lambda i: i.dest.count(os.sep))
    return folders + [i for i in items if i.kind != "dir"]


class Copier:
    def __init__(self, args: dict[str, Any], ctx: Any):
        self.ctx = ctx
        self.overwrite = args.get("overwrite", "changed")
        self.mode = parse_mode(args["mode"]) if args.get("mode") is not None else None
        preserve = args.get("preserve", False)
        self.keep = {"mode", "times"} if preserve is True else set(preserve or [])
        self.backup = bool(args.get("backup"))
        self.done = 0  # bytes written, by every copying thread
        self.total = 0
        self._count = threading.Lock()
        self._serial = itertools.count(1)  # next() on a count is atomic under the GIL
        self._pid = os.getpid()
        self.backups: list[str] = []
        self.present = Present()
        umask = os.umask(0)
        os.umask(umask)
        self.umask = umask

    # -- deciding ---------------------------------------------------------------------------

    def needs_copy(self, item: Item) -> bool:
        """Whether ``item`` must be written; what is at the destination decides most cases."""
        found = self.present.kind(item.dest)
        if found == MISSING:
            item.exists = False
            return True
        if item.kind == "dir":
            if found == DIR or (found == LINK and os.path.isdir(item.dest)):
                return False
            raise HandlerError(f"dest {item.dest} is a file where a folder is needed")
        if self.overwrite == "never":
            return False
        if found == DIR and item.kind != "link":
            raise HandlerError(f"dest {item.dest} is a folder where a file is needed")
        if self.overwrite == "always":
            return True
        return not self.same(item, found)

    def same(self, item: Item, found: str) -> bool:
        """Whether the destination already holds what would be written (its size, then its bytes)."""
        if item.kind == "link":
            return found == LINK and os.readlink(item.dest) == os.readlink(item.src or "")
        if found != FILE:
            return False
        try:
            if item.kind == "content":
                assert item.text is not None
                return _holds(item.dest, item.text)
            assert item.src is not None
            return _same_bytes(item.src, item.dest)
        except OSError:
            return False

    # -- doing ------------------------------------------------------------------------------

    def make_folder(self, item: Item) -> None:
        """Create a folder, writable by us until ``finish_folders`` sets its final mode."""
        path = item.dest
        mode = 0o700 | self.folder_mode(item)
        try:
            try:
                os.mkdir(path, mode)
            except FileNotFoundError:  # folders above the planned ones are missing too
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.mkdir(path, mode)
        except FileExistsError:
            if not os.path.isdir(path):
                raise HandlerError(f"cannot create folder {path}: a part of it is a file") from None
        except NotADirectoryError as exc:
            raise HandlerError(f"cannot create folder {path}: a part of it is a file") from exc
        except OSError as exc:
            raise os_error(exc, "create folder", path) from exc

    def put(self, item: Item) -> None:
        if self.ctx.cancelled():
            raise HandlerError("cancelled")
        try:
            if item.kind == "link":
                self.put_link(item)
            elif item.kind == "content":
                self.put_content(item)
            else:
                self.put_file(item)
        except HandlerError:
            raise
        except OSError as exc:
            if item.src is not None and exc.filename == item.src:
                raise os_error(exc, "read", item.src) from exc
            raise os_error(exc, "write", item.dest) from exc

    def put_content(self, item: Item) -> None:
        assert item.text is not None
        with temporary_beside(item.dest) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(item.text)
            os.chmod(temporary, self.mode if self.mode is not None else default_mode(item.dest))
            self.keep_backup(item.dest)
            os.replace(temporary, item.dest)
        self.count(len(item.text))

    def put_file(self, item: Item) -> None:
        """Copy through a temporary file created beside ``dest`` (O_EXCL), renamed over it."""
        assert item.src is not None
        temporary = self.temporary_name(item.dest)
        try:
            source = os.open(item.src, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise os_error(exc, "read", item.src) from exc
        try:
            small, big = item.size < SMALL_FILE, item.size >= BIG_FILE
            # A small file is copied with the size and mode the plan measured. A fresh fstat
            # where the exact times are kept, and for bigger files, whose copy in the kernel
            # trusts the size it is given.
            fresh = not small or "times" in self.keep or not item.mode
            info = os.fstat(source) if fresh else None
            mode = info.st_mode if info is not None else item.mode
            if big:
                _remove_stale_temporaries(item.dest)
            # A new file without mode or preserve gets the source's mode less the umask (cp's
            # rule): os.open applies the umask itself, so no chmod is needed afterwards.
            plain_new = not item.exists and self.mode is None and "mode" not in self.keep
            create_mode = stat.S_IMODE(mode) if plain_new else 0o600
            target = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, create_mode)
            try:
                if info is None or small:
                    copied = _copy_small(source, target, item.size)
                elif big:
                    copied = copy_fd(source, target, info.st_size, self.progress, self.ctx.cancelled)
                else:
                    copied = copy_fd(source, target, info.st_size)
                if not plain_new:
                    os.fchmod(target, self.mode_for(mode, item.dest))
                if info is not None and "times" in self.keep:
                    os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
            finally:
                os.close(target)
            self.keep_backup(item.dest)
            os.replace(temporary, item.dest)
            if not big:
                self.count(copied)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary)
            raise
        finally:
            os.close(source)

    def temporary_name(self, dest: str) -> str:
        """``.NAME.PID.N.tmp`` beside ``dest``: hidden, and traceable to the run that made it."""
        folder, _, base = dest.rpartition(os.sep)
        return f"{folder}{os.sep}.{base}.{self._pid}.{next(self._serial)}.tmp"

    def progress(self, count: int) -> None:
        self.count(count)
        self.ctx.progress(self.done, self.total)

    def mode_for(self, source_mode: int, dest: str) -> int:
        """preserve → the source's mode; mode → it; a replaced file keeps its own; else cp's rule."""
        if "mode" in self.keep:
            return stat.S_IMODE(source_mode)
        if self.mode is not None:
            return self.mode
        try:
            return stat.S_IMODE(os.stat(dest).st_mode)
        except FileNotFoundError:
            return stat.S_IMODE(source_mode) & ~self.umask

    def put_link(self, item: Item) -> None:
        assert item.src is not None
        target = os.readlink(item.src)
        temporary = self.temporary_name(item.dest)
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

    def keep_backup(self, dest: str) -> None:
        if self.backup:
            kept = numbered_backup(dest)
            if kept is not None:
                self.backups.append(kept)

    def folder_mode(self, item: Item) -> int:
        """A new folder's mode: the source folder's (less the umask unless preserved), as cp does."""
        if item.src is None:
            return 0o777 & ~self.umask
        if not item.mode:
            item.mode = os.stat(item.src).st_mode
        mode = stat.S_IMODE(item.mode)
        return mode if "mode" in self.keep else mode & ~self.umask

    def metadata_differs(self, item: Item) -> bool:
        """Whether a file whose content is already right needs its mode or times set."""
        if self.mode is None and not self.keep:
            return False
        try:
            current = os.stat(item.dest)
            wanted = self.mode
            source = os.stat(item.src) if item.src else None
            if "mode" in self.keep and source is not None:
                wanted = stat.S_IMODE(source.st_mode)
            if wanted is not None and stat.S_IMODE(current.st_mode) != wanted:
                return True
            return "times" in self.keep and source is not None and current.st_mtime_ns != source.st_mtime_ns
        except OSError:
            return False

    def retouch(self, item: Item) -> None:
        source = os.stat(item.src) if item.src else None
        try:
            if "mode" in self.keep and source is not None:
                os.chmod(item.dest, stat.S_IMODE(source.st_mode))
            elif self.mode is not None:
                os.chmod(item.dest, self.mode)
            if "times" in self.keep and source is not None:
                os.utime(item.dest, ns=(source.st_atime_ns, source.st_mtime_ns))
        except OSError as exc:
            raise os_error(exc, "set the mode or times of", item.dest) from exc

    def finish_folders(self, folders: list[Item], created: list[Item]) -> None:
        """Folders' final modes, then times, deepest first (writing into a folder changes its mtime)."""
        made = {item.dest for item in created}
        for item in sorted(folders, key=lambda i: i.dest.count(os.sep), reverse=True):
            if item.dest in made or ("mode" in self.keep and item.src is not None):
                os.chmod(item.dest, self.folder_mode(item))
            if "times" in self.keep and item.src is not None:
                info = os.stat(item.src)
                os.utime(item.dest, ns=(info.st_atime_ns, info.st_mtime_ns))


def _remove_stale_temporaries(dest: str) -> None:
    """Remove ``.NAME.PID.N.tmp`` files that a killed copy to ``dest`` left behind.

    A SIGKILL cannot be caught, so a copy killed mid-write leaves its temporary file (the
    destination itself is intact). Big ones are worth reclaiming: before copying a big file,
    those whose process is gone are removed.
    """
    folder, base = os.path.split(dest)
    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(folder or ".") if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix) :].split(".")[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, name))
        except PermissionError:
            pass  # another user's live process


def _file_above(path: str) -> str:
    """The nearest parent of ``path`` that exists and is not a folder."""
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if os.path.lexists(parent) and not os.path.isdir(parent):
            return parent
        parent = os.path.dirname(parent)
    return path


def _copy_small(source: int, target: int, size: int) -> int:
    """Copy a file of ``size`` bytes (as planned) in one read and one write; return the bytes copied.

    Asking for one byte more than planned shows that the read reached the end. A file that
    changed size since it was planned is copied whole by ``copy_fd`` instead.
    """
    data = os.read(source, size + 1)
    if len(data) != size:
        return copy_fd(source, target, os.fstat(source).st_size)
    written = os.write(target, data)
    while written < size:  # a short write (the disk filling up): the next one says why
        written += os.write(target, data[written:])
    return size


def _open_to_compare(path: str) -> int:
    """Open a destination file to compare it, leaving its access time alone.

    Reading a copy only to compare it is not a use of it (rsync --open-noatime does the
    same); it also spares the inode write that relatime makes at the first read of a
    freshly written file: 25-30% of an unchanged tree's comparisons right after its copy,
    measured. Only a file's owner (or root) may ask for that; others read it plainly.
    """
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | NO_ATIME)
    except PermissionError:
        if not NO_ATIME:
            raise
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


NO_ATIME = getattr(os, "O_NOATIME", 0)  # Linux only


def _holds(path: str, data: bytes) -> bool:
    """Whether the file at ``path`` holds exactly ``data`` (one read of one byte more)."""
    handle = _open_to_compare(path)
    try:
        if len(data) < SMALL_FILE:
            return os.read(handle, len(data) + 1) == data
        if os.fstat(handle).st_size != len(data):
            return False
        with open(handle, "rb", closefd=False) as reader:
            return reader.read() == data
    finally:
        os.close(handle)


def _same_bytes(a: str, b: str) -> bool:
    """Whether files ``a`` and ``b`` hold the same bytes.

    A small ``a`` is read whole in one call: a regular file's read returns fewer bytes than
    asked only at its end (POSIX). ``b`` is then asked for one byte more than ``a`` holds,
    so a longer ``b`` shows itself: the sizes need no look-up of their own. Bigger files
    are compared by size first (fstat), then chunk by chunk.
    """
    first = os.open(a, os.O_RDONLY | os.O_CLOEXEC)
    try:
        second = _open_to_compare(b)
        try:
            data = os.read(first, COMPARE_READ)
            if len(data) < COMPARE_READ:
                return os.read(second, len(data) + 1) == data
            if os.fstat(first).st_size != os.fstat(second).st_size:
                return False
            return _same_chunks(first, second)
        finally:
            os.close(second)
    finally:
        os.close(first)


def _same_chunks(first: int, second: int) -> bool:
    """Compare two open files from their starts (whatever was read already) to their ends."""
    offset = 0
    while True:
        left = os.pread(first, CHUNK, offset)
        if left != os.pread(second, CHUNK, offset):
            return False
        if not left:
            return True
        offset += len(left)


# What a destination path holds, as ``Present.kind`` tells it.
MISSING, DIR, FILE, LINK, OTHER = "missing", "dir", "file", "link", "other"
LISTED_FROM = 4  # look-ups in one folder before the folder is listed once instead


class Present:
    """What is already at the destination paths, each folder listed once when it holds many.

    A tree's copy asks about every file of every folder: one ``scandir`` of the folder (its
    entries' types come with the listing) replaces an ``lstat`` per file, and a folder that
    does not exist yet answers for everything planned inside it.
    """

    def __init__(self) -> None:
        self.asked: dict[str, int] = {}
        self.listings: dict[str, dict[str, os.DirEntry[str]] | None] = {}

    def kind(self, path: str) -> str:
        folder, _, name = path.rpartition(os.sep)
        if folder and name:
            if folder in self.listings:
                return _kind_in(self.listings[folder], name)
            asked = self.asked[folder] = self.asked.get(folder, 0) + 1
            if asked >= LISTED_FROM and self.list(folder):
                return _kind_in(self.listings[folder], name)
        return _kind_at(path)

    def list(self, folder: str) -> bool:
        """List ``folder`` for the next questions; False if that cannot be done (ask each path)."""
        try:
            with os.scandir(folder) as listing:
                self.listings[folder] = {entry.name: entry for entry in listing}
        except FileNotFoundError:
            self.listings[folder] = None  # nothing is inside a folder that is not there
        except OSError:  # not a folder, or not readable: each path's lstat says what is wrong
            return False
        return True


def _kind_in(listing: dict[str, os.DirEntry[str]] | None, name: str) -> str:
    entry = listing.get(name) if listing is not None else None
    if entry is None:
        return MISSING
    # The listing's types (d_type): no system call, except on file systems that give none.
    if entry.is_file(follow_symlinks=False):
        return FILE
    if entry.is_symlink():
        return LINK
    return DIR if entry.is_dir(follow_symlinks=False) else OTHER


def _kind_at(path: str) -> str:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return MISSING
    except NotADirectoryError:
        raise HandlerError(f"dest {_file_above(path)} is a file where a folder is needed") from None
    except OSError as exc:
        raise os_error(exc, "look at", path) from exc
    if stat.S_ISLNK(mode):
        return LINK
    if stat.S_ISDIR(mode):
        return DIR
    return FILE if stat.S_ISREG(mode) else OTHER
