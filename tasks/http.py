"""Send an HTTP request and check the answer: status, body, or a download.

Connection errors, timeouts and 5xx answers fail the attempt (so ``retry`` retries
them); a status outside ``expect_status`` (default any 2xx) fails with the start of
the body. ``download_to`` streams the body to a temporary file beside the
destination and renames it into place.
"""

from runner.schema import DURATION
from tasks._pending import not_built

_STATUS = {
    "anyOf": [
        {"type": "integer", "minimum": 100, "maximum": 599},
        {"type": "string", "pattern": "^[1-5](xx|XX|[0-9]{2})$", "title": "a status class such as 2xx"},
    ]
}

name = "http"
shorthand = "url"
schema = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "The URL (http or https)."},
        "method": {
            "enum": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            "default": "GET",
        },
        "headers": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "params": {"type": "object", "description": "Query parameters."},
        "json": {"description": "A body sent as JSON."},
        "data": {"type": ["string", "object"], "description": "A form or raw body."},
        "auth": {
            "type": "object",
            "properties": {
                "basic": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
                "bearer": {"type": "string"},
            },
            "minProperties": 1,
            "maxProperties": 1,
            "additionalProperties": False,
            "description": "{basic: [user, password]} or {bearer: token}.",
        },
        "timeout": {
            "anyOf": [
                DURATION,
                {
                    "type": "object",
                    "properties": {"connect": DURATION, "read": DURATION},
                    "additionalProperties": False,
                },
            ],
            "default": "30s",
            "description": "One duration, or {connect, read}.",
        },
        "verify": {
            "type": ["boolean", "string"],
            "default": True,
            "description": "Check TLS certificates (true), skip (false), or a CA bundle path.",
        },
        "expect_status": {
            "anyOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1}],
            "default": "2xx",
            "description": "Accepted status: 200, [200, 204], or a class such as 2xx.",
        },
        "body_contains": {"type": "string", "description": "Text or regex the body must contain."},
        "download_to": {"type": "string", "description": "Save the body to this file."},
        "sha256": {"type": "string", "description": "With download_to: expected SHA-256 (hex)."},
        "follow_redirects": {"type": "boolean", "default": True},
    },
    "required": ["url"],
    "not": {"required": ["json", "data"]},
    "additionalProperties": False,
}
result = {
    "status_code": "HTTP status code",
    "headers": "response headers",
    "json": "the parsed body, when it is JSON",
    "text": "the body as text (capped; says when truncated)",
    "elapsed": "seconds until the response arrived",
    "url": "the final URL, after redirects",
}
example = """\
- id: health
  http: {url: "https://api.internal/health", expect_status: 200, body_contains: '"ok"'}
  retry: {attempts: 5, delay: 2s, backoff: 2}
- http:
    url: "{{ webhook }}"
    method: POST
    json: {text: "deploy of {{ version }} done"}
"""
run = not_built(name)
