"""Find files by pattern (``**`` included), filtered by type, size and age.

Relative patterns match under ``root`` (default: the current folder). Dot files are
left out unless ``hidden: true``, as in the shell. Paths come back sorted (by name,
mtime or size) and absolute unless ``relative: true``.
"""

from runner.schema import DURATION, SIZE, string_or_list
from tasks._pending import not_built

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
    "matches": "list of {path, size, mtime}",
}
example = """\
- id: old_logs
  glob: {pattern: "**/*.log", root: /var/log/app, older_than: 7d, min_size: 1MiB}
"""
run = not_built(name)
