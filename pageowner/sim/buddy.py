"""The buddy allocator: taking blocks from the free lists, with fallbacks and watermarks.

Facts are from mm/page_alloc.c of v6.12 (read, not translated): orders 0..10
(MAX_PAGE_ORDER), pageblocks of 512 pages (pageblock_order 9) that start Movable, the
`fallbacks[]` table, claiming a whole pageblock when half of it is free or compatible
(try_to_claim_block), stealing a single block otherwise (__rmqueue_steal: 6.15, and the
6.12.y stable backport; v6.12.0 and older move the whole largest buddy to the
requester's list instead, `steal_whole_buddy`), CMA balancing
(__rmqueue), ALLOC_NOFRAGMENT for the Normal zone, watermarks (__setup_per_zone_wmarks,
calculate_min_free_kbytes) and lowmem_reserve.

The free lists, zones and freeing with merging are in `freearea` (`FreeAreas`), below
both this module and `fallback`, so that neither imports the other in a circle.
Per-page state lives in bytearrays and free lists are dicts with a heap of sequence
numbers, so that a 16 GiB machine (4M pages) fits in a few tens of MB and every list keeps
the kernel's head/tail order. Randomness plays no part here.
"""

from __future__ import annotations

from pageowner.sim import fallback
from pageowner.sim.freearea import FreeAreas, FreeList, Zone, ZoneSpec
from pageowner.sim.mmzone import (
    ALLOC_CMA,
    ALLOC_NOFRAGMENT,
    MAX_ORDER,
    MIGRATE_PCPTYPES,
    MIGRATETYPE_NAMES,
    MT_CMA,
    MT_HIGHATOMIC,
    MT_ISOLATE,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
    NO_ORDER,
    NR_ORDERS,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    WMARK_HIGH,
    WMARK_LOW,
    WMARK_MIN,
)

# FreeAreas, FreeList, Zone, ZoneSpec and the mmzone constants are re-exported: the
# simulator's modules and tests take them from here.
__all__ = [
    "ALLOC_CMA",
    "BuddyAllocator",
    "FreeAreas",
    "FreeList",
    "MAX_ORDER",
    "MIGRATETYPE_NAMES",
    "MT_CMA",
    "MT_HIGHATOMIC",
    "MT_ISOLATE",
    "MT_MOVABLE",
    "MT_RECLAIMABLE",
    "MT_UNMOVABLE",
    "NO_ORDER",
    "PAGEBLOCK_ORDER",
    "PAGEBLOCK_PAGES",
    "WMARK_HIGH",
    "WMARK_LOW",
    "WMARK_MIN",
    "Zone",
    "ZoneSpec",
]


