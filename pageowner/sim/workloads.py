"""The workload registry: what `pageowner run NAME` can make the machine do.

Each workload is one `Workload` entry in `WORKLOADS`: a name, a one-line summary, its
options (`Param`), and a function that drives the machine through real kernel call paths
in real-looking tasks and returns a one-line account. Adding a workload is one function
and one `register` call. `run_workload` parses the options, ends the page_owner reader
left by the previous command, runs the workload and records it in the history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pageowner.errors import PageOwnerError, SpecError
from pageowner.sim.buddy import (
    MT_MOVABLE,
    NO_ORDER,
)
from pageowner.sim.capture import run_capture
from pageowner.sim.cmdline import memparse
from pageowner.sim.gfp import GFP, gfp_migratetype
from pageowner.sim.machine import AllocClass, Machine
from pageowner.sim.records import migrate_reason_name
from pageowner.sim.replay import Entry, decode_entries, replay
from pageowner.sim.sites import compact_memory, site_class

__all__ = [
    "Param",
    "WORKLOADS",
    "Workload",
    "parse_workload_args",
    "register",
    "run_workload",
]

MIGRATE_CONTIG_RANGE = 6


@dataclass(frozen=True)
class Param:
    """One option of a workload: `--name VALUE` (or a flag)."""

    name: str
    kind: str  # "int", "size" (MiB, with K/M/G suffixes), "str", "flag", "choice"
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    @property
    def option(self) -> str:
        """Return the option as typed on the command line."""
        return "--" + self.name.replace("_", "-")


@dataclass(frozen=True)
class Workload:
    """A registry entry."""

    name: str
    summary: str
    params: tuple[Param, ...]
    run: Callable[[Machine, dict[str, Any]], str]
    at_boot: bool = False


WORKLOADS: dict[str, Workload] = {}


def register(workload: Workload) -> Workload:
    """Add a workload to the registry."""
    WORKLOADS[workload.name] = workload
    return workload


def _parse_int(param: Param, text: str) -> int:
    """Read a non-negative integer option."""
    try:
        value = int(text, 0)
    except ValueError:
        raise SpecError(f"{param.option}: not a number: {text!r}") from None
    if value < 0:
        raise SpecError(f"{param.option}: must not be negative: {text!r}")
    return value


def _parse_size(param: Param, text: str) -> int:
    """Read a size in MiB: a plain number, or bytes with K/M/G suffixes."""
    if text.isdigit():
        return int(text)
    size, rest = memparse(text)
    if rest not in ("", "B", "b", "iB") or size == 0 and text[:1] != "0":
        raise SpecError(f"{param.option}: not a size in MiB or with K/M/G: {text!r}")
    return size >> 20


def _parse_choice(param: Param, text: str) -> str:
    """Read one of the option's choices."""
    if text not in param.choices:
        raise SpecError(f"{param.option}: choose one of {', '.join(param.choices)}")
    return text


VALUE_PARSERS: dict[str, Callable[[Param, str], Any]] = {
    "int": _parse_int,
    "size": _parse_size,
    "choice": _parse_choice,
    "str": lambda param, text: text,
}


def parse_workload_args(workload: Workload, args: Sequence[str]) -> dict[str, Any]:
    """Parse `--name VALUE`, `--name=VALUE` and flags for one workload."""
    values = {param.name: param.default for param in workload.params}
    by_option = {param.option: param for param in workload.params}
    index = 0
    while index < len(args):
        word = args[index]
        option, sep, inline = word.partition("=")
        param = by_option.get(option)
        if param is None:
            known = ", ".join(by_option) or "none"
            raise SpecError(f"workload {workload.name!r} has no option {option!r} "
                            f"(options: {known})")
        if param.kind == "flag":
            if sep:
                raise SpecError(f"{option} takes no value")
            values[param.name] = True
            index += 1
            continue
        if sep:
            text = inline
            index += 1
        else:
            if index + 1 >= len(args):
                raise SpecError(f"{option} needs a value")
            text = args[index + 1]
            index += 2
        values[param.name] = VALUE_PARSERS[param.kind](param, text)
    return values


