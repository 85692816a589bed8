"""Durations and sizes as users write them: ``250ms``, ``5s``, ``1.5m``; ``10KB``, ``5MiB``.

A duration is a number of seconds or a decimal number followed by one unit
(``ms``, ``s``, ``m``, ``h``, ``d``). A size is a number of bytes or a number followed
by a unit: ``KB``/``MB``/``GB``/``TB`` are powers of 1000, ``KiB``/``MiB``/``GiB``/``TiB``
and the bare ``K``/``M``/``G``/``T`` powers of 1024 (SPEC §8). ``B`` means bytes.
Whitespace between number and unit is allowed; units are case-sensitive only where
it matters (``m`` minutes vs ``M`` mebibytes never meet: they are different kinds).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
SIZE_UNITS = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
    "TIB": 1024**4,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
DURATION_PATTERN = rf"^\s*{_NUMBER}\s*(?:ms|s|m|h|d)?\s*$"
SIZE_PATTERN = rf"^\s*{_NUMBER}\s*(?:[KMGTkmgt](?:i?[Bb])?|[Bb])?\s*$"
_DURATION_RE = re.compile(rf"^\s*({_NUMBER})\s*(ms|s|m|h|d)?\s*$")
_SIZE_RE = re.compile(rf"^\s*({_NUMBER})\s*([KMGTkmgt](?:i?[Bb])?|[Bb])?\s*$")

DURATION_HINT = "write seconds as a number, or a number with a unit: 250ms, 5s, 1.5m, 2h, 7d"
SIZE_HINT = "write bytes as a number, or a number with a unit: 512, 10KB (1000s), 5MiB or 5M (1024s)"


class UnitError(ValueError):
    """A duration or size that cannot be read; the message says what was expected."""


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise UnitError if it is not a duration."""
    if isinstance(value, bool):
        raise UnitError(f"malformed duration {value!r}: {DURATION_HINT}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise UnitError(f"malformed duration {value!r}: {DURATION_HINT}")
        if value < 0:
            raise UnitError(f"negative duration {value!r}: durations are 0 or more")
        return float(value)
    if isinstance(value, str):
        match = _DURATION_RE.match(value)
        if match:
            number, unit = match.groups()
            return float(number) * DURATION_UNITS[unit or "s"]
    raise UnitError(f"malformed duration {value!r}: {DURATION_HINT}")


def parse_size(value: object) -> int:
    """Return ``value`` in bytes (rounded down to a whole byte); raise UnitError if not a size."""
    if isinstance(value, bool):
        raise UnitError(f"malformed size {value!r}: {SIZE_HINT}")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise UnitError(f"malformed size {value!r}: {SIZE_HINT}")
        if value < 0:
            raise UnitError(f"negative size {value!r}: sizes are 0 or more")
        return int(value)
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match:
            number, unit = match.groups()
            # Decimal, not float: "4.1MB" is exactly 4,100,000 bytes.
            return int(Decimal(number) * SIZE_UNITS[(unit or "B").upper()])
    raise UnitError(f"malformed size {value!r}: {SIZE_HINT}")


def format_duration(seconds: float) -> str:
    """A short human form: ``850ms``, ``4.2s``, ``3m05s``, ``2h10m``."""
    if round(seconds * 1000) < 1000:
        return f"{seconds * 1000:.0f}ms"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_size(size: float) -> str:
    """A human size in powers of 1024, as ``ls -h`` prints: ``512B``, ``1.5KiB``, ``3.0GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        shown = round(value) if unit == "B" else round(value, 1)
        if abs(shown) < 1024 or unit == "TiB":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")
