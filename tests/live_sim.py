"""The simulator as a live machine: boot it, lay out its debugfs and /proc, watch it work.

`SimLive` boots a small simulated machine in a tmp directory and lays out its files with
`pageowner dump --debugfs-tree/--proc-tree` (the library calls behind them). `watch_while`
runs `pageowner.live.watch.watch` against those trees on a manual clock: every wait
between snapshots runs the workloads of one interval and lays the trees out again, so a
series of minutes takes a second and every run gives the same store.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pageowner.live.clock import ManualClock
from pageowner.live.host import Host, HostPaths
from pageowner.live.watch import WatchResult, watch
from pageowner.sim import api

START = 1_800_000_000.0  # the manual clock's first snapshot, seconds since the epoch
MEM_MIB = 64  # small: page cache reaches reclaim quickly, and a run stays fast
LEAK_PAGES = 256  # pages the leaking driver loses per interval


@dataclass
class SimLive:
    """A simulated machine in `root`, with its debugfs and /proc trees beside its state."""

    root: Path
    version: str
    mem_mib: int = MEM_MIB
    seed: int = 1

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def debugfs(self) -> Path:
        return self.root / "debugfs"

    @property
    def proc(self) -> Path:
        return self.root / "proc"

    @property
    def release(self) -> str:
        """Return the release the simulated kernel reports (its osrelease)."""
        return f"{self.version}.0-pageowner-sim"

    @property
    def host(self) -> Host:
        """Return a Host reading the laid-out trees (and an empty /boot)."""
        (self.root / "boot").mkdir(exist_ok=True)
        return Host(HostPaths(debugfs=str(self.debugfs), proc=str(self.proc),
                              boot=str(self.root / "boot")))  # fmt: skip

    def boot(self) -> SimLive:
        """Boot with page_owner on and lay out the trees."""
        api.boot(self.state, self.version, self.mem_mib << 20, "page_owner=on", self.seed)
        self.lay_out()
        return self

    def run(self, name: str, *args: str) -> str:
        """Run one workload (`pageowner run NAME ARGS`)."""
        return api.run(self.state, name, list(args))

    def lay_out(self) -> None:
        """Write the machine's debugfs and /proc files as they are now."""
        api.dump(self.state, tree=str(self.debugfs), proc_tree=str(self.proc))

    def watch_while(self, store: Path, count: int, interval_work: Callable[[SimLive], None],
                    interval: float = 60.0) -> WatchResult:  # fmt: skip
        """Take `count` snapshots `interval` seconds apart; `interval_work` runs between."""

        def world_goes_on(_: ManualClock) -> None:
            interval_work(self)
            self.lay_out()

        self.lay_out()
        clock = ManualClock(START, on_sleep=world_goes_on)
        return watch(str(store), host=self.host, interval=interval, count=count, clock=clock)


@dataclass
class Noise:
    """Memory that comes and goes: page cache reads of random sizes, reclaimed as memory
    fills, and processes that fault in anonymous memory and exit. Seeded, so repeatable.

    Forks are left out on purpose: the simulator's forked processes never exit, so their
    stacks really do grow at every fork.
    """

    seed: int
    reads: list[int] = field(default_factory=list)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def warm_up(self, sim: SimLive) -> None:
        """Fill a quarter of memory with page cache before the first snapshot."""
        sim.run("pagecache", "--mb", str(sim.mem_mib // 4), "--file", "/data/warm")

    def __call__(self, sim: SimLive) -> None:
        """Do one interval's worth of churn."""
        for index in range(self.rng.randint(1, 3)):
            mib = self.rng.randint(1, sim.mem_mib // 4)
            self.reads.append(mib)
            sim.run("pagecache", "--mb", str(mib), "--file", f"/data/f{len(self.reads)}.{index}")
        sim.run("anon", "--mb", str(self.rng.randint(1, sim.mem_mib // 4)), "--exit")


def leak_with(noise: Noise, pages: int = LEAK_PAGES) -> Callable[[SimLive], None]:
    """Return one interval's work: the leaking driver loses `pages`, amid the noise."""

    def work(sim: SimLive) -> None:
        sim.run("leak", "--pages", str(pages), "--seconds", "60")
        noise(sim)

    return work
