"""Units a user types: durations (10s, 500ms, 2m, 1h), ranges of them, and lists of ids."""

from __future__ import annotations

import re
from decimal import Decimal

from pageowner.errors import SpecError

__all__ = ["parse_duration", "parse_duration_ns", "parse_duration_range", "parse_int_list"]

# Exact: a ts in a dump is an integer of nanoseconds, and a bound typed as printed
# (4319044.756014165s) must land on it, which a float does not after ~50 days.
_NS_PER_UNIT = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
                "min": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_DURATION_RE = re.compile(rf"\s*({_NUMBER})\s*([a-zA-Z]*)\s*")
_RANGE_RE = re.compile(rf"\s*((?:{_NUMBER})\s*[a-zA-Z]*)?\s*-\s*((?:{_NUMBER})\s*[a-zA-Z]*)?\s*")
# page_owner's ts is a u64 of nanoseconds; nothing longer can be meant.
_MAX_NS = 2**64 - 1
_HINT = "use e.g. 10s, 500ms, 2m, 1h"


def parse_duration_ns(text: str) -> int:
    """Read a duration such as 10s, 500ms, 2m, 1.5h, 250us or 17ns as whole nanoseconds.

    >>> parse_duration_ns("4319044.756014165s")
    4319044756014165
    """
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise SpecError(f"not a duration: {text!r} ({_HINT})")
    unit = match[2].lower() or "s"
    if unit not in _NS_PER_UNIT:
        raise SpecError(f"unknown unit {match[2]!r} in {text!r}; use ns, us, ms, s, m or h")
    try:
        nanoseconds = Decimal(match[1]) * _NS_PER_UNIT[unit]
        too_long = nanoseconds > _MAX_NS
    except ArithmeticError:  # an exponent past Decimal's range (1e999999999)
        too_long = True
    if too_long:
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise SpecError(f"a duration of more than 584 years (the most a ts can hold): {shown!r}")
    return int(nanoseconds.to_integral_value())


def parse_duration(text: str) -> float:
    """Read a duration such as 10s, 500ms, 2m, 1h or a plain number of seconds.

    >>> parse_duration("2m")
    120.0
    """
    return parse_duration_ns(text) / 1e9


def parse_duration_range(text: str) -> tuple[int, int | None]:
    """Read `A-B` (durations; either end may be left out) as nanoseconds, B None if open.

    >>> parse_duration_range("1h-90m")
    (3600000000000, 5400000000000)
    >>> parse_duration_range("2e-3s-")
    (2000000, None)
    """
    match = _RANGE_RE.fullmatch(text)
    if match is None or (match[1] is None and match[2] is None):
        raise SpecError(f"not a time range: {text!r} (write A-B, e.g. 1h-2h, 30s- or -10m)")
    start = parse_duration_ns(match[1]) if match[1] is not None else 0
    end = parse_duration_ns(match[2]) if match[2] is not None else None
    if end is not None and end < start:
        raise SpecError(f"empty time range {text!r}: the end is before the start")
    return start, end


_INT_WORD = re.compile(r"\s*[+-]?[0-9]+")
_INT_MIN = -(1 << 31)
_INT_MAX = (1 << 31) - 1


def parse_int_list(text: str) -> tuple[int, ...]:
    """Parse a comma-separated pid/tgid list the way strtol reads each element.

    page_owner_sort's --pid and --tgid take such lists; the analysis commands take the
    same form for pids, orders and nodes.

    >>> parse_int_list("1,412,977")
    (1, 412, 977)
    """
    values = []
    for word in text.split(","):
        if not _INT_WORD.fullmatch(word):
            raise SpecError(f"not a number: {word!r}")
        sign, digits = (-1, word.strip()[1:]) if word.strip()[0] == "-" else (1, word.strip())
        significant = digits.lstrip("+").lstrip("0")
        # More than 10 digits is past an int whatever they are; int() refuses 4300+.
        value = sign * int(significant or "0") if len(significant) <= 10 else _INT_MAX + 1
        if not _INT_MIN <= value <= _INT_MAX:
            raise SpecError(f"out of range for a pid: {word!r}")
        values.append(value)
    return tuple(values)
