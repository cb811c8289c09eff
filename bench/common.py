"""Helpers shared by the benchmark scripts: a median timer and a kernel-like record reader.

Not a benchmark itself (bench/run.py runs only `*_bench.py`).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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


def installed_env() -> dict[str, str]:
    """Return the environment for timing `pageowner` as an installed package starts.

    pip writes every module's bytecode at install; a checkout run with
    PYTHONDONTWRITEBYTECODE (set on some CI machines and here) compiles every module it
    imports on each start, which costs a command importing more modules more (~0.1 s of
    `top`'s start-up against `sort`'s). Compile the package once and let the commands
    read the cache (`__pycache__` is ignored by git).
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pageowner")],
                   env=env, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return env
