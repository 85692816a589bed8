"""Compute, check or write file digests, compatible with sha256sum and friends.

``path`` is a file, a folder (every file in it, hidden ones included) or a glob. For one
file, ``digest`` is that file's digest, as ``sha256sum`` prints it. For several, each is
in ``files``, and ``digest`` is the digest of their listing in ``sha256sum`` format: the
text ``write`` would write in the folder (or the glob's fixed leading part), one
``DIGEST  NAME`` line per file, sorted by name.
``expected`` fails the step on a mismatch, showing both digests; ``verify`` checks a
sums file as ``sha256sum -c`` run in its folder would, reporting every mismatched and
missing file; ``write`` writes such a file atomically, names relative to its folder.
Under ``--dry-run`` nothing is read or written: the step lists what it would hash.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runner.errors import HandlerError
from tasks._files import ALGORITHMS, file_digest, new_hash, os_error, write_text_atomically
from tasks._walk import has_magic, split_base, walk_all

name = "hash"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "A file, a folder or a glob."},
        "algorithm": {
            "enum": list(ALGORITHMS),
            "default": "sha256",
        },
        "expected": {"type": "string", "description": "Fail unless the digest is this (hex)."},
        "verify": {"type": "string", "description": "A sums file to check (sha256sum -c format)."},
        "write": {"type": "string", "description": "Write the digests to this sums file."},
    },
    "anyOf": [{"required": ["path"]}, {"required": ["verify"]}],
    "additionalProperties": False,
}
result = {
    "digest": "hex digest (of the single file, or of the sorted list of files)",
    "algorithm": "the algorithm used",
    "size": "bytes hashed",
    "files": "mapping of path to digest",
    "count": "number of files hashed",
    "bytes": "bytes read",
    "duration": "seconds spent hashing",
    "verified": "with verify: files whose digest matched",
    "mismatched": "with verify: files whose digest did not match",
    "missing": "with verify: files listed but not found",
}
example = """\
- hash: {path: dist/app.tar.gz, expected: "{{ release_sha256 }}"}
- hash: {path: "dist/*.tar.gz", write: dist/SHA256SUMS}
- hash: {verify: /srv/mirror/SHA256SUMS}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    algorithm = args.get("algorithm", "sha256")
    new_hash(algorithm)  # refuse an unknown algorithm before any work
    if "verify" in args:
        return verify(os.path.join(ctx.cwd, os.path.expanduser(args["verify"])), algorithm, ctx)
    files, base = sources(args["path"], ctx.cwd)
    if args.get("write"):  # a sums file inside the hashed folder does not list itself
        written = os.path.realpath(os.path.join(ctx.cwd, os.path.expanduser(args["write"])))
        files = [(path, size) for path, size in files if os.path.realpath(path) != written]
    total = sum(size for _, size in files)
    if ctx.dry_run:
        what = f"would hash {len(files)} file{'s' if len(files) != 1 else ''} ({total} bytes)"
        if args.get("write"):
            what += f" and write {args['write']}"
        return {"algorithm": algorithm, "count": len(files), "bytes": total, "changed": None, "dry_run": what}
    start = time.monotonic()
    digests = hash_files([path for path, _ in files], algorithm, total, ctx)
    result = summary(digests, base, algorithm, total, time.monotonic() - start)
    if "expected" in args and args["expected"].strip().lower() != result["digest"]:
        raise HandlerError(
            f"checksum mismatch for {args['path']}: expected {args['expected'].strip().lower()}, "
            f"got {result['digest']}",
            result=result,
        )
    if args.get("write"):
        result["changed"] = write_sums(os.path.join(ctx.cwd, os.path.expanduser(args["write"])), digests)
    return result


def sources(path: str, cwd: str) -> tuple[list[tuple[str, int]], str]:
    """The files to hash with their sizes, sorted, and the folder their names are relative to."""
    full = os.path.join(cwd, os.path.expanduser(path))
    if has_magic(path):
        base, _ = split_base(path, cwd)
        found = [(e.path, e.size) for e in walk_all([path], cwd) if e.is_file]
        if not found:
            raise HandlerError(f"no file matches {path}")
    elif os.path.isdir(full):
        base = full
        found = [(e.path, e.size) for e in walk_all(["**"], full, hidden=True) if e.is_file]
    else:
        try:
            size = os.stat(full).st_size
        except OSError as exc:
            raise os_error(exc, "hash", full) from exc
        return [(full, size)], os.path.dirname(full)
    return sorted(found), base


