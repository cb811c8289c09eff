"""Allocation sites and machine-wide operations shared by the workloads and the capture script.

`site_class` builds the class of a site learned from a real run (the tmpfs write);
`compact_memory` runs compaction over every zone as `echo 1 >
/proc/sys/vm/compact_memory` does. Both the workload registry and the capture script use
them, so they live below both.
"""

from __future__ import annotations

from pageowner.sim.buddy import (
    MT_CMA,
    MT_MOVABLE,
    NO_ORDER,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
)
from pageowner.sim.gfp import canonical_from, gfp_migratetype
from pageowner.sim.machine import AllocClass, Machine

__all__ = ["MIGRATE_COMPACTION", "compact_memory", "site_class"]

# The migrate reason compaction records (enum migrate_reason, MR_COMPACTION).
MIGRATE_COMPACTION = 0


def site_class(machine: Machine, site: str, task: int, memcg: str | None = None
                ) -> tuple[AllocClass, str | None]:
    """Build a class for a learned site (the tmpfs write); return it and its memcg line."""
    profile = machine.family
    sites = profile.sites
    stack = machine.stack(machine.builder.learned(sites[site]))
    gfp = canonical_from(sites[f"{site}_gfp"], profile.kernel)
    flags = machine.flags_id(profile.flags[sites[f"{site}_flags"]])
    return AllocClass(stack, gfp, task, flags, machine.memcg_id(memcg)), memcg


def compact_memory(machine: Machine) -> int:
    """Compact every zone (echo 1 > /proc/sys/vm/compact_memory); return pages migrated.

    The migrate scanner walks pageblocks up from the zone start and takes movable
    order-0 pages; the free scanner walks down from the zone end and takes the free pages
    of Movable (or CMA) pageblocks that are not wholly free; they stop where they meet
    (mm/compaction.c compact_zone() with cc->order -1).
    """
    buddy = machine.buddy
    page = machine.page
    classes = machine.classes
    migrated = 0
    for zone in buddy.zones:
        if not zone.managed:
            continue
        low = (zone.spec.start_pfn + PAGEBLOCK_PAGES - 1) & ~(PAGEBLOCK_PAGES - 1)
        free_block = (zone.spec.end_pfn & ~(PAGEBLOCK_PAGES - 1)) - PAGEBLOCK_PAGES
        targets: list[int] = []
        block = low
        while block < free_block:
            for pfn in range(block, block + PAGEBLOCK_PAGES):
                if page.order[pfn] != 0 or buddy.alloc_order[pfn] != 0:
                    continue
                if gfp_migratetype(classes[page.cls[pfn]].gfp) != MT_MOVABLE:
                    continue
                while not targets and free_block > block:
                    targets = _isolate_free(machine, free_block)
                    free_block -= PAGEBLOCK_PAGES
                if not targets:
                    break
                machine.migrate(pfn, targets.pop(0), MIGRATE_COMPACTION)
                migrated += 1
            block += PAGEBLOCK_PAGES
    return migrated


def _isolate_free(machine: Machine, block: int) -> list[int]:
    """Return the free pages of a pageblock the free scanner may use as targets."""
    buddy = machine.buddy
    if buddy.pageblock_mt[block >> PAGEBLOCK_ORDER] not in (MT_MOVABLE, MT_CMA):
        return []
    head = buddy.free_block_of(block)
    if head is not None and buddy.free_order[head] >= PAGEBLOCK_ORDER:
        return []  # a wholly free pageblock is what compaction is for
    free: list[int] = []
    pfn = block
    while pfn < block + PAGEBLOCK_PAGES:
        order = buddy.free_order[pfn]
        if order != NO_ORDER:
            free.extend(range(pfn, pfn + (1 << order)))
            pfn += 1 << order
        else:
            pfn += 1
    return free
