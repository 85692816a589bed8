"""Read, set and remove values in an INI file, keeping every other line as it was.

``get`` lists ``"section"`` (the whole section, as a mapping) or ``"section/key"``
entries to read into the result's ``values`` (and ``value``, when one key is asked
for); a missing one fails the step. ``set`` maps sections to keys to values; ``remove``
lists sections or keys to delete. Removals are applied first, then settings, then
``get`` reads the result. The file is read as Python's ``configparser`` reads it (keys
are case-insensitive and read back in lower case; ``DEFAULT`` values show in every
section; no interpolation) and a file it cannot read is an error naming the line. The
edits are made line by line, so comments, blank lines, order, spacing and the other
values stay exactly as they were: a changed key keeps its place, its spelling and its
``=``/``:`` style, and a new key goes after the section's last one (a new section at the
end). The file is written atomically (created by ``set`` when missing); ``backup: true``
keeps the old one as ``path.~N~``. Under ``--dry-run`` reads happen and nothing is
written.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runner.errors import HandlerError
from tasks._files import os_error, write_bytes_atomically
from tasks._select import absolute

if TYPE_CHECKING:
    import configparser

name = "ini"
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "The INI file."},
        "get": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'What to read: "section" or "section/key" entries.',
        },
        "set": {
            "type": "object",
            "additionalProperties": {"type": "object", "additionalProperties": _SCALAR},
            "description": "Values to set: {section: {key: value}}.",
        },
        "remove": {
            "type": "array",
            "items": {"type": "string"},
            "description": 'What to delete: "section" or "section/key" entries.',
        },
        "backup": {
            "type": "boolean",
            "default": False,
            "description": "Keep the file as it was as path.~N~ when it changes.",
        },
    },
    "required": ["path"],
    "anyOf": [{"required": ["get"]}, {"required": ["set"]}, {"required": ["remove"]}],
    "additionalProperties": False,
}
result = {
    "values": "what get read: {section: {key: value}}",
    "value": "the value read, when get names exactly one key",
    "updated": '"section/key" entries whose value was set or added',
    "removed": '"section" or "section/key" entries removed',
    "backup": "the numbered backup made, if any",
}
example = """\
- ini:
    path: /etc/app/app.ini
    set: {database: {host: db.internal, port: 5432}}
    remove: [legacy, database/timeout]
    get: [database/host, server]
"""

_SECTION = re.compile(r"\[(?P<header>.+)\]")  # configparser's SECTCRE, on the stripped line
# configparser's OPTCRE, keeping the indent, the spacing around = or : and the line end.
_OPTION = re.compile(
    r"(?P<lead>\s*)(?P<key>.*?)(?P<sep>\s*[=:]\s*)(?P<value>.*?)(?P<eol>\r?\n?)\Z", re.DOTALL
)
_COMMENT = ("#", ";")


@dataclass
class Key:
    name: str  # as written
    start: int  # first line
    end: int  # one past its last line (continuation lines included)


@dataclass
class Section:
    name: str
    header: int  # line of [name]
    keys: list[Key] = field(default_factory=list)

    def find(self, key: str) -> Key | None:
        wanted = key.strip().lower()
        return next((k for k in reversed(self.keys) if k.name.strip().lower() == wanted), None)

    @property
    def end(self) -> int:
        """One past the section's last key line (its header's line when it has no keys)."""
        return self.keys[-1].end if self.keys else self.header + 1


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    path = absolute(args["path"], ctx.cwd)
    original = _read(path, needed=not args.get("set"))
    text = original or ""
    _parse(text, path)  # refuses a file configparser cannot read, before any edit
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    removed: list[str] = []
    for entry in args.get("remove") or []:
        if _remove(lines, entry):
            removed.append(entry)
    updated: list[str] = []
    for section, values in (args.get("set") or {}).items():
        for key, value in values.items():
            if _set(lines, str(section), str(key), _text(value), newline):
                updated.append(f"{section}/{key}")
    new_text = "".join(lines)
    changed = new_text != text
    parser = _parse(new_text, path)
    out: dict[str, Any] = {"path": path, "updated": updated, "removed": removed, "changed": changed}
    if args.get("get"):
        out.update(_get(parser, args["get"], path))
    if ctx.dry_run:
        parts = [f"set {len(updated)}" if updated else "", f"remove {len(removed)}" if removed else ""]
        what = " and ".join(p for p in parts if p)
        out["dry_run"] = f"would {what} in {path}" if changed else f"{path} needs no change"
        return out
    if changed:
        if original is None:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
            except OSError as exc:
                raise os_error(exc, "create folder", os.path.dirname(path)) from exc
        out["backup"] = write_bytes_atomically(
            path, new_text.encode("utf-8"), backup=bool(args.get("backup"))
        )
    return out


def _read(path: str, needed: bool) -> str | None:
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            return handle.read()
    except FileNotFoundError:
        if needed:
            raise HandlerError(f"ini file {path} does not exist") from None
        return None
    except UnicodeDecodeError:
        raise HandlerError(f"ini file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise os_error(exc, "read", path) from exc


def _parse(text: str, path: str) -> configparser.ConfigParser:
    import configparser  # imported when used: runbook validate imports every handler

    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=path)
    except configparser.Error as exc:
        raise HandlerError(f"cannot read ini file {_one_line(exc, path)}") from exc
    return parser


def _one_line(exc: configparser.Error, path: str) -> str:
    """configparser's messages span lines and repeat the path: make them ``path:LINE: what``."""
    import configparser

    line = getattr(exc, "lineno", None)
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{path}:{line}: a line before the first [section] header: {exc.line.strip()!r}"
    if isinstance(exc, configparser.DuplicateSectionError):
        return f"{path}:{line}: section [{exc.section}] appears twice"
    if isinstance(exc, configparser.DuplicateOptionError):
        return f"{path}:{line}: key '{exc.option}' appears twice in section [{exc.section}]"
    if isinstance(exc, configparser.ParsingError):
        first = exc.errors[0] if exc.errors else (line, "")
        return f"{path}:{first[0]}: not a [section], a key = value or a comment: {str(first[1]).strip()!r}"
    return f"{path}: {' '.join(str(exc).split())}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _scan(lines: list[str]) -> list[Section]:
    """The sections of a file configparser accepted, with each key's lines."""
    sections: list[Section] = []
    key: Key | None = None
    key_indent = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith(_COMMENT):
            key = None if not stripped else key
            continue
        indent = len(line) - len(line.lstrip())
        if key is not None and indent > key_indent:
            key.end = index + 1  # a continuation line of the value
            continue
        header = _SECTION.match(stripped)
        if header:
            sections.append(Section(header.group("header"), index))
            key = None
            continue
        option = _OPTION.match(line)
        if option and sections:
            key = Key(option.group("key"), index, index + 1)
            key_indent = indent
            sections[-1].keys.append(key)
    return sections


