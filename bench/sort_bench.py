"""Benchmark `pageowner sort` against the C page_owner_sort on the 132 MB real dump.

Prints wall time (median of runs) and peak RSS for default, -m, --cull=st and -a, then
streams a 10x larger dump (the same records with shifted PFNs) through a pipe. The C tool
is timed too when PAGEOWNER_REFERENCE_SORT (default /opt/posort/pos612) exists; build it
outside the repository as fixtures/README.md says.
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
REFERENCE = os.environ.get("PAGEOWNER_REFERENCE_SORT", "/opt/posort/pos612")
MODES = [[], ["-m"], ["--cull=st"], ["-a"]]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
COPIES = 10


# A small exec trampoline: wait4's ru_maxrss then counts only the measured program, not
# the pages a child inherits from this (large) process before exec.
_EXEC = [sys.executable, "-S", "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])"]


def measure(command: list[str], stdin: int | None = None) -> tuple[float, int]:
    """Run a command; return its wall time in seconds and peak RSS in MB."""
    start = time.perf_counter()
    process = subprocess.Popen([*_EXEC, *command], stdin=stdin, stdout=subprocess.DEVNULL,
                               close_fds=True)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return elapsed, usage.ru_maxrss // 1024


def median_run(command: list[str]) -> tuple[float, int]:
    """Return the median time and the largest RSS over RUNS runs."""
    results = [measure(command) for _ in range(RUNS)]
    return statistics.median(t for t, _ in results), max(m for _, m in results)


def generate_copies(source: Path, out: int) -> None:
    """Write COPIES copies of the dump to a descriptor, each with its PFNs shifted."""
    data = source.read_bytes()
    with os.fdopen(out, "wb", closefd=False) as pipe:
        for copy in range(COPIES):
            pipe.write(data.replace(b"\nPFN ", b"\nPFN %d" % (copy + 1)) if copy else data)


def main() -> None:
    """Print the figures."""
    work = Path(tempfile.gettempdir()) / "pageowner-bench"
    work.mkdir(exist_ok=True)
    plain = work / DUMP.with_suffix("").name
    if not plain.exists():
        with lzma.open(DUMP) as source, plain.open("wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
    out = work / "sorted.txt"
    ours = [sys.executable, "-m", "pageowner", "sort"]
    size_mb = plain.stat().st_size / 1e6
    print(f"dump: {plain.name}, {size_mb:.0f} MB; median of {RUNS} runs; page cache warm")
    columns = ("pageowner", 12), ("RSS", 8), ("C tool", 10), ("RSS", 8), ("speed-up", 10)
    print(f"{'mode':<12}" + "".join(f"{name:>{width}}" for name, width in columns) + "  memory")
    for mode in MODES:
        ours_time, ours_rss = median_run([*ours, *mode, str(plain), str(out)])
        line = f"{' '.join(mode) or 'default':<12}{ours_time:>11.2f}s{ours_rss:>6}MB"
        if Path(REFERENCE).exists():
            c_time, c_rss = median_run([REFERENCE, *mode, str(plain), str(out)])
            line += f"{c_time:>9.2f}s{c_rss:>6}MB{c_time / ours_time:>9.1f}x"
            line += f"{ours_rss / c_rss:>8.0%}"
        else:
            line += "   (C tool not built)"
        print(line, flush=True)
    writer = subprocess.Popen([sys.executable, __file__, "--generate", str(plain)],
                              stdout=subprocess.PIPE)
    assert writer.stdout is not None
    elapsed, rss = measure([*ours, "-", str(out)], stdin=writer.stdout.fileno())
    writer.stdout.close()
    writer.wait()
    total = size_mb * COPIES
    print(f"{COPIES}x dump through a pipe ({total:.0f} MB): {elapsed:.2f}s, "
          f"{total / elapsed:.0f} MB/s, peak RSS {rss} MB")
    times = sum(int(line.split(b" ", 1)[0]) for line in out.read_bytes().split(b"\n")
                if b" times, " in line)
    print(f"  records counted: {times} (expected {179205 * COPIES})")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--generate"]:
        generate_copies(Path(sys.argv[2]), sys.stdout.fileno())
    else:
        main()
