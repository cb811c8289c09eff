"""Where the buddy allocator takes memory when a request's own lists are empty, per era.

`BuddyAllocator._rmqueue` calls one of two rules, chosen by kernel version
(`KernelVersion.steal_whole_buddy`):

* 6.15+, and 6.12.y through the stable backport: `claim` (try_to_claim_block on the
  largest fallback block), then `steal` (__rmqueue_steal: the smallest block, its
  remainder left on the fallback list);
* v5.10 to v6.12.0: `steal_suitable` (__rmqueue_fallback with steal_suitable_fallback:
  the largest block; claimed, or moved whole to the requester's list).

Facts from mm/page_alloc.c (read, not translated); docs/simulator.md says more. The
functions work on the free lists through the primitives of `freearea.FreeAreas`
(_add_free, _del_free, _expand, _smallest); they import that lower module, never
`buddy`, which imports them.
"""

from __future__ import annotations

from pageowner.sim.freearea import FreeAreas, Zone
from pageowner.sim.mmzone import (
    ALLOC_NOFRAGMENT,
    FALLBACKS,
    MAX_ORDER,
    MT_HIGHATOMIC,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
    NO_ORDER,
    NR_ORDERS,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
)

__all__ = [
    "can_claim",
    "claim",
    "claimable",
    "find_fallback",
    "move_freepages_block",
    "pageblock_census",
    "steal",
    "steal_suitable",
    "try_claim_block",
]


def find_fallback(buddy: FreeAreas, zone: Zone, order: int, start_mt: int) -> int:
    """Return the first fallback type with a free block of this order, or -1."""
    for fallback in FALLBACKS[start_mt]:
        if zone.lists[order][fallback].seq:
            return fallback
    return -1


