"""Upload a file, a folder or a glob's matches to S3 or an S3-compatible store.

Keys are ``prefix`` plus each file's path relative to the folder (``/`` separators).
Unchanged objects (same size and SHA-256) are skipped by default. Credentials come
from boto3's standard chain: environment, ``profile``, instance role.
"""

from runner.schema import SIZE
from tasks._pending import not_built

name = "s3_upload"
schema = {
    "type": "object",
    "properties": {
        "src": {"type": "string", "description": "A file, a folder or a glob."},
        "bucket": {"type": "string", "minLength": 3},
        "key": {"type": "string", "description": "Object key, for a single file."},
        "prefix": {"type": "string", "default": "", "description": "Key prefix for many files."},
        "endpoint_url": {"type": "string", "description": "For MinIO, Ceph, R2, B2 and the like."},
        "region": {"type": "string"},
        "profile": {"type": "string", "description": "A profile from ~/.aws/config."},
        "extra_args": {
            "type": "object",
            "description": "ContentType, ServerSideEncryption, StorageClass, Metadata, ACL...",
        },
        "skip_unchanged": {"type": "boolean", "default": True},
        "max_concurrency": {"type": "integer", "minimum": 1, "default": 10},
        "multipart_threshold": {**SIZE, "default": "8MiB"},
    },
    "required": ["src", "bucket"],
    "not": {"required": ["key", "prefix"]},
    "additionalProperties": False,
}
result = {
    "uploaded": "list of {key, size, etag}",
    "unchanged": "number of objects already identical",
    "bytes": "bytes uploaded",
    "duration": "seconds spent uploading",
}
example = """\
- s3_upload:
    src: /var/backups/db/
    bucket: backups
    prefix: "db/{{ run.started | strftime('%Y-%m-%d') }}/"
    extra_args: {StorageClass: STANDARD_IA}
"""
run = not_built(name)
