"""The simulated machine's invariants, checked through its public API after a load.

The buddy allocator's (the same facts tests/test_sim_buddy.py checks after every step, read
here from a loaded state rather than a model of it) and page_owner's: the dump prints one
record per allocated block, and those records add up to the allocated pages.
"""

from __future__ import annotations

import io

from pageowner.dump.dumpfile import DumpReader
from pageowner.dump.fileio import iter_lines
from pageowner.sim.buddy import MAX_ORDER, NO_ORDER, BuddyAllocator
from pageowner.sim.dump import write_page_owner
from pageowner.sim.machine import Machine

NR_MIGRATETYPES = 6


def check_buddy(buddy: BuddyAllocator) -> None:
    """Raise AssertionError unless free and allocated blocks tile the managed memory."""
    used = bytearray(buddy.reserved)
    allocated = 0
    for pfn, order in buddy.iter_allocated():
        size = 1 << order
        assert not any(used[pfn:pfn + size]), f"allocated block {pfn:#x} overlaps"
        used[pfn:pfn + size] = b"\x01" * size
        allocated += size
    assert allocated == buddy.allocated_pages, "allocated pages miscounted"
    free = 0
    heads = {}
    for pfn, order, mt in buddy.iter_free_blocks():
        size = 1 << order
        assert pfn % size == 0, f"free block {pfn:#x} not aligned to order {order}"
        assert not any(used[pfn:pfn + size]), f"free block {pfn:#x} overlaps"
        used[pfn:pfn + size] = b"\x01" * size
        # before 6.12.y an unclaimed stolen buddy's pieces stay on the requester's list
        assert mt == buddy.get_pageblock_mt(pfn) or buddy.steal_whole_buddy, \
            f"free block {pfn:#x} on the wrong list"
        heads[pfn] = (order, mt)
        free += size
    assert free == buddy.free_pages, "free pages miscounted"
    assert free + allocated == buddy.managed_pages, "pages lost or doubled"
    for zone in buddy.zones:
        listed = sum(len(zone.lists[o][m]) << o for o in range(MAX_ORDER + 1)
                     for m in range(NR_MIGRATETYPES))
        assert listed == zone.free, f"zone {zone.name}: lists and counter disagree"
    marked = {pfn for pfn, value in enumerate(buddy.free_order) if value != NO_ORDER}
    assert marked == set(heads), "per-page free orders and free lists disagree"
    for pfn, (order, mt) in heads.items():
        assert buddy.free_order[pfn] == order and buddy.free_mt[pfn] == mt
    assert free_blocks_rebuild(buddy), "free memory is not split into maximal blocks"


def free_blocks_rebuild(buddy: BuddyAllocator) -> bool:
    """Tell whether the free lists are the maximal blocks the allocated set leaves.

    Before 6.12.y (steal_whole_buddy) a free block may sit on another type's list than
    its pageblock's, so only the blocks are compared there, not their lists.
    """
    rebuilt = buddy.rebuild_free_blocks()
    live = set(buddy.iter_free_blocks())
    if buddy.steal_whole_buddy:
        return {b[:2] for b in rebuilt} == {b[:2] for b in live}
    return rebuilt == live


def check_machine(machine: Machine) -> None:
    """Check the buddy allocator, then that page_owner prints exactly the allocated blocks."""
    check_buddy(machine.buddy)
    if not machine.page_owner:
        return
    out = io.BytesIO()
    count = write_page_owner(machine, out)
    records = list(DumpReader(iter_lines(out.getvalue()), "<sim>", strict=True))
    blocks = list(machine.buddy.iter_allocated())
    assert count == len(records) == len(blocks), "page_owner records != allocated blocks"
    assert sum(r.nr_pages for r in records) == machine.buddy.allocated_pages
