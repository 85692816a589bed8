"""Copy a file, a folder tree or a glob's matches, or write inline content, atomically.

``dest`` is a file, or a folder when it ends with ``/`` or already exists as one.
Each file is written to a temporary file beside its destination and renamed into
place, so an interrupted run never leaves a half-written file. By default
(``overwrite: changed``) a destination with identical content is left alone and the
step reports ``changed: false``.
"""

from runner.schema import string_or_list
from tasks._pending import not_built

name = "copy"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder, or a glob pattern."},
        "content": {"type": "string", "description": "Text to write instead of copying a src."},
        "dest": {"type": "string", "description": "Destination file, or folder (trailing /)."},
        "mode": {
            "type": ["string", "integer"],
            "pattern": "^0?[0-7]{3,4}$",
            "title": 'an octal mode such as "0644"',
            "description": 'File mode as an octal string ("0644") or an int.',
        },
        "preserve": {
            "anyOf": [
                {"type": "boolean"},
                {"type": "array", "items": {"enum": ["mode", "times"]}, "uniqueItems": True},
            ],
            "default": False,
            "description": "Keep the source's mode and times (true), or a list of them.",
        },
        "overwrite": {
            "enum": ["changed", "always", "never"],
            "default": "changed",
            "description": "changed: skip identical files; always: copy anyway; never: keep existing.",
        },
        "exclude": {**string_or_list, "description": "Glob patterns of files to leave out."},
        "backup": {
            "type": "boolean",
            "default": False,
            "description": "Keep a replaced file as dest.~N~ (numbered backups).",
        },
        "follow_symlinks": {
            "type": "boolean",
            "default": False,
            "description": "Copy what links point to instead of the links.",
        },
    },
    "required": ["dest"],
    "oneOf": [{"required": ["src"]}, {"required": ["content"]}],
    "additionalProperties": False,
}
result = {
    "copied": "number of files written",
    "skipped": "number of files left alone because they were identical",
    "bytes": "bytes written",
    "files": "list of destination paths written",
}
example = """\
- copy: {src: /etc/app/, dest: /backup/etc-app/, preserve: true, exclude: ["*.tmp"]}
- copy: {content: "port = {{ port }}\\n", dest: /etc/app/port.conf, mode: "0644", backup: true}
"""
run = not_built(name)
