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

    A block of whole lines is searched at once (far faster than line by line), in one of
    three ways, all finding exactly the lines where ``re.search`` finds the pattern:

    - when every match must contain some plain text (``ERROR`` in ``\\bERROR\\b``), that
      text is found with ``bytes.find`` and only the lines holding it are matched (a
      pattern that is only plain text needs no matching at all);
    - else an ASCII pattern on an ASCII block is matched on the bytes as they are;
    - else the block is decoded (bad bytes replaced) and matched as text. A hit that runs
      past its line (``\\s`` can match a newline) counts only if its line alone matches.

    Lines are counted (``bytes.count``, the largest cost) for line numbers, ``since_line``
    and ``last_line``; with ``tail_bytes`` they are not.
    """

    def __init__(self, pattern: re.Pattern[str], listed: int, since_line: int, tail_bytes: int | None):
        self.pattern = pattern
        self.required, self.exact = _required_text(pattern)
        self.ascii_pattern = _ascii_twin(pattern)
        self.listed = listed
        self.since_line = since_line
        self.tail_bytes = tail_bytes
        self.count = 0
        self.matches: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.last_line: dict[str, int | None] = {}
        self._numbered = (0, 0)  # line numbers counted so far in the block: (offset, lines before it)

    def file(self, path: str) -> None:
        found = 0
        line = 0  # lines before the current block
        # One buffer, read into again and again: fresh 1 MiB objects for every read would
        # cost page faults. What follows the last newline moves to its front for the next read.
        buffer = bytearray(2 * BLOCK)
        try:
            with open(path, "rb", buffering=0) as handle:
                head = self.skip_to_tail(handle) if self.tail_bytes is not None else b""
                buffer[: len(head)] = head
                have = len(head)
                while True:
                    if len(buffer) - have < BLOCK:
                        buffer.extend(bytes(BLOCK))  # a line longer than the buffer: make room
                    with memoryview(buffer) as view:
                        count = handle.readinto(view[have : have + BLOCK])
                    have += count
                    stop = buffer.rfind(b"\n", 0, have) + 1 if count else have
                    if stop:
                        hits, lines = self.block(path, buffer, stop, line)
                        found += hits
                        line += lines
                        buffer[: have - stop] = buffer[stop:have]
                        have -= stop
                    if not count:
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

    def block(self, path: str, buffer: bytearray, stop: int, before: int) -> tuple[int, int]:
        """(matching lines, lines) in ``buffer[:stop]``, whole lines; ``before`` lines precede it."""
        if self.tail_bytes is None:
            lines = buffer.count(b"\n", 0, stop) + (0 if buffer[stop - 1] == 10 else 1)
            skip = self.since_line - before - 1  # lines of the block before since_line
            if skip >= lines:
                return 0, lines
        else:
            lines, skip = 0, 0  # lines are not counted from the middle of a file
        hay: Any
        newline: Any
        if self.required is not None or (self.ascii_pattern is not None and buffer[:stop].isascii()):
            hay, newline = buffer, b"\n"
        else:
            with memoryview(buffer) as view:
                hay, newline = str(view[:stop], "utf-8", "replace"), "\n"
            stop = len(hay)
        position = 0
        for _ in range(max(0, skip)):
            position = hay.index(newline, position) + 1
        hits = self.lines_found(hay, position, stop, newline)
        self._numbered = (0, before)
        for start, end in hits[: max(0, self.listed - len(self.matches))]:
            self.list_match(path, hay, start, end, newline)
        return len(hits), lines

    def lines_found(self, hay: Any, position: int, stop: int, newline: Any) -> list[tuple[int, int]]:
        """(start, end) of every matching line of ``hay[position:stop]``."""
        found = []
        if self.required is not None:
            required, exact, find, rfind = self.required, self.exact, hay.find, hay.rfind
            while (at := find(required, position, stop)) >= 0:
                start = rfind(newline, 0, at) + 1
                end = find(newline, at, stop)
                end = stop if end < 0 else end
                if exact or self.line_matches(hay[start:end]):
                    found.append((start, end))
                position = end + 1
            return found
        search = self.pattern.search if isinstance(hay, str) else self.ascii_pattern.search  # type: ignore[union-attr]
        last = stop - 1 if hay[stop - 1 : stop] == newline else stop  # where the last line ends
        while position <= last and (hit := search(hay, position, stop)) is not None:
            if hit.start() > last:
                break  # an empty match after the final newline: not a line
            start = hay.rfind(newline, 0, hit.start()) + 1
            end = hay.find(newline, hit.start(), stop)
            end = stop if end < 0 else end
            if hit.end() <= end or search(hay[start:end]):
                found.append((start, end))
            position = end + 1
        return found

    def line_matches(self, line: bytearray) -> bool:
        if self.ascii_pattern is not None and line.isascii():
            return self.ascii_pattern.search(line) is not None
        return self.pattern.search(line.decode("utf-8", errors="replace")) is not None

    def list_match(self, path: str, hay: Any, start: int, end: int, newline: Any) -> None:
        number = None
        if self.tail_bytes is None:
            # Lines are counted on from the last listed match of the block, not from its start.
            offset, counted = self._numbered
            counted += hay.count(newline, offset, start)
            self._numbered = (start, counted)
            number = counted + 1
        text = hay[start:end]
        if not isinstance(text, str):
            text = text.decode("utf-8", errors="replace")
        self.matches.append({"file": path, "line": number, "text": text.rstrip("\r")[:LONGEST_TEXT]})


_REPEAT = re.compile(r"\d+(?:,\d*)?\}|,\d+\}")  # after "{": a repeat count; else "{" is plain text


def _required_text(pattern: re.Pattern[str]) -> tuple[bytes | None, bool]:
    """Plain text every match must contain (as UTF-8), and whether it is the whole pattern.

    Read from the pattern's top level, conservatively: text inside groups and classes,
    and a character a quantifier may repeat or drop, are left out; an alternation at the
    top level, escapes that stand for other characters, case-insensitivity and verbose
    patterns give nothing. One character is too little to be worth it.
    """
    text = pattern.pattern
    if not text or pattern.flags & (re.IGNORECASE | re.VERBOSE):
        return None, False
    runs: list[str] = []
    run: list[str] = []
    exact = True
    index = 0
    while index < len(text):
        char = text[index]
        index += 1
        if char == "\\":
            if index >= len(text):
                return None, False
            escaped = text[index]
            index += 1
            if not escaped.isalnum():
                run.append(escaped)  # \. \[ \\ ...: that character itself
                continue
            if escaped not in "bBAZ" and (escaped in "xuUN" or escaped.isdigit()):
                return None, False  # \x41, \1...: characters or groups we do not read
            exact = False
        elif char == "|":
            return None, False
        elif char in "([":
            closing = _group_end(text, index - 1)
            if closing < 0:
                return None, False
            index = closing + 1
            exact = False
        elif char in "*?" or (char == "{" and (counted := _REPEAT.match(text, index))):
            if run:
                run.pop()  # the character before may be absent
            exact = False
            if char == "{":
                index = counted.end()  # type: ignore[union-attr]
        elif char in "+.^$":
            exact = False  # "+": the character may repeat, so the text goes no further
        else:
            run.append(char)
            continue
        runs.append("".join(run))
        run = []
    runs.append("".join(run))
    best = max(runs, key=len)
    if len(best) < 2 or "\n" in best:
        return None, False
    return best.encode("utf-8"), exact and best == text


def _group_end(text: str, start: int) -> int:
    """Index of the ``)`` or ``]`` closing the group or class opened at ``start``, or -1."""
    depth = 0
    index = start
    class_start = -1  # where the class's first character is; -1 outside a class
    while index < len(text):
        char = text[index]
        if char == "\\":
            index += 2
            continue
        if class_start >= 0:
            if char == "]" and index > class_start:
                class_start = -1
                if depth == 0:
                    return index
        elif char == "[":
            class_start = index + 1 + (1 if text[index + 1 : index + 2] == "^" else 0)
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return index
        index += 1
    return -1


def _ascii_twin(pattern: re.Pattern[str]) -> re.Pattern[bytes] | None:
    """The pattern compiled for bytes, when on ASCII text it matches exactly what it matches as text.

    Only ASCII patterns qualify, and none with ``\\s``/``\\S``: as text those also match the
    ASCII separators 0x1C-0x1F, as bytes they do not.
    """
    text = pattern.pattern
    if not text.isascii() or "\\s" in text or "\\S" in text:
        return None
    try:
        return re.compile(text.encode("ascii"), pattern.flags & (re.IGNORECASE | re.MULTILINE))
    except re.error:  # \u escapes, (?u) and the like exist only for text patterns
        return None
