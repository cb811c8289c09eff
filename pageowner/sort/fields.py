"""The fields of a page_owner block, found with the regular expressions page_owner_sort uses.

Each reads the first match in a block's raw bytes, as the C tool's POSIX ERE (REG_NEWLINE)
does, and converts the digits as its strtol calls do; ../shared/reference/kernel.md
section C. A missing or overflowing field reads as the tool's error value.
"""

from __future__ import annotations

import re

__all__ = [
    "COMM_RE",
    "DIGITS_RE",
    "FREE_TS_RE",
    "HEADER",
    "ORDER_RE",
    "PID_RE",
    "TGID_RE",
    "TS_RE",
    "TS_RE_LEGACY",
    "U64_MAX",
    "comm_of",
    "pages_of",
    "pid_value",
    "read_decimal",
    "ts_value",
]

# Field regexes of page_owner_sort (POSIX ERE, REG_NEWLINE): the first match in the block.
ORDER_RE = re.compile(rb"order\s*([0-9]*),")
PID_RE = re.compile(rb"pid\s*([0-9]*),")
TGID_RE = re.compile(rb"tgid\s*([0-9]*) ")
# REG_NEWLINE keeps `.` from crossing a line; Python's `.` never matches "\n" either.
COMM_RE = re.compile(rb"tgid\s*[0-9]*\s*\((.*)\),\s*ts")
TS_RE = re.compile(rb"ts\s*([0-9]*)\s*ns")
# tools/vm/page_owner_sort.c of 5.18-6.6 wanted the comma after "ns".
TS_RE_LEGACY = re.compile(rb"ts\s*([0-9]*)\s*ns,")
FREE_TS_RE = re.compile(rb"free_ts\s*([0-9]*)\s*ns")

DIGITS_RE = re.compile(rb"[0-9]*")
HEADER = b"Page allocated via order "
U64_MAX = (1 << 64) - 1


def read_decimal(digits: bytes) -> int:
    """Convert decimal digits; a number past 64 bits reads as 2^64 (all callers cap there).

    Python refuses to convert more than 4300 digits, and the caps make the exact value
    of a longer number irrelevant.

    >>> read_decimal(b"0042"), read_decimal(b"9" * 5000) == 1 << 64
    (42, True)
    """
    significant = digits.lstrip(b"0")
    if len(significant) > 20:
        return 1 << 64
    return int(significant or b"0")


def _first_int(pattern: re.Pattern[bytes], buf: bytes, missing: int) -> int:
    """Return the first capture as strtol would, or `missing` when it fails."""
    match = pattern.search(buf)
    if match is None or not match.group(1):
        return missing
    return read_decimal(match.group(1))


def pid_value(pattern: re.Pattern[bytes], buf: bytes) -> int:
    """Return a pid or tgid field, -1 when missing (the C tool's error value)."""
    value = _first_int(pattern, buf, -1)
    # strtol into a pid_t: the C tool keeps the low 32 bits; we keep the value but treat
    # anything beyond a long as an error, like errno == ERANGE there.
    return value if value <= (1 << 63) - 1 else -1


def ts_value(pattern: re.Pattern[bytes], buf: bytes) -> int:
    """Return a timestamp field; a missing or overflowing one reads as (u64)-1."""
    value = _first_int(pattern, buf, U64_MAX)
    return value if value <= U64_MAX else U64_MAX


def pages_of(buf: bytes) -> int:
    """Return 2^order from the first `order N,`, or 0 when absent or over 64."""
    order = _first_int(ORDER_RE, buf, -1)
    if order < 0 or order > 64:
        return 0
    return 1 << order


def comm_of(buf: bytes) -> bytes:
    """Return the command name between `tgid N (` and `), ts`, or b"" when absent."""
    match = COMM_RE.search(buf)
    return match.group(1) if match else b""
