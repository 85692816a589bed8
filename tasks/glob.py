"""Find files by pattern (``**`` included), filtered by type, size and age.

Relative patterns match under ``root`` (default: the current folder). Dot files are
left out unless ``hidden: true``, as in the shell. Paths come back sorted (by name,
mtime or size) and absolute unless ``relative: true``. As with ``find``, ``type: file``
means regular files: links count only with ``follow_symlinks``, which also follows
links to folders (a link loop is entered once). ``min_size``/``max_size`` keep files
only. Excluded folders are not entered. glob only reads: it runs under ``--dry-run`` too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, SIZE, string_or_list
from runner.units import parse_duration, parse_size
from tasks._walk import Entry, walk_all

name = "glob"
shorthand = "pattern"
schema = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "description": "A glob pattern such as logs/**/*.log."},
        "patterns": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "root": {"type": "string", "description": "Folder relative patterns are matched under."},
        "exclude": {**string_or_list, "description": "Patterns to leave out."},
        "type": {"enum": ["file", "dir", "any"], "default": "file"},
        "hidden": {"type": "boolean", "default": False, "description": "Include dot files."},
        "follow_symlinks": {"type": "boolean", "default": False},
        "min_size": {**SIZE, "description": "Only files at least this big."},
        "max_size": {**SIZE, "description": "Only files at most this big."},
        "older_than": {**DURATION, "description": "Only entries modified longer ago than this."},
        "newer_than": {**DURATION, "description": "Only entries modified more recently."},
        "sort": {"enum": ["name", "mtime", "size"], "default": "name"},
        "reverse": {"type": "boolean", "default": False},
        "limit": {"type": "integer", "minimum": 0, "description": "At most this many paths."},
        "relative": {"type": "boolean", "default": False, "description": "Paths relative to root."},
    },
    "oneOf": [{"required": ["pattern"]}, {"required": ["patterns"]}],
    "additionalProperties": False,
}
result = {
    "paths": "matching paths, sorted",
    "count": "number of matches",
    "total_bytes": "sum of the matching files' sizes",
    "matches": "list of {path, size, mtime (seconds since the epoch)}",
    "root": "the folder relative patterns were matched under",
}
example = """\
- id: old_logs
  glob: {pattern: "**/*.log", root: /var/log/app, older_than: 7d, min_size: 1MiB}
"""


# Sort keys read by C code (attrgetter), not a Python lambda called for each path.
ORDER = {"name": attrgetter("path"), "mtime": attrgetter("mtime", "path"), "size": attrgetter("size", "path")}


def _list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    root = os.path.abspath(os.path.join(ctx.cwd, os.path.expanduser(args.get("root", "."))))
    if not os.path.isdir(root):
        what = "is not a folder" if os.path.exists(root) else "does not exist"
        raise HandlerError(f"glob root {root} {what}")
    patterns = _list(args.get("pattern")) + _list(args.get("patterns"))
    entries = walk_all(
        patterns,
        root,
        _list(args.get("exclude")),
        bool(args.get("hidden")),
        bool(args.get("follow_symlinks")),
    )
    found = _filtered(entries, args)
    found.sort(key=ORDER[args.get("sort", "name")], reverse=bool(args.get("reverse")))
    if args.get("limit") is not None:
        found = found[: args["limit"]]
    paths = [_relative(e.path, root) for e in found] if args.get("relative") else [e.path for e in found]
    return {
        "paths": paths,
        "count": len(paths),
        "total_bytes": sum(e.size for e in found if e.is_file),
        "matches": [{"path": p, "size": e.size, "mtime": e.mtime} for p, e in zip(paths, found, strict=True)],
        "root": root,
        "changed": False,
    }


def _filtered(entries: Iterable[Entry], args: dict[str, Any]) -> list[Entry]:
    """The entries that pass the type, size and age filters: one comprehension per filter
    given, the type's first (a whole tree's worth of entries goes through that one)."""
    kind = args.get("type", "file")
    least = parse_size(args["min_size"]) if "min_size" in args else None
    most = parse_size(args["max_size"]) if "max_size" in args else None
    now = time.time()
    older = now - parse_duration(args["older_than"]) if "older_than" in args else None
    newer = now - parse_duration(args["newer_than"]) if "newer_than" in args else None
    sized = least is not None or most is not None
    if kind == "file" or sized:  # sizes are files' sizes: a size filter keeps files only
        found = [e for e in entries if e.is_file]
        if kind == "dir":
            found = []  # folders asked for, with a size: none qualifies
    elif kind == "dir":
        found = [e for e in entries if e.is_dir]
    else:
        found = list(entries)
    if least is not None:
        found = [e for e in found if e.size >= least]
    if most is not None:
        found = [e for e in found if e.size <= most]
    if older is not None:
        found = [e for e in found if e.mtime <= older]
    if newer is not None:
        found = [e for e in found if e.mtime >= newer]
    return found


def _relative(path: str, root: str) -> str:
    """``path`` relative to ``root``; a plain slice for paths below it (most of them)."""
    if path.startswith(root) and path[len(root) : len(root) + 1] == os.sep:
        return path[len(root) + 1 :]
    return os.path.relpath(path, root)
