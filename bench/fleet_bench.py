"""Fleet scaling on Dask: 1 and 2 workers, MB/s, hosts/s, peak memory (`make bench BENCH=fleet`).

A fleet of FLEET_HOSTS simulated hosts (default 50; FLEET_MEM each, default 256M) is
written by `pageowner fleet simulate` (or FLEET_DIR names a simulated fleet to reuse,
so that two versions of the code are measured on the same captures), then `fleet top`
runs on a fresh `dask scheduler` with 1 worker and with 2 (processes on 127.0.0.1, one
thread each). Peak RSS is each worker's ru_maxrss (fresh processes per run) and this
client process's. Memory flatness is checked by reading the largest tenth of the fleet
and the whole fleet on 2 workers.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import distributed  # noqa: E402,F401 - imported first, so the client's baseline includes it

from pageowner.fleet.job import Engine, JobOptions, read_fleet  # noqa: E402
from pageowner.fleet.results import fleet_top  # noqa: E402
from tests.fleet_support import local_cluster  # noqa: E402

HOSTS = int(os.environ.get("FLEET_HOSTS", "50"))
# The workers run without a nanny (as in the tests: a killed one stays dead); give them
# the environment a nanny gives by default (distributed.yaml, nanny.pre-spawn-environ),
# so that glibc returns freed memory as on a default `dask worker`. FLEET_TRIM=0: not.
if os.environ.get("FLEET_TRIM", "1") != "0":
    os.environ.setdefault("MALLOC_TRIM_THRESHOLD_", "65536")
MEM = os.environ.get("FLEET_MEM", "256M")


def _worker_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _client_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _host_items(group: Any) -> int:
    """Count what a group keeps about its hosts: cells, or histogram buckets and top hosts."""
    spread = getattr(group, "spread", None)
    if spread is None:  # the table before bounded summaries: a cell per host
        return len(group.hosts)
    if spread.names is not None:
        return len(spread.names)
    return len(spread.counts) + len(spread.top)


def measure(paths: list[str], workers: int, total_bytes: int) -> dict[str, float]:
    """Run `fleet top` on a fresh cluster of `workers` workers; return its figures."""
    from distributed import Client

    with local_cluster(workers) as cluster:
        started = time.perf_counter()
        (table,) = read_fleet([paths], JobOptions(), Engine(scheduler=cluster.address))
        payload = table.to_json()
        try:  # compressed since the bounded-summary design; plain JSON before
            text = zlib.decompress(payload)
        except zlib.error:
            text = payload
        merged_mb, merged_zlib_mb = len(text) / 1e6, len(payload) / 1e6
        fleet_top(table, top=20)
        seconds = time.perf_counter() - started
        with Client(cluster.address) as client:
            peaks = client.run(_worker_peak_mb)
    largest = max(os.path.getsize(os.path.join(p, "page_owner.txt")) for p in paths)
    return {"workers": workers, "hosts": len(paths), "seconds": seconds,
            "largest_capture_mb": largest / 1e6,
            "mb_per_s": total_bytes / 1e6 / seconds, "hosts_per_s": len(paths) / seconds,
            "worker_peak_mb": max(peaks.values()), "groups": len(table.groups),
            "host_items": sum(_host_items(g) for g in table.groups.values()),
            "merged_table_mb": merged_mb, "merged_table_sent_mb": merged_zlib_mb}


def main() -> None:
    """Simulate the fleet, then time the job on 1 and 2 workers."""
    with tempfile.TemporaryDirectory(prefix="pageowner-fleet-bench-") as tmp:
        fleet = Path(os.environ.get("FLEET_DIR") or Path(tmp) / "fleet")
        started = time.perf_counter()
        if not fleet.exists():
            subprocess.run([sys.executable, "-m", "pageowner", "fleet", "simulate", "--hosts",
                            str(HOSTS), "--mem", MEM, "-o", str(fleet), "--workers", "2"],
                           check=True, stdout=subprocess.DEVNULL)
        simulated = time.perf_counter() - started
        dumps = sorted(fleet.glob("host-*/page_owner.txt"))
        sizes = {str(d.parent): d.stat().st_size for d in dumps}
        total = sum(sizes.values())
        made = (f"simulated in {simulated:.1f} s on 2 workers" if simulated > 1 else
                f"reused from {fleet}")  # fmt: skip
        trim = os.environ.get("MALLOC_TRIM_THRESHOLD_", "unset")
        print(f"fleet: {len(dumps)} hosts, {total / 1e6:.0f} MB, {made}; "
              f"workers' MALLOC_TRIM_THRESHOLD_ {trim}; load average {os.getloadavg()[0]:.1f}")
        before = _client_mb()
        results = []
        paths = list(sizes)
        # The largest tenth: a worker's peak follows the biggest capture it reads, so the
        # 10x comparison holds the capture sizes' top end fixed.
        tenth = sorted(paths, key=lambda p: -sizes[p])[: max(1, len(paths) // 10)]
        results.append(measure(tenth, 2, sum(sizes[p] for p in tenth)))
        for workers in (1, 2):
            results.append(measure(paths, workers, total))
        for row in results:
            print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                              for k, v in row.items()}))
        one, two = results[1], results[2]
        print(f"scaling 1 -> 2 workers: {one['seconds'] / two['seconds']:.2f}x; worker peak "
              f"{results[0]['worker_peak_mb']:.0f} MB at {len(tenth)} hosts, "
              f"{two['worker_peak_mb']:.0f} MB at {len(paths)} hosts; client "
              f"{before:.0f} MB before, {_client_mb():.0f} MB after "
              f"({two['groups']} distinct groups); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