def hash_files(paths: list[str], algorithm: str, total: int, ctx: Any) -> dict[str, str]:
    """Digests by path; several files are hashed at once (hashlib releases the GIL)."""
    done = [0]

    def progress(count: int) -> None:
        done[0] += count
        ctx.progress(done[0], total)

    def one(path: str) -> str:
        return file_digest(path, algorithm, progress, ctx.cancelled)[0]

    if len(paths) == 1:
        return {paths[0]: one(paths[0])}
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1, len(paths)) or 1) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


def summary(
    digests: dict[str, str], base: str, algorithm: str, total: int, duration: float
) -> dict[str, Any]:
    if len(digests) == 1:
        digest = next(iter(digests.values()))
    else:
        combined = new_hash(algorithm)
        combined.update(sums_text(digests, base).encode())
        digest = combined.hexdigest()
    return {
        "digest": digest,
        "algorithm": algorithm,
        "size": total,
        "bytes": total,
        "count": len(digests),
        "files": digests,
        "duration": duration,
        "changed": False,
    }


def sums_line(digest: str, name: str) -> str:
    """One line as sha256sum writes it: names with a backslash or newline are escaped."""
    if "\\" in name or "\n" in name:
        return "\\" + digest + "  " + name.replace("\\", "\\\\").replace("\n", "\\n") + "\n"
    return f"{digest}  {name}\n"


def sums_text(digests: dict[str, str], base: str) -> str:
    lines = [(os.path.relpath(path, base).replace(os.sep, "/"), digest) for path, digest in digests.items()]
    return "".join(sums_line(digest, name) for name, digest in sorted(lines))


def write_sums(path: str, digests: dict[str, str]) -> bool:
    """Write a sums file (names relative to its folder); True if its content changed."""
    text = sums_text(digests, os.path.dirname(path))
    try:
        with open(path, encoding="utf-8") as handle:
            if handle.read() == text:
                return False
    except OSError:
        pass
    write_text_atomically(path, text)
    return True


def parse_sums(text: str, source: str) -> list[tuple[str, str]]:
    """(digest, name) pairs of a sums file, binary-mode ``*`` markers and escapes understood."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        escaped = line.startswith("\\")
        body = line[1:] if escaped else line
        digest, sep, name = body.partition(" ")
        if not sep or not name or not all(c in "0123456789abcdefABCDEF" for c in digest):
            raise HandlerError(f"{source}:{number}: not a sums line (expected 'DIGEST  NAME')")
        if name[:1] in (" ", "*"):
            name = name[1:]
        if escaped:
            name = name.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
        entries.append((digest.lower(), name))
    return entries


def verify(sums_path: str, algorithm: str, ctx: Any) -> dict[str, Any]:
    try:
        with open(sums_path, encoding="utf-8") as handle:
            entries = parse_sums(handle.read(), sums_path)
    except OSError as exc:
        raise os_error(exc, "read", sums_path) from exc
    width = new_hash(algorithm).digest_size * 2
    odd = next((d for d, _ in entries if len(d) != width), None)
    if odd is not None:
        guess = next((a for a in ALGORITHMS if new_hash(a).digest_size * 2 == len(odd)), None)
        raise HandlerError(
            f"{sums_path} holds {len(odd)}-digit digests, not {algorithm}'s {width}"
            + (f": pass algorithm: {guess}" if guess else "")
        )
    folder = os.path.dirname(sums_path)
    present = [(os.path.join(folder, name), digest) for digest, name in entries]
    missing = [path for path, _ in present if not os.path.isfile(path)]
    to_hash = [path for path, _ in present if path not in missing]
    if ctx.dry_run:
        return {
            "algorithm": algorithm,
            "count": len(to_hash),
            "missing": missing,
            "changed": None,
            "dry_run": f"would check {len(to_hash)} files against {sums_path}",
        }
    start = time.monotonic()
    total = sum(os.path.getsize(p) for p in to_hash)
    digests = hash_files(to_hash, algorithm, total, ctx)
    mismatched = [path for path, digest in present if path in digests and digests[path] != digest]
    result = {
        "algorithm": algorithm,
        "files": digests,
        "count": len(digests),
        "bytes": total,
        "size": total,
        "duration": time.monotonic() - start,
        "verified": [p for p in to_hash if p not in mismatched],
        "mismatched": mismatched,
        "missing": missing,
        "changed": False,
    }
    if mismatched or missing:
        problems = [f"{os.path.relpath(p, folder)}: FAILED" for p in mismatched]
        problems += [f"{os.path.relpath(p, folder)}: missing" for p in missing]
        shown = ", ".join(problems[:5]) + (f" and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise HandlerError(
            f"{sums_path}: {len(problems)} of {len(entries)} files did not verify: {shown}", result=result
        )
    return result
