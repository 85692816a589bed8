"""Search files for a regular expression, and check how often it appears: log checks.

``path`` is a file, a glob (``/var/log/app/*.log``) or a list of them; ``pattern`` is a
Python regular expression matched against each line, as ``grep -E`` does (``count``
counts matching lines, not matches). ``expect`` turns the search into a check:
``present`` (at least one), ``absent`` (none), or ``{min: N, max: N}``; the step fails
when the count is outside, naming it and the files. ``max_matches`` caps the matching
lines listed in the result (default 100); counting always goes through the whole
files, so checks are exact. To scan only what is new or recent in a big log,
``since_line`` starts at that line number and ``tail_bytes`` reads only the end (from
the first whole line; line numbers are then unknown and given as null). ``newer_than``
keeps only files modified recently. Files are read as UTF-8 (bad bytes do not stop the
search). A named file that does not exist is an error; a glob that matches nothing
counts 0. grep only reads: it runs under ``--dry-run`` too.
"""

from __future__ import annotations

import os
import re
from typing import Any

from runner.errors import HandlerError
from runner.schema import DURATION, SIZE, string_or_list
from runner.units import parse_size
from tasks._files import os_error
from tasks._select import absolute, as_list, select
from tasks._walk import has_magic

name = "grep"
schema = {
    "type": "object",
    "properties": {
        "path": {**string_or_list, "description": "A file, a glob pattern, or a list of them."},
        "pattern": {"type": "string", "description": "Python regular expression searched in each line."},
        "ignore_case": {"type": "boolean", "default": False},
        "max_matches": {
            "type": "integer",
            "minimum": 0,
            "default": 100,
            "description": "At most this many matching lines listed in the result (counts stay exact).",
        },
        "expect": {
            "anyOf": [
                {"enum": ["present", "absent"]},
                {
                    "type": "object",
                    "properties": {
                        "min": {"type": "integer", "minimum": 0},
                        "max": {"type": "integer", "minimum": 0},
                    },
                    "additionalProperties": False,
                    "minProperties": 1,
                },
            ],
            "description": "present, absent, or {min: N, max: N} matching lines; else the step fails.",
        },
        "since_line": {"type": "integer", "minimum": 1, "description": "Start at this line of each file."},
        "tail_bytes": {**SIZE, "description": "Read only the last this many bytes of each file."},
        "newer_than": {**DURATION, "description": "Only files modified more recently than this."},
    },
    "required": ["path", "pattern"],
    "additionalProperties": False,
}
result = {
    "count": "matching lines in all files",
    "matches": "list of {file, line, text} (line is null with tail_bytes), at most max_matches",
    "counts": "{file: matching lines} for every file searched",
    "last_line": "{file: number of its last line} (for since_line next time; null with tail_bytes)",
    "files": "number of files searched",
}
example = """\
- grep:
    path: /var/log/app/app.log
    pattern: "\\\\bERROR\\\\b"
    tail_bytes: 5MiB
    expect: {max: 10}
- grep: {path: /etc/app/app.conf, pattern: "^listen\\\\s*=\\\\s*443$", expect: present}
"""

BLOCK = 1024 * 1024
LONGEST_TEXT = 1000  # characters of a matching line kept in the result


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    try:
        pattern = re.compile(
            args["pattern"], re.MULTILINE | (re.IGNORECASE if args.get("ignore_case") else 0)
        )
    except re.error as exc:
        raise HandlerError(f"pattern {args['pattern']!r} is not a valid regular expression: {exc}") from None
    if args.get("since_line") is not None and args.get("tail_bytes") is not None:
        raise HandlerError(
            "give since_line or tail_bytes, not both: with tail_bytes, line numbers are unknown"
        )
    files = []
    for spec in as_list(args["path"]):
        entries = select([spec], ctx.cwd, {"newer_than": args.get("newer_than")})
        if not has_magic(spec) and not entries and args.get("newer_than") is None:
            raise HandlerError(f"file {absolute(spec, ctx.cwd)} does not exist")
        files += [e.path for e in entries if e.is_file or (e.is_link and os.path.isfile(e.path))]
    search = Search(
        pattern,
        args.get("max_matches", 100),
        args.get("since_line", 1),
        parse_size(args["tail_bytes"]) if args.get("tail_bytes") is not None else None,
    )
    for path in dict.fromkeys(files):
        if ctx.cancelled():
            raise HandlerError("cancelled while searching")
        search.file(path)
    out = {
        "count": search.count,
        "matches": search.matches,
        "counts": search.counts,
        "last_line": search.last_line,
        "files": len(search.counts),
        "changed": False,
    }
    problem = _check(args.get("expect"), search.count)
    if problem:
        where = ", ".join(f"{path} ({n})" for path, n in search.counts.items() if n) or (
            ", ".join(search.counts) or "no file matched the path"
        )
        raise HandlerError(f"{args['pattern']!r} {problem}: {where}", result=out)
    return out


