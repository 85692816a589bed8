"""YAML text → plain data plus a map of where every key and item came from.

PyYAML's safe loader is used in two halves: its (C, when available) composer builds
the node tree, and this module turns nodes into plain Python data (dict, list, str,
int, float, bool, None) while recording positions. Doing the construction here is
what lets us:

- keep the line and column of every mapping key and sequence item (``SourceMap``);
- refuse duplicate keys, naming both lines (PyYAML silently keeps the last one);
- keep mapping keys as the text written (``on:`` stays ``"on"``, not ``True``);
- keep dates as strings (JSON has no date type: results must stay JSON-able);
- refuse every tag but the standard ones (no Python object tags, ever), while letting
  later features register their own (``!vault``) through ``TAG_CONSTRUCTORS``.

Merge keys (``<<: *defaults``) work as in YAML 1.1: explicit keys win.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner.diagnostics import Diagnostic, Position
from runner.errors import PlaybookError, UsageError

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - libyaml is missing on some platforms
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

JsonPath = tuple[str | int, ...]

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"

# Anchors and aliases can make a small file expand exponentially ("billion laughs").
# A document may build at most this many values from aliases beyond its own nodes.
MAX_NODES = 100_000


def _sealed(text: str, position: Position) -> Any:
    from runner.vault import Sealed

    return Sealed(text, position)


# Extra scalar tags: tag → function(text, position) → value. ``!vault`` values are decrypted
# once the whole file is loaded (the key may be named in the file itself).
TAG_CONSTRUCTORS: dict[str, Callable[[str, Position], Any]] = {"!vault": _sealed}

_scalar_constructor = yaml.SafeLoader("")


@dataclass
class SourceMap:
    """Positions of a document's parts, keyed by their path from the root.

    ``keys[path]`` is where a mapping key or a sequence item starts; ``values[path]``
    is where the value starts (the same place for sequence items). ``blocks`` maps the
    paths of ``|`` and ``>`` scalars to where their text starts (the line after the
    marker, at the text's indentation), and ``folded`` keeps the raw lines of ``>``
    scalars, whose folding joins lines that error positions need apart.
    """

    file: str
    keys: dict[JsonPath, Position] = field(default_factory=dict)
    values: dict[JsonPath, Position] = field(default_factory=dict)
    blocks: dict[JsonPath, Position] = field(default_factory=dict)
    folded: dict[JsonPath, str] = field(default_factory=dict)

    def key(self, path: JsonPath) -> Position:
        """The position of ``path``'s key, or of its nearest ancestor that has one."""
        return self._nearest(self.keys, path)

    def value(self, path: JsonPath) -> Position:
        """The position of ``path``'s value, or of its nearest ancestor's."""
        return self._nearest(self.values, path)

    def text_line(self, path: JsonPath, line_in_text: int) -> Position:
        """Position of line ``line_in_text`` (1-based) inside the scalar at ``path``."""
        path = self.recorded(path)
        if path in self.blocks:
            start = self.blocks[path]
            return Position(start.file, start.line + line_in_text - 1, start.col)
        start = self.value(path)
        if line_in_text == 1:
            return start
        return Position(start.file, start.line + line_in_text - 1, 1)

    def recorded(self, path: JsonPath) -> JsonPath:
        """``path``, or its nearest ancestor that is in the file (``shell.cmd`` → ``shell``)."""
        while path and path not in self.values:
            path = path[:-1]
        return path

    def _nearest(self, table: dict[JsonPath, Position], path: JsonPath) -> Position:
        while path:
            if path in table:
                return table[path]
            path = path[:-1]
        return table.get((), Position(self.file, 1, 1))


@dataclass
class Document:
    """One loaded YAML file: its data, where each part came from, and its problems."""

    path: Path
    data: Any
    source: SourceMap
    problems: list[Diagnostic]


def position_of(mark: Any, file: str) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, file: str, text: str):
        self.file = file
        self.lines = text.splitlines()
        self.source = SourceMap(file)
        self.problems: list[Diagnostic] = []
        self.nodes_built = 0
        self.distinct_nodes: set[int] = set()
        self._active: set[int] = set()

    def problem(self, node: Any, message: str, hint: str = "") -> None:
        self.problems.append(Diagnostic(position_of(node.start_mark, self.file), "", message, hint))

    def build(self, node: Any, path: JsonPath) -> Any:
        self.nodes_built += 1
        self.distinct_nodes.add(id(node))
        if self.nodes_built - len(self.distinct_nodes) > MAX_NODES:
            raise _TooBig(node)
        self.source.values.setdefault(path, position_of(node.start_mark, self.file))
        if isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">"):
                self.record_block(node, path)
            return self.scalar(node)
        if id(node) in self._active:
            self.problem(node, "an alias refers to the node that contains it (recursive alias)")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            return self.mapping(node, path)
        finally:
            self._active.discard(id(node))

    def record_block(self, node: yaml.ScalarNode, path: JsonPath) -> None:
        first = node.start_mark.line + 1
        last = min(node.end_mark.line, len(self.lines))
        content = [i for i in range(first, last) if self.lines[i].strip()]
        if not content:
            return
        line = self.lines[content[0]]
        self.source.blocks[path] = Position(self.file, content[0] + 1, len(line) - len(line.lstrip()) + 1)
        if node.style == ">":
            self.source.folded[path] = "\n".join(self.lines[content[0] : content[-1] + 1])

    def scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self.typed_scalar(node)
        except (ValueError, KeyError):  # "!!int x": the tag says one type, the text another
            kind = node.tag.rsplit(":", 1)[-1]
            self.problem(node, f"'{node.value}' is not a valid {kind} (it is tagged !!{kind})")
            return node.value

    def typed_scalar(self, node: yaml.ScalarNode) -> Any:
        tag = node.tag
        if tag in (_STR, _TIMESTAMP):
            return node.value
        if tag == _INT:
            return _scalar_constructor.construct_yaml_int(node)
        if tag == _FLOAT:
            return _scalar_constructor.construct_yaml_float(node)
        if tag == _BOOL:
            return _scalar_constructor.construct_yaml_bool(node)
        if tag == _NULL:
            return None
        if tag in TAG_CONSTRUCTORS:
            return TAG_CONSTRUCTORS[tag](node.value, position_of(node.start_mark, self.file))
        self.unsupported_tag(node)
        return None

    def unsupported_tag(self, node: Any) -> None:
        allowed = ", ".join(sorted(TAG_CONSTRUCTORS)) or "none"
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        self.problem(
            node,
            f"unsupported YAML tag '{tag}'",
            f"runbook loads YAML safely: Python object tags are refused; custom tags allowed: {allowed}",
        )

    def sequence(self, node: yaml.SequenceNode, path: JsonPath) -> list[Any]:
        if node.tag != _SEQ:
            self.unsupported_tag(node)
        items = []
        for index, item in enumerate(node.value):
            item_path = (*path, index)
            self.source.keys[item_path] = position_of(item.start_mark, self.file)
            items.append(self.build(item, item_path))
        return items

    def mapping(self, node: yaml.MappingNode, path: JsonPath) -> dict[str, Any]:
        if node.tag != _MAP:
            self.unsupported_tag(node)
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merged.update(self.merge_sources(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, "a mapping key must be a plain string, not a list or mapping")
                continue
            key = key_node.value
            key_position = position_of(key_node.start_mark, self.file)
            if key in first_seen:
                self.problem(
                    key_node,
                    f"duplicate key '{key}' (first at line {first_seen[key].line})",
                    "YAML keeps only one of them; remove or rename the other",
                )
                continue
            first_seen[key] = key_position
            child = (*path, key)
            self.source.keys[child] = key_position
            result[key] = self.build(value_node, child)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def merge_sources(self, node: Any, path: JsonPath) -> dict[str, Any]:
        """The mappings named by a ``<<`` key, earlier ones winning as YAML 1.1 says."""
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            if not isinstance(source, yaml.MappingNode):
                self.problem(source, "'<<' merges only mappings (an alias to a mapping)")
                continue
            # Positions of merged keys point at the anchored mapping they come from.
            value = self.build(source, path)
            if isinstance(value, dict):
                merged.update(value)
        return merged


class _TooBig(Exception):
    def __init__(self, node: Any):
        self.node = node


def parse_text(text: str, file: str) -> Document:
    """Parse one YAML document; syntax errors become diagnostics, never exceptions."""
    builder = _Builder(file, text)
    try:
        loader = _Loader(text)
        try:
            root = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        return Document(Path(file), None, builder.source, [_syntax_problem(exc, file, text)])
    except yaml.YAMLError as exc:  # e.g. a control character libyaml refuses outright
        message = str(exc).splitlines()[0]
        return Document(Path(file), None, builder.source, [Diagnostic(Position(file, 1, 1), "", message)])
    if root is None:
        return Document(Path(file), None, builder.source, [])
    try:
        data = builder.build(root, ())
    except _TooBig as exc:
        builder.problem(
            exc.node, f"aliases expand the document by more than {MAX_NODES} values (an alias bomb?)"
        )
        data = None
    except RecursionError:
        builder.problem(root, "the document is nested too deeply")
        data = None
    builder.source.keys.setdefault((), position_of(root.start_mark, file))
    return Document(Path(file), data, builder.source, builder.problems)


def _char_at(text: str, mark: Any) -> str:
    lines = text.splitlines()
    if mark is None or mark.line >= len(lines) or mark.column >= len(lines[mark.line]):
        return ""
    return lines[mark.line][mark.column]


_OPENERS = {
    "while scanning a quoted scalar": "a quote",
    "while parsing a flow mapping": "a '{'",
    "while parsing a flow sequence": "a '['",
}


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str, text: str) -> Diagnostic:
    opener = _OPENERS.get(exc.context or "")
    problem = exc.problem or ""
    if opener and exc.context_mark and ("end of stream" in problem or "did not find expected" in problem):
        # The parser noticed only where it gave up; the user needs the quote or bracket left open.
        stopped = exc.problem_mark.line + 1 if exc.problem_mark else None
        return Diagnostic(
            position_of(exc.context_mark, file),
            "",
            f"YAML syntax error: {opener} is never closed"
            + (f" (the parser gave up at line {stopped})" if stopped else ""),
            "a quote or bracket is not closed",
        )
    mark = exc.problem_mark or exc.context_mark
    position = position_of(mark, file) if mark else Position(file, 1, 1)
    problem = exc.problem or exc.context or "invalid YAML"
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.problem:
        message += f" ({exc.context}"
        if exc.context_mark and exc.context_mark.line != getattr(mark, "line", None):
            message += f" at line {exc.context_mark.line + 1}"
        message += ")"
    hint = ""
    if "\\t" in problem or _char_at(text, mark) == "\t":
        hint = "YAML does not allow tabs for indentation; indent with spaces"
    elif "could not find expected ':'" in problem or "mapping values are not allowed" in problem:
        hint = "check the indentation and that every 'key: value' has a space after the colon"
    elif "found unexpected end of stream" in problem or "unclosed" in problem:
        hint = "a quote or bracket is not closed"
    return Diagnostic(position, "", message, hint)


