"""Glob patterns matched in one ``os.scandir`` walk, shared by ``glob``, ``copy`` and ``hash``.

A pattern is split at ``/`` into segments. ``**`` matches any number of folders
(zero included); ``*``, ``?`` and ``[...]`` match within one name, as in the shell. A
name starting with ``.`` is matched only by a segment that starts with ``.`` too, unless
``hidden`` is set (the shell's rule). Patterns are matched against paths relative to
the folder the walk starts from (the pattern's fixed leading part, such as ``/var/log``
in ``/var/log/**/*.log``), and folders that no pattern can match below are not entered,
nor are folders matched by ``exclude``.

Symbolic links to folders are followed only with ``follow_symlinks``; a link to one of
its own ancestors (a loop) is not entered, but a folder reached through two different
links is walked under both, as ``find -L`` and ``cp -rL`` do.

A folder that cannot be read is an error (a one-line ``HandlerError`` naming it), not a
silent gap: a copy or a digest of a tree with holes in it would be wrong without saying so.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from tasks._files import os_error

_MAGIC = re.compile(r"[*?\[]")


def has_magic(text: str) -> bool:
    return _MAGIC.search(text) is not None


def split_base(pattern: str, root: str) -> tuple[str, str]:
    """``(base folder, relative pattern)``: the pattern's leading part without wildcards."""
    pattern = os.path.expanduser(pattern)
    full = pattern if os.path.isabs(pattern) else os.path.join(root, pattern)
    parts = full.split(os.sep)
    fixed: list[str] = []
    for index, part in enumerate(parts):
        if has_magic(part) or part == "**":
            return (os.sep.join(fixed) or os.sep), "/".join(parts[index:])
        fixed.append(part)
    # No wildcard at all: the pattern names one path.
    return os.path.dirname(full) or os.sep, os.path.basename(full)


def _segment_regex(segment: str) -> str:
    """One name's pattern as a regex that never crosses ``/``."""
    out, index = [], 0
    while index < len(segment):
        char = segment[index]
        index += 1
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = index
            if end < len(segment) and segment[end] in "!^":
                end += 1
            if end < len(segment) and segment[end] == "]":
                end += 1
            while end < len(segment) and segment[end] != "]":
                end += 1
            if end >= len(segment):
                out.append("\\[")  # no closing bracket: a literal "["
                continue
            body = segment[index:end].replace("\\", "\\\\")
            if body[:1] in "!^":
                body = "^" + body[1:]
            out.append(f"(?!/)[{body}]")
            index = end + 1
        else:
            out.append(re.escape(char))
    return "".join(out)


@lru_cache(maxsize=1024)
def compile_pattern(segments: tuple[str, ...], hidden: bool) -> re.Pattern[str]:
    """The whole pattern as one regex over a relative path (``/`` separators)."""
    parts: list[str] = []
    visible = "" if hidden else "(?!\\.)"
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            # Any number of folders (zero included); with nothing after it, any path at all.
            parts.append(f"(?:{visible}[^/]+/)*" if not last else f"(?:{visible}[^/]+/)*{visible}[^/]+")
            continue
        guard = "" if (hidden or segment.startswith(".")) else "(?!\\.)"
        parts.append(guard + _segment_regex(segment) + ("" if last else "/"))
    return re.compile("".join(parts) + "\\Z", re.DOTALL)


@dataclass(frozen=True)
class Pattern:
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        segments = tuple(s for s in text.replace(os.sep, "/").split("/") if s not in ("", "."))
        # "a/**" also matches "a" itself only as a folder prefix; "**/**" is one "**".
        collapsed: list[str] = []
        for segment in segments:
            if not (segment == "**" and collapsed and collapsed[-1] == "**"):
                collapsed.append(segment)
        return cls(tuple(collapsed))

    def matches(self, relative: str, hidden: bool) -> bool:
        return compile_pattern(self.segments, hidden).match(relative) is not None

    def may_match_below(self, parts: tuple[str, ...], hidden: bool) -> bool:
        """Whether some path inside the folder ``parts`` could match."""
        return _prefix(self.segments, parts, hidden)


def _name_matches(segment: str, name: str, hidden: bool) -> bool:
    if name.startswith(".") and not hidden and not segment.startswith("."):
        return False
    if not has_magic(segment):
        return segment == name
    return re.fullmatch(_segment_regex(segment), name, re.DOTALL) is not None


def _prefix(segments: tuple[str, ...], parts: tuple[str, ...], hidden: bool) -> bool:
    if not parts:
        return bool(segments)
    if not segments:
        return False
    head, rest = segments[0], segments[1:]
    if head == "**":
        return True if (hidden or not parts[0].startswith(".")) else _prefix(rest, parts, hidden)
    return _name_matches(head, parts[0], hidden) and _prefix(rest, parts[1:], hidden)


@dataclass
class Entry:
    """One path found: where, what, and its stat (of the link itself unless followed)."""

    path: str  # absolute
    relative: str  # relative to the walk's base, with "/" separators
    is_dir: bool
    is_file: bool
    is_link: bool
    size: int
    mtime: float


