"""Keeping an HTTP request's secrets out of results, dry-run descriptions and errors.

Redaction by position: the values of secret-looking headers (``Authorization``,
``Cookie``, anything naming a token, key, secret, password, session or signature), the
password of a URL's user info and the values of secret-looking query parameters print
as ``***``. Redaction by value: every secret a request carries (those values, the
``auth`` password or token, and the Basic credential as sent) is replaced by ``***`` in
free text such as an error's body excerpt, wherever a server echoed it.

Plain functions on strings and mappings; no HTTP library is imported here.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit, urlunsplit

MASK = "***"

_SECRET_WORDS = re.compile(
    r"auth|token|secret|passw|pwd|key|session|cookie|signature|credential|jwt|csrf|xsrf",
    re.IGNORECASE,
)
# Named like secrets but only describe how to authenticate; useful when reading a 401.
_NOT_SECRET = frozenset({"www-authenticate", "proxy-authenticate"})
_SECRET_PARAM_NAMES = frozenset({"sig", "pass"})
# Values shorter than this are not searched for in free text: a secret "a" would mask every "a".
_SCRUB_MIN = 3


def secret_header(name: str) -> bool:
    lowered = name.lower()
    return lowered not in _NOT_SECRET and bool(_SECRET_WORDS.search(lowered))


def secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAM_NAMES or bool(_SECRET_WORDS.search(lowered))


def redact_headers(headers: Mapping[str, Any]) -> dict[str, Any]:
    return {name: MASK if secret_header(name) else value for name, value in headers.items()}


def redact_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {name: MASK if secret_param(str(name)) else value for name, value in params.items()}


def redact_url(url: str) -> str:
    """``url`` with its user-info password and secret-looking query values as ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _scrub_userinfo(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else netloc
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    if equals and value and secret_param(unquote_plus(name)):
        return f"{name}={MASK}"
    return pair


def _scrub_userinfo(text: str) -> str:
    return re.sub(r"(//[^/@:\s]*:)[^/@\s]*@", rf"\g<1>{MASK}@", text)


def url_secrets(url: str) -> list[str]:
    """The secret values a URL carries: its password and secret-looking query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    if parts.password:
        found += [parts.password, unquote_plus(parts.password)]
    for pair in parts.query.split("&") if parts.query else ():
        name, equals, value = pair.partition("=")
        if equals and value and secret_param(unquote_plus(name)):
            found += [value, unquote_plus(value)]
    return found


def basic_credential(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


class Scrubber:
    """Replaces every known secret value in text by ``***``, longest first."""

    def __init__(self, secrets: Iterable[Any]):
        values = {str(s) for s in secrets if s is not None and len(str(s)) >= _SCRUB_MIN}
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def value(self, value: Any) -> Any:
        """Strings anywhere inside a JSON-able value, scrubbed."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value
