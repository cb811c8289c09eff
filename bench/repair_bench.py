"""Benchmark the tolerance layer (pageowner.dump.repair) on the 132 MB real dump.

1. The cost on a clean dump: the sniff of both ends alone (in process), and whole-process
   `sort` and `top` with the layer on and with it bypassed (PAGEOWNER_BENCH_NO_REPAIR=1
   makes this script patch `tolerate` into the identity in a child), alternated run by run.
2. Repair throughput: the first quarter of the dump mail-quoted with tab-indented frames,
   read by `sort` and `top` (every line goes through the normaliser).
Prints medians of BENCH_RUNS runs (default 3) and the ratios, which survive a busy machine
better than the absolute times.
"""

from __future__ import annotations

import lzma
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "fixtures/real/6.1.192-work1g.page_owner.txt.xz"
RUNS = int(os.environ.get("BENCH_RUNS", "3"))

# Runs the CLI, first replacing `tolerate` by the identity when asked (the "before").
_CHILD = """
import os, sys
if os.environ.get("PAGEOWNER_BENCH_NO_REPAIR") == "1":
    import pageowner.dump.repair as repair
    import pageowner.analyze.analysis as analysis
    import pageowner.sort.engine as engine
    identity = lambda source, tolerance: source
    repair.tolerate = analysis.tolerate = engine.tolerate = identity
from pageowner.cli.base import main
sys.exit(main(sys.argv[1:]))
"""


def run(args: list[str], *, bypass: bool) -> float:
    """Run `pageowner ARGS` in a fresh process; return its wall time."""
    env = dict(os.environ, PAGEOWNER_BENCH_NO_REPAIR="1" if bypass else "0")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", _CHILD, *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return time.perf_counter() - start


def sniff_time(path: Path) -> float:
    """Return the median time of opening a file and sniffing it (the clean path's cost)."""
    from pageowner.dump.fileio import open_input
    from pageowner.dump.repair import Tolerance, tolerate

    times = []
    for _ in range(max(RUNS, 5)):
        start = time.perf_counter()
        with open_input(str(path)) as opened:
            source = tolerate(opened, Tolerance())
            assert source is opened
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    """Print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean.txt"
        data = lzma.decompress(DUMP.read_bytes())
        clean.write_bytes(data)
        print(f"sniff of a clean {len(data) / 1e6:.0f} MB dump: {sniff_time(clean) * 1e3:.1f} ms")
        for args in (["sort", str(clean), "-"], ["top", str(clean), "--format", "csv"]):
            on: list[float] = []
            off: list[float] = []
            for _ in range(RUNS):
                off.append(run(args, bypass=True))
                on.append(run(args, bypass=False))
            before, after = statistics.median(off), statistics.median(on)
            print(f"{args[0]:5} clean: layer bypassed {before:.2f} s, layer on {after:.2f} s "
                  f"(x{after / before:.3f})")  # fmt: skip
        # A quarter of the dump is enough for a throughput figure.
        part = data[: data.index(b"\n\n", len(data) // 4) + 2]
        quoted = b"".join(b"> " + (b"\t" + line[1:] if line.startswith(b" ") else line)
                          for line in part.splitlines(keepends=True))  # fmt: skip
        damaged = Path(tmp) / "quoted.txt"
        damaged.write_bytes(quoted)
        for args in (["sort", str(damaged), "-"], ["top", str(damaged), "--format", "csv"]):
            took = statistics.median(run(args, bypass=False) for _ in range(RUNS))
            print(f"{args[0]:5} mail-quoted ({len(quoted) / 1e6:.0f} MB): {took:.2f} s "
                  f"({len(quoted) / 1e6 / took:.0f} MB/s)")  # fmt: skip


if __name__ == "__main__":
    main()
