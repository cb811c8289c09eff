"""The `capture` workload: the init script that produced the real dumps in fixtures/real.

From fixtures/README.md: write 8 MB into one tmpfs (in memcg "gone", removed afterwards,
on 6.1), the big file (--mb) into a second tmpfs (memcg "wl" on 6.1), 16 MB into a
huge=always tmpfs, start 40 `sleep`s, `find /`, create 2000 small files and delete every
other one, write 100 files from /dev/urandom and delete some, compact memory, sync, and
start the dd that copies page_owner out.

The three tmpfs writes are generated here from their sizes. Everything else each task
left allocated was learned from the real run of the same kernel family (pageowner/data,
per role: find, init, the sleeps, the urandom dds, kworkers) and is replayed on the same
timeline, shifted by however much longer or shorter the big write takes.
"""

from __future__ import annotations

from typing import Any

from pageowner.sim.boot import spawn_reader
from pageowner.sim.machine import Machine
from pageowner.sim.replay import Entry, decode_entries, parse_lines, replay
from pageowner.sim.sites import compact_memory, site_class

__all__ = ["run_capture"]

SMALL_MB = 8
HUGE_MB = 16
_US = 1000
_MS = 1_000_000


# The init script's default memcg=2 (fixtures/real73/init.sh): the small file is written in
# memcg "gone", removed afterwards, the rest in "wl". The 6.12 family ran in the root memcg
# (reading page_owner oopsed 6.12.117 otherwise), so a 7.3 machine built on it takes the
# script's memcgs from here; 7.3 prints what it charged (reparented pages as `/`).
_SCRIPT_MEMCGS = {"shmem_write_small": ("gone", True), "shmem_write": ("wl", False),
                  "shmem_write_huge": ("wl", False)}


def _memcg_of(machine: Machine, site: str) -> tuple[str | None, bool]:
    """Return the memcg (and whether it ends offline) a learned tmpfs write charged."""
    profile = machine.family
    info = parse_lines(profile.lines[profile.sites[f"{site}_lines"]])
    if info.memcg is None and machine.kernel.memcg_reparents:
        return _SCRIPT_MEMCGS[site]
    return info.memcg, info.offline


def _role_start(info: dict[str, Any]) -> int:
    """Return a role's learned start, in ns from the first dd."""
    return int(info["t0_us"]) * _US