class BuddyAllocator(FreeAreas):
    """The buddy allocator of one node: allocation with fallback and stealing, on `FreeAreas`.

    `FreeAreas` holds the free lists, the per-page state and freeing with merging; this
    adds taking blocks: the smallest fit, the migratetype fallbacks and pageblock stealing
    of mm/page_alloc.c, the zone watermarks and the zonelist walk.
    """

    # -- allocation ----------------------------------------------------------------------

    def _rmqueue(self, zone: Zone, order: int, mt: int, flags: int) -> int | None:
        """Take a block from one zone: own type, CMA, claim, then steal (__rmqueue)."""
        if flags & ALLOC_CMA and zone.free_cma > zone.free // 2:
            page = self._smallest(zone, order, MT_CMA)
            if page is not None:
                return page
        page = self._smallest(zone, order, mt)
        if page is not None:
            return page
        if flags & ALLOC_CMA:
            page = self._smallest(zone, order, MT_CMA)
            if page is not None:
                return page
        if mt >= MIGRATE_PCPTYPES:
            return None
        if self.steal_whole_buddy:
            return fallback.steal_suitable(self, zone, order, mt, flags)
        page = fallback.claim(self, zone, order, mt, flags)
        if page is not None:
            return page
        if not flags & ALLOC_NOFRAGMENT:
            return fallback.steal(self, zone, order, mt)
        return None

    def zone_usable(self, zone: Zone, order: int, mark: int, highest: int, flags: int) -> int:
        """Return how many pages may still be taken above a watermark (may be <= 0)."""
        free = zone.free
        if not flags & ALLOC_CMA:
            free -= zone.free_cma
        return free - zone.watermark[mark] - zone.lowmem_reserve[highest] - ((1 << order) - 1)

    def zonelist(self, highest: int, node: int = 0) -> list[Zone]:
        """Return the zones an allocation may use, preferred first (Normal, DMA32, DMA).

        With NUMA the list is in node order (the default since v4.14): every zone of the
        preferred node, then the next nodes' ("Fallback order for Node 0: 0 1").
        """
        nodes = self.nr_nodes
        return [zone for zone in sorted(self.zones,
                                        key=lambda z: ((z.node - node) % nodes, -z.index))
                if zone.index <= highest and zone.managed]

    def alloc(self, order: int, highest: int, mt: int, flags: int = 0,
              node: int = 0) -> int | None:
        """Allocate a block: fast path at the low watermark, then at min; None on failure."""
        zones = self.zonelist(highest, node)
        nofragment = (bool(zones) and zones[0].index == 2
                      and self.zone_by_index(1, zones[0].node) is not None)
        for mark in (WMARK_LOW, WMARK_MIN):
            passes = (flags | ALLOC_NOFRAGMENT, flags) if nofragment else (flags,)
            for pass_flags in passes:
                for zone in zones:
                    if self.zone_usable(zone, order, mark, highest, pass_flags) <= 0:
                        continue
                    pfn = self._rmqueue(zone, order, mt, pass_flags)
                    if pfn is not None:
                        self._mark_allocated(pfn, order, mt)
                        return pfn
        return None

    def alloc_run(self, highest: int, mt: int, flags: int, limit: int,
                  node: int = 0) -> tuple[int, int] | None:
        """Allocate up to `limit` order-0 pages that are contiguous; return (pfn, count).

        Taking a whole free block of order k as 2^k order-0 pages leaves the lists exactly
        as 2^k single allocations would: expand() puts each buddy at the head of a lower
        list, and the next allocation takes it. A partial block leaves the same pieces.
        """
        pfn = self.alloc(0, highest, mt, flags, node)
        if pfn is None:
            return None
        zone = self.zone_of(pfn)
        count = 1
        # the block's upper halves are now at the heads of the lower lists, in order
        while count < limit:
            nxt = pfn + count
            if nxt >= zone.spec.end_pfn:
                break
            order = self.free_order[nxt]
            if order == NO_ORDER or self.free_mt[nxt] != self.alloc_mt[pfn]:
                break
            list_mt = self.free_mt[nxt]
            if zone.lists[order][list_mt].head() != nxt:
                break
            if flags & ALLOC_CMA and list_mt != MT_CMA and zone.free_cma > zone.free // 2:
                break
            # the lists below `order` must be empty for the next single allocation to
            # come from this block
            if any(zone.lists[lower][list_mt].seq for lower in range(order)):
                break
            if self.zone_usable(zone, 0, WMARK_MIN, highest, flags) <= 0:
                break
            take = min(1 << order, limit - count)
            if not self._may_take(zone, take, highest, flags, node):
                break
            self._del_free(zone, nxt)
            if take < (1 << order):
                self._expand_partial(zone, nxt, order, take, list_mt)
            count += take
        if count > 1:
            self.alloc_order[pfn + 1:pfn + count] = bytes(count - 1)
            self.alloc_mt[pfn + 1:pfn + count] = bytes([self.alloc_mt[pfn]]) * (count - 1)
            self.allocated_pages += count - 1
        return pfn, count

    def _may_take(self, zone: Zone, take: int, highest: int, flags: int, node: int) -> bool:
        """Tell whether `take` more pages may come from this zone above the low mark."""
        return self.zone_usable(zone, 0, WMARK_LOW, highest, flags) - take >= 0 or (
            self.zone_usable(zone, 0, WMARK_MIN, highest, flags) - take >= 0
            and all(self.zone_usable(other, 0, WMARK_LOW, highest, flags) <= 0
                    for other in self.zonelist(highest, node))
        )

    def _expand_partial(self, zone: Zone, pfn: int, order: int, take: int, mt: int) -> None:
        """Free the tail of a block whose first `take` pages were handed out one by one."""
        # Single allocations split the block in halves and keep the lower half each time:
        # what stays free is the binary decomposition of [pfn + take, pfn + 2^order).
        pieces: list[tuple[int, int]] = []
        start = pfn + take
        end = pfn + (1 << order)
        cursor = start
        while cursor < end:
            size_order = 0
            while (cursor & ((2 << size_order) - 1)) == 0 and cursor + (2 << size_order) <= end:
                size_order += 1
            pieces.append((cursor, size_order))
            cursor += 1 << size_order
        # expand() added bigger pieces first; the smallest ones were consumed and re-split
        for piece, piece_order in sorted(pieces, key=lambda p: -p[1]):
            self._add_free(zone, piece, piece_order, mt)

    def alloc_at(self, pfn: int, mt: int) -> bool:
        """Take one specific free page out of its free block (for compaction targets)."""
        head = self.free_block_of(pfn)
        if head is None:
            return False
        zone = self.zone_of(pfn)
        order, list_mt = self._del_free(zone, head)
        # split down to the page, keeping the halves that do not hold it
        while order > 0:
            order -= 1
            half = head + (1 << order)
            if pfn >= half:
                self._add_free(zone, head, order, list_mt)
                head = half
            else:
                self._add_free(zone, half, order, list_mt)
        self._mark_allocated(pfn, 0, mt)
        return True

    def free_block_of(self, pfn: int) -> int | None:
        """Return the head of the free block holding pfn, or None if the page is not free."""
        for order in range(NR_ORDERS):
            head = pfn & ~((1 << order) - 1)
            block_order = self.free_order[head]
            if block_order != NO_ORDER and head + (1 << block_order) > pfn:
                return head
        return None
