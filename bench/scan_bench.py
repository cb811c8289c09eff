"""Every analysis command against `sort` on the 132 MB 6.1 fixture, in one run (issue 11).

Issue 11's targets: with `-j 2` each command within 1.5x of `sort -j 2`, with `-j 1` within
2x of `sort -j 1`. Each round runs `sort -j N` and then every command with `-j N`, each a
fresh whole process (`python -m pageowner`, start-up included), and divides each command's
wall time by that round's sort: on a shared machine the load drifts between rounds more
than within one, so the ratio is steadier than either time. Reported: the median wall
time, the median ratio, the CPU seconds (user + sys of the process and its forked worker,
from wait4) and the peak RSS of the process (ru_maxrss of the command alone).

    python bench/scan_bench.py                   # 3 rounds
    SCAN_BENCH_ROUNDS=5 make bench BENCH=scan
    python bench/scan_bench.py top stats         # only commands whose name starts so
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import installed_env  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "fixtures" / "real" / "6.1.192-work1g.page_owner.txt.xz"
BOOT = ROOT / "fixtures" / "real" / "6.1.192-boot.page_owner.txt.xz"
_BY = ("stack", "caller", "pid", "tgid", "name", "module", "allocator", "gfp", "order",
       "zone", "node", "migratetype")  # fmt: skip

# name -> argv after `pageowner` (DUMP and BOOT replaced by the decompressed files);
# `-j N` is appended where the command takes it.
COMMANDS: dict[str, list[str]] = {
    **{f"top --by {by}": ["top", "DUMP", "--by", by, "-o", os.devnull] for by in _BY},
    "stats": ["stats", "DUMP", "-o", os.devnull],
    "diff boot work1g": ["diff", "BOOT", "DUMP", "-o", os.devnull],
    "flame --format folded": ["flame", "DUMP", "--format", "folded", "-o", os.devnull],
    "flame --format speedscope": ["flame", "DUMP", "--format", "speedscope", "-o", os.devnull],
    "flame --format html": ["flame", "DUMP", "--format", "html", "-o", os.devnull],
    "frag": ["frag", "DUMP", "-o", os.devnull],
}
# grep takes no -j: it reads a big file on two cores when it only counts (-c without
# --pfn-range/--ts-range), in one process otherwise. Compared with sort -j 2.
GREP: dict[str, list[str]] = {
    "grep -c --name dd": ["grep", "-c", "--name", "dd", "DUMP"],
    "grep -c --order 0 --zone DMA32": ["grep", "-c", "--order", "0", "--zone", "DMA32", "DUMP"],
}
SORT = ["sort", "DUMP", os.devnull]
_UNXZ = ("import lzma, shutil, sys\n"
         "with lzma.open(sys.argv[1]) as i, open(sys.argv[2], 'wb') as o:\n"
         "    shutil.copyfileobj(i, o, 1 << 20)")
_EXEC = [sys.executable, "-S", "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])"]


_ENV: dict[str, str] = {}


def _run(argv: list[str]) -> tuple[float, float, float]:
    """Run `pageowner ARGV` to its end; return wall s, CPU s and peak RSS MB."""
    start = time.perf_counter()
    # Run from outside the checkout so that PYTHONPATH may point at another tree (a
    # "before" figure: PYTHONPATH=/path/to/old/tree python bench/scan_bench.py).
    # The exec trampoline makes ru_maxrss the command's own: a child forked straight from
    # this process would be charged this process's pages (bench/sort_bench.py does the same).
    proc = subprocess.Popen([*_EXEC, sys.executable, "-m", "pageowner", *argv],
                            cwd=tempfile.gettempdir(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=_ENV or None)  # fmt: skip
    assert proc.stderr is not None
    errors = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"pageowner {' '.join(argv)} exited {proc.returncode}: {errors!r}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def _plan(selected: list[str]) -> list[tuple[str, list[str], int, str]]:
    """Return (name, argv, jobs, sort it is compared with) for every measurement."""
    plan = []
    for jobs in (1, 2):
        for name, argv in COMMANDS.items():
            plan.append((f"{name} -j {jobs}", [*argv, "-j", str(jobs)], jobs, f"sort -j {jobs}"))
    for name, argv in GREP.items():
        plan.append((name, argv, 2, "sort -j 2"))
    if selected:
        plan = [p for p in plan if any(p[0].startswith(word) for word in selected)]
    return plan


def main() -> int:
    """Decompress the fixtures, run the rounds and print the table."""
    rounds = int(os.environ.get("SCAN_BENCH_ROUNDS", "3"))
    _ENV.update(installed_env())
    tmp = Path(tempfile.mkdtemp(prefix="pageowner-scan-bench-"))
    try:
        files = {}
        for key, source in (("DUMP", DUMP), ("BOOT", BOOT)):
            target = tmp / source.name.removesuffix(".xz")
            # In a child: the xz decoder's 64 MiB would stay in this process's RSS, and
            # every command forked from it would be charged for it (ru_maxrss).
            subprocess.run([sys.executable, "-c", _UNXZ, str(source), str(target)], check=True)
            files[key] = str(target)
        plan = _plan(sys.argv[1:])
        walls: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        peaks: dict[str, float] = {}
        ratios: dict[str, list[float]] = {}
        for _ in range(rounds):
            sorts = {}
            for jobs in (1, 2):
                name = f"sort -j {jobs}"
                argv = [files.get(a, a) for a in [*SORT, "-j", str(jobs)]]
                sorts[name] = wall, cpu, peak = _run(argv)
                walls.setdefault(name, []).append(wall)
                cpus.setdefault(name, []).append(cpu)
                peaks[name] = max(peaks.get(name, 0.0), peak)
            for name, argv, _, against in plan:
                wall, cpu, peak = _run([files.get(a, a) for a in argv])
                walls.setdefault(name, []).append(wall)
                cpus.setdefault(name, []).append(cpu)
                peaks[name] = max(peaks.get(name, 0.0), peak)
                ratios.setdefault(name, []).append(wall / sorts[against][0])
        size = Path(files["DUMP"]).stat().st_size / 1e6
        load = os.getloadavg()[0]
        print(f"{DUMP.name} ({size:.0f} MB), {rounds} rounds, load average {load:.1f}")
        print("| command | wall s (median) | x sort (median) | CPU s | peak RSS MB |")
        print("|---|---:|---:|---:|---:|")
        for name in ["sort -j 1", "sort -j 2", *(p[0] for p in plan)]:
            ratio = f"{statistics.median(ratios[name]):.2f}" if name in ratios else "1"
            print(f"| `{name}` | {statistics.median(walls[name]):.2f} | {ratio} | "
                  f"{statistics.median(cpus[name]):.2f} | {peaks[name]:.0f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
