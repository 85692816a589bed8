"""Render a Jinja2 template file to a destination file, atomically.

``src`` is rendered with the run's context (vars, facts, env, earlier steps' results,
``item``...) plus ``vars``, in the same sandbox and with the same filters as the
playbook's own templates; an undefined name fails the step, naming the template's file
and line. The output is written to a temporary file beside ``dest`` and renamed into
place. When ``dest`` already holds exactly that text it is left alone (``changed:
false``). A new file gets ``mode`` or the default mode; a replaced one keeps its mode
unless ``mode`` is given. ``backup: true`` keeps a replaced file as ``dest.~N~``. Missing
parent folders of ``dest`` are created. Under ``--dry-run`` the template is rendered
and compared, and the step shows the difference it would make, writing nothing (when
it cannot be rendered yet, because it reads results of steps a dry run did not run,
the verdict is unknown).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from runner.errors import HandlerError, TemplateError
from tasks._files import MODE, os_error, parse_mode, write_bytes_atomically
from tasks._select import absolute

name = "template"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "The Jinja2 template file."},
        "dest": {"type": "string", "description": "The file to write."},
        "vars": {"type": "object", "description": "Variables for this template, over the run's."},
        "mode": MODE,
        "backup": {
            "type": "boolean",
            "default": False,
            "description": "Keep a replaced file as dest.~N~ (numbered backups).",
        },
    },
    "required": ["src", "dest"],
    "additionalProperties": False,
}
result = {
    "dest": "the file written, absolute",
    "bytes": "size of the rendered text",
    "backup": "the numbered backup made of the replaced file, if any",
    "diff": "under --dry-run: a unified diff of the change (cut after 200 lines)",
}
example = """\
- template:
    src: templates/nginx.conf.j2
    dest: /etc/nginx/conf.d/app.conf
    vars: {port: 8080, server_name: "{{ facts.hostname }}"}
    mode: "0644"
    backup: true
"""

DIFF_LINES = 200


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    src = absolute(args["src"], ctx.cwd)
    dest = absolute(args["dest"], ctx.cwd)
    mode = parse_mode(args["mode"]) if args.get("mode") is not None else None
    try:
        with open(src, encoding="utf-8") as handle:
            source = handle.read()
    except UnicodeDecodeError:
        raise HandlerError(f"template {src} is not UTF-8 text") from None
    except OSError as exc:
        raise os_error(exc, "read template", src) from exc
    try:
        text = ctx.render(source, args.get("vars") or {}, args["src"])
    except TemplateError as exc:
        if ctx.dry_run:  # earlier steps did not really run: their results may be missing
            return {"dest": dest, "dry_run": f"would render {args['src']} to {dest}; no preview: {exc}"}
        raise HandlerError(f"template {exc}") from exc
    data = text.encode("utf-8")
    old = _read(dest)
    content_changed = old != data
    mode_changed = mode is not None and old is not None and stat.S_IMODE(os.stat(dest).st_mode) != mode
    out: dict[str, Any] = {"dest": dest, "bytes": len(data), "changed": content_changed or mode_changed}
    if ctx.dry_run:
        if content_changed:
            out["diff"] = _diff(old, text, dest)
        what = "create" if old is None else "change" if content_changed else "set the mode of"
        out["dry_run"] = f"would {what} {dest}" if out["changed"] else f"{dest} is up to date"
        return out
    if content_changed:
        try:
            os.makedirs(os.path.dirname(dest), exist_ok=True)
        except OSError as exc:
            raise os_error(exc, "create folder", os.path.dirname(dest)) from exc
        out["backup"] = write_bytes_atomically(dest, data, mode, bool(args.get("backup")))
    elif mode is not None and mode_changed:
        try:
            os.chmod(dest, mode)
        except OSError as exc:
            raise os_error(exc, "set the mode of", dest) from exc
    return out


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise HandlerError(f"dest {path} is a folder: give the path of the file to write") from None
    except OSError as exc:
        raise os_error(exc, "read", path) from exc


def _diff(old: bytes | None, new: str, dest: str) -> str:
    import difflib  # only dry runs show a diff: not worth an import at start-up

    before = old.decode("utf-8", errors="replace").splitlines(keepends=True) if old else []
    lines = list(difflib.unified_diff(before, new.splitlines(keepends=True), dest, dest))
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"[... {len(lines) - DIFF_LINES} more diff lines ...]\n"]
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
