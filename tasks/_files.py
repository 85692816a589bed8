"""File helpers the file handlers share: atomic writes, digests, error messages.

Atomic: a file is written to a temporary file in its destination's folder (same file
system, so the rename is atomic) and renamed into place; on any failure the temporary
file is removed and the old destination is untouched. The data is not fsync'ed: a
killed run never leaves a half-written file, but a power cut may lose the last writes,
as with ``cp``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from runner.errors import HandlerError

CHUNK = 1024 * 1024
# Hashing reads 128 KiB at a time: the buffer and the page-cache pages copied into it stay
# in the CPU's L2 cache (512 KiB a core here). Measured with hashlib's SHA-256 of a cached
# 1 GiB file: 1.0 s with 128 KiB reads, 1.4-1.5 s with 256 KiB ones (the copy into the
# buffer alone: 0.17 s against 0.5-0.75 s), and a 1 MiB buffer slower still.
HASH_CHUNK = 128 * 1024
ALGORITHMS = ("md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256")


def os_error(exc: OSError, action: str, path: str) -> HandlerError:
    """One line saying what failed on which path, and what to do when that is clear."""
    reason = {
        errno.ENOENT: "no such file or folder",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EISDIR: "is a folder",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.EROFS: "read-only file system",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    hint = {
        errno.EACCES: " (check the permissions of the path and its folders)",
        errno.ENOSPC: " (the destination was left as it was)",
    }.get(exc.errno or 0, "")
    return HandlerError(f"cannot {action} {path}: {reason}{hint}")


@contextlib.contextmanager
def temporary_beside(path: str) -> Iterator[str]:
    """A temporary file name in ``path``'s folder; removed unless renamed away."""
    folder = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield temporary
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def write_text_atomically(path: str, text: str, mode: int | None = None) -> None:
    write_bytes_atomically(path, text.encode("utf-8"), mode)


def write_bytes_atomically(
    path: str, data: bytes, mode: int | None = None, backup: bool = False
) -> str | None:
    """Write ``data`` to ``path`` through a temporary file renamed into place.

    A new file gets ``mode`` or the default mode; a replaced one keeps its own unless
    ``mode`` is given. With ``backup``, a replaced file is kept as ``path.~N~``; that
    backup's path is returned.
    """
    kept = None
    try:
        with temporary_beside(path) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(data)
            os.chmod(temporary, mode if mode is not None else default_mode(path))
            if backup:
                kept = numbered_backup(path)
            os.replace(temporary, path)
    except OSError as exc:
        raise os_error(exc, "write", path) from exc
    return kept


def numbered_backup(path: str) -> str | None:
    """Keep the file at ``path`` as ``path.~N~`` (a hard link: the old file itself); None if absent.

    N is one more than the highest number there, as ``cp --backup=numbered`` does.
    """
    if not os.path.lexists(path):
        return None
    folder, base = os.path.split(path)
    prefix = f"{base}.~"
    numbers = [
        int(n[len(prefix) : -1])
        for n in os.listdir(folder or ".")
        if n.startswith(prefix) and n.endswith("~") and n[len(prefix) : -1].isdigit()
    ]
    backup = f"{path}.~{max(numbers, default=0) + 1}~"
    os.link(path, backup, follow_symlinks=False)
    return backup


MODE: dict[str, Any] = {
    "type": ["string", "integer"],
    "pattern": "^0?[0-7]{3,4}$",
    "title": 'an octal mode such as "0644"',
    "description": 'File mode as an octal string ("0644") or an int.',
}


def parse_mode(value: Any) -> int:
    """``"0644"`` or ``"644"`` (octal text) or an int (YAML reads an unquoted 0644 as octal)."""
    if isinstance(value, int):
        return value
    return int(str(value), 8)


def default_mode(path: str) -> int:
    """The mode a new file gets (as ``cp`` would: 0666 less the umask), or the old file's."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def copy_fd(
    source: int,
    target: int,
    size: int,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> int:
    """Copy ``size`` bytes between file descriptors in the kernel; return the bytes copied.

    ``copy_file_range`` first (in-kernel, and a reflink on file systems that can), then
    ``sendfile``, then plain reads and writes where neither works (other OSes, some file
    systems), each from where the last stopped.
    """
    copied = 0
    for method in ("copy_file_range", "sendfile", "read"):
        try:
            while copied < size or size == 0:
                step = min(64 * CHUNK, max(size - copied, CHUNK))
                if method == "copy_file_range":
                    count = os.copy_file_range(source, target, step, copied, copied)
                elif method == "sendfile":
                    count = os.sendfile(target, source, copied, step)
                else:
                    data = os.pread(source, step, copied)
                    count = os.pwrite(target, data, copied) if data else 0
                if count == 0:
                    return copied
                copied += count
                if progress is not None:
                    progress(count)
                if cancelled is not None and cancelled():
                    raise HandlerError("cancelled while copying")
            return copied
        except OSError as exc:
            if exc.errno not in (
                errno.EXDEV,
                errno.ENOSYS,
                errno.EINVAL,
                errno.EOPNOTSUPP,
                errno.EBADF,
                errno.ENOTSUP,
            ):
                raise
            continue
        except AttributeError:  # no os.copy_file_range (not Linux), or no sendfile
            continue
    return copied


def new_hash(algorithm: str) -> Any:
    if algorithm not in ALGORITHMS:
        raise HandlerError(f"unknown algorithm '{algorithm}': use one of {', '.join(ALGORITHMS)}")
    return hashlib.new(algorithm)


def file_digest(
    path: str,
    algorithm: str,
    progress: Callable[[int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> tuple[str, int]:
    """(hex digest, size) of a file, read ``HASH_CHUNK`` bytes at a time into one buffer.

    One thread reads and hashes in turn. A second thread reading ahead was measured (SHA-256
    of a cached 1 GiB file): 25-30% faster with a core to spare, but 10-25% slower than this
    loop, and than ``openssl dgst``, once other work shares the cores: it costs more CPU in all.
    """
    digest = new_hash(algorithm)
    size = reported = 0
    buffer = bytearray(HASH_CHUNK)
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as handle:
            while count := handle.readinto(buffer):
                digest.update(view[:count])
                size += count
                if size - reported >= REPORT_EVERY:  # progress and cancellation, once a MiB
                    if progress is not None:
                        progress(size - reported)
                    reported = size
                    if cancelled is not None and cancelled():
                        raise HandlerError(f"cancelled while hashing {path}")
    except OSError as exc:
        raise os_error(exc, "read", path) from exc
    if progress is not None and size > reported:
        progress(size - reported)
    return digest.hexdigest(), size


REPORT_EVERY = 1024 * 1024
