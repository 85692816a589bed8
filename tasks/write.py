"""Write data to a file as CSV, JSON, YAML or text, atomically: reports and inventories.

``data`` is any value; ``format`` defaults from the file's extension (``.csv``,
``.json``, ``.yml``/``.yaml``, anything else is text). CSV takes a list of mappings (or
one mapping): the header is every key in first-seen order, or ``columns``, which picks
and orders them; a column may name a nested value with dots (``memory.percent``) and
a mapping ``{header: key}`` renames columns. Lists and mappings in a cell are written as
JSON, ``null`` as an empty cell, booleans as ``true``/``false``. ``append: true`` adds
CSV rows (the header is written only when the file is new, and must match an existing
one) or text lines. Text writes a string as is, and a list one item per line. The file
is written to a temporary file beside it and renamed into place, so a reader never sees
half a report; an unchanged file is left alone (``changed: false``). Under
``--dry-run`` nothing is written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from runner.errors import HandlerError
from tasks._files import MODE, os_error, parse_mode, write_bytes_atomically
from tasks._select import absolute

name = "write"
FORMATS = ("csv", "json", "yaml", "text")
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "The file to write."},
        "data": {"description": "What to write: a list of mappings for CSV, any value otherwise."},
        "format": {"enum": list(FORMATS), "description": "Default: from the extension, else text."},
        "columns": {
            "anyOf": [
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
                {"type": "object", "additionalProperties": {"type": "string"}, "minProperties": 1},
            ],
            "description": "CSV columns, in order: keys or dotted paths, or {header: key}.",
        },
        "append": {
            "type": "boolean",
            "default": False,
            "description": "Add CSV rows or text lines to the end of the file.",
        },
        "mode": MODE,
    },
    "required": ["path", "data"],
    "additionalProperties": False,
}
result = {
    "path": "the file written, absolute",
    "format": "the format used",
    "rows": "CSV rows written (header left out)",
    "columns": "CSV columns written",
    "bytes": "size of the file",
}
example = """\
- write:
    path: reports/inventory.csv
    data: "{{ steps.hosts.results }}"
    columns: {host: item, cpu: cpu_percent, memory: memory.percent}
- write: {path: reports/summary.json, data: {deleted: "{{ steps.cleanup.count }}"}}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    path = absolute(args["path"], ctx.cwd)
    fmt = args.get("format") or _format_of(path)
    append = bool(args.get("append"))
    mode = parse_mode(args["mode"]) if args.get("mode") is not None else None
    if append and fmt not in ("csv", "text"):
        raise HandlerError(f"append works with csv and text files; {fmt} would make {path} invalid")
    old = _read(path)
    out: dict[str, Any] = {"path": path, "format": fmt}
    payload = plain(args["data"])
    if fmt == "csv":
        rows = _rows(payload)
        header = _header(old) if append and old else None
        columns = _columns(args.get("columns"), rows, header)
        text = _csv(rows, columns, with_header=header is None)
        out.update(rows=len(rows), columns=list(columns))
    elif fmt == "text":
        text = _text(payload)
    elif fmt == "json":
        text = json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n"
    else:
        import yaml

        text = yaml.safe_dump(payload, sort_keys=False, allow_unicode=True, default_flow_style=False)
    data = text.encode("utf-8")
    if append and old:
        if not old.endswith(b"\n"):
            data = b"\n" + data
        data = old + data
    out["bytes"] = len(data)
    out["changed"] = data != old or (mode is not None and old is not None and _mode(path) != mode)
    if ctx.dry_run:
        verb = "append to" if append and old else "write"
        out["dry_run"] = f"would {verb} {path} ({fmt})" if out["changed"] else f"{path} is up to date"
        return out
    if out["changed"]:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        except OSError as exc:
            raise os_error(exc, "create folder", os.path.dirname(path)) from exc
        write_bytes_atomically(path, data, mode)
    return out


def plain(value: Any) -> Any:
    """``value`` with every mapping a dict and every sequence a list (``facts`` is a lazy
    mapping, for one), so that JSON and YAML write its contents, not its name."""
    if isinstance(value, Mapping):
        return {
            str(k) if not isinstance(k, (str, int, float, bool)) else k: plain(v) for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _format_of(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    return {".csv": "csv", ".json": "json", ".yml": "yaml", ".yaml": "yaml"}.get(extension, "text")


def _mode(path: str) -> int:
    return os.stat(path).st_mode & 0o7777


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise HandlerError(f"path {path} is a folder: give the path of the file to write") from None
    except OSError as exc:
        raise os_error(exc, "read", path) from exc


def _rows(data: Any) -> list[Mapping[str, Any]]:
    if isinstance(data, Mapping):
        return [data]
    if isinstance(data, list) and all(isinstance(row, Mapping) for row in data):
        return data
    what = type(data).__name__ if not isinstance(data, list) else "a list holding other things than mappings"
    raise HandlerError(
        f"csv needs a list of mappings (one per row), got {what}; use format: json or text for other data"
    )


def _header(old: bytes) -> list[str] | None:
    import csv

    first = old.decode("utf-8", errors="replace").splitlines()[:1]
    return next(csv.reader(first), None) if first else None


def _columns(wanted: Any, rows: list[Mapping[str, Any]], header: list[str] | None) -> dict[str, str]:
    """Header → key or dotted path of each column, in order."""
    if isinstance(wanted, Mapping):
        columns = {str(k): str(v) for k, v in wanted.items()}
    elif wanted:
        columns = {str(c): str(c) for c in wanted}
    elif header is not None:
        columns = {c: c for c in header}
        extra = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in columns]
        if extra:
            raise HandlerError(
                f"the rows have keys the file's header lacks ({', '.join(map(str, extra))}); "
                "set columns to choose what to append"
            )
    else:
        columns = {str(k): str(k) for row in rows for k in row}
    if header is not None and list(columns) != header:
        raise HandlerError(
            f"the file's header is {','.join(header)} but the columns are {','.join(columns)}: "
            "append only rows of the same columns"
        )
    return columns


def _lookup(row: Mapping[str, Any], key: str) -> Any:
    """``row[key]``, or a nested value for a dotted key (``memory.percent``); None if absent."""
    if key in row:
        return row[key]
    value: Any = row
    for part in key.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _csv(rows: list[Mapping[str, Any]], columns: dict[str, str], with_header: bool) -> str:
    import csv  # imported when used: runbook validate imports every handler
    import io

    if not columns:
        return ""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if with_header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(_lookup(row, key)) for key in columns.values()])
    return buffer.getvalue()


def _text(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list):
        return "".join(
            (item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, default=str)) + "\n"
            for item in data
        )
    return json.dumps(data, ensure_ascii=False, default=str) + "\n"
