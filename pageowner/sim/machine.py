"""The simulated machine: memory layout, boot, allocations with page_owner bookkeeping.

A `Machine` owns the buddy allocator, the stack depot, the tasks, the memcgs and, per
page, the page_owner data the kernel keeps in page_ext: order, allocation class (stack,
gfp mask, task, page flags, memcg), ts, free_ts and last migrate reason. Workloads call
`alloc`/`alloc_bulk`/`free_object`/`migrate`; `pageowner.sim.dump` prints the result.

Booting is `pageowner.sim.boot.run_boot(machine)` (the machine does not import it: boot
builds on the machine and on replay, which build on the machine). It follows the
kernel's order: memblock reservations, memblock_free_all() into the
buddy, the allocations made before page_owner starts (page_ext itself among them), the
"page owner found early allocated" walk, then the kernel's initcalls and PID 1 as learned
from a real boot of the same family (pageowner/data/sim-<family>.json).
"""

from __future__ import annotations

import functools
import random
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from pageowner.errors import PageOwnerError
from pageowner.kernel.kernels import KernelVersion, get_kernel, version_key
from pageowner.kernel.tables import LETTER_FLAGS, FlagTable, decode_flags
from pageowner.model import (
    DumpFormat,
    MigrateType,
    PageFlags,
    PfnStyle,
)
from pageowner.sim.buddy import (
    ALLOC_CMA,
    MAX_ORDER,
    MT_MOVABLE,
    NO_ORDER,
    BuddyAllocator,
    ZoneSpec,
)
from pageowner.sim.cmdline import BootParams, parse_cmdline
from pageowner.sim.gfp import can_spin, gfp_migratetype, gfp_zone, to_version
from pageowner.sim.stackdepot import StackDepot
from pageowner.sim.stacks import FamilyProfile, StackBuilder, family_of, profile_for
from pageowner.sim.tasks import Task, TaskTable
from pageowner.symbols.symtab import SymbolTable, TextSymbolTable

__all__ = [
    "AllocClass",
    "Machine",
    "MemoryLayout",
    "OutOfMemory",
    "ZONE_BITS_SHIFT",
    "SYMBOL_SOURCES",
    "SymbolSource",
    "layout_memory",
    "load_symbols",
    "oom_message",
    "page_flags_of",
]

PAGE_SHIFT = 12
MIB_PAGES = 256
SECTION_PAGES = 32768
ZONE_BITS_SHIFT = 56  # ZONES_PGSHIFT of the fixtures' x86_64 config
# NODES_PGSHIFT with CONFIG_NUMA=y and NODES_SHIFT 6 (x86_64_defconfig): the node sits in
# bits 58-63, just above the zone; the real 7.3 dumps print node 1, zone 1 as 0x5 << 56.
NODE_BITS_SHIFT = 58
FAKE_NODE_MIN_PAGES = 8192  # arch/x86/mm/numa_emulation.c FAKE_NODE_MIN_SIZE: 32 MiB
_LOW_LIMIT = 0x100000  # 4 GiB in pages: the end of ZONE_DMA32
_DMA_END = 0x1000  # 16 MiB


@dataclass(frozen=True)
class SymbolSource:
    """A kind of symbol table `boot` accepts: how to read it, and its option's help."""

    load: Callable[[str], SymbolTable]
    help: str


def _load_elf(path: str) -> SymbolTable:
    """Read an ELF vmlinux's .symtab (pageowner.symbols.elf, imported only when asked for)."""
    from pageowner.symbols.elf import ElfSymbolTable

    return ElfSymbolTable.from_path(path)


# Symbol tables by kind; `boot` gets one `--KIND FILE` option per entry, and later
# commands read the file again with the same loader. Every kind gives the same sizes: the
# gap to the next function, as kallsyms and so %pS have it. Addresses are the table's: link
# addresses for System.map and vmlinux (a nokaslr boot), the running ones for kallsyms.
SYMBOL_SOURCES: dict[str, SymbolSource] = {
    "vmlinux": SymbolSource(_load_elf,
                            "Take function addresses, sizes and call sites from an ELF "
                            "vmlinux with its symbol table."),
    "system-map": SymbolSource(TextSymbolTable.from_file,
                               "Take function addresses and sizes from a System.map."),
    "kallsyms": SymbolSource(TextSymbolTable.from_file,
                             "Take function addresses from a copy of /proc/kallsyms."),
}