def _name_regex(segment: str, hidden: bool) -> str:
    guard = "" if (hidden or segment.startswith(".")) else "(?!\\.)"
    return guard + _segment_regex(segment) + "\\Z"


def _either(regexes: list[str]) -> re.Pattern[str] | None:
    """One compiled alternation: a single match call per entry, whatever the count."""
    return re.compile("|".join(f"(?:{r})" for r in regexes), re.DOTALL) if regexes else None


def _is_dir(item: os.DirEntry[str], follow_symlinks: bool) -> bool:
    try:
        return item.is_dir(follow_symlinks=follow_symlinks)
    except OSError:
        return False


def walk(
    base: str,
    patterns: Iterable[Pattern],
    exclude: Iterable[Pattern] = (),
    hidden: bool = False,
    follow_symlinks: bool = False,
) -> Iterator[Entry]:
    """Every entry under ``base`` matched by a pattern and by no exclusion, in walk order."""
    patterns = list(patterns)
    excluded = _either([compile_pattern(p.segments, True).pattern for p in exclude])
    # "**/NAME" patterns (the common case) need only the entry's name: folders that are
    # entered were already checked, and "**" enters every folder it may.
    name_only = all(len(p.segments) == 2 and p.segments[0] == "**" for p in patterns)
    # A bare "**" with hidden files (a whole tree, as copy and hash walk it) matches everything.
    match_all = hidden and any(p.segments == ("**",) for p in patterns)
    if name_only:
        wanted = _either([_name_regex(p.segments[1], hidden) for p in patterns])
    else:
        wanted = _either([compile_pattern(p.segments, hidden).pattern for p in patterns])
    if wanted is None:
        return
    try:
        top = os.stat(base)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise os_error(exc, "read folder", base) from exc
    Chain = tuple[tuple[int, int], ...]  # the (device, inode) of each folder above
    stack: list[tuple[str, tuple[str, ...], Chain]] = [(base, (), ((top.st_dev, top.st_ino),))]
    while stack:
        folder, parts, ancestors = stack.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since it was listed
        except OSError as exc:
            raise os_error(exc, "read folder", folder) from exc
        prefix = "/".join(parts) + "/" if parts else ""
        # Two passes of comprehensions rather than one loop with branches: this inner loop
        # runs once per entry of the tree, and comprehensions cost about half as much.
        if match_all:
            hits = entries
        elif name_only:
            hits = [item for item in entries if wanted.match(item.name)]
        else:
            hits = [item for item in entries if wanted.match(prefix + item.name)]
        try:
            folders = [item for item in entries if item.is_dir(follow_symlinks=follow_symlinks)]
        except OSError:  # rare (a link into a folder we may not search): ask one by one
            folders = [item for item in entries if _is_dir(item, follow_symlinks)]
        if excluded is not None:
            hits = [item for item in hits if not excluded.match(prefix + item.name)]
            folders = [item for item in folders if not excluded.match(prefix + item.name)]
        for item in hits:
            try:
                is_link = item.is_symlink()
                try:
                    info = item.stat(follow_symlinks=follow_symlinks)
                except FileNotFoundError:  # a broken link, followed: report the link itself
                    info = item.stat(follow_symlinks=False)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(info.st_mode)
            yield Entry(
                item.path,
                prefix + item.name,
                is_dir,
                stat.S_ISREG(info.st_mode),
                is_link,
                info.st_size,
                info.st_mtime,
            )
        for item in folders:
            name = item.name
            path_parts = (*parts, name)
            if name_only or match_all:
                if not hidden and name.startswith("."):
                    continue  # "**" does not enter hidden folders
            elif not any(p.may_match_below(path_parts, hidden) for p in patterns):
                continue
            chain = ancestors
            if follow_symlinks:
                try:
                    info = item.stat()
                except OSError:
                    continue
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    continue  # a link back to a folder above: a loop
                chain = (*ancestors, key)
            stack.append((item.path, path_parts, chain))


def walk_all(
    patterns: Iterable[str],
    root: str,
    exclude: Iterable[str] = (),
    hidden: bool = False,
    follow_symlinks: bool = False,
) -> Iterator[Entry]:
    """Walk every pattern (relative to ``root`` unless absolute), each base folder once."""
    by_base: dict[str, list[Pattern]] = {}
    for text in patterns:
        base, relative = split_base(text, root)
        by_base.setdefault(os.path.normpath(base), []).append(Pattern.parse(relative))
    excluded = [Pattern.parse(e) for e in exclude]
    # An exclusion such as "*.tmp" (no folder) applies at any depth, as users mean it.
    excluded += [Pattern(("**", *p.segments)) for p in excluded if len(p.segments) == 1]
    seen: set[str] = set()
    for base, group in by_base.items():
        for entry in walk(base, group, excluded, hidden, follow_symlinks):
            if entry.path not in seen:
                seen.add(entry.path)
                yield entry
