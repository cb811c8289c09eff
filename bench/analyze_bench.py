"""Time the analysis commands on the 132 MB benchmark dump (fixtures/real/6.1.192-work1g).

The dump is decompressed to a temporary file first, so the figures are about reading and
analysing text, not xz. Each command runs in a fresh process (so its peak RSS is its own),
REPEAT times (median reported). `parse` is DumpReader alone: the floor every command pays.
Commands that read a big file on two cores run with `-j 1` and `-j 2`; "child MB" is the
peak RSS of the forked worker (RUSAGE_CHILDREN), on top of the parent's.

    python bench/analyze_bench.py            # REPEAT=3
    REPEAT=5 python bench/analyze_bench.py
    ONLY="top -j 1,pprof" python bench/analyze_bench.py   # names containing one of these
"""

from __future__ import annotations

import json
import lzma
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "fixtures" / "real" / "6.1.192-work1g.page_owner.txt.xz"
BOOT = ROOT / "fixtures" / "real" / "6.1.192-boot.page_owner.txt.xz"

# name -> command line (DUMP and BOOT are replaced by the decompressed files).
COMMANDS: dict[str, list[str]] = {
    "parse": ["parse", "DUMP"],
    "top -j 1": ["top", "DUMP", "-j", "1"],
    "top -j 2": ["top", "DUMP", "-j", "2"],
    "top --by allocator -j 1": ["top", "DUMP", "--by", "allocator", "-j", "1"],
    "top --by allocator -j 2": ["top", "DUMP", "--by", "allocator", "-j", "2"],
    "diff boot work1g -j 1": ["diff", "BOOT", "DUMP", "-j", "1"],
    "diff boot work1g -j 2": ["diff", "BOOT", "DUMP", "-j", "2"],
    "stats -j 1": ["stats", "DUMP", "-j", "1"],
    "stats -j 2": ["stats", "DUMP", "-j", "2"],
    "frag -j 1": ["frag", "DUMP", "-j", "1"],
    "frag -j 2": ["frag", "DUMP", "-j", "2"],
    "flame --format folded -j 1": ["flame", "DUMP", "--format", "folded", "-j", "1"],
    "flame --format folded -j 2": ["flame", "DUMP", "--format", "folded", "-j", "2"],
    "flame --format html -j 1": ["flame", "DUMP", "-j", "1"],
    "flame --format html -j 2": ["flame", "DUMP", "-j", "2"],
    "flame --diff boot -j 1": ["flame", "DUMP", "--diff", "BOOT", "--format", "speedscope",
                               "-j", "1"],
    "flame --diff boot -j 2": ["flame", "DUMP", "--diff", "BOOT", "--format", "speedscope",
                               "-j", "2"],
    "flame --format pprof -j 1": ["flame", "DUMP", "--format", "pprof", "-j", "1"],
    "flame --format pprof -j 2": ["flame", "DUMP", "--format", "pprof", "-j", "2"],
    "grep -c --name dd": ["grep", "-c", "--name", "dd", "DUMP"],
}


def _child(argv: list[str]) -> None:
    """Run one command in this process; print its wall time and peak RSS as JSON."""
    start = time.perf_counter()
    if argv[0] == "parse":
        from pageowner.dump.dumpfile import DumpReader
        from pageowner.dump.fileio import open_input

        with open_input(argv[1]) as source:
            for _ in DumpReader(source.lines(), source.name):
                pass
    else:
        from pageowner.cli import main

        devnull = os.open(os.devnull, os.O_WRONLY)
        saved = os.dup(1)
        os.dup2(devnull, 1)
        try:
            code = main([*argv, "-o", os.devnull] if argv[0] != "grep" else argv)
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
        if code != 0:
            raise SystemExit(f"pageowner {' '.join(argv)} exited {code}")
    seconds = time.perf_counter() - start
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": _peak_kb() / 1024,
                      "child_mb": child_kb / 1024}))


def _peak_kb() -> int:
    """Return this process's peak RSS in KiB.

    VmHWM starts afresh at exec; ru_maxrss on Linux also counts the forked parent's pages
    from before the exec, which would charge the benchmark's own memory to each command.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> int:
    """Decompress the dumps, run every command REPEAT times and print the figures."""
    repeat = int(os.environ.get("REPEAT", "3"))
    tmp = Path(tempfile.mkdtemp(prefix="pageowner-bench-"))
    try:
        files = {}
        for key, source in (("DUMP", DUMP), ("BOOT", BOOT)):
            target = tmp / source.name.removesuffix(".xz")
            with lzma.open(source) as packed, target.open("wb") as out:
                shutil.copyfileobj(packed, out, 1 << 20)
            files[key] = str(target)
        size_mb = Path(files["DUMP"]).stat().st_size / 1e6
        print(f"analysis commands on {DUMP.name} ({size_mb:.0f} MB, 179,205 records), "
              f"median of {repeat}, one process each")
        print(f"{'command':<30}{'median s':>10}{'min s':>8}{'peak RSS MB':>13}{'child MB':>10}")
        only = [part for part in os.environ.get("ONLY", "").split(",") if part]
        for name, argv in COMMANDS.items():
            if only and not any(part in name for part in only):
                continue
            argv = [files.get(arg, arg) for arg in argv]
            runs = []
            for _ in range(repeat):
                out = subprocess.run(
                    [sys.executable, __file__, "--child", *argv],
                    check=True, capture_output=True, text=True, cwd=ROOT,
                ).stdout  # fmt: skip
                runs.append(json.loads(out.strip().splitlines()[-1]))
            seconds = [run["seconds"] for run in runs]
            peak = max(run["peak_mb"] for run in runs)
            child = max(run["child_mb"] for run in runs)
            child_text = f"{child:>10.0f}" if child else f"{'-':>10}"
            print(f"{name:<30}{statistics.median(seconds):>10.2f}{min(seconds):>8.2f}"
                  f"{peak:>13.0f}{child_text}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
    else:
        sys.exit(main())
