"""Booting a simulated machine, in the kernel's order.

1. memblock: RAM minus the kernel image, the struct page array and the initrd; the CMA
   area's pageblocks become MIGRATE_CMA.
2. memblock_free_all(): free memory enters the buddy allocator, to the tail of the free
   lists since v5.10, so the lowest pfns are used first.
3. Allocations made before page_owner starts: a few pages, and page_ext itself (one
   table per 128 MiB section, allocated with alloc_pages_exact() on the section's node;
   "allocated N bytes of page_ext").
4. page_owner init: every page already allocated becomes an early page (order 0, mask 0,
   the early stack) and each node's zones log how many they hold; or "page_owner is
   disabled".
5. The kernel's initcalls and PID 1's start, replayed from a real boot of the family
   (hash tables scale with memory), with the initrd freed once unpacked.
6. The boot script ends by starting the dd that reads page_owner, as in the fixtures.
"""

from __future__ import annotations

from pageowner.kernel.kernels import version_key
from pageowner.sim.buddy import MAX_ORDER, MT_CMA, MT_UNMOVABLE, PAGEBLOCK_ORDER
from pageowner.sim.gfp import ZONE_NORMAL
from pageowner.sim.machine import PAGE_SHIFT, SECTION_PAGES, AllocClass, Machine
from pageowner.sim.replay import Entry, decode_entries, replay
from pageowner.sim.stackdepot import DUMMY, EARLY, FAILURE

__all__ = ["register_placeholders", "run_boot", "spawn_reader"]

# v5.10 "mm/page_alloc: place pages to tail in __free_pages_core()"
_BOOT_FREE_TO_TAIL = (5, 10)
_INITRD_FUNCTIONS = ("do_copy", "write_buffer", "unpack_to_rootfs", "flush_buffer")
# The pid the fixtures' boot script had reached when it started the dd that reads
# page_owner: 68 in 6.1.192-boot, 45 in 6.12.117-work (5.10.223 prints no pids).
_READER_PID = {"5.10": 60, "6.1": 68, "6.12": 45}


def register_placeholders(machine: Machine) -> None:
    """Save page_owner's dummy, failure and early stacks first, as init_page_owner() does."""
    builder = machine.builder
    for index, kind in ((DUMMY, "dummy"), (FAILURE, "failure"), (EARLY, "early")):
        saved = machine.depot.save(builder.placeholder(kind))
        assert saved == index, "the placeholders must be the depot's first three stacks"


def _memblock(machine: Machine) -> None:
    """Reserve, then free the rest of RAM into the buddy allocator."""
    layout = machine.layout
    buddy = machine.buddy
    holes = sorted((start, end) for _, start, end in layout.reserved)
    if layout.cma is not None:
        start, end = layout.cma
        first = start >> PAGEBLOCK_ORDER
        count = (end - start) >> PAGEBLOCK_ORDER
        buddy.pageblock_mt[first:first + count] = bytes([MT_CMA]) * count
    to_tail = version_key(machine.version) >= _BOOT_FREE_TO_TAIL
    for start, end in layout.usable:
        cursor = start
        for hole_start, hole_end in holes:
            if hole_end <= cursor or hole_start >= end:
                continue
            if hole_start > cursor:
                buddy.free_range_at_boot(cursor, hole_start, to_tail)
            buddy.reserve_range(max(cursor, hole_start), min(end, hole_end))
            cursor = max(cursor, hole_end)
        if cursor < end:
            buddy.free_range_at_boot(cursor, end, to_tail)
    # khugepaged starts at boot when THP is `always` or `madvise`, and raises
    # min_free_kbytes then (mm/khugepaged.c set_recommended_min_free_kbytes)
    buddy.setup_watermarks(thp=machine.params.thp != "never")
    present = layout.present_pages
    managed = buddy.managed_pages
    machine.log(f"Memory: {managed * 4}K/{present * 4}K available "
                f"({(present - managed) * 4}K reserved)")
    if layout.cma is not None:
        start, end = layout.cma
        machine.log(f"cma: Reserved {(end - start) >> 8} MiB at 0x{start << 12:016x}")


