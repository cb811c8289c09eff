"""`pageowner fleet simulate`: boot a fleet of simulated machines and capture each one.

Every host is a machine of `pageowner.sim` (boot, run, dump): its kernel, memory and
workloads drawn from the seed and its index, a few of them running a leaking driver. Its
debugfs and /proc are laid out and taken with `pageowner.live.capture`, so each capture
has the sidecar a real one has (hostname, kernel_release, captured_at on a fixed clock).
With several rounds, each round runs more work and is captured into its own folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pageowner.errors import SpecError
from pageowner.fleet.job import Engine, connect, dask_distributed
from pageowner.live.capture import capture
from pageowner.live.clock import ManualClock
from pageowner.live.host import Host, HostPaths
from pageowner.sim import api
from pageowner.sim.machine import OutOfMemory

__all__ = [
    "FLEET_KERNELS",
    "HostPlan",
    "SimulateOptions",
    "SimulateResult",
    "check_output_dir",
    "plan_fleet",
    "simulate_fleet",
    "simulate_host",
]

# Kernels of a plausible fleet mid-upgrade: long-term releases, all printing the comm.
FLEET_KERNELS = ("5.15", "6.1", "6.6", "6.12")
START = 1_800_000_000.0  # the fixed clock of the first round, seconds since the epoch
ROUND_SECONDS = 3600.0


@dataclass(frozen=True)
class SimulateOptions:
    """How big a fleet, from which seed, and how many leak."""

    hosts: int = 20
    seed: int = 1
    mem_mib: int = 256  # the largest host; others have 1/2 or 3/4 of it
    leak_every: int = 10  # one host in this many leaks (at least one)
    rounds: int = 1


@dataclass(frozen=True)
class HostPlan:
    """One simulated host: its name, kernel, memory, seed and whether it leaks."""

    index: int
    name: str
    version: str
    mem_mib: int
    seed: int
    leaks: bool

    def to_json(self) -> str:
        """Encode for a task."""
        return json.dumps([self.index, self.name, self.version, self.mem_mib, self.seed,
                           self.leaks])  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> HostPlan:
        """Decode `to_json`."""
        index, name, version, mem, seed, leaks = json.loads(text)
        return cls(index, name, version, mem, seed, leaks)


def plan_fleet(options: SimulateOptions) -> list[HostPlan]:
    """Draw every host of the fleet from the seed."""
    if options.hosts < 1:
        raise SpecError("--hosts must be at least 1")
    if options.mem_mib < 128:
        raise SpecError("--mem: at least 128M (the smallest hosts get half of it)")
    rng = random.Random(f"pageowner-fleet:{options.seed}")
    leakers = max(1, options.hosts // max(1, options.leak_every))
    leaking = set(rng.sample(range(options.hosts), min(leakers, options.hosts)))
    plans = []
    for index in range(options.hosts):
        mem = options.mem_mib * rng.choice((2, 3, 4)) // 4
        plans.append(HostPlan(index, f"host-{index:04d}", rng.choice(FLEET_KERNELS), mem,
                              rng.randrange(1 << 30), index in leaking))  # fmt: skip
    return plans


def _run(state: Path, name: str, args: list[str]) -> None:
    """Run one workload; one that runs out of memory is left out, as on a full host."""
    with contextlib.suppress(OutOfMemory):
        api.run(state, name, args)


def _work(state: Path, plan: HostPlan, round_index: int) -> None:
    """Run one round of a host's workloads."""
    rng = random.Random(f"{plan.seed}:{round_index}")
    quarter = max(4, plan.mem_mib // 4)
    # The simulator reads every file from disk (no cache hits), so each round's reads add
    # page cache until reclaim: the noise a real fleet shows between two captures.
    _run(state, "pagecache", ["--mb", str(rng.randint(4, quarter)),
                                 "--file", "/data/app.db"])  # fmt: skip
    _run(state, "fork", ["--count", str(rng.randint(2, 12)), "--comm", rng.choice(
        ("nginx", "java", "postgres", "envoy"))])  # fmt: skip
    _run(state, "net", ["--mb", str(rng.randint(1, 8))])
    if rng.random() < 0.5:
        _run(state, "memcg", ["--name", "batch.slice", "--mb", str(rng.randint(2, quarter // 2)),
                                 "--comm", "batch"])  # fmt: skip
    if plan.leaks:
        pages = plan.mem_mib * 256 // 10  # a tenth of memory per round
        _run(state, "leak", ["--pages", str(pages), "--seconds", "600"])


def simulate_host(plan_json: str, output: str, rounds: int) -> list[str]:
    """Boot one host, run its rounds and capture each; return the capture paths."""
    plan = HostPlan.from_json(plan_json)
    written = []
    # The machine lives beside the captures (so the sidecars' debugfs path is the same on
    # every run) and goes when its captures are taken.
    root = Path(output) / ".machines" / plan.name
    try:
        state = root / "state"
        shutil.rmtree(root, ignore_errors=True)  # a rerun of this task after a lost worker
        api.boot(state, plan.version, plan.mem_mib << 20, "page_owner=on", plan.seed)
        (root / "boot").mkdir()
        host = Host(HostPaths(debugfs=str(root / "debugfs"), proc=str(root / "proc"),
                              boot=str(root / "boot")))  # fmt: skip
        for round_index in range(rounds):
            _work(state, plan, round_index)
            api.dump(state, tree=str(root / "debugfs"), proc_tree=str(root / "proc"))
            (root / "proc" / "sys" / "kernel" / "hostname").write_text(plan.name + "\n")
            folder = Path(output) / (f"round-{round_index + 1}" if rounds > 1 else "")
            target = folder / plan.name / "page_owner.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            clock = ManualClock(START + round_index * ROUND_SECONDS + plan.index)
            capture(str(target), host=host, clock=clock)
            written.append(str(target))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        with contextlib.suppress(OSError):
            root.parent.rmdir()  # the last host out removes the folder
    return written


def check_output_dir(output: str) -> None:
    """Refuse an output folder that holds files already (captures are never overwritten)."""
    if os.path.isdir(output) and os.listdir(output):
        raise SpecError(f"{output}: the folder is not empty; give a new or empty one")
    if os.path.exists(output) and not os.path.isdir(output):
        raise SpecError(f"{output}: not a folder")


@dataclass(frozen=True)
class SimulateResult:
    """The fleet simulated: its hosts and the captures written."""

    plans: tuple[HostPlan, ...]
    captures: tuple[str, ...]


def simulate_fleet(options: SimulateOptions, output: str, engine: Engine,
                   on_progress: Callable[[int, int], None] | None = None) -> SimulateResult:
    """Simulate every host of the fleet as one task on the cluster; write their captures."""
    as_completed = dask_distributed().as_completed
    check_output_dir(output)
    plans = plan_fleet(options)
    os.makedirs(output, exist_ok=True)
    absolute = os.path.abspath(output)
    with connect(engine) as client:
        futures = [client.submit(simulate_host, plan.to_json(), absolute, options.rounds)
                   for plan in plans]  # fmt: skip
        for done, _future in enumerate(as_completed(futures), start=1):
            if on_progress is not None:
                on_progress(done, len(futures))
        written = [path for future in futures for path in future.result()]
    return SimulateResult(tuple(plans), tuple(sorted(written)))
