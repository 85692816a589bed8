"""Durations and sizes as users write them (SPEC §2 "Durations"/"Sizes", §8 "Sizes", "Small things").

Expected values are computed here from the definitions (1 m = 60 s, 1 KB = 1000 B,
1 KiB = 1 K = 1024 B ...), never copied from runner/units.py.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.units import UnitError, format_duration, format_size, parse_duration, parse_size

SECOND = 1
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

DURATION_FACTORS = {"": SECOND, "ms": SECOND / 1000, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY}

SIZE_FACTORS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
    "K": 1024,
    "M": 1024**2,
    "G": 1024**3,
    "T": 1024**4,
}


PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None)


def plain(number: float) -> str:
    """``number`` in positional notation (no exponent), as exact as its repr."""
    return format(Decimal(repr(number)), "f")


# --- parse_duration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 250 / 1000),
        ("5s", 5),
        ("10m", 10 * 60),
        ("2h", 2 * 60 * 60),
        ("7d", 7 * 24 * 60 * 60),
        ("0.5s", 0.5),
        ("1.5m", 1.5 * 60),
        ("0.25h", 0.25 * 3600),
        ("1.5d", 1.5 * 86400),
        ("1ms", 0.001),
        ("0s", 0),
        ("0", 0),
        ("5", 5),
        ("2.5", 2.5),
        (".5s", 0.5),
        ("5 s", 5),
        ("10 m", 600),
        ("250 ms", 0.25),
        ("  5s  ", 5),
        ("1000ms", 1),
    ],
)
def test_parse_duration_strings(text: str, seconds: float) -> None:
    result = parse_duration(text)
    assert isinstance(result, float)
    assert result == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "seconds"), [(0, 0), (5, 5), (90, 90), (0.5, 0.5), (1.25, 1.25), (3600, 3600)]
)
def test_parse_duration_bare_numbers(value: float, seconds: float) -> None:
    result = parse_duration(value)
    assert isinstance(result, float)
    assert result == seconds


def test_minutes_are_lowercase_m_only() -> None:
    # `m` is minutes; `M` is mebibytes and is no duration unit.
    assert parse_duration("3m") == 3 * 60
    with pytest.raises(UnitError):
        parse_duration("3M")


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        "-5s",
        "-1",
        True,
        False,
        None,
        "",
        "   ",
        "5x",
        "1.2.3s",
        "s",
        "ms",
        "5 5s",
        "5s5",
        "5sec",
        "five seconds",
        "5s 3m",
        "1h30m",
        "0x10s",
        [5],
        ["5s"],
        {"s": 5},
        (5,),
        b"5s",
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_duration(value)
    assert "duration" in str(info.value)


def test_unit_error_is_a_value_error() -> None:
    assert issubclass(UnitError, ValueError)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_parse_duration_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(UnitError):
        parse_duration(value)


# YAML loads an unquoted 1e3 as a string; f"{1e-05}" is "1e-05".
@pytest.mark.parametrize(
    ("text", "seconds"), [("1e3", 1000), ("1e-05s", 1e-05), ("2.5e2ms", 0.25), ("1E+2m", 100 * 60)]
)
def test_parse_duration_scientific_notation(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@PROPERTY_SETTINGS
@given(
    x=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(sorted(DURATION_FACTORS)),
)
def test_property_duration_of_formatted_float(x: float, unit: str) -> None:
    # f"{x}" uses an exponent below 1e-4 and from 1e16 on: "1e-05s" is a duration too.
    assert parse_duration(f"{x}{unit}") == pytest.approx(x * DURATION_FACTORS[unit])


@PROPERTY_SETTINGS
@given(
    x=st.floats(min_value=0, allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(sorted(DURATION_FACTORS)),
    space=st.sampled_from(["", " "]),
)
def test_property_duration_of_any_non_negative_float(x: float, unit: str, space: str) -> None:
    expected = x * DURATION_FACTORS[unit]
    assert parse_duration(f"{plain(x)}{space}{unit}") == pytest.approx(expected)
    assert parse_duration(x) == x


@PROPERTY_SETTINGS
@given(x=st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=True))
def test_property_negative_durations_are_rejected(x: float) -> None:
    with pytest.raises(UnitError):
        parse_duration(x)
    if math.isfinite(x):
        with pytest.raises(UnitError):
            parse_duration(f"{plain(x)}s")


# --- parse_size ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("0", 0),
        ("512", 512),
        ("512B", 512),
        ("512 B", 512),
        ("10KB", 10 * 1000),
        ("10MB", 10 * 1000**2),
        ("10GB", 10 * 1000**3),
        ("10TB", 10 * 1000**4),
        ("5KiB", 5 * 1024),
        ("5MiB", 5 * 1024**2),
        ("5GiB", 5 * 1024**3),
        ("5TiB", 5 * 1024**4),
        ("2K", 2 * 1024),
        ("2M", 2 * 1024**2),
        ("2G", 2 * 1024**3),
        ("2T", 2 * 1024**4),
        ("10kb", 10 * 1000),
        ("10mb", 10 * 1000**2),
        ("10gb", 10 * 1000**3),
        ("10tb", 10 * 1000**4),
        ("10k", 10 * 1024),
        ("10m", 10 * 1024**2),
        ("10kib", 10 * 1024),
        ("10b", 10),
        ("10 KB", 10 * 1000),
        ("5 MiB", 5 * 1024**2),
        ("  1G  ", 1024**3),
        ("1.5KiB", 1536),
        ("0.5MB", 500_000),
        ("1.5G", 3 * 1024**3 // 2),
        (".5K", 512),
    ],
)
def test_parse_size_strings(text: str, size: int) -> None:
    result = parse_size(text)
    assert type(result) is int
    assert result == size


def test_decimal_powers_differ_from_binary_powers() -> None:
    assert parse_size("1KB") == 1000
    assert parse_size("1KiB") == parse_size("1K") == 1024
    assert parse_size("1MB") == 1000 * 1000
    assert parse_size("1MiB") == parse_size("1M") == 1024 * 1024
    assert parse_size("1TB") < parse_size("1TiB") == parse_size("1T")


@pytest.mark.parametrize(("value", "size"), [(0, 0), (1, 1), (4096, 4096), (10**15, 10**15), (2.9, 2)])
def test_parse_size_bare_numbers(value: float, size: int) -> None:
    result = parse_size(value)
    assert type(result) is int
    assert result == size


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        "-5KB",
        "-1",
        True,
        False,
        None,
        "",
        " ",
        "5x",
        "5XB",
        "1.2.3KB",
        "KB",
        "B",
        "5 KB B",
        "5KBB",
        "5iB",
        "5Kb5",
        "ten MB",
        "5PB",
        [5],
        ["5KB"],
        {"KB": 5},
        (5,),
    ],
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(UnitError) as info:
        parse_size(value)
    assert "size" in str(info.value)


# Exact, not through float: 1.001 * 1000 and 4.1 * 1000**2 in floats fall just below the byte count.
@pytest.mark.parametrize(
    ("number", "unit"),
    [
        ("1.001", "KB"),
        ("4.1", "MB"),
        ("2.01", "KB"),
        ("8.2", "MB"),
        ("9007199254740993", ""),
        ("9007199254740993", "B"),
    ],
)
def test_parse_size_is_exact(number: str, unit: str) -> None:
    assert parse_size(number + unit) == math.floor(Fraction(number) * SIZE_FACTORS[unit])


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_parse_size_rejects_non_finite_numbers(value: float) -> None:
    with pytest.raises(UnitError):
        parse_size(value)


@PROPERTY_SETTINGS
@given(
    n=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(sorted(SIZE_FACTORS)),
    space=st.sampled_from(["", " "]),
    lower=st.booleans(),
)
def test_property_integer_sizes_are_exact(n: int, unit: str, space: str, lower: bool) -> None:
    text = f"{n}{space}{unit.lower() if lower else unit}"
    assert parse_size(text) == n * SIZE_FACTORS[unit]


@PROPERTY_SETTINGS
@given(n=st.integers(min_value=0, max_value=10**18))
def test_property_bare_integers_are_bytes(n: int) -> None:
    assert parse_size(n) == n
    assert parse_size(str(n)) == n


# --- format_duration / format_size ---------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0ms"),
        (0.85, "850ms"),
        (0.001, "1ms"),
        (1, "1.0s"),
        (4.2, "4.2s"),
        (59.9, "59.9s"),
        (60, "1m00s"),
        (3 * 60 + 5, "3m05s"),
        (59 * 60 + 59, "59m59s"),
        (3600, "1h00m"),
        (2 * 3600 + 10 * 60, "2h10m"),
        (2 * 3600 + 10 * 60 + 59, "2h10m"),
        (30 * 3600, "30h00m"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(("seconds", "text"), [(0.9996, "1.0s"), (59.96, "1m00s")])
def test_format_duration_rounds_into_the_next_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@PROPERTY_SETTINGS
@given(st.floats(min_value=0, max_value=59.9))
def test_property_format_duration_under_a_minute_parses_back(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=0.051)


@PROPERTY_SETTINGS
@given(st.floats(min_value=60, max_value=10**7))
def test_property_format_duration_is_within_its_last_unit(seconds: float) -> None:
    text = format_duration(seconds)
    match = re.fullmatch(r"(?:(\d+)h)?(\d+)m(?:(\d\d)s)?", text)
    assert match, text
    hours, minutes, secs = match.groups()
    assert int(minutes) < 60 and int(secs or 0) < 60
    shown = int(hours or 0) * HOUR + int(minutes) * MINUTE + int(secs or 0)
    last_unit = MINUTE if hours else SECOND
    assert abs(shown - seconds) < last_unit


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (512, "512B"),
        (1023, "1023B"),
        (1024, "1.0KiB"),
        (1536, "1.5KiB"),
        (5 * 1024**2, "5.0MiB"),
        (3 * 1024**3, "3.0GiB"),
        (2 * 1024**4, "2.0TiB"),
        (2048 * 1024**4, "2048.0TiB"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


# As ls -h: 1048575 B is 1.0M, not 1024.0K.
@pytest.mark.parametrize(("size", "text"), [(1024**2 - 1, "1.0MiB"), (1023.7, "1.0KiB")])
def test_format_size_rounds_into_the_next_unit(size: float, text: str) -> None:
    assert format_size(size) == text


@PROPERTY_SETTINGS
@given(st.integers(min_value=1024, max_value=1024**5))
def test_property_format_size_parses_back_within_rounding(size: int) -> None:
    text = format_size(size)
    number, unit = float(text[:-3]), text[-3:]
    assert number * SIZE_FACTORS[unit] == pytest.approx(size, rel=0.05)