def _early_allocations(machine: Machine) -> None:
    """Allocate what the kernel allocates before page_owner is up."""
    info = machine.family.data["early"]
    buddy = machine.buddy
    for _ in range(max(0, info["fixed"])):
        buddy.alloc(0, ZONE_NORMAL, MT_UNMOVABLE)
    if not machine.page_owner:
        return  # nobody asked for page_ext, so none is allocated
    per_section = info["per_section"]
    order = max(0, (per_section - 1).bit_length())
    # one table per present section, allocated on the section's node (alloc_page_ext)
    sections = sorted({(start_pfn // SECTION_PAGES, machine.buddy.zone_of(start_pfn).node)
                       for start, end in machine.layout.usable
                       for start_pfn in range(start, end, SECTION_PAGES)
                       if machine.buddy.chunk_zone[start_pfn >> MAX_ORDER] >= 0})
    sections = sections[:(machine.layout.present_pages + SECTION_PAGES - 1) // SECTION_PAGES]
    allocated = 0
    for _, node in sections:
        pfn = buddy.alloc(order, ZONE_NORMAL, MT_UNMOVABLE, 0, node)
        if pfn is None:
            break
        buddy.split(pfn)
        for tail in range(pfn + per_section, pfn + (1 << order)):
            buddy.free(tail, 0)  # free_pages_exact() of the unused tail
        allocated += per_section
    machine.log(f"allocated {allocated << PAGE_SHIFT} bytes of page_ext")


def _early_task(machine: Machine) -> tuple[int, int]:
    """Return the (task, ts) early pages carry: PID 0 at 0 ns when init runs in
    start_kernel (mm_core_init, v6.4+), else PID 1 during kernel_init_freeable."""
    info = machine.family.data["early"]
    if any("start_kernel" in line for line in machine.builder.placeholder("early")):
        return machine.tasks.add(0, 0, "swapper"), 0
    pid = info["pid"] or 1
    return machine.tasks.add(pid, pid, info["comm"] or "swapper/0"), info["ts_ns"]


def _page_owner_init(machine: Machine) -> None:
    """Mark allocated pages as early ones and log the per-zone counts, or say it is off."""
    task, ts = _early_task(machine)
    machine.clock_ns = max(machine.clock_ns, ts)
    if not machine.page_owner:
        machine.clock_ns = max(machine.clock_ns, 1_000_000_000)
        machine.log("page_owner is disabled")
        return
    early = machine.class_id(AllocClass(EARLY, 0, task, machine.flags_id(())))
    page = machine.page
    counts = [0] * len(machine.buddy.zones)
    for pfn, order in list(machine.buddy.iter_allocated()):
        if order:
            machine.buddy.split(pfn)
        for sub in range(pfn, pfn + (1 << order)):
            page.order[sub] = 0
            page.cls[sub] = early
            page.ts[sub] = ts
        counts[machine.buddy.chunk_zone[pfn >> MAX_ORDER]] += 1 << order
    for position, zone in enumerate(machine.buddy.zones):
        machine.log(f"Node {zone.node}, zone {zone.name:>8}: page owner found early "
                    f"allocated {counts[position]} pages")


def _task_index(machine: Machine, name: str) -> int:
    """Register a learned `comm:pid` task."""
    comm, _, pid_text = name.rpartition(":")
    pid = int(pid_text)
    return machine.tasks.add(pid, pid, comm)


def spawn_reader(machine: Machine, start_ns: int) -> None:
    """Start the `dd if=/sys/kernel/debug/page_owner bs=1M` of the fixtures' script.

    Its fork child (still `init`) and then `dd` fault in their pages and the 1 MiB
    buffer; the task lives until the next workload starts.
    """
    profile = machine.family
    reader = profile.data["reader"]
    child = machine.tasks.spawn("init")
    pid = machine.tasks[child].pid
    dd = machine.tasks.rename(child, "dd")
    obj = f"task:{pid}"
    forks = decode_entries(profile, reader["fork_entries"])
    main = decode_entries(profile, reader["entries"])
    replay(machine, forks, lambda entry, i: child, start_ns, obj_of=lambda e, i: obj)
    replay(machine, main, lambda entry, i: dd, machine.clock_ns + 200_000,
           obj_of=lambda e, i: obj)
    machine.reader = obj


def _unpacks_initrd(machine: Machine, entry: Entry) -> bool:
    """Tell whether an entry belongs to the initramfs unpacking."""
    names = machine.family.stacks[entry.stack]
    return any(frame.function in _INITRD_FUNCTIONS for frame in names)


def run_boot(machine: Machine) -> None:
    """Boot the machine; see the module docstring for the steps."""
    machine.clock_ns = 0
    for line in machine.params.dmesg_lines():
        machine.log(line)
    for note in machine.params.notes:
        machine.notes.append(note)
    symbol_note = machine.symbol_note()
    if symbol_note is not None:
        machine.notes.append(symbol_note)
    register_placeholders(machine)
    _memblock(machine)
    _early_allocations(machine)
    _page_owner_init(machine)
    profile = machine.family
    tasks = [_task_index(machine, name) for name in profile.data["tasks"]]
    entries = decode_entries(profile, profile.data["boot"], boot=True)
    ratio = machine.layout.present_pages / (profile.data["boot_mem_mb"] * 256)
    unpack = [entry.t1_us for entry in entries if _unpacks_initrd(machine, entry)]
    initrd_free_ns = (max(unpack) + 1000) * 1000 if unpack else 900_000_000
    freed: list[bool] = []

    def on_event(stamp: int, force: bool = False) -> None:
        if freed or machine.layout.initrd is None:
            return
        if stamp >= initrd_free_ns or force:
            start, end = machine.layout.initrd
            machine.clock_ns = max(machine.clock_ns, stamp)
            machine.buddy.free_range_at_boot(start, end, to_tail=False, count_present=False)
            machine.log(f"Freeing initrd memory: {(end - start) * 4}K")
            freed.append(True)

    replay(machine, entries, lambda entry, i: tasks[entry.task], 0,
           count_scale=lambda entry: ratio if entry.scale == "mem" else 1.0,
           on_event=on_event)
    on_event(machine.clock_ns, force=True)
    machine.log("Run /init as init process")
    tasks_table = machine.tasks
    tasks_table.next_pid = max(tasks_table.next_pid, _READER_PID.get(profile.family, 60))
    spawn_reader(machine, machine.clock_ns + 5_000_000)
    machine.history.append(f"boot {machine.version} {machine.mem_bytes >> 20}M "
                           f"{machine.params.cmdline!r}")