def run_workload(machine: Machine, name: str, args: Sequence[str]) -> str:
    """Run a registered workload on a machine; return its one-line account."""
    workload = WORKLOADS.get(name)
    if workload is None:
        raise SpecError(f"no workload {name!r}; choose one of {', '.join(WORKLOADS)} "
                        "(see 'pageowner workloads')")
    if workload.at_boot:
        raise SpecError(f"{name!r} runs once, at boot: use 'pageowner boot'")
    values = parse_workload_args(workload, args)
    machine.op_counter += 1  # numbers this run's objects (page cache files, buffers)
    end_reader(machine)
    machine.clock_ns += 50_000_000
    account = workload.run(machine, values)
    shown = " ".join(args)
    machine.history.append(f"run {name} {shown}".rstrip())
    return account


def end_reader(machine: Machine) -> None:
    """Let the dd that read page_owner last time exit: its pages are freed."""
    if machine.reader:
        machine.free_object(machine.reader)
        machine.reader = ""


# -- helpers ------------------------------------------------------------------------------

def _family_gfp(machine: Machine, modern: int, older: int | None = None) -> int:
    """Pick a canonical mask by family: folio-era kernels add __GFP_COMP to folios."""
    if older is not None and machine.kernel_key < (5, 19):
        return older
    return modern


def _path_class(machine: Machine, path: str, gfp: int, task: int,
                flags: Sequence[str] = (), memcg: str | None = None, objcg: bool = False,
                slab: bool = False) -> AllocClass:
    """Build a class for a hand-written call path."""
    return AllocClass(machine.stack(machine.builder.path(path)), gfp, task,
                      machine.flags_id(flags), machine.memcg_id(memcg), objcg, slab)


def _pages(mb: int) -> int:
    """Convert MiB to 4 KiB pages."""
    return mb * 256


def _anon_gfp(machine: Machine) -> int:
    """Return the mask of an anonymous fault: GFP_HIGHUSER_MOVABLE|__GFP_ZERO (+COMP)."""
    return _family_gfp(machine, GFP["GFP_HIGHUSER_MOVABLE"] | GFP["__GFP_COMP"]
                       | GFP["__GFP_ZERO"], GFP["GFP_HIGHUSER_MOVABLE"] | GFP["__GFP_ZERO"])