def run_capture(machine: Machine, mb: int) -> str:
    """Run the fixtures' init-script workload with a big file of `mb` MiB."""
    profile = machine.family
    data = profile.data
    roles: dict[str, dict[str, Any]] = data["capture"]
    learned_mb = int(data["learned_mb"])
    start = machine.clock_ns + 20 * _MS

    big_info = roles.get("dd-big")
    big_t0 = _role_start(big_info) if big_info else 150 * _MS
    learned_big = ((int(big_info["t1_us"]) - int(big_info["t0_us"])) * _US if big_info
                   else learned_mb * 256 * 1000)
    big_ns = max(1, learned_big * mb // max(1, learned_mb))
    delta = big_ns - learned_big
    small_t0 = _role_start(roles["dd-small"]) if "dd-small" in roles else 0
    huge_t0 = big_t0 + learned_big + 40 * _MS

    def shifted(t_ns: int) -> int:
        return t_ns + delta if t_ns > big_t0 else t_ns

    # -- tasks, created in the order the script forked them ------------------------------
    init = machine.tasks.add(1, 1, "init")
    tasks_of: dict[str, list[int]] = {}
    spawns: list[tuple[int, str]] = [(small_t0, "dd-small"), (big_t0, "dd-big"),
                                     (huge_t0, "dd-huge")]
    for role, info in roles.items():
        if role in ("dd-small", "dd-big", "dd-huge", "init", "sleep"):
            continue
        spawns.append((shifted(_role_start(info)), role))
    spawns.sort()
    last_pid = 0
    for _, role in spawns:
        info = roles.get(role, {})
        if role == "dd-file":
            pids = info.get("pids") or []
            gap = pids[0] - last_pid - 1 if pids and last_pid else 1000
            machine.tasks.skip_pids(max(0, gap))
        if role in ("dd-small", "dd-big", "dd-huge"):
            tasks_of[role] = [machine.tasks.spawn("dd")]
        elif role == "sleep-fork":
            forks = [machine.tasks.spawn(info["comm"]) for _ in range(info["ntasks"])]
            tasks_of[role] = forks
            execed = roles.get("sleep", {}).get("comm", "exe")
            tasks_of["sleep"] = [machine.tasks.rename(task, execed) for task in forks]
        elif role.startswith("task:"):
            existing = machine.tasks.find(info["comm"])
            tasks_of[role] = [existing if existing is not None
                              else machine.tasks.spawn(info["comm"])]
        else:
            tasks_of[role] = [machine.tasks.spawn(info["comm"])
                              for _ in range(max(1, info["ntasks"]))]
        last_pid = max(machine.tasks[t].pid for t in tasks_of[role])
    tasks_of["init"] = [init]
    if "sleep" not in tasks_of and "sleep" in roles:
        info = roles["sleep"]
        tasks_of["sleep"] = [machine.tasks.spawn(info["comm"]) for _ in range(info["ntasks"])]

    # -- the learned residue of every role, on one timeline ------------------------------
    entries: list[Entry] = []
    role_of: list[str] = []
    for role, info in roles.items():
        base = shifted(_role_start(info))
        scale = mb / max(1, learned_mb) if role == "dd-big" else 1.0
        for entry in decode_entries(profile, info["entries"]):
            count = round(entry.count * scale)
            t0 = (base + entry.t0_us * _US) // _US
            t1 = (base + (entry.t1_us * _US if role != "dd-big" else entry.t1_us * _US * mb
                          // max(1, learned_mb))) // _US
            entries.append(Entry(entry.stack, entry.order, entry.gfp, count, entry.flags,
                                 entry.lines, t0, max(t0, t1)))
            role_of.append(role)
    index_of = {id(entry): number for number, entry in enumerate(entries)}

    def task_of(entry: Entry, i: int) -> int:
        tasks = tasks_of[role_of[index_of[id(entry)]]]
        return tasks[i % len(tasks)]

    def obj_of(entry: Entry, i: int) -> str | None:
        role = role_of[index_of[id(entry)]]
        if role in ("sleep", "sleep-fork", "dd-file", "find"):
            return f"task:{machine.tasks[task_of(entry, i)].pid}"
        return None

    # -- the tmpfs writes, interleaved as events ----------------------------------------
    small_memcg, small_offline = _memcg_of(machine, "shmem_write_small")
    big_memcg, _ = _memcg_of(machine, "shmem_write")
    small_cls, _ = site_class(machine, "shmem_write_small", tasks_of["dd-small"][0],
                               small_memcg)
    big_cls, _ = site_class(machine, "shmem_write", tasks_of["dd-big"][0], big_memcg)
    huge_cls, _ = site_class(machine, "shmem_write_huge", tasks_of["dd-huge"][0], big_memcg)
    if small_memcg:
        machine.set_memcg_online(small_memcg, True)
    chunks = max(1, min(mb, 4096))
    chunk_pages = [(mb * 256) // chunks + (1 if i < (mb * 256) % chunks else 0)
                   for i in range(chunks)]
    pending: list[tuple[int, int, str]] = [(start + small_t0, 0, "small")]
    for number in range(chunks):
        pending.append((start + big_t0 + big_ns * number // chunks, 1 + number, "big"))
    pending.append((start + huge_t0, chunks + 1, "huge"))
    pending.sort()

    def run_event(kind: str, number: int) -> None:
        if kind == "small":
            machine.alloc_bulk(small_cls, SMALL_MB * 256, "tmpfs:/gone/file", step_ns=3000)
            if small_memcg and small_offline:
                machine.set_memcg_online(small_memcg, False)
        elif kind == "big":
            pages = chunk_pages[number - 1]
            step = max(200, big_ns // max(1, mb * 256))
            machine.alloc_bulk(big_cls, pages, "tmpfs:/wl/big", step_ns=step)
        else:
            machine.alloc(huge_cls, 9, HUGE_MB // 2, "tmpfs:/huge/file", step_ns=5 * _MS)

    def on_event(stamp: int) -> None:
        while pending and pending[0][0] <= stamp:
            when, number, kind = pending.pop(0)
            machine.clock_ns = max(machine.clock_ns, when)
            run_event(kind, number)

    replay(machine, entries, task_of, start, obj_of=obj_of, on_event=on_event)
    on_event(1 << 62)
    machine.clock_ns += 300 * _MS
    migrated = compact_memory(machine)
    machine.clock_ns += 500 * _MS
    spawn_reader(machine, machine.clock_ns)
    sleeps = len(tasks_of.get("sleep", []))
    return (f"capture: tmpfs {SMALL_MB} MiB + {mb} MiB + {HUGE_MB} MiB huge, {sleeps} sleeps, "
            f"find /, small files, compaction moved {migrated} pages, dd reading page_owner")
