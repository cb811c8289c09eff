"""Helpers shared by the benchmark scripts: a median timer and a kernel-like record reader.

Not a benchmark itself (bench/run.py runs only `*_bench.py`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(run: Callable[[], object], times: int) -> float:
    """Return the median wall time of `run` over `times` calls."""
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


class OneRecordPerRead:
    """Serve records one per read(), like read_page_owner()."""

    def __init__(self, records: list[bytes]) -> None:
        self.records = records
        self.index = 0

    def read(self, size: int) -> bytes:
        """Return the next record whatever `size` asks; b"" after the last."""
        if self.index == len(self.records):
            return b""
        self.index += 1
        return self.records[self.index - 1]

    def skip(self) -> None:
        """Step over one record, as a seek past a PFN that failed to read does."""
        self.index += 1

    def close(self) -> None:
        """Close nothing: the records are in memory."""
