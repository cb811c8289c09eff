"""Time and peak memory of the simulator at scale: boot, a workload and a dump of 16 GiB.

Each step is its own `pageowner` process (as a user would run them), so its peak RSS is
its own; the figures go to BENCHMARKS.md ("Simulator"). Run: `make bench BENCH=sim`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = [
    ("boot 16 GiB", ["boot", "--mem", "16G", "--cmdline", "page_owner=on"]),
    ("run capture --mb 14000", ["run", "capture", "--mb", "14000"]),
    ("dump", ["dump", "-o", "{dump}"]),
]


def run_step(argv: list[str]) -> tuple[float, int]:
    """Run one command; return (seconds, peak RSS in KiB) of that process alone."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "pageowner", *argv],
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.monotonic() - started
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return elapsed, usage.ru_maxrss


def main() -> int:
    """Run the steps in a scratch directory and print one line per step."""
    with tempfile.TemporaryDirectory(prefix="sim-bench-") as tmp:
        dump = Path(tmp) / "page_owner.txt"
        total = 0.0
        peak = 0
        print(f"{'step':28} {'seconds':>8} {'peak RSS':>10}")
        for name, argv in STEPS:
            argv = [word.format(dump=dump) for word in argv] + ["--state", f"{tmp}/state"]
            elapsed, rss = run_step(argv)
            total += elapsed
            peak = max(peak, rss)
            print(f"{name:28} {elapsed:8.2f} {rss / 1024:8.0f} MB", flush=True)
        records = dump.read_bytes().count(b"Page allocated via order ")
        print(f"{'total':28} {total:8.2f} {peak / 1024:8.0f} MB (max of the steps)")
        print(f"dump: {dump.stat().st_size / 1e9:.2f} GB, {records} records; "
              f"state: {(Path(tmp) / 'state' / 'state.bin').stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
