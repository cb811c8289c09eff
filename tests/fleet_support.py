"""A real dask.distributed cluster on 127.0.0.1 and a small simulated fleet, for the fleet tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

DASK = str(Path(sys.executable).parent / "dask")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A `dask scheduler` and `dask worker` processes (no nanny: a killed worker stays dead)."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_worker(self) -> subprocess.Popen[bytes]:
        """Start one more single-threaded worker."""
        worker = subprocess.Popen(
            [DASK, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers.append(worker)
        return worker

    def alive_workers(self) -> int:
        """Ask the scheduler how many workers it has."""
        from distributed import Client

        with Client(self.address, timeout="10s") as client:
            return len(client.scheduler_info()["workers"])

    def wait_for_workers(self, count: int, timeout: float = 60.0) -> None:
        """Wait until `count` workers have joined."""
        from distributed import Client

        with Client(self.address, timeout="20s") as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        """Stop every process this cluster started."""
        # Workers first: a worker left without its scheduler waits to reconnect.
        for group in (self.workers, [self.scheduler]):
            for process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in group:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


@contextlib.contextmanager
def local_cluster(workers: int = 2) -> Iterator[Cluster]:
    """Run a scheduler and `workers` workers on 127.0.0.1 for the duration."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen(
        [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cluster = Cluster(address, scheduler)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline or scheduler.poll() is not None:
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.2)
        for _ in range(workers):
            cluster.add_worker()
        cluster.wait_for_workers(workers)
        yield cluster
    finally:
        cluster.stop()


def simulate(output: Path, hosts: int, rounds: int, seed: int = 7) -> list[str]:
    """Simulate a fleet in this process (no cluster needed); return the capture paths."""
    from pageowner.fleet.simulate import SimulateOptions, plan_fleet, simulate_host

    options = SimulateOptions(hosts=hosts, seed=seed, mem_mib=128, leak_every=3, rounds=rounds)
    written: list[str] = []
    for plan in plan_fleet(options):
        written.extend(simulate_host(plan.to_json(), str(output), rounds))
    return sorted(written)


def captures_in(folder: Path) -> list[Path]:
    """Return the dumps of a simulated round, one per host."""
    return sorted(folder.glob("host-*/page_owner.txt"))


def env_without_scheduler() -> dict[str, str]:
    """Return the environment without DASK_SCHEDULER_ADDRESS (tests pick their cluster)."""
    return {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