def _fault_in(machine: Machine, tasks: Sequence[int], pages: int, obj: str,
              memcg: str | None = None, thp: bool = False) -> None:
    """Fault anonymous memory in: data pages plus one page table per 512 pages.

    With several tasks (threads of one process) each 2 MiB range is faulted by the next.
    """
    pte_gfp = GFP["GFP_KERNEL_ACCOUNT"] | GFP["__GFP_ZERO"]
    ptes = [_path_class(machine, "pte_alloc", pte_gfp, task, (), memcg, objcg=memcg is not None)
            for task in tasks]
    if thp:
        light = GFP["GFP_TRANSHUGE_LIGHT"]
        huge = [_path_class(machine, "thp_anon", light, task,
                            ("uptodate", "lru", "head", "swapbacked"), memcg) for task in tasks]
        for index in range(pages // 512):
            machine.alloc(ptes[index % len(tasks)], 0, 1, obj, step_ns=3000)
            machine.alloc(huge[index % len(tasks)], 9, 1, obj, step_ns=40_000)
        return
    flags = ("referenced", "uptodate", "lru", "active", "swapbacked")
    data = [_path_class(machine, "anon_fault", _anon_gfp(machine), task, flags, memcg)
            for task in tasks]
    done = 0
    index = 0
    while done < pages:
        machine.alloc(ptes[index % len(tasks)], 0, 1, obj, step_ns=2500)
        chunk = min(512, pages - done)
        machine.alloc_bulk(data[index % len(tasks)], chunk, obj, step_ns=900)
        done += chunk
        index += 1


def _process(machine: Machine, comm: str, threads: int) -> list[int]:
    """Start a process and its extra threads (same tgid, inherited comm)."""
    leader = machine.tasks.spawn(comm)
    tgid = machine.tasks[leader].pid
    return [leader] + [machine.tasks.spawn(comm, tgid=tgid) for _ in range(threads - 1)]


def _spawn(machine: Machine, comm: str) -> int:
    """Start a task (fork + exec) and return its index."""
    return machine.tasks.spawn(comm)


def _task_by_comm(machine: Machine, comm: str) -> int:
    """Return an existing task with that comm, or start one."""
    index = machine.tasks.find(comm)
    return index if index is not None else machine.tasks.spawn(comm)


# -- workloads ----------------------------------------------------------------------------

def _init(machine: Machine, values: dict[str, Any]) -> str:
    """Boot-time init runs inside `pageowner boot` (see pageowner.sim.boot)."""
    raise SpecError("'init' runs once, at boot: use 'pageowner boot'")


def _pagecache(machine: Machine, values: dict[str, Any]) -> str:
    """Read a file from disk: readahead fills the page cache (reclaimable)."""
    task = _spawn(machine, "cat")
    pages = _pages(values["mb"])
    # readahead_gfp_mask(): the mapping's mask with __GFP_NORETRY|__GFP_NOWARN; folios
    # (v5.19+ page cache) always add __GFP_COMP
    gfp = GFP["GFP_HIGHUSER_MOVABLE"] | GFP["__GFP_NORETRY"] | GFP["__GFP_NOWARN"]
    gfp = _family_gfp(machine, gfp | GFP["__GFP_COMP"], gfp)
    cls = _path_class(machine, "pagecache_read", gfp, task,
                      ("referenced", "uptodate", "lru", "mappedtodisk"))
    machine.alloc_bulk(cls, pages, f"pagecache:{values['file']}:{machine.op_counter}",
                       step_ns=1200)
    return f"cat {values['file']}: {values['mb']} MiB read into the page cache"


def _shmem(machine: Machine, values: dict[str, Any]) -> str:
    """Write a file on tmpfs (dd if=/dev/zero of=/tmp/FILE bs=1M count=MB)."""
    task = _spawn(machine, "dd")
    obj = f"tmpfs:{values['file']}"
    memcg = values["memcg"] or None
    if values["huge"]:
        cls, _ = site_class(machine, "shmem_write_huge", task, memcg)
        count = max(1, values["mb"] // 2)
        machine.alloc(cls, 9, count, obj, step_ns=2_000_000)
        return f"dd: {count * 2} MiB written to a huge=always tmpfs ({count} THPs)"
    cls, _ = site_class(machine, "shmem_write", task, memcg)
    machine.alloc_bulk(cls, _pages(values["mb"]), obj, step_ns=1500)
    where = f" in memcg {memcg}" if memcg else ""
    return f"dd: {values['mb']} MiB written to tmpfs{where}"


def _anon(machine: Machine, values: dict[str, Any]) -> str:
    """Touch anonymous memory (malloc + memset); the process stays unless --exit."""
    tasks = _process(machine, values["comm"], max(1, values["threads"]))
    pid = machine.tasks[tasks[0]].pid
    obj = f"task:{pid}"
    _fault_in(machine, tasks, _pages(values["mb"]), obj)
    if values["exit"]:
        machine.free_object(obj)
        return f"{values['comm']} (pid {pid}) faulted in {values['mb']} MiB and exited"
    return f"{values['comm']} (pid {pid}) faulted in {values['mb']} MiB"


def _role_entries(machine: Machine, role: str) -> tuple[list[Entry], dict[str, Any]] | None:
    """Return a learned role's entries and description, if the family has it."""
    roles = machine.family.data["capture"]
    info = roles.get(role)
    if info is None:
        return None
    return decode_entries(machine.family, info["entries"]), info


def _fork(machine: Machine, values: dict[str, Any]) -> str:
    """Fork and exec COUNT long-running processes (sh -c 'sleep 1000 &')."""
    count = values["count"]
    parents: list[int] = []
    children: list[int] = []
    for _ in range(count):
        parent = _spawn(machine, "sh")
        parents.append(parent)
        children.append(machine.tasks.rename(parent, values["comm"]))
    start = machine.clock_ns + 1_000_000
    for role, tasks in (("sleep-fork", parents), ("sleep", children)):
        learned = _role_entries(machine, role)
        if learned is None:
            continue
        entries, info = learned
        ntasks = max(1, info["ntasks"])
        scale = count / ntasks

        def task_of(entry: Entry, i: int, tasks: list[int] = tasks) -> int:
            return tasks[i % len(tasks)]

        def obj_of(entry: Entry, i: int, tasks: list[int] = tasks) -> str:
            return f"task:{machine.tasks[tasks[i % len(tasks)]].pid}"

        def count_scale(entry: Entry, scale: float = scale) -> float:
            return scale

        replay(machine, entries, task_of, start, count_scale=count_scale, obj_of=obj_of)
        start = machine.clock_ns + 100_000
    return f"forked {count} × {values['comm']}"


def _slab(machine: Machine, values: dict[str, Any]) -> str:
    """Walk /proc and /sys like `find /`: dentry, inode and kernfs slabs grow."""
    learned = _role_entries(machine, "find")
    if learned is None:
        raise PageOwnerError("this kernel family has no learned slab workload")
    entries, _ = learned
    pages = sum(entry.count << entry.order for entry in entries)
    scale = _pages(values["mb"]) / max(1, pages)
    task = _spawn(machine, values["comm"])
    replay(machine, entries, lambda entry, i: task, machine.clock_ns + 1_000_000,
           count_scale=lambda entry: scale, time_scale=max(0.05, min(20.0, scale)))
    return f"{values['comm']}: slab caches grew by about {values['mb']} MiB"


def _vmalloc(machine: Machine, values: dict[str, Any]) -> str:
    """Load modules or BPF programs: vmalloc'ed pages, one by one (order 0)."""
    kind = values["kind"]
    comm = "modprobe" if kind == "module" else "bpftool"
    path = "vmalloc_module" if kind == "module" else "vmalloc_bpf"
    gfp = GFP["GFP_KERNEL"] | GFP["__GFP_HIGHMEM"] | GFP["__GFP_NOWARN"]
    if kind == "bpf":
        gfp |= GFP["__GFP_ZERO"]
    pages = max(1, values["kb"] // 4)
    for _ in range(values["count"]):
        task = _spawn(machine, comm)
        cls = _path_class(machine, path, gfp, task)
        machine.alloc(cls, 0, pages, f"vmalloc:{kind}:{machine.op_counter}", step_ns=900)
    return f"{values['count']} × {kind} loaded, {pages} vmalloc pages each"


def _thp(machine: Machine, values: dict[str, Any]) -> str:
    """Fault in transparent huge pages (order 9), or small pages if THP is off."""
    tasks = _process(machine, values["comm"], max(1, values["threads"]))
    pid = machine.tasks[tasks[0]].pid
    pages = values["count"] * 512
    thp = machine.params.thp != "never"
    _fault_in(machine, tasks, pages, f"task:{pid}", thp=thp)
    if not thp:
        return f"{values['comm']}: transparent_hugepage=never, {pages} small pages instead"
    return f"{values['comm']} (pid {pid}): {values['count']} THPs (order 9)"


def _net(machine: Machine, values: dict[str, Any]) -> str:
    """Send and receive: order-3 page frags for skbs (tcp_sendmsg, virtio-net refill)."""
    sender = _spawn(machine, "iperf3")
    softirq = machine.tasks.add(0, 0, "swapper/0")
    frags = max(1, _pages(values["mb"]) // 8)
    comp = GFP["__GFP_COMP"] | GFP["__GFP_NOWARN"] | GFP["__GFP_NORETRY"]
    tx = _path_class(machine, "net_tx", GFP["GFP_KERNEL"] | comp, sender, ("head",))
    rx = _path_class(machine, "net_rx", GFP["GFP_ATOMIC"] | comp, softirq, ("head",))
    for index in range(frags):
        machine.alloc(tx if index % 2 == 0 else rx, 3, 1, f"net:{machine.op_counter}",
                      step_ns=12_000)
    return f"iperf3: {frags} socket buffer frags (order 3) queued"


def _cma(machine: Machine, values: dict[str, Any]) -> str:
    """Allocate from the CMA area (echo N > /sys/kernel/debug/cma/*/alloc)."""
    layout = machine.layout
    if layout.cma is None:
        raise PageOwnerError("no CMA area: boot with cma=SIZE on the command line "
                             "(e.g. --cmdline 'page_owner=on cma=64M')")
    start, end = layout.cma
    wanted = _pages(values["mb"])
    task = _spawn(machine, "sh")
    # v6.12's alloc_contig_range() passes the caller's mask (GFP_KERNEL) to
    # post_alloc_hook(); older kernels marked the pages __GFP_MOVABLE (split_map_pages())
    gfp = GFP["GFP_KERNEL"] if machine.kernel_key >= (6, 9) else GFP["__GFP_MOVABLE"]
    cls = machine.class_id(_path_class(machine, "cma", gfp, task))
    buddy = machine.buddy
    page = machine.page
    taken = moved = 0
    pfn = start
    obj = machine.object_id(f"cma:{machine.op_counter}")
    while pfn < end and taken < wanted:
        if buddy.free_block_of(pfn) is None:
            order = page.order[pfn]
            if order == 0 and gfp_migratetype(machine.classes[page.cls[pfn]].gfp) == MT_MOVABLE:
                machine.migrate(pfn, None, MIGRATE_CONTIG_RANGE)
                moved += 1
            else:
                pfn += 1 << (order if order != NO_ORDER else 0)
                continue
        buddy.alloc_at(pfn, gfp_migratetype(gfp))
        machine.clock_ns += 400
        machine.set_page_owner(pfn, 0, cls, machine.clock_ns, obj)
        taken += 1
        pfn += 1
    if taken < wanted:
        raise PageOwnerError(f"cma: only {taken} of {wanted} pages could be allocated")
    reason = migrate_reason_name(machine.version, MIGRATE_CONTIG_RANGE)
    return f"cma_alloc: {taken} pages ({moved} migrated out, reason {reason})"


def _leak(machine: Machine, values: dict[str, Any]) -> str:
    """A driver module leaks order-0 pages from one stack, steadily, from a workqueue."""
    task = _task_by_comm(machine, "kworker/0:2")
    cls = _path_class(machine, "leak", GFP["GFP_KERNEL"], task)
    pages = values["pages"]
    step = max(1, values["seconds"] * 1_000_000_000 // max(1, pages))
    machine.alloc(cls, 0, pages, None, step_ns=step)
    return f"leaky: {pages} pages leaked over {values['seconds']} s"


def _compact(machine: Machine, values: dict[str, Any]) -> str:
    """Run compaction on every zone."""
    return f"compaction: {compact_memory(machine)} pages migrated"


def _memcg(machine: Machine, values: dict[str, Any]) -> str:
    """Run a task in a memory cgroup: its anon, tmpfs and page-table pages are charged."""
    name = values["name"]
    machine.memcg_id(name)
    machine.set_memcg_online(name, True)
    task = _spawn(machine, values["comm"])
    pid = machine.tasks[task].pid
    half = _pages(values["mb"]) // 2
    _fault_in(machine, [task], half, f"task:{pid}", memcg=name)
    cls, _ = site_class(machine, "shmem_write", task, name)
    machine.alloc_bulk(cls, _pages(values["mb"]) - half, f"tmpfs:{name}:{pid}", step_ns=1500)
    if values["offline"]:
        machine.set_memcg_online(name, False)
        return f"{values['comm']} charged {values['mb']} MiB to memcg {name}, now offline"
    return f"{values['comm']} (pid {pid}) charged {values['mb']} MiB to memcg {name}"


def _capture(machine: Machine, values: dict[str, Any]) -> str:
    """The fixtures' init script (fixtures/README.md), with --mb for the big file."""
    return run_capture(machine, values["mb"])


_MB = Param("mb", "size", 64, "how much memory, in MiB (or with K/M/G)")
register(Workload("init", "boot-time init: initcalls, initramfs unpack, PID 1 "
                  "(runs inside 'pageowner boot')", (), _init, at_boot=True))
register(Workload("pagecache", "page cache read: readahead of a file from disk",
                  (_MB, Param("file", "str", "/data/file", "the file read")), _pagecache))
register(Workload("shmem", "tmpfs/shmem write (dd to a tmpfs file)",
                  (_MB, Param("file", "str", "/tmp/file", "the tmpfs file written"),
                   Param("memcg", "str", "", "charge the pages to this memcg"),
                   Param("huge", "flag", False, "a huge=always tmpfs (order-9 pages)")),
                  _shmem))
register(Workload("anon", "anonymous page faults (malloc and touch)",
                  (_MB, Param("comm", "str", "memhog", "the process name"),
                   Param("threads", "int", 1, "threads faulting (pid != tgid)"),
                   Param("exit", "flag", False, "the process exits afterwards")), _anon))
register(Workload("fork", "fork and exec long-running processes",
                  (Param("count", "int", 40, "how many processes"),
                   Param("comm", "str", "sleep", "the program they exec")), _fork))
register(Workload("slab", "slab growth: dentries, inodes and kernfs nodes of a tree walk",
                  (_MB, Param("comm", "str", "find", "the walking process")), _slab))
register(Workload("vmalloc", "vmalloc: loading modules or BPF programs",
                  (Param("kind", "choice", "module", "what is loaded", ("module", "bpf")),
                   Param("count", "int", 4, "how many"),
                   Param("kb", "int", 256, "vmalloc size of each, in KiB")), _vmalloc))
register(Workload("thp", "transparent huge pages (order 9) on anonymous memory",
                  (Param("count", "int", 16, "how many 2 MiB pages"),
                   Param("comm", "str", "java", "the process name"),
                   Param("threads", "int", 4, "threads faulting (pid != tgid)")), _thp))
register(Workload("net", "network buffers: order-3 skb page frags, TX and RX", (_MB,), _net))
register(Workload("cma", "CMA allocation through debugfs (needs cma= at boot)",
                  (Param("mb", "size", 16, "how much, in MiB"),), _cma))
register(Workload("leak", "a leaking driver: unfreed order-0 pages from one stack",
                  (Param("pages", "int", 4096, "pages leaked"),
                   Param("seconds", "int", 60, "over how many seconds")), _leak))
register(Workload("compact", "compaction (echo 1 > /proc/sys/vm/compact_memory): "
                  "migrated pages print 'last migrate reason: compaction'", (), _compact))
register(Workload("memcg", "memcg charging: a task in a cgroup; 'Charged ...' lines (5.18+)",
                  (Param("name", "str", "app.slice", "the cgroup"), _MB,
                   Param("comm", "str", "app", "the process name"),
                   Param("offline", "flag", False, "remove the cgroup afterwards")), _memcg))
register(Workload("capture", "the fixtures' init script: tmpfs files, 40 sleeps, find /, "
                  "2000 small files, compaction, then the dd that reads page_owner",
                  (Param("mb", "size", 64, "size of the big tmpfs file, in MiB"),), _capture))
