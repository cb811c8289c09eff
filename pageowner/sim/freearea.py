"""Free areas: zones, free lists per order and migratetype, pageblocks, freeing with merging.

The lower half of the buddy allocator, kept apart from `buddy` so that the per-era
fallback rules of `fallback` can work on the free lists without importing the allocator
that calls them: `buddy` imports `fallback` and this module, `fallback` only this one.
Facts are from mm/page_alloc.c and include/linux/mmzone.h of v6.12 (read, not
translated); `buddy`'s docstring says how the per-page state is kept.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field

from pageowner.sim.mmzone import (
    LOWMEM_RESERVE_RATIO,
    MAX_ORDER,
    MIGRATE_PCPTYPES,
    MT_CMA,
    MT_MOVABLE,
    NO_ORDER,
    NR_MIGRATETYPES,
    NR_ORDERS,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    WATERMARK_SCALE_FACTOR,
)

__all__ = ["FreeAreas", "FreeList", "Zone", "ZoneSpec"]

class FreeList:
    """One free list: blocks by head pfn, with the kernel's head/tail insertion order.

    The head of the list is the entry with the highest sequence number; adding to the
    tail gives a number below every other. A heap with lazy deletion finds the head.
    """

    __slots__ = ("_heap", "_high", "_low", "seq")

    def __init__(self) -> None:
        self.seq: dict[int, int] = {}
        self._heap: list[tuple[int, int]] = []
        self._high = 0
        self._low = 0

    def __len__(self) -> int:
        return len(self.seq)

    def __contains__(self, pfn: object) -> bool:
        return pfn in self.seq

    def add(self, pfn: int, tail: bool = False) -> None:
        """Put a block at the head (or the tail) of the list."""
        if tail:
            self._low -= 1
            number = self._low
        else:
            self._high += 1
            number = self._high
        self.seq[pfn] = number
        heapq.heappush(self._heap, (-number, pfn))

    def remove(self, pfn: int) -> None:
        """Take a block out of the list wherever it is."""
        del self.seq[pfn]
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self.seq):
            self._rebuild()

    def head(self) -> int | None:
        """Return the pfn at the head of the list, or None when it is empty."""
        heap = self._heap
        seq = self.seq
        while heap:
            number, pfn = heap[0]
            if seq.get(pfn) == -number:
                return pfn
            heapq.heappop(heap)
        return None

    def _rebuild(self) -> None:
        """Drop stale heap entries."""
        self._heap = [(-number, pfn) for pfn, number in self.seq.items()]
        heapq.heapify(self._heap)

    def items(self) -> list[tuple[int, int]]:
        """Return (pfn, sequence) pairs from head to tail."""
        return sorted(self.seq.items(), key=lambda item: -item[1])

    def restore(self, items: list[tuple[int, int]], high: int, low: int) -> None:
        """Load entries saved by `items` and the insertion counters."""
        self.seq = dict(items)
        self._high = high
        self._low = low
        self._rebuild()

    @property
    def counters(self) -> tuple[int, int]:
        """Return the (head, tail) insertion counters, for saving."""
        return self._high, self._low


@dataclass(frozen=True)
class ZoneSpec:
    """Where a zone lies: its index and name, and its pfn span [start, end)."""

    index: int
    name: str
    start_pfn: int
    end_pfn: int
    node: int = 0


@dataclass
class Zone:
    """A zone: its span, page counters, watermarks and free lists."""

    spec: ZoneSpec
    present: int = 0
    managed: int = 0
    free: int = 0
    free_cma: int = 0
    watermark: list[int] = field(default_factory=lambda: [0, 0, 0])
    lowmem_reserve: list[int] = field(default_factory=lambda: [0, 0, 0])
    lists: list[list[FreeList]] = field(
        default_factory=lambda: [[FreeList() for _ in range(NR_MIGRATETYPES)]
                                 for _ in range(NR_ORDERS)]
    )

    @property
    def index(self) -> int:
        """Return ZONE_DMA=0, ZONE_DMA32=1 or ZONE_NORMAL=2."""
        return self.spec.index

    @property
    def name(self) -> str:
        """Return the zone's name as /proc/zoneinfo prints it."""
        return self.spec.name

    @property
    def node(self) -> int:
        """Return the NUMA node the zone belongs to."""
        return self.spec.node

    def nr_free(self, order: int) -> int:
        """Return how many free blocks of an order the zone has, all types together."""
        return sum(len(free_list) for free_list in self.lists[order])


