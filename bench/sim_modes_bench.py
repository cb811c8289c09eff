"""Size and time of the simulated 7.3 page_owner in each print mode, on one machine.

A 4 GiB 7.3 machine with two nodes runs the fixtures' capture script with a 2 GiB tmpfs
file, then `dump --mode stack|handle|stack_handle` (and `--nid 0`) each write a file;
the figures go to BENCHMARKS.md ("Simulator: 7.3 print modes"). This times the
simulator's writer, not a kernel: on a real 7.3 the patch series measured the handle
dump 66 % smaller and 4.4x faster to read. Run: `make bench BENCH=sim_modes`.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 3
MODES = [("stack", []), ("handle", ["--mode", "handle"]),
         ("stack_handle", ["--mode", "stack_handle"]), ("handle, nid 0", ["--mode", "handle",
                                                                           "--nid", "0"])]


def pageowner(argv: list[str], state: str) -> float:
    """Run one command; return its wall time."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "pageowner", *argv, "--state", state], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> int:
    """Boot, run the workload, then dump each mode RUNS times; print size and median time."""
    with tempfile.TemporaryDirectory(prefix="sim-modes-") as tmp:
        state = f"{tmp}/state"
        pageowner(["boot", "--kernel", "7.3", "--mem", "4G", "--nodes", "2", "--cmdline",
                   "page_owner=on"], state)
        pageowner(["run", "capture", "--mb", "2048"], state)
        print(f"{'mode':16} {'records':>9} {'MB':>8} {'seconds':>8}")
        base = None
        for name, args in MODES:
            out = Path(tmp) / "dump.txt"
            times = [pageowner(["dump", *args, "-o", str(out)], state) for _ in range(RUNS)]
            data = out.read_bytes()
            size = len(data)
            base = base or size
            print(f"{name:16} {data.count(b'Page allocated via'):9} {size / 1e6:8.1f} "
                  f"{statistics.median(times):8.2f}  ({size / base:.0%} of stack)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