def load_symbols(kind: str, path: str) -> SymbolTable:
    """Read a symbol table of a registered kind."""
    source = SYMBOL_SOURCES.get(kind)
    if source is None:
        raise PageOwnerError(f"unknown symbol table kind {kind!r}")
    return source.load(path)


# Flags renamed across eras: PG_mappedtodisk is printed as owner_2 from v6.12 [uncertain].
_FLAG_ALIASES = {"mappedtodisk": "owner_2", "owner_2": "mappedtodisk"}


class OutOfMemory(PageOwnerError):
    """The simulated machine cannot satisfy an allocation, even after reclaim."""


@dataclass(frozen=True)
class MemoryLayout:
    """Where RAM is: usable ranges (pfn intervals), reservations and zone spans."""

    nr_pages: int
    usable: tuple[tuple[int, int], ...]
    reserved: tuple[tuple[str, int, int], ...]
    zones: tuple[ZoneSpec, ...]
    cma: tuple[int, int] | None = None
    initrd: tuple[int, int] | None = None

    @property
    def present_pages(self) -> int:
        """Return the pages of RAM (usable ranges)."""
        return sum(end - start for start, end in self.usable)


def layout_memory(mem_bytes: int, params: BootParams, seed: int, family: str) -> MemoryLayout:
    """Lay out RAM as QEMU/x86_64 does: low RAM below 3 GiB, the rest above 4 GiB.

    The first page and 0x9f000-0x100000 (BIOS, VGA) are not RAM; ACPI keeps the last
    128 KiB of low RAM; memblock puts the kernel image at a KASLR-like 2 MiB-aligned
    address, the struct page array and the initrd at the top, and the CMA area (cma=)
    below them, aligned to MAX_ORDER.
    """
    pages = mem_bytes >> PAGE_SHIFT
    low = pages if pages <= 0xE0000 else 0xC0000
    high = pages - low
    ranges: list[tuple[int, int]] = [(1, 0x9F), (0x100, low - 0x20)]
    if high:
        ranges.append((_LOW_LIMIT, _LOW_LIMIT + high))
    if params.mem_limit is not None:
        cap = params.mem_limit >> PAGE_SHIFT
        ranges = [(start, min(end, cap)) for start, end in ranges if start < cap]
    if not ranges or sum(end - start for start, end in ranges) < 8192:
        raise PageOwnerError("too little memory to boot (at least 32 MiB)")
    nr_pages = max(end for _, end in ranges)
    nr_pages = (nr_pages + (1 << MAX_ORDER) - 1) >> MAX_ORDER << MAX_ORDER
    spans = [ZoneSpec(0, "DMA", 0, _DMA_END)]
    spans.append(ZoneSpec(1, "DMA32", _DMA_END, min(nr_pages, _LOW_LIMIT)))
    if nr_pages > _LOW_LIMIT:
        spans.append(ZoneSpec(2, "Normal", _LOW_LIMIT, nr_pages))
    present = sum(end - start for start, end in ranges)
    zones = []
    for node, (node_start, node_end) in enumerate(node_spans(ranges, nr_pages, params)):
        for span in spans:
            start, end = max(span.start_pfn, node_start), min(span.end_pfn, node_end)
            if start < end:
                zones.append(ZoneSpec(span.index, span.name, start, end, node))
    rng = random.Random(f"{seed}:kaslr")
    low_end = min(end for start, end in ranges if start == 0x100)
    image_pages = 5120 if version_key(family) >= (6, 0) else 4096
    slots = max(1, (low_end // 2 - 0x2000 - image_pages) // 512)
    image = 0x2000 + rng.randrange(slots) * 512
    reserved: list[tuple[str, int, int]] = [("kernel", image, image + image_pages)]
    top = max(end for _, end in ranges)
    memmap = (present * 64 + 4095) >> PAGE_SHIFT
    memmap_start = top - memmap
    if memmap_start < low_end and top > _LOW_LIMIT:
        memmap_start = max(_LOW_LIMIT, memmap_start)
    reserved.append(("memmap", memmap_start, top))
    initrd_end = low_end - 0x400
    initrd = (initrd_end - 0x300, initrd_end)
    reserved.append(("initrd", *initrd))
    cma = None
    if params.cma_bytes:
        cma_pages = ((params.cma_bytes >> PAGE_SHIFT) + (1 << MAX_ORDER) - 1) >> MAX_ORDER
        cma_pages <<= MAX_ORDER
        cma_end = (initrd[0] >> MAX_ORDER) << MAX_ORDER
        cma_start = cma_end - cma_pages
        if cma_start <= image + image_pages + 0x1000:
            raise PageOwnerError(
                f"cma={params.cma_bytes >> 20}M does not fit in {mem_bytes >> 20} MiB")
        cma = (cma_start, cma_end)
    return MemoryLayout(nr_pages, tuple(ranges), tuple(reserved), tuple(zones), cma, initrd)


def node_spans(ranges: list[tuple[int, int]], nr_pages: int,
               params: BootParams) -> list[tuple[int, int]]:
    """Split RAM into the nodes numa=fake= asks for; return each node's pfn span.

    Like x86's NUMA emulation: every node gets an equal share of the present pages (or
    `numa=fake=<size>` of them) and ends on a 32 MiB boundary (the nearest one here;
    numa_emulation.c's rounding over holes differs by up to 32 MiB [approximation]);
    the last node takes the rest. Nodes that would hold less than 32 MiB are
    an error (the kernel drops the request and keeps one node; we say so instead).

    >>> node_spans([(1, 0x9F), (0x100, 0x3FFE0)], 0x40000, parse_cmdline("numa=fake=2",
    ...     get_kernel("7.3")))
    [(0, 131072), (131072, 262144)]
    """
    present = sum(end - start for start, end in ranges)
    nodes = params.numa_nodes
    share = present // nodes
    if params.numa_node_bytes:
        # nodes of the given size while they fit; the last one takes what is left
        share = (params.numa_node_bytes >> PAGE_SHIFT) // FAKE_NODE_MIN_PAGES
        share = max(1, share) * FAKE_NODE_MIN_PAGES
        nodes = max(1, min(64, present // share))
    if nodes > 1 and share < FAKE_NODE_MIN_PAGES:
        raise PageOwnerError(f"numa=fake: {nodes} nodes of less than 32 MiB each do not fit "
                             f"in {present >> 8} MiB")
    if nodes == 1:
        return [(0, nr_pages)]
    bounds = [0]
    for node in range(1, nodes):
        wanted = node * share
        seen = 0
        for start, end in ranges:
            if seen + end - start >= wanted:
                pfn = start + wanted - seen
                break
            seen += end - start
        else:
            pfn = nr_pages
        rounded = (pfn + FAKE_NODE_MIN_PAGES // 2) // FAKE_NODE_MIN_PAGES * FAKE_NODE_MIN_PAGES
        bounds.append(min(nr_pages, rounded))
    bounds.append(nr_pages)
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1) if bounds[i] < bounds[i + 1]]


@dataclass(frozen=True)
class AllocClass:
    """What allocations of one kind share: stack, gfp mask, task, flags and memcg."""

    stack: int
    gfp: int  # canonical layout (pageowner.sim.gfp)
    task: int
    flags: int  # index into Machine.flag_sets
    memcg: int = 0  # 1 + index into Machine.memcgs; 0 = not charged
    objcg: bool = False
    slab: bool = False


@dataclass
class Memcg:
    """A memory cgroup: its name (cgroup_name()) and whether it is still online."""

    name: str
    online: bool = True


@dataclass
class _Arrays:
    """Per-page page_owner data."""

    order: bytearray
    cls: array[int]
    ts: array[int]
    free_ts: array[int]
    migrate: bytearray
    obj: array[int]


def _zero_array(typecode: str, n: int) -> array[int]:
    """Return an array of n zeros quickly."""
    return array(typecode, bytes(array(typecode).itemsize * n))


@dataclass
class Machine:
    """A booted machine with page_owner state; see the module docstring."""

    kernel: KernelVersion
    params: BootParams
    mem_bytes: int
    seed: int
    layout: MemoryLayout
    buddy: BuddyAllocator
    page: _Arrays
    depot: StackDepot = field(default_factory=StackDepot)
    tasks: TaskTable = field(default_factory=TaskTable)
    memcgs: list[Memcg] = field(default_factory=list)
    classes: list[AllocClass] = field(default_factory=list)
    flag_sets: list[tuple[str, ...]] = field(default_factory=list)
    objects: list[str] = field(default_factory=lambda: [""])
    dmesg: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reader: str = ""
    clock_ns: int = 0
    op_counter: int = 0
    symbols: SymbolTable | None = None
    symbols_source: tuple[str, str] | None = None
    _class_index: dict[AllocClass, int] = field(default_factory=dict)
    _flag_index: dict[tuple[str, ...], int] = field(default_factory=dict)
    _object_index: dict[str, int] = field(default_factory=dict)
    _builder: StackBuilder | None = None
    _flags_cache: dict[tuple[int, int], PageFlags] = field(default_factory=dict)
    # The per-class part of a record, kept by pageowner.sim.records.record_at.
    record_cache: dict[int, tuple[int, str | None, Task, MigrateType]] = field(
        default_factory=dict)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(cls, version: str, mem_bytes: int, cmdline: str, seed: int,
               symbols: SymbolTable | None = None,
               symbols_source: tuple[str, str] | None = None,
               layout: MemoryLayout | None = None, page: _Arrays | None = None) -> Machine:
        """Build an unbooted machine: layout and empty arrays (or saved ones)."""
        kernel = get_kernel(version)
        params = parse_cmdline(cmdline, kernel)
        if layout is None:
            layout = layout_memory(mem_bytes, params, seed, family_of(version))
        n = layout.nr_pages
        if page is None:
            page = _Arrays(bytearray(b"\xff") * n, _zero_array("I", n), _zero_array("Q", n),
                           _zero_array("Q", n), bytearray(n), _zero_array("I", n))
        machine = cls(kernel, params, mem_bytes, seed, layout,
                      BuddyAllocator(n, list(layout.zones)), page)
        machine.buddy.steal_whole_buddy = kernel.steal_whole_buddy
        machine.symbols = symbols
        machine.symbols_source = symbols_source
        machine.depot.version = version
        return machine

    @property
    def version(self) -> str:
        """Return the simulated kernel version."""
        return self.kernel.version

    @functools.cached_property
    def fmt(self) -> DumpFormat:
        """Return the version's line shapes (computed once)."""
        return self.kernel.fmt

    @functools.cached_property
    def gfp_table(self) -> FlagTable | None:
        """Return the version's %pGg table, None before v4.6."""
        return self.kernel.gfp_table

    @functools.cached_property
    def pageflag_table(self) -> FlagTable:
        """Return the version's %pGp table."""
        return self.kernel.pageflag_table

    @functools.cached_property
    def era(self) -> tuple[bool, bool]:
        """Return (prints migrate reasons, prints memcg lines)."""
        return self.kernel.migrate_line, self.kernel.memcg_lines

    @property
    def kernel_key(self) -> tuple[int, ...]:
        """Return the version as a comparable tuple."""
        return version_key(self.kernel.version)

    @property
    def page_owner(self) -> bool:
        """Tell whether page_owner=on took effect."""
        return self.params.page_owner

    @property
    def family(self) -> FamilyProfile:
        """Return the learned profile this version's behaviour comes from."""
        return profile_for(self.version)

    def symbol_note(self) -> str | None:
        """Say how many catalogue functions the machine's symbol table lacks, if any."""
        if self.symbols is None or self.symbols_source is None:
            return None
        missing, total = self.builder.missing_functions()
        if not missing:
            return None
        shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
        return (f"{len(missing)} of the {total} functions {self.version} stacks show are not "
                f"in {self.symbols_source[1]}; they keep the built-in offsets and sizes "
                f"({shown})")

    @property
    def builder(self) -> StackBuilder:
        """Return the stack builder of this machine's version and symbols."""
        if self._builder is None:
            self._builder = StackBuilder(self.kernel, self.seed, self.symbols)
        return self._builder

    def log(self, message: str) -> None:
        """Add a kernel log line stamped with the simulated clock."""
        seconds, nanos = divmod(self.clock_ns, 1_000_000_000)
        self.dmesg.append(f"[{seconds:5d}.{nanos // 1000:06d}] {message}")

    # -- interning -----------------------------------------------------------------------

    def stack(self, lines: tuple[str, ...]) -> int:
        """Save a stack in the depot; return its index."""
        return self.depot.save(lines)

    def flags_id(self, names: Iterable[str]) -> int:
        """Intern a set of page flag names."""
        key = tuple(names)
        index = self._flag_index.get(key)
        if index is None:
            index = self._flag_index[key] = len(self.flag_sets)
            self.flag_sets.append(key)
        return index

    def memcg_id(self, name: str | None, online: bool = True) -> int:
        """Return 1 + the index of a memcg, creating it; 0 for no memcg."""
        if name is None:
            return 0
        for index, memcg in enumerate(self.memcgs):
            if memcg.name == name:
                return index + 1
        self.memcgs.append(Memcg(name, online))
        return len(self.memcgs)

    def set_memcg_online(self, name: str, online: bool) -> None:
        """Take a memcg offline (rmdir) or bring it back."""
        self.memcgs[self.memcg_id(name) - 1].online = online

    def class_id(self, alloc_class: AllocClass) -> int:
        """Intern an allocation class."""
        index = self._class_index.get(alloc_class)
        if index is None:
            index = self._class_index[alloc_class] = len(self.classes)
            self.classes.append(alloc_class)
        return index

    def object_id(self, name: str | None) -> int:
        """Return the id of a named group of allocations (a file, a process); 0 for none."""
        if not name:
            return 0
        index = self._object_index.get(name)
        if index is None:
            index = self._object_index[name] = len(self.objects)
            self.objects.append(name)
        return index

    def rebuild_indexes(self) -> None:
        """Recompute lookup dicts after a load."""
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        self._flag_index = {f: i for i, f in enumerate(self.flag_sets)}
        self._object_index = {o: i for i, o in enumerate(self.objects) if o}

    # -- allocation ----------------------------------------------------------------------

    def _alloc_flags(self, gfp: int) -> int:
        """Return ALLOC_CMA for movable requests (gfp_to_alloc_flags_cma())."""
        return ALLOC_CMA if gfp_migratetype(gfp) == MT_MOVABLE else 0

    def set_page_owner(self, pfn: int, order: int, cls: int, ts: int, obj: int) -> None:
        """Fill page_owner data for a new allocation (__set_page_owner)."""
        page = self.page
        page.order[pfn] = order
        page.cls[pfn] = cls
        page.ts[pfn] = ts
        page.migrate[pfn] = 0
        page.obj[pfn] = obj
        if order:
            pages = 1 << order
            page.obj[pfn + 1:pfn + pages] = array("I", [obj]) * (pages - 1)
        if self.page_owner:
            alloc_class = self.classes[cls]
            self.depot.account(alloc_class.stack, 1 << order, can_spin(alloc_class.gfp))

    def _reclaim(self, pages: int) -> bool:
        """Free clean page cache, oldest file first (kswapd/direct reclaim); tell if any."""
        freed = 0
        for index, name in enumerate(self.objects):
            if name.startswith("pagecache:") and freed < pages:
                freed += self.free_object(name)
                self.objects[index] = ""
                self._object_index.pop(name, None)
        return freed > 0

    def alloc(self, alloc_class: AllocClass, order: int = 0, count: int = 1,
              obj: str | None = None, step_ns: int = 1500,
              ts: Sequence[int] | None = None) -> list[int]:
        """Allocate `count` blocks of one class, spaced `step_ns` apart; return head pfns."""
        cls = self.class_id(alloc_class)
        gfp = alloc_class.gfp
        highest = gfp_zone(gfp)
        mt = gfp_migratetype(gfp)
        flags = self._alloc_flags(gfp)
        obj_id = self.object_id(obj)
        node = self.node_of_task(alloc_class.task)
        pfns = []
        for index in range(count):
            pfn = self.buddy.alloc(order, highest, mt, flags, node)
            if pfn is None and self._reclaim(1 << order):
                pfn = self.buddy.alloc(order, highest, mt, flags, node)
            if pfn is None:
                raise OutOfMemory(oom_message(self, alloc_class, order))
            if ts is not None:
                stamp = ts[index]
                self.clock_ns = max(self.clock_ns, stamp)
            else:
                self.clock_ns += step_ns
                stamp = self.clock_ns
            self.set_page_owner(pfn, order, cls, stamp, obj_id)
            pfns.append(pfn)
        return pfns

    def alloc_bulk(self, alloc_class: AllocClass, pages: int, obj: str | None = None,
                   step_ns: int = 700) -> int:
        """Allocate many order-0 pages fast (a big write or fault-in); return how many."""
        cls = self.class_id(alloc_class)
        gfp = alloc_class.gfp
        highest = gfp_zone(gfp)
        mt = gfp_migratetype(gfp)
        flags = self._alloc_flags(gfp)
        obj_id = self.object_id(obj)
        page = self.page
        done = 0
        stack = alloc_class.stack
        node = self.node_of_task(alloc_class.task)
        while done < pages:
            run = self.buddy.alloc_run(highest, mt, flags, pages - done, node)
            if run is None and self._reclaim(pages - done):
                run = self.buddy.alloc_run(highest, mt, flags, pages - done, node)
            if run is None:
                raise OutOfMemory(oom_message(self, alloc_class, 0, pages - done))
            pfn, n = run
            start = self.clock_ns + step_ns
            page.order[pfn:pfn + n] = bytes(n)
            page.cls[pfn:pfn + n] = array("I", [cls]) * n
            # a write's pages are not evenly spaced in time: jitter each step by up to 50%
            half = max(1, step_ns // 2)
            page.ts[pfn:pfn + n] = array(
                "Q", (start + i * step_ns + (i * 2654435761) % half for i in range(n)))
            page.migrate[pfn:pfn + n] = bytes(n)
            page.obj[pfn:pfn + n] = array("I", [obj_id]) * n
            self.clock_ns = start + n * step_ns
            if self.page_owner:
                self.depot.account(stack, n, can_spin(gfp))
            done += n
        return done

    def node_of_task(self, task: int) -> int:
        """Return the node a task allocates from first: its CPU's (one CPU per node).

        The simulator does not schedule; a task runs on CPU pid % nodes, as the real
        2-node 7.3 boot spread its allocations over both nodes.
        """
        nodes = self.buddy.nr_nodes
        pid = self.tasks[task].pid
        return pid % nodes if nodes > 1 else 0

    # -- free ----------------------------------------------------------------------------

    def free(self, pfn: int) -> int:
        """Free the allocation at a head pfn (__reset_page_owner); return its pages."""
        page = self.page
        order = page.order[pfn]
        if order == NO_ORDER:
            raise ValueError(f"pfn {pfn:#x} holds no allocation")
        pages = 1 << order
        self.clock_ns += 300
        self.buddy.free(pfn, order)
        if self.page_owner:
            self.depot.account(self.classes[page.cls[pfn]].stack, -pages)
        page.order[pfn] = NO_ORDER
        page.free_ts[pfn:pfn + pages] = array("Q", [self.clock_ns]) * pages
        page.obj[pfn:pfn + pages] = array("I", bytes(4 * pages))
        return pages

    def object_pfns(self, name: str) -> list[int]:
        """Return the head pfns of an object's allocations, in pfn order."""
        obj = self._object_index.get(name)
        if obj is None:
            return []
        page = self.page
        target = array("I", [obj]).tobytes()
        raw = page.obj.tobytes()
        pfns = []
        start = raw.find(target)
        while start >= 0:
            if start % 4 == 0:
                pfn = start // 4
                if page.order[pfn] != NO_ORDER:
                    pfns.append(pfn)
            start = raw.find(target, start + 1)
        return pfns

    def free_object(self, name: str) -> int:
        """Free every allocation of a named object; return the pages freed."""
        return sum(self.free(pfn) for pfn in self.object_pfns(name))

    # -- migration -----------------------------------------------------------------------

    def migrate(self, pfn: int, target: int | None, reason: int) -> int:
        """Move an order-0 allocation (folio_copy_owner() + free); return the new pfn.

        `target` is a free page to move to (compaction's free scanner found it), or None
        to allocate one outside CMA as alloc_migration_target() does.
        """
        page = self.page
        cls = page.cls[pfn]
        gfp_mt = gfp_migratetype(self.classes[cls].gfp)
        if target is None:
            node = self.buddy.zone_of(pfn).node
            target = self.buddy.alloc(0, gfp_zone(self.classes[cls].gfp), gfp_mt, 0, node)
            if target is None and self._reclaim(1):
                target = self.buddy.alloc(0, gfp_zone(self.classes[cls].gfp), gfp_mt, 0, node)
            if target is None:
                raise OutOfMemory(oom_message(self, self.classes[cls], 0))
        elif not self.buddy.alloc_at(target, gfp_mt):
            raise ValueError(f"migration target {target:#x} is not free")
        self.clock_ns += 2000
        page.order[target] = 0
        page.cls[target] = cls
        page.ts[target] = page.ts[pfn]
        # v5.14-v6.6 copied the old page's ts into the new page's free_ts (a bug v6.7 fixed
        # along with removing free_ts from the output)
        copy_bug = (5, 14) <= version_key(self.version) < (6, 7)
        page.free_ts[target] = page.ts[pfn] if copy_bug else page.free_ts[pfn]
        page.migrate[target] = reason + 1
        page.obj[target] = page.obj[pfn]
        # the old page is freed; its stack's count is moved with the folio, not changed
        self.buddy.free(pfn, 0)
        page.order[pfn] = NO_ORDER
        page.free_ts[pfn] = self.clock_ns
        page.obj[pfn] = 0
        return target

    # -- page flags ----------------------------------------------------------------------

    def page_flags(self, pfn: int, cls: AllocClass) -> PageFlags:
        """Return the PageFlags a record prints for a page (value, names, fields)."""
        position = self.buddy.chunk_zone[pfn >> MAX_ORDER]
        key = (cls.flags, position)
        flags = self._flags_cache.get(key)
        if flags is None:
            zone = self.buddy.zones[position]
            flags = self._flags_cache[key] = page_flags_of(
                self.flag_sets[cls.flags], self.fmt.pfn, self.pageflag_table, zone.index,
                zone.node)
        return flags


def oom_message(machine: Machine, alloc_class: AllocClass, order: int, pages: int = 0) -> str:
    """Describe a failed allocation the way the kernel's warning starts."""
    task = machine.tasks[alloc_class.task]
    gfp = to_version(alloc_class.gfp, machine.version)
    table = machine.kernel.gfp_table
    names = f"({decode_flags(gfp, table)})" if table is not None else ""
    need = f"; {pages} pages still to allocate" if pages else ""
    return (f"out of memory: {task.comm}: page allocation failure: order:{order}, "
            f"mode:{gfp:#x}{names}; {machine.buddy.free_pages} pages free{need}")


def page_flags_of(names: tuple[str, ...], style: PfnStyle, table: FlagTable, zone: int,
                  node: int = 0) -> PageFlags:
    """Return the PageFlags a set of flag names prints in a node's zone, in a pfn style."""
    if style is PfnStyle.LETTERS:
        letters = {name for _, name in LETTER_FLAGS}
        mapped = tuple(n if n != "head" else "compound" for n in names)
        printed = tuple(name for _, name in LETTER_FLAGS if name in mapped and name in letters)
        return PageFlags(None, printed)
    value = 0
    for name in names:
        try:
            value |= table.value_of(name)
        except KeyError:
            try:
                value |= table.value_of(_FLAG_ALIASES.get(name, name))
            except KeyError:
                continue  # e.g. `slab` is a page type, not a flag, from v6.10
    printed_names = tuple(filter(None, decode_flags(value, table).split("|")))
    value |= zone << ZONE_BITS_SHIFT | node << NODE_BITS_SHIFT
    fields: tuple[tuple[str, str], ...] = ()
    if style is not PfnStyle.DEC_RAW_FLAGS:
        fields = (("node", str(node)), ("zone", str(zone)))
    return PageFlags(value, printed_names, fields)
