"""Units a user types: durations (10s, 500ms, 2m, 1h) and ranges of them."""

from __future__ import annotations

from pageowner.errors import SpecError

__all__ = ["parse_duration", "parse_duration_range"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Read a duration such as 10s, 500ms, 2m, 1h or a plain number of seconds.

    >>> parse_duration("2m")
    120.0
    """
    stripped = text.strip().lower()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = stripped[len(number):] or "s"
    try:
        value = float(number)
    except ValueError:
        raise SpecError(f"not a duration: {text!r} (use e.g. 10s, 500ms, 2m, 1h)") from None
    if unit not in _DURATION_UNITS:
        raise SpecError(f"unknown unit {unit!r} in {text!r}; use ms, s, m or h")
    if not value >= 0 or value == float("inf"):
        raise SpecError(f"a duration must be a finite number, not negative: {text!r}")
    return value * _DURATION_UNITS[unit]


def parse_duration_range(text: str) -> tuple[int, int | None]:
    """Read `A-B` (durations; either end may be left out) as nanoseconds, B None if open.

    >>> parse_duration_range("1h-90m")
    (3600000000000, 5400000000000)
    >>> parse_duration_range("10s-")
    (10000000000, None)
    """
    start_text, dash, end_text = text.partition("-")
    if not dash or (not start_text.strip() and not end_text.strip()):
        raise SpecError(f"not a time range: {text!r} (write A-B, e.g. 1h-2h, 30s- or -10m)")
    start = round(parse_duration(start_text) * 1e9) if start_text.strip() else 0
    end = round(parse_duration(end_text) * 1e9) if end_text.strip() else None
    if end is not None and end < start:
        raise SpecError(f"empty time range {text!r}: the end is before the start")
    return start, end
