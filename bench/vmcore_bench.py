"""Time `capture --vmcore` on the shared 512 MiB 7.3 crash dump (`make bench BENCH=vmcore`).

Prints the wall time and peak RSS of each run (its own process), median of REPEAT runs, for
stack mode, handle mode and --freed. Needs drgn and shared/fixtures/vmcore73 beside the
repository (or PAGEOWNER_SHARED_FIXTURES); says so and exits 0 where they are missing.
"""

from __future__ import annotations

import lzma
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PAGEOWNER_SHARED_FIXTURES") or ROOT.parent / "shared" / "fixtures")
REPEAT = int(os.environ.get("REPEAT", "3"))


def _unxz(source: Path, target: Path) -> Path:
    """Decompress a fixture once."""
    with lzma.open(source) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return target


def _run(args: list[str]) -> tuple[float, int]:
    """Run the CLI in its own process; return wall seconds and peak RSS in MB."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "pageowner", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"pageowner {' '.join(args)} failed ({status})")
    return seconds, usage.ru_maxrss // 1024


def main() -> int:
    """Measure and print."""
    try:
        import drgn  # noqa: F401
    except ImportError:
        print("skipped: drgn is not installed (pip install '.[vmcore]')")
        return 0
    base = SHARED / "vmcore73"
    if not (base / "vmcore.xz").exists():
        print(f"skipped: {base} is not there")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        vmcore = _unxz(base / "vmcore.xz", work / "vmcore")
        vmlinux = _unxz(base / "vmlinux.xz", work / "vmlinux")
        runs = {
            "stack": [],
            "handle": ["--mode", "handle"],
            "freed": ["--freed"],
            "stack + stacks files": ["--stacks"],
        }
        print(f"vmcore {vmcore.stat().st_size / 1e6:.0f} MB, vmlinux "
              f"{vmlinux.stat().st_size / 1e6:.0f} MB, {os.cpu_count()} cores")
        for label, extra in runs.items():
            times, rss = [], []
            for _ in range(REPEAT):
                out = work / "out.txt"
                seconds, peak = _run(["capture", "--vmcore", str(vmcore), "--vmlinux",
                                      str(vmlinux), "-o", str(out), *extra])
                times.append(seconds)
                rss.append(peak)
            size = out.stat().st_size
            print(f"{label:22s} {statistics.median(times):6.2f} s (min {min(times):.2f}), "
                  f"peak RSS {max(rss)} MB, output {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
