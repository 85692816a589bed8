"""Create a folder (or several), with its missing parents, as ``mkdir -p`` does.

A folder that already exists is left alone (``changed: false``), unless ``mode`` is
given and differs: then its mode is set. ``mode`` applies to the folders named in
``path`` (set exactly, whatever the umask); missing parents get the default mode, as
with ``mkdir -p``. A file where a folder is needed is an error. Under ``--dry-run`` the
step says which folders it would create or change.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from runner.errors import HandlerError
from runner.schema import string_or_list
from tasks._files import MODE, os_error, parse_mode
from tasks._select import absolute, as_list

name = "mkdir"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {**string_or_list, "description": "Folder to create (or a list); parents are created."},
        "mode": {**MODE, "description": 'Mode of the folder, as an octal string ("0750") or an int.'},
    },
    "required": ["path"],
    "additionalProperties": False,
}
result = {
    "created": "folders created, parents included (under --dry-run: that would be created)",
    "mode_set": "existing folders whose mode was changed",
    "paths": "the folders asked for, absolute",
}
example = """\
- mkdir: /srv/app/releases
- mkdir: {path: ["/srv/app/shared/logs", "/srv/app/shared/tmp"], mode: "0750"}
"""


def run(args: dict[str, Any], ctx: Any) -> dict[str, Any]:
    mode = parse_mode(args["mode"]) if args.get("mode") is not None else None
    paths = [absolute(p, ctx.cwd) for p in as_list(args["path"])]
    created: list[str] = []
    mode_set: list[str] = []
    for path in paths:
        missing = _missing_folders(path)
        if not missing:
            if mode is not None and stat.S_IMODE(os.stat(path).st_mode) != mode:
                mode_set.append(path)
                if not ctx.dry_run:
                    _chmod(path, mode)
            continue
        created += [p for p in missing if p not in created]
        if ctx.dry_run:
            continue
        for folder in missing:
            try:
                os.mkdir(folder)
            except FileExistsError:
                if not os.path.isdir(folder):
                    raise HandlerError(f"cannot create folder {folder}: a file is there") from None
            except OSError as exc:
                raise os_error(exc, "create folder", folder) from exc
        if mode is not None:
            _chmod(path, mode)
    out: dict[str, Any] = {
        "created": created,
        "mode_set": mode_set,
        "paths": paths,
        "changed": bool(created or mode_set),
    }
    if ctx.dry_run:
        out["dry_run"] = (
            f"would create {len(created)} folder{'s' if len(created) != 1 else ''}"
            + (f" and set the mode of {len(mode_set)}" if mode_set else "")
            if created or mode_set
            else "all folders exist"
        )
    return out


def _missing_folders(path: str) -> list[str]:
    """The folders to create for ``path``, outermost first; an error if a file is in the way."""
    missing: list[str] = []
    current = path
    while True:
        try:
            info = os.stat(current)
        except FileNotFoundError:
            missing.append(current)
            parent = os.path.dirname(current)
            if parent == current:
                break
            current = parent
            continue
        except NotADirectoryError:
            missing.append(current)
            current = os.path.dirname(current)
            continue
        except OSError as exc:
            raise os_error(exc, "look at", current) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise HandlerError(f"cannot create folder {path}: {current} is a file")
        break
    return list(reversed(missing))


def _chmod(path: str, mode: int) -> None:
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise os_error(exc, "set the mode of", path) from exc
