"""Durations and time ranges as users type them: exact to the nanosecond, clear when wrong."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pageowner.errors import SpecError
from pageowner.units import parse_duration, parse_duration_ns, parse_duration_range


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_a_ts_typed_as_printed_is_exact(ns: int) -> None:
    # A ts of a machine up for years, written in seconds with nine decimals (or in ns),
    # lands on the very nanosecond: a float is off by one past ~50 days of uptime.
    assert parse_duration_ns(f"{ns // 10**9}.{ns % 10**9:09d}s") == ns
    assert parse_duration_ns(f"{ns}ns") == ns
    assert parse_duration_range(f"{ns}ns-{ns}ns") == (ns, ns)


@pytest.mark.parametrize(("text", "ns"), [
    ("10", 10 * 10**9), ("500ms", 500 * 10**6), ("2m", 120 * 10**9), ("2min", 120 * 10**9),
    ("1.5h", 5400 * 10**9), ("250us", 250_000), ("17ns", 17), (" 3 s ", 3 * 10**9),
    ("2e-3s", 2 * 10**6), ("1E2ms", 10**8), (".5s", 5 * 10**8),
])  # fmt: skip
def test_units(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == ns / 1e9


@pytest.mark.parametrize(("text", "message"), [
    ("soon", "not a duration: 'soon'"),
    ("-5s", "not a duration: '-5s'"),
    ("1_000s", "not a duration: '1_000s'"),
    ("inf", "not a duration: 'inf'"),
    ("nan", "not a duration: 'nan'"),
    ("0x10", "not a duration: '0x10'"),
    ("3d", "unknown unit 'd' in '3d'"),
    ("1e300s", "a duration of more than 584 years"),
    ("1e999999999h", "a duration of more than 584 years"),
    ("18446744073.709551616s", "a duration of more than 584 years"),
    ("9" * 5000 + "s", "'" + "9" * 37 + "...'"),
])  # fmt: skip
def test_bad_durations_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_duration_ns(text)
    assert message in str(caught.value)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize(("text", "expected"), [
    ("1h-90m", (3600 * 10**9, 5400 * 10**9)),
    ("10s-", (10 * 10**9, None)),
    ("-10m", (0, 600 * 10**9)),
    (" 5s - 10s ", (5 * 10**9, 10 * 10**9)),
    ("2e-3s-1s", (2 * 10**6, 10**9)),  # the exponent's minus is not the range's
    ("4.35s-4.35s", (4_350_000_000, 4_350_000_000)),
])  # fmt: skip
def test_ranges(text: str, expected: tuple[int, int | None]) -> None:
    assert parse_duration_range(text) == expected


@pytest.mark.parametrize("text", ["10s", "-", "", "2m-1m", "1h-soon", "1e300s-", "a-b-c"])
def test_bad_ranges_are_refused(text: str) -> None:
    with pytest.raises(SpecError):
        parse_duration_range(text)