def read_text(path: Path) -> str:
    """A file's text, or a UsageError saying in one line why it cannot be read."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a playbook file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied (check the file's mode)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise PlaybookError(
            [Diagnostic(Position(str(path), line, 1), "", "the file is not valid UTF-8 text")]
        ) from None


def load_file(path: Path, text: str | None = None) -> Document:
    """Read and parse a YAML file (or ``text``, a copy of it read earlier).

    ``!vault`` values are decrypted, and a file encrypted whole (``runbook vault encrypt``)
    is decrypted first, all its values then being secrets. A playbook's ``vault_key_file:``
    is where the key is read from when neither the command line nor the environment gives one.
    """
    from runner import vault

    text = read_text(path) if text is None else text
    encrypted = vault.is_encrypted(text)
    if encrypted:
        try:
            text = vault.decrypt(text, vault.KEYS.key())
        except vault.VaultError as exc:
            problem = Diagnostic(Position(str(path), 1, 1), "encrypted file", str(exc))
            return Document(path, None, SourceMap(str(path)), [problem])
    document = parse_text(text, str(path))
    data = document.data
    named_key = data.get("vault_key_file") if isinstance(data, dict) else None
    if isinstance(named_key, str) and vault.KEYS.fallback_file is None:
        vault.KEYS.fallback_file = path.parent / os.path.expanduser(named_key)
    if _has_sealed(data):
        document.data = vault.unseal(data, document.problems)
    if encrypted:
        from runner.masking import SECRETS

        SECRETS.add_all(document.data)
    return document


def _has_sealed(data: Any) -> bool:
    from runner.vault import Sealed

    if isinstance(data, Sealed):
        return True
    if isinstance(data, dict):
        return any(_has_sealed(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_sealed(v) for v in data)
    return False


def parse_cli_var(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` → (key, value), the value read as a YAML scalar (``3`` is an int)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"-e {text!r}: expected KEY=VALUE or @FILE")
    if not key.isidentifier():
        raise UsageError(f"-e {text!r}: '{key}' is not a valid variable name")
    if raw == "":
        return key, ""
    try:
        value = yaml.load(raw, Loader=_Loader)
    except yaml.YAMLError:
        return key, raw
    # Only scalars are parsed; '[a' or '{x: 1}' stay the text the user typed.
    if isinstance(value, (dict, list)) or (
        value is None and raw.strip() not in ("~", "null", "Null", "NULL")
    ):
        return key, raw
    if not isinstance(value, (str, int, float, bool, type(None))):
        return key, raw  # a date, say: keep the text, as the playbook loader does
    return key, value