class FreeAreas:
    """Free and allocated blocks of every node, with per-page state in flat arrays.

    `free_order[pfn]` is the order of the free block starting at pfn (NO_ORDER elsewhere),
    `free_mt[pfn]` the list it sits on; `alloc_order[pfn]` is the order of the allocated
    block starting at pfn, `alloc_mt[pfn]` the migratetype its gfp mask asked for (every
    page of the block); `reserved[pfn]` is 1 for pages the buddy never owned (holes,
    memblock reservations). Pageblock migratetypes are in `pageblock_mt`.
    """

    def __init__(self, nr_pages: int, zones: list[ZoneSpec]) -> None:
        self.nr_pages = nr_pages
        self.free_order = bytearray(b"\xff") * nr_pages
        self.free_mt = bytearray(nr_pages)
        self.alloc_order = bytearray(b"\xff") * nr_pages
        self.alloc_mt = bytearray(nr_pages)
        self.reserved = bytearray(b"\x01") * nr_pages
        self.pageblock_mt = bytearray([MT_MOVABLE]) * ((nr_pages + PAGEBLOCK_PAGES - 1)
                                                       // PAGEBLOCK_PAGES)
        self.zones = [Zone(spec) for spec in zones]
        self.nr_nodes = 1 + max((spec.node for spec in zones), default=0)
        # position in self.zones of every MAX_ORDER chunk (zones are aligned to 1024 pages)
        self.chunk_zone = array("b", [-1]) * ((nr_pages >> MAX_ORDER) + 1)
        for position, zone in enumerate(self.zones):
            for chunk in range(zone.spec.start_pfn >> MAX_ORDER,
                               (zone.spec.end_pfn + (1 << MAX_ORDER) - 1) >> MAX_ORDER):
                self.chunk_zone[chunk] = position
        self.allocated_pages = 0
        # v6.12.0 and older: steal_suitable_fallback(); see fallback.steal_suitable
        self.steal_whole_buddy = False

    # -- lookups -------------------------------------------------------------------------

    def zone_of(self, pfn: int) -> Zone:
        """Return the zone a pfn belongs to."""
        index = self.chunk_zone[pfn >> MAX_ORDER]
        if index < 0:
            raise ValueError(f"pfn {pfn:#x} is in no zone")
        return self.zones[index]

    def zone_by_index(self, index: int, node: int = 0) -> Zone | None:
        """Return a node's zone with a ZONE_* index, or None when the node has none."""
        for zone in self.zones:
            if zone.index == index and zone.node == node:
                return zone
        return None

    def get_pageblock_mt(self, pfn: int) -> int:
        """Return the migratetype of the pageblock holding pfn."""
        return self.pageblock_mt[pfn >> PAGEBLOCK_ORDER]

    def set_pageblock_range(self, pfn: int, order: int, mt: int) -> None:
        """Set the migratetype of every pageblock a block of that order covers."""
        first = pfn >> PAGEBLOCK_ORDER
        count = max(1, (1 << order) >> PAGEBLOCK_ORDER)
        self.pageblock_mt[first:first + count] = bytes([mt]) * count

    @property
    def free_pages(self) -> int:
        """Return the free pages of all zones."""
        return sum(zone.free for zone in self.zones)

    @property
    def managed_pages(self) -> int:
        """Return the pages the buddy manages (free or allocated)."""
        return sum(zone.managed for zone in self.zones)

    # -- free list primitives ------------------------------------------------------------

    def _add_free(self, zone: Zone, pfn: int, order: int, mt: int, tail: bool = False) -> None:
        """Put a block on a free list and count it."""
        zone.lists[order][mt].add(pfn, tail)
        self.free_order[pfn] = order
        self.free_mt[pfn] = mt
        pages = 1 << order
        zone.free += pages
        if mt == MT_CMA:
            zone.free_cma += pages

    def _del_free(self, zone: Zone, pfn: int) -> tuple[int, int]:
        """Take a free block off its list; return its (order, list migratetype)."""
        order = self.free_order[pfn]
        mt = self.free_mt[pfn]
        zone.lists[order][mt].remove(pfn)
        self.free_order[pfn] = NO_ORDER
        pages = 1 << order
        zone.free -= pages
        if mt == MT_CMA:
            zone.free_cma -= pages
        return order, mt

    def _expand(self, zone: Zone, pfn: int, low: int, high: int, mt: int) -> None:
        """Return the upper halves of a split block to the free lists (expand())."""
        size = 1 << high
        while high > low:
            high -= 1
            size >>= 1
            self._add_free(zone, pfn + size, high, mt)

    def _mark_allocated(self, pfn: int, order: int, mt: int) -> None:
        """Record an allocated block."""
        pages = 1 << order
        self.alloc_order[pfn] = order
        self.alloc_mt[pfn:pfn + pages] = bytes([mt]) * pages
        self.allocated_pages += pages

    def _smallest(self, zone: Zone, order: int, mt: int) -> int | None:
        """Take the smallest free block of a type that fits (__rmqueue_smallest)."""
        for current in range(order, NR_ORDERS):
            free_list = zone.lists[current][mt]
            if not free_list.seq:
                continue
            pfn = free_list.head()
            assert pfn is not None
            self._del_free(zone, pfn)
            self._expand(zone, pfn, order, current, mt)
            return pfn
        return None

    # -- boot ----------------------------------------------------------------------------

    def free_range_at_boot(self, start: int, end: int, to_tail: bool,
                           count_present: bool = True) -> None:
        """Give [start, end) to the buddy as memblock_free_all() does: largest aligned blocks.

        Since v5.10 ("place pages to tail in __free_pages_core()") boot frees go to the
        tail, so the lowest pfns are handed out first; before, to the head.
        """
        self.reserved[start:end] = bytes(end - start)
        pfn = start
        while pfn < end:
            order = MAX_ORDER
            while order > 0 and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
                order -= 1
            zone = self.zone_of(pfn)
            pages = 1 << order
            if count_present:
                zone.present += pages
            zone.managed += pages
            self._free_block(pfn, order, tail=to_tail)
            pfn += pages

    def reserve_range(self, start: int, end: int) -> None:
        """Mark pages present but reserved (memblock): they are never in the buddy."""
        for pfn in range(start, end, 1 << MAX_ORDER):
            zone = self.zone_of(pfn)
            zone.present += min(end, pfn + (1 << MAX_ORDER)) - pfn

    def min_free_kbytes(self, thp: bool) -> int:
        """Return vm.min_free_kbytes: calculate_min_free_kbytes(), raised for THP.

        int_sqrt(lowmem_kbytes * 16) clamped to [128, 262144]. With THP enabled,
        khugepaged's set_recommended_min_free_kbytes() raises it to two free pageblocks
        per populated zone plus MIGRATE_PCPTYPES^2 pageblocks per zone for fallbacks,
        capped at 5 % of RAM: about 2,900 pages instead of ~480 on 256 MiB.
        """
        total = self.managed_pages
        min_free_kbytes = max(128, min(262144, int((total * 4 * 16) ** 0.5)))
        if thp:
            zones = sum(1 for zone in self.zones if zone.managed)
            recommended = PAGEBLOCK_PAGES * zones * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
            recommended = min(recommended, total // 20) * 4
            min_free_kbytes = max(min_free_kbytes, recommended)
        return min_free_kbytes

    def setup_watermarks(self, thp: bool = False) -> None:
        """Compute min/low/high watermarks and lowmem_reserve for every zone.

        min_free_kbytes (see `min_free_kbytes`) is shared by managed pages; low and high
        add max(min/4, managed * 10/10000).
        """
        total = self.managed_pages
        pages_min = self.min_free_kbytes(thp) >> 2
        for zone in self.zones:
            share = pages_min * zone.managed // total if total else 0
            delta = max(share >> 2, zone.managed * WATERMARK_SCALE_FACTOR // 10000)
            zone.watermark = [share, share + delta, share + 2 * delta]
        for zone in self.zones:
            reserve = [0, 0, 0]
            above = 0
            for higher in sorted(self.zones, key=lambda z: z.index):
                if higher.index <= zone.index or higher.node != zone.node:
                    continue
                above += higher.managed
                reserve[higher.index] = above // LOWMEM_RESERVE_RATIO[zone.index]
            zone.lowmem_reserve = reserve

    # -- free ----------------------------------------------------------------------------

    def free(self, pfn: int, order: int) -> None:
        """Free an allocated block and merge it with its free buddies (__free_one_page)."""
        if self.alloc_order[pfn] != order:
            raise ValueError(f"pfn {pfn:#x} is not an allocated block of order {order}")
        pages = 1 << order
        self.alloc_order[pfn] = NO_ORDER
        self.allocated_pages -= pages
        self._free_block(pfn, order)

    def split(self, pfn: int) -> None:
        """Turn an allocated block into order-0 allocations (split_page())."""
        order = self.alloc_order[pfn]
        pages = 1 << order
        self.alloc_order[pfn:pfn + pages] = bytes(pages)

    def _free_block(self, pfn: int, order: int, tail: bool = False) -> None:
        """Merge a block with free buddies and put it on its pageblock's list."""
        zone = self.zone_of(pfn)
        mt = self.get_pageblock_mt(pfn)
        start = zone.spec.start_pfn
        end = zone.spec.end_pfn
        free_order = self.free_order
        while order < MAX_ORDER:
            buddy = pfn ^ (1 << order)
            if buddy < start or buddy + (1 << order) > end or free_order[buddy] != order:
                break
            if order >= PAGEBLOCK_ORDER:
                buddy_mt = self.get_pageblock_mt(buddy)
                if buddy_mt != mt and (mt >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES):
                    break
            self._del_free(zone, buddy)
            if order >= PAGEBLOCK_ORDER and self.get_pageblock_mt(buddy) != mt:
                # v6.9: the merged buddy's pageblock takes the type of the freed block
                self.set_pageblock_range(buddy, order, mt)
            pfn &= buddy
            order += 1
        self._add_free(zone, pfn, order, mt, tail)

    # -- inspection ----------------------------------------------------------------------

    def iter_free_blocks(self) -> Iterator[tuple[int, int, int]]:
        """Yield (pfn, order, list migratetype) of every free block, by zone and list."""
        for zone in self.zones:
            for order in range(NR_ORDERS):
                for mt in range(NR_MIGRATETYPES):
                    for pfn in zone.lists[order][mt].seq:
                        yield pfn, order, mt

    def iter_allocated(self) -> Iterator[tuple[int, int]]:
        """Yield (pfn, order) of every allocated block in pfn order."""
        alloc_order = self.alloc_order
        pfn = 0
        nr = self.nr_pages
        while pfn < nr:
            order = alloc_order[pfn]
            if order != NO_ORDER:
                yield pfn, order
                pfn += 1 << order
            else:
                pfn += 1

    def rebuild_free_blocks(self) -> set[tuple[int, int, int]]:
        """Derive the free blocks from the allocated and reserved pages alone.

        With no two free buddies left unmerged, free memory has exactly one decomposition
        into maximal aligned blocks (capped at MAX_ORDER, within a zone), each on the list
        of its pageblock's type; the live lists must equal this set.
        """
        used = bytearray(self.reserved)
        for pfn, order in self.iter_allocated():
            used[pfn:pfn + (1 << order)] = b"\x01" * (1 << order)
        blocks: set[tuple[int, int, int]] = set()
        for zone in self.zones:
            pfn = zone.spec.start_pfn
            end = zone.spec.end_pfn
            while pfn < end:
                if used[pfn]:
                    pfn += 1
                    continue
                order = 0
                while (order < MAX_ORDER and not pfn & ((2 << order) - 1)
                       and pfn + (2 << order) <= end
                       and not any(used[pfn:pfn + (2 << order)])
                       and self._mergeable(pfn, order + 1)):
                    order += 1
                blocks.add((pfn, order, self.get_pageblock_mt(pfn)))
                pfn += 1 << order
        return blocks

    def _mergeable(self, pfn: int, order: int) -> bool:
        """Tell whether a free block of this order may span its pageblocks' types."""
        if order <= PAGEBLOCK_ORDER:
            return True
        types = {self.get_pageblock_mt(p) for p in range(pfn, pfn + (1 << order), PAGEBLOCK_PAGES)}
        return len(types) == 1 or all(t < MIGRATE_PCPTYPES for t in types)
