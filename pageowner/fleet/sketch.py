"""Bounded, mergeable summaries of a group's pages per host: exact while small, then a histogram.

A fleet group is held by up to every host of the fleet. Keeping each host's pages would
make the merged table (and every merge above the first level) grow with hosts x groups;
`HostPages` keeps them exactly while a group is on at most `EXACT_HOSTS` hosts, and
beyond that a log-bucket histogram of pages per host plus the `TOP_HOSTS` hosts with
most pages. The histogram's buckets are exact below `LINEAR_PAGES` pages and `GAMMA`
wide above, so a median or p95 read from it is within `RELATIVE_ERROR` of the exact
one; the max, its host and the host count stay exact. Merging is associative and
commutative and top-k ties are broken by host name, so a summary depends only on the
set of hosts merged, never on the shape of the reduction tree.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "EXACT_HOSTS",
    "GAMMA",
    "LINEAR_PAGES",
    "RELATIVE_ERROR",
    "TOP_HOSTS",
    "HostPages",
    "HostSpread",
    "bucket_of",
    "bucket_value",
    "top_hosts",
]

EXACT_HOSTS = 64  # a group on at most this many hosts keeps every host's pages
TOP_HOSTS = 8  # hosts kept by most pages (and by most growth in `fleet diff`)
LINEAR_PAGES = 128  # below this, one bucket per page count
# Buckets (v/GAMMA, v] carry their midpoint 2v/(GAMMA+1): within ALPHA of any value in
# them; rounding to whole pages adds at most 0.5/LINEAR_PAGES (0.39 %).
_ALPHA = 0.005
GAMMA = (1 + _ALPHA) / (1 - _ALPHA)
RELATIVE_ERROR = 0.01  # the documented bound: ALPHA + 0.5/LINEAR_PAGES < 1 %
_LOG_GAMMA = math.log(GAMMA)


def bucket_of(pages: int) -> int:
    """Return the histogram bucket of a page count.

    >>> [bucket_of(n) for n in (0, 1, 127, 128, 129, 1000)]
    [0, 1, 127, 128, 129, 334]
    """
    if pages < LINEAR_PAGES:
        return pages
    return LINEAR_PAGES + max(0, math.ceil(math.log(pages / LINEAR_PAGES) / _LOG_GAMMA - 1e-12))


def bucket_value(bucket: int) -> int:
    """Return the page count a bucket stands for (within RELATIVE_ERROR of its members).

    >>> [bucket_value(bucket_of(n)) for n in (5, 1000, 123456)]
    [5, 999, 123881]
    """
    if bucket < LINEAR_PAGES:
        return bucket
    upper = LINEAR_PAGES * GAMMA ** (bucket - LINEAR_PAGES)
    return round(2 * upper / (GAMMA + 1))


def top_hosts(items: Iterable[tuple[str, int]], count: int = TOP_HOSTS) -> list[tuple[str, int]]:
    """Return the `count` items with the biggest values, the first host by name among equals.

    >>> top_hosts([("b", 5), ("a", 5), ("c", 9), ("d", 1)], 3)
    [('c', 9), ('a', 5), ('b', 5)]
    """
    return sorted(items, key=lambda item: (-item[1], item[0]))[:count]


@dataclass(frozen=True)
class HostSpread:
    """A group's pages on the hosts that hold it: median, p95 (nearest rank), max and where.

    `exact` is False when the median or the p95 came from the histogram (within
    RELATIVE_ERROR); `median_exact` and `p95_exact` say which.
    """

    hosts: int
    median: float
    p95: int
    max: int
    max_host: str
    median_exact: bool = True
    p95_exact: bool = True

    @property
    def exact(self) -> bool:
        """Tell whether both the median and the p95 are exact."""
        return self.median_exact and self.p95_exact


class HostPages:
    """Pages per host of one group: exact cells up to EXACT_HOSTS hosts, then a histogram.

    Tables merged are of disjoint hosts (a host's capture is read into one table), so
    counts add up.
    """

    __slots__ = ("count", "counts", "low", "names", "pages", "top")

    def __init__(self) -> None:
        self.count = 0
        # Exact cells as parallel arrays (16 bytes a host, names interned); None once
        # summarised into `buckets` and `top`.
        self.names: list[str] | None = []
        self.pages = array("q")
        # The histogram, dense from bucket `low` (4 bytes a bucket: at most ~2,500 over
        # 2**40 pages, a few hundred over a group's real spread).
        self.low = 0
        self.counts = array("I")
        self.top: list[tuple[str, int]] = []

    @classmethod
    def of(cls, host: str, pages: int) -> HostPages:
        """Make the summary of one host."""
        made = cls()
        made.count = 1
        made.names = [sys.intern(host)]
        made.pages.append(pages)
        return made

    @property
    def exact(self) -> bool:
        """Tell whether every host's pages are kept."""
        return self.names is not None

    @property
    def cells(self) -> dict[str, int] | None:
        """Return every host's pages while they are kept, else None."""
        return None if self.names is None else dict(zip(self.names, self.pages, strict=True))

    @property
    def buckets(self) -> dict[int, int]:
        """Return the histogram's non-empty buckets and their host counts."""
        return {self.low + i: n for i, n in enumerate(self.counts) if n}

    def _cover(self, low: int, high: int) -> None:
        """Widen the histogram to hold buckets `low` to `high`."""
        if not self.counts:
            self.low, self.counts = low, array("I", [0]) * (high - low + 1)
            return
        if low < self.low:
            self.counts = array("I", [0]) * (self.low - low) + self.counts
            self.low = low
        top = self.low + len(self.counts) - 1
        if high > top:
            self.counts.extend(array("I", [0]) * (high - top))

    def _add_cells(self, names: list[str], pages: Sequence[int]) -> None:
        """Count exact cells into the histogram and the top hosts."""
        buckets = [bucket_of(count) for count in pages]
        self._cover(min(buckets), max(buckets))
        for bucket in buckets:
            self.counts[bucket - self.low] += 1
        self.top = top_hosts([*self.top, *zip(names, pages, strict=True)])

    def merge(self, other: HostPages) -> None:
        """Add the hosts of another summary (hosts not in this one)."""
        self.count += other.count
        if self.names is not None and other.names is not None and self.count <= EXACT_HOSTS:
            self.names.extend(other.names)
            self.pages.extend(other.pages)
            return
        if self.names is not None:
            self._add_cells(self.names, self.pages)
            self.names, self.pages = None, array("q")
        if other.names is not None:
            self._add_cells(other.names, other.pages)
            return
        if other.counts:
            self._cover(other.low, other.low + len(other.counts) - 1)
            base = other.low - self.low
            counts = self.counts
            for i, hosts in enumerate(other.counts):
                if hosts:
                    counts[base + i] += hosts
        self.top = top_hosts([*self.top, *other.top])

    def to_json(self) -> list[Any]:
        """Encode as [count, [hosts, pages]] or [count, None, low, counts, top hosts]."""
        if self.names is not None:  # hosts and pages apart: no list per host to decode
            return [self.count, [self.names, self.pages.tolist()]]
        return [self.count, None, self.low, self.counts.tolist(),
                [[host, pages] for host, pages in self.top]]  # fmt: skip

    @classmethod
    def from_json(cls, data: list[Any]) -> HostPages:
        """Decode `to_json`."""
        made = cls()
        made.count = int(data[0])
        if data[1] is not None:
            names, pages = data[1]
            # Interned: one string per host name, shared by every group that has the host.
            made.names = [sys.intern(str(name)) for name in names]
            made.pages = array("q", pages)
            return made
        made.names = None
        made.low = int(data[2])
        made.counts = array("I", data[3])
        made.top = [(sys.intern(host), int(pages)) for host, pages in data[4]]
        return made

    def spread(self) -> HostSpread:
        """Return median, p95 (nearest rank), max and the max host (first by name)."""
        cells = self.cells
        if cells is not None:
            return _exact_spread(cells)
        count = self.count
        if count == 0 or not self.top:
            return HostSpread(0, 0, 0, 0, "-")
        ascending = [(self.low + i, n) for i, n in enumerate(self.counts) if n]

        def at(rank: int) -> tuple[int, bool]:
            """Return the value of 1-based ascending rank, and whether it is exact."""
            from_top = count - rank
            if from_top < len(self.top):
                return self.top[from_top][1], True
            seen = 0
            for bucket, hosts in ascending:
                seen += hosts
                if seen >= rank:
                    return bucket_value(bucket), bucket < LINEAR_PAGES
            return bucket_value(ascending[-1][0]), False

        if count % 2:
            median, median_exact = at(count // 2 + 1)
            middle: float = median
        else:
            low, low_exact = at(count // 2)
            high, high_exact = at(count // 2 + 1)
            middle, median_exact = (low + high) / 2, low_exact and high_exact
        p95, p95_exact = at(max(1, math.ceil(0.95 * count)))
        host, most = self.top[0]
        return HostSpread(count, middle, p95, most, host, median_exact, p95_exact)


def _exact_spread(cells: dict[str, int]) -> HostSpread:
    """Summarise exact pages per host."""
    pages = sorted(cells.values())
    if not pages:
        return HostSpread(0, 0, 0, 0, "-")
    host, most = top_hosts(cells.items(), 1)[0]
    middle = len(pages) // 2
    median: float = pages[middle] if len(pages) % 2 else (pages[middle - 1] + pages[middle]) / 2
    return HostSpread(len(pages), median, pages[max(0, math.ceil(0.95 * len(pages)) - 1)],
                      most, host)  # fmt: skip
