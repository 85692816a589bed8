"""Compute, check or write file digests, compatible with sha256sum and friends.

``path`` is a file, a folder (every file in it) or a glob. ``expected`` fails the step
on a mismatch; ``verify`` checks a sums file as ``sha256sum -c`` would (names relative
to that file's folder); ``write`` writes one atomically.
"""

from tasks._pending import not_built

name = "hash"
shorthand = "path"
schema = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "A file, a folder or a glob."},
        "algorithm": {
            "enum": ["md5", "sha1", "sha256", "sha512", "blake2b", "sha3_256"],
            "default": "sha256",
        },
        "expected": {"type": "string", "description": "Fail unless the digest is this (hex)."},
        "verify": {"type": "string", "description": "A sums file to check (sha256sum -c format)."},
        "write": {"type": "string", "description": "Write the digests to this sums file."},
    },
    "anyOf": [{"required": ["path"]}, {"required": ["verify"]}],
    "additionalProperties": False,
}
result = {
    "digest": "hex digest (of the single file, or of the sorted list of files)",
    "algorithm": "the algorithm used",
    "size": "bytes hashed",
    "files": "mapping of path to digest",
}
example = """\
- hash: {path: dist/app.tar.gz, expected: "{{ release_sha256 }}"}
- hash: {path: "dist/*.tar.gz", write: dist/SHA256SUMS}
- hash: {verify: /srv/mirror/SHA256SUMS}
"""
run = not_built(name)
