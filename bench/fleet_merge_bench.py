"""The fleet merge tree alone: peak memory and CPU of merges, 20 hosts to thousands.

Reads a simulated fleet (FLEET_DIR, from `pageowner fleet simulate -o DIR`; else
FLEET_HOSTS hosts, default 50, simulated into a temporary folder) once on a 2-worker
cluster, keeps every host's task result, then runs the job's merge tree in
this process: for the largest 20 captures, for all, and for the whole fleet copied
FLEET_COPIES times under new host names (default 5,10), which shows the root's size and
the largest merge as the fleet grows past what can be simulated here. tracemalloc
measures each merge; CPU is timed in a second pass without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from distributed import Client  # noqa: E402

from pageowner.fleet.discover import discover  # noqa: E402
from pageowner.fleet.job import JobOptions, _submit_host, merge_tables, pair_hosts  # noqa: E402
from pageowner.fleet.table import decode_tables  # noqa: E402
from pageowner.kernel.frames import StackInterner  # noqa: E402
from tests.fleet_support import local_cluster  # noqa: E402


def tree(tables: list[bytes], traced: bool) -> tuple[bytes, float]:
    """Merge as the job does (8 at a time, level by level); return the root and a figure."""
    peak = 0
    started = time.process_time()
    while len(tables) > 1:
        merged = []
        for i in range(0, len(tables), 8):
            if traced:
                tracemalloc.start()
            merged.append(merge_tables(*tables[i : i + 8]))
            if traced:
                peak = max(peak, tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        tables = merged
    return tables[0], (peak / 1e6 if traced else time.process_time() - started)


def copied(payload: bytes, copy: int) -> bytes:
    """Rename a host table's hosts (names start 'host-'), as another host of the fleet."""
    text = zlib.decompress(payload).replace(b'"host-', f'"c{copy}-host-'.encode())
    return zlib.compress(text, 1)


def main() -> None:
    """Read the fleet's host tables once, then measure merge trees of several sizes."""
    with tempfile.TemporaryDirectory(prefix="pageowner-fleet-merge-") as tmp:
        fleet = os.environ.get("FLEET_DIR") or os.path.join(tmp, "fleet")
        if not os.path.exists(fleet):
            subprocess.run([sys.executable, "-m", "pageowner", "fleet", "simulate", "--hosts",
                            os.environ.get("FLEET_HOSTS", "50"), "-o", fleet, "--workers",
                            "2"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        measure(fleet)


def measure(fleet: str) -> None:
    """Measure merge trees over the host tables of the fleet in `fleet`."""
    captures = discover([fleet]).captures
    with local_cluster(2) as cluster, Client(cluster.address) as client:
        futures = [_submit_host(client, i, host, sides, JobOptions(), None)[0]
                   for i, (host, sides) in enumerate(pair_hosts([captures]))]
        tables = [future.result() for future in futures]
    largest = sorted(range(len(tables)), key=lambda i: -captures[i].size)[:20]
    fleets = {"largest 20": [tables[i] for i in sorted(largest)], "all": tables}
    for copies in map(int, os.environ.get("FLEET_COPIES", "5,10").split(",")):
        fleets[f"x{copies}"] = [copied(t, c) for c in range(copies) for t in tables]
    for name, fleet in fleets.items():
        root, peak = tree(list(fleet), traced=True)
        _, cpu = tree(list(fleet), traced=False)
        tracemalloc.start()
        (table,) = decode_tables(root, StackInterner())
        decoded = tracemalloc.get_traced_memory()[0] / 1e6
        tracemalloc.stop()
        exact = sum(1 for g in table.groups.values() if g.spread.names is not None)
        print(f"{name}: {len(table.hosts)} hosts, {len(table.groups)} groups ({exact} exact); "
              f"largest merge {peak:.1f} MB; merge CPU {cpu:.2f} s; root "
              f"{len(zlib.decompress(root)) / 1e6:.2f} MB of JSON ({len(root) / 1e6:.2f} MB "
              f"sent), {decoded:.1f} MB decoded with its stacks")


if __name__ == "__main__":
    main()
