"""Live benchmarks: capture throughput, and what one watch snapshot costs per source.

1. capture: a fake debugfs tree whose page_owner is the real 6.12.117 dump repeated
   (18.5 MB x REPEAT); capture() copies it to a file (page cache warm), median of 3.
2. per-record overhead: the same dump served one record per read(), as the kernel does,
   from memory; this is our Python cost per read() on top of the kernel's own.
3. watch snapshot: the real 6.12.117 show_stacks (one run) vs its full page_owner dump,
   read and grouped by stack as `watch` does, median of 5.
4. store and trend: an hour at 10 s (360 snapshots) of the 535 real stacks; store size,
   time to write it, and `trend` time.

Run: .venv/bin/python bench/live_bench.py  (or `make bench BENCH=live`)
"""

from __future__ import annotations

import lzma
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import OneRecordPerRead, median_seconds  # noqa: E402
from pageowner.dump.dumpfile import format_frame  # noqa: E402
from pageowner.dump.stacksfile import iter_stack_counts  # noqa: E402
from pageowner.live.capture import capture, copy_records  # noqa: E402
from pageowner.live.host import Host, HostPaths  # noqa: E402
from pageowner.live.store import StackSample, Store  # noqa: E402
from pageowner.live.trend import analyze_store  # noqa: E402
from pageowner.live.watch import SnapshotKind, make_reader  # noqa: E402

REAL = ROOT / "fixtures" / "real"
REPEAT = int(os.environ.get("LIVE_BENCH_REPEAT", "8"))


def main() -> None:
    dump = lzma.decompress((REAL / "6.12.117-work.page_owner.txt.xz").read_bytes())
    stacks_text = lzma.decompress((REAL / "6.12.117-work.show_stacks.txt.xz").read_bytes())
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        debugfs = base / "debugfs"
        (debugfs / "page_owner_stacks").mkdir(parents=True)
        with open(debugfs / "page_owner", "wb") as out:
            for _ in range(REPEAT):
                out.write(dump)
        (debugfs / "page_owner_stacks" / "show_stacks").write_bytes(stacks_text)
        host = Host(HostPaths(debugfs=str(debugfs), proc=str(base / "proc"),
                              boot=str(base / "boot")))
        size = len(dump) * REPEAT
        target = str(base / "d.txt")
        capture(target, host=host)  # warm the page cache
        seconds = median_seconds(lambda: capture(target, host=host), 3)
        print(f"capture: {size / 1e6:.0f} MB ({REPEAT} x the 6.12.117 dump) in {seconds:.3f} s"
              f" = {size / 1e6 / seconds:.0f} MB/s")

        records = [block + b"\n\n" for block in dump.split(b"\n\n") if block]
        seconds = median_seconds(lambda: copy_records(OneRecordPerRead(records), lambda b: None), 3)
        print(f"one record per read: {len(records):,} records in {seconds:.3f} s = "
              f"{seconds / len(records) * 1e6:.2f} us per record of Python overhead")

        (debugfs / "page_owner").write_bytes(dump)
        for kind in (SnapshotKind.SHOW_STACKS, SnapshotKind.PAGE_OWNER):
            read = make_reader(kind, host)
            reading = read()
            seconds = median_seconds(read, 5)
            print(f"watch snapshot from {kind.value}: {reading.bytes_read / 1e6:.2f} MB read, "
                  f"{len(reading.samples)} stacks, {seconds * 1000:.1f} ms")

        stacks = [
            tuple(format_frame(f) for f in entry.stack)
            for entry in iter_stack_counts(stacks_text.splitlines(keepends=True))
        ]
        rng = random.Random(1)
        store_path = str(base / "hour.db")
        start = time.perf_counter()
        with Store.open(store_path, create=True) as store:
            for step in range(360):
                samples = [StackSample(s, 50 + rng.randint(-5, 5) + (step if i == 7 else 0))
                           for i, s in enumerate(stacks)]
                store.add_snapshot(10.0 * step, "show_stacks", samples, bytes_read=0,
                                   read_seconds=0.0)
        written = time.perf_counter() - start
        store_size = sum(os.path.getsize(p) for p in Path(base).glob("hour.db*"))
        seconds = median_seconds(lambda: analyze_store(store_path), 3)
        print(f"store: 360 snapshots x {len(stacks)} stacks written in {written:.2f} s, "
              f"{store_size / 1e6:.1f} MB on disk; trend in {seconds:.2f} s")


if __name__ == "__main__":
    main()