def can_claim(order: int, start_mt: int) -> bool:
    """can_steal_fallback(): big blocks and non-movable requests may claim blocks."""
    return (order >= PAGEBLOCK_ORDER // 2 or start_mt in (MT_RECLAIMABLE, MT_UNMOVABLE))


def claim(buddy: FreeAreas, zone: Zone, order: int, start_mt: int,
          flags: int) -> int | None:
    """Take the largest block of a fallback type and try to claim its pageblock."""
    min_order = order
    if order < PAGEBLOCK_ORDER and flags & ALLOC_NOFRAGMENT:
        min_order = PAGEBLOCK_ORDER
    for current in range(MAX_ORDER, min_order - 1, -1):
        fallback = find_fallback(buddy, zone, current, start_mt)
        if fallback < 0:
            continue
        if current < PAGEBLOCK_ORDER and not can_claim(current, start_mt):
            break
        pfn = zone.lists[current][fallback].head()
        assert pfn is not None
        page = try_claim_block(buddy, zone, pfn, current, order, start_mt)
        if page is not None:
            return page
    return None


def try_claim_block(buddy: FreeAreas, zone: Zone, pfn: int, current: int, order: int,
                    start_mt: int) -> int | None:
    """Claim the pageblock of a free block for start_mt when enough of it suits."""
    block_mt = buddy.get_pageblock_mt(pfn)
    if block_mt == MT_HIGHATOMIC:
        return None
    if current >= PAGEBLOCK_ORDER:
        buddy._del_free(zone, pfn)
        buddy.set_pageblock_range(pfn, current, start_mt)
        buddy._expand(zone, pfn, order, current, start_mt)
        return pfn
    if not claimable(buddy, zone, pfn, start_mt):
        return None
    move_freepages_block(buddy, zone, pfn & ~(PAGEBLOCK_PAGES - 1), start_mt)
    return buddy._smallest(zone, order, start_mt)


def pageblock_census(buddy: FreeAreas, start: int) -> tuple[int, int]:
    """Count free pages and pages allocated as movable in one pageblock."""
    free_pages = 0
    movable = 0
    pfn = start
    end = start + PAGEBLOCK_PAGES
    free_order = buddy.free_order
    alloc_order = buddy.alloc_order
    alloc_mt = buddy.alloc_mt
    while pfn < end:
        order = free_order[pfn]
        if order != NO_ORDER:
            free_pages += 1 << order
            pfn += 1 << order
            continue
        order = alloc_order[pfn]
        if order != NO_ORDER:
            if alloc_mt[pfn] == MT_MOVABLE:
                movable += 1 << order
            pfn += 1 << order
            continue
        pfn += 1
    return free_pages, movable


def move_freepages_block(buddy: FreeAreas, zone: Zone, start: int, mt: int) -> None:
    """Move every free block of a pageblock to mt's lists (tail) and retype the block."""
    pfn = start
    end = start + PAGEBLOCK_PAGES
    while pfn < end:
        order = buddy.free_order[pfn]
        if order == NO_ORDER:
            pfn += 1
            continue
        buddy._del_free(zone, pfn)
        buddy._add_free(zone, pfn, order, mt, tail=True)
        pfn += 1 << order
    buddy.pageblock_mt[start >> PAGEBLOCK_ORDER] = mt


def steal(buddy: FreeAreas, zone: Zone, order: int, start_mt: int) -> int | None:
    """Take the smallest fallback block without claiming its pageblock."""
    for current in range(order, NR_ORDERS):
        fallback = find_fallback(buddy, zone, current, start_mt)
        if fallback < 0:
            continue
        pfn = zone.lists[current][fallback].head()
        assert pfn is not None
        buddy._del_free(zone, pfn)
        buddy._expand(zone, pfn, order, current, fallback)
        return pfn
    return None


def steal_suitable(buddy: FreeAreas, zone: Zone, order: int, start_mt: int,
                   flags: int) -> int | None:
    """Fall back the way v5.10-v6.12.0 did (__rmqueue_fallback, steal_suitable_fallback).

    Take the largest block of a fallback type (the smallest one instead when a
    movable request may not claim and a bigger order was found); claim its pageblock
    when enough of it is free or alike, else move the whole buddy to the requester's
    list; either way the request is then served from its own lists. 6.15 (and the
    6.12.y stable backport) replaced this with try_to_claim_block/__rmqueue_steal,
    which leave an unclaimed buddy's remainder on the fallback list.
    """
    min_order = order
    if order < PAGEBLOCK_ORDER and flags & ALLOC_NOFRAGMENT:
        min_order = PAGEBLOCK_ORDER
    found = -1
    for current in range(MAX_ORDER, min_order - 1, -1):
        fallback = find_fallback(buddy, zone, current, start_mt)
        if fallback < 0:
            continue
        found = current
        break
    if found < 0:
        return None
    current = found
    may_claim = current >= PAGEBLOCK_ORDER or can_claim(current, start_mt)
    if not may_claim and start_mt == MT_MOVABLE and current > order:
        for smaller in range(order, NR_ORDERS):
            if find_fallback(buddy, zone, smaller, start_mt) >= 0:
                current = smaller
                break
    fallback = find_fallback(buddy, zone, current, start_mt)
    pfn = zone.lists[current][fallback].head()
    assert pfn is not None
    block_mt = buddy.get_pageblock_mt(pfn)
    if block_mt != MT_HIGHATOMIC and current >= PAGEBLOCK_ORDER:
        buddy.set_pageblock_range(pfn, current, start_mt)
    elif block_mt != MT_HIGHATOMIC and may_claim and claimable(buddy, zone, pfn, start_mt):
        move_freepages_block(buddy, zone, pfn & ~(PAGEBLOCK_PAGES - 1), start_mt)
        return buddy._smallest(zone, order, start_mt)
    # move_to_free_list(): the whole buddy goes to the tail of the requester's list
    buddy._del_free(zone, pfn)
    buddy._add_free(zone, pfn, current, start_mt, tail=True)
    return buddy._smallest(zone, order, start_mt)


def claimable(buddy: FreeAreas, zone: Zone, pfn: int, start_mt: int) -> bool:
    """Tell whether half of a free block's pageblock is free or alike (whole_block)."""
    start = pfn & ~(PAGEBLOCK_PAGES - 1)
    if start < zone.spec.start_pfn or start + PAGEBLOCK_PAGES > zone.spec.end_pfn:
        return False
    block_mt = buddy.get_pageblock_mt(pfn)
    free_pages, movable_pages = pageblock_census(buddy, start)
    if start_mt == MT_MOVABLE:
        alike = movable_pages
    elif block_mt == MT_MOVABLE:
        alike = PAGEBLOCK_PAGES - free_pages - movable_pages
    else:
        alike = 0
    return free_pages + alike >= PAGEBLOCK_PAGES // 2