def _split(entry: str, sections: list[Section]) -> tuple[str, str | None]:
    """``"section"`` or ``"section/key"`` (a section whose name holds ``/`` wins)."""
    if any(s.name == entry for s in sections) or "/" not in entry:
        return entry, None
    section, key = entry.rsplit("/", 1)
    return section, key


def _section(sections: list[Section], name: str) -> Section | None:
    return next((s for s in sections if s.name == name), None)


def _remove(lines: list[str], entry: str) -> bool:
    sections = _scan(lines)
    section_name, key_name = _split(entry, sections)
    section = _section(sections, section_name)
    if section is None:
        return False
    if key_name is None:
        end = section.end
        while end < len(lines) and not lines[end].strip():
            end += 1  # the blank lines after it go too
        del lines[section.header : end]
        return True
    key = section.find(key_name)
    if key is None:
        return False
    del lines[key.start : key.end]
    return True


def _set(lines: list[str], section_name: str, key_name: str, value: str, newline: str) -> bool:
    sections = _scan(lines)
    section = _section(sections, section_name)
    if section is None:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += newline
        if lines and lines[-1].strip():
            lines.append(newline)
        lines.append(f"[{section_name}]{newline}")
        lines.extend(_key_lines("", key_name, " = ", value, newline))
        return True
    key = section.find(key_name)
    if key is not None:
        option = _OPTION.match(lines[key.start])
        assert option is not None
        if _current_value(lines, key, option) == value:
            return False
        sep = option.group("sep")
        if not option.group("value") and sep.startswith(" ") and not sep.endswith(" "):
            sep += " "
        eol = option.group("eol") or (newline if key.end < len(lines) else "")
        new = _key_lines(option.group("lead"), option.group("key"), sep, value, newline)
        new[-1] = new[-1][: -len(newline)] + eol
        lines[key.start : key.end] = new
        return True
    lead, sep = "", " = "
    if section.keys:
        option = _OPTION.match(lines[section.keys[-1].start])
        if option:
            lead, sep = option.group("lead"), option.group("sep") or " = "
            if not sep.endswith(" ") and sep.startswith(" "):
                sep += " "
    at = section.end
    if not lines[at - 1].endswith("\n"):
        lines[at - 1] += newline
    lines[at:at] = _key_lines(lead, key_name, sep, value, newline)
    return True


def _key_lines(lead: str, key: str, sep: str, value: str, newline: str) -> list[str]:
    """``key = value``, a value with newlines continued on indented lines (configparser's way)."""
    first, *rest = value.split("\n") if value else [""]
    if not first:
        sep = sep.rstrip()  # "key =" rather than "key = " with a trailing space
    return [f"{lead}{key}{sep}{first}{newline}"] + [f"{lead}    {line}{newline}" for line in rest]


def _current_value(lines: list[str], key: Key, option: re.Match[str]) -> str:
    parts = [option.group("value").strip()]
    parts += [line.strip() for line in lines[key.start + 1 : key.end]]
    return "\n".join(parts)


def _get(parser: configparser.ConfigParser, entries: list[str], path: str) -> dict[str, Any]:
    values: dict[str, dict[str, str]] = {}
    missing: list[str] = []
    found: list[str] = []
    for entry in entries:
        if entry in parser or "/" not in entry:
            section, key = entry, None
        else:
            section, key = entry.rsplit("/", 1)
        if section not in parser:
            missing.append(f"no section [{section}]")
            continue
        if key is None:
            values.setdefault(section, {}).update(dict(parser[section]))
            continue
        if not parser.has_option(section, key):
            missing.append(f"no key '{key}' in section [{section}]")
            continue
        value = parser.get(section, key)
        values.setdefault(section, {})[parser.optionxform(key)] = value
        found.append(value)
    out: dict[str, Any] = {"values": values}
    if len(entries) == 1 and found:  # one key asked for: its value at hand
        out["value"] = found[0]
    if missing:
        raise HandlerError(f"ini file {path}: {'; '.join(missing)}", result=out)
    return out