def _check(expect: Any, count: int) -> str | None:
    """Why ``count`` breaks ``expect``, or None."""
    lines = f"{count} matching line{'s' if count != 1 else ''}"
    if expect == "present" and count == 0:
        return "not found"
    if expect == "absent" and count:
        return f"found ({lines}), expected none"
    if isinstance(expect, dict):
        low, high = expect.get("min"), expect.get("max")
        if low is not None and count < low:
            return f"found {lines}, expected at least {low}"
        if high is not None and count > high:
            return f"found {lines}, expected at most {high}"
    return None


class Search:
    """Counts matching lines, file by file, reading big blocks and matching them whole.

    A block is searched at once (far faster than line by line); each hit is then checked
    against its own line alone, so a pattern that could span lines (``\\s``, ``[^x]``)
    counts as it would in ``grep``, line by line.
    """

    def __init__(self, pattern: re.Pattern[str], listed: int, since_line: int, tail_bytes: int | None):
        self.pattern = pattern
        self.listed = listed
        self.since_line = since_line
        self.tail_bytes = tail_bytes
        self.count = 0
        self.matches: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.last_line: dict[str, int | None] = {}

    def file(self, path: str) -> None:
        found = 0
        line = 0  # lines before the current block
        try:
            with open(path, "rb") as handle:
                rest = self.skip_to_tail(handle) if self.tail_bytes is not None else b""
                while True:
                    data = handle.read(BLOCK)
                    block = rest + data
                    if data:
                        end = block.rfind(b"\n") + 1
                        if end == 0:
                            rest = block
                            continue  # one long line: read on
                        block, rest = block[:end], block[end:]
                    if block:
                        found += self.block(path, block, line)
                        line += block.count(b"\n") + (0 if block.endswith(b"\n") else 1)
                    if not data:
                        break
        except OSError as exc:
            raise os_error(exc, "read", path) from exc
        self.counts[path] = found
        self.last_line[path] = None if self.tail_bytes is not None else line
        self.count += found

    def skip_to_tail(self, handle: Any) -> bytes:
        """Seek to the last ``tail_bytes``, then past the partial line there; return what follows it."""
        assert self.tail_bytes is not None
        size = os.fstat(handle.fileno()).st_size
        if size <= self.tail_bytes:
            return b""
        handle.seek(size - self.tail_bytes - 1)  # one byte early: is a line starting right there?
        while chunk := handle.read(64 * 1024):
            cut = chunk.find(b"\n")
            if cut >= 0:
                return chunk[cut + 1 :]
        return b""

    def block(self, path: str, raw: bytes, before: int) -> int:
        """Matching lines in a block of whole lines; ``before`` lines precede it in the file."""
        skip = self.since_line - before - 1  # lines of the block before since_line
        if skip > 0 and skip >= raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1):
            return 0
        text = raw.decode("utf-8", errors="replace")
        position = 0
        for _ in range(max(0, skip)):
            position = text.index("\n", position) + 1
        last = len(text) - 1 if text.endswith("\n") else len(text)  # where the last line ends
        counted_at, counted = 0, before  # line numbers, counted as far as needed
        found = 0
        search = self.pattern.search
        while position <= last and (hit := search(text, position)) is not None:
            if hit.start() > last:
                break  # an empty match after the final newline: not a line
            start = text.rfind("\n", 0, hit.start()) + 1
            end = text.find("\n", hit.start())
            end = len(text) if end < 0 else end
            line_text = text[start:end].rstrip("\r")
            if hit.end() <= end or search(line_text):  # a hit across lines counts if its line matches
                found += 1
                if len(self.matches) < self.listed:
                    counted += text.count("\n", counted_at, start)
                    counted_at = start
                    number = None if self.tail_bytes is not None else counted + 1
                    self.matches.append({"file": path, "line": number, "text": line_text[:LONGEST_TEXT]})
            position = end + 1
        return found
