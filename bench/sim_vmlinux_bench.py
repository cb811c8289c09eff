"""The simulator with a real vmlinux: `boot --vmlinux` cost, and where its offsets land.

Needs a vmlinux with its symbol table, named by PAGEOWNER_VMLINUX (it skips without one),
e.g. Debian's debug package (see bench/symbols_bench.py). Each step is its own `pageowner`
process, best of 3 wall times with that process's peak RSS: boot 1 GiB with the built-in
table, with the vmlinux and an empty index cache, with the index cached; `run anon --mb 64`
on each machine. Then, over the unique frames of boot + anon + pagecache + slab + fork
with the vmlinux, how each frame's offset relates to the code: after a call to the frame
above, after a call to a function making (or tail-calling) that call, after an indirect
call, after a call to another function, or no call.
Run: `PAGEOWNER_VMLINUX=... make bench BENCH=sim_vmlinux`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pageowner.dump.dumpfile import parse_frame  # noqa: E402
from pageowner.sim.stacks import TOP_CALLEES  # noqa: E402
from pageowner.symbols.elf import ElfSymbolTable, call_sites, tail_calls  # noqa: E402

REPEATS = 3
# Retpoline thunks: with CONFIG_RETPOLINE an indirect call is `call __x86_indirect_thunk_REG`
# (its first name may be the section's start label).
INDIRECT = ("__x86_indirect_thunk_", "__indirect_thunk_start", "__x86_indirect_call_thunk_")
VERSION = "6.1"
WORKLOADS = (["anon", "--mb", "64"], ["pagecache", "--mb", "64"], ["slab", "--mb", "16"],
             ["fork", "--count", "10"])  # fmt: skip


def run_step(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run one command; return (seconds, peak RSS in KiB) of that process alone."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "pageowner", *argv], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {status}")
    return time.monotonic() - started, usage.ru_maxrss


def best(argv: list[str], env: dict[str, str], before: object = None) -> tuple[float, int]:
    """Return the best time of REPEATS runs and the peak RSS of that run."""
    results = []
    for _ in range(REPEATS):
        if callable(before):
            before()
        results.append(run_step(argv, env))
    return min(results)


def classify(dump: Path, vmlinux: str) -> Counter[str]:
    """Count unique (frame, frame above) pairs of vmlinux functions by what their call is."""
    pairs: set[tuple[str, str | None]] = set()
    above: str | None = None
    for line in dump.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith(" "):
            pairs.add((line, above))
            above = parse_frame(line).symbol
        else:
            above = None
    counts: Counter[str] = Counter()
    with ElfSymbolTable.from_path(vmlinux, use_cache=False) as table:
        for line, callee in pairs:
            frame = parse_frame(line)
            symbol = table.lookup(frame.symbol or "")
            if symbol is None or frame.module is not None or symbol.size != frame.size:
                counts["not from the vmlinux"] += 1
                continue
            wanted = TOP_CALLEES if callee is None else frozenset((callee,))
            site = next((s for s in call_sites(table, symbol) if s.offset == frame.offset), None)
            if site is None:
                counts["no call there"] += 1
            elif wanted.intersection(site.targets):
                counts["after a call to the frame above"] += 1
            elif any(wanted.intersection(tail_calls(table, helper))
                     or any(wanted.intersection(inner.targets)
                            for inner in call_sites(table, helper))
                     for target in site.targets if (helper := table.lookup(target))):  # fmt: skip
                counts["after a call to a function calling it"] += 1
            elif not site.targets or any(name.startswith(INDIRECT) for name in site.targets):
                counts["after an indirect call"] += 1
            else:
                counts["after a call to another function"] += 1
    return counts


def main() -> int:
    """Time the steps in a scratch directory; print one line per step, then the counts."""
    vmlinux = os.environ.get("PAGEOWNER_VMLINUX")
    if not vmlinux:
        print("skipped: set PAGEOWNER_VMLINUX to a vmlinux with its symbol table")
        return 0
    with tempfile.TemporaryDirectory(prefix="sim-vmlinux-bench-") as tmp:
        base = Path(tmp)
        env = dict(os.environ, XDG_CACHE_HOME=str(base / "cache"))
        boot = ["boot", "--kernel", VERSION, "--mem", "1G", "--cmdline", "page_owner=on",
                "--force"]  # fmt: skip

        def empty_cache() -> None:
            subprocess.run(["rm", "-rf", str(base / "cache")], check=True)

        rows = [
            ("boot, built-in table", best([*boot, "--state", str(base / "a")], env)),
            ("boot --vmlinux, no index cache",
             best([*boot, "--vmlinux", vmlinux, "--state", str(base / "b")], env, empty_cache)),
            ("boot --vmlinux, index cached",
             best([*boot, "--vmlinux", vmlinux, "--state", str(base / "b")], env)),
            ("run anon --mb 64, built-in table",
             best(["run", "anon", "--mb", "64", "--state", str(base / "a")], env)),
            ("run anon --mb 64, --vmlinux",
             best(["run", "anon", "--mb", "64", "--state", str(base / "b")], env)),
        ]  # fmt: skip
        for name, (seconds, rss) in rows:
            print(f"{name:36} {seconds:6.2f} s  {rss // 1024:5d} MiB peak")
        state = str(base / "c")
        run_step([*boot, "--vmlinux", vmlinux, "--state", state], env)
        for workload in WORKLOADS:
            run_step(["run", *workload, "--state", state], env)
        dump = base / "dump.txt"
        run_step(["dump", "-o", str(dump), "--state", state], env)
        counts = classify(dump, vmlinux)
        total = sum(counts.values())
        print(f"unique (frame, frame above) pairs: {total}")
        for name, count in counts.most_common():
            print(f"  {name:40} {count:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
