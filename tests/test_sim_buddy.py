"""The buddy allocator's invariants, after every step of random alloc/free sequences."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from pageowner.sim.boot import run_boot
from pageowner.sim.buddy import (
    ALLOC_CMA,
    MAX_ORDER,
    MT_CMA,
    MT_MOVABLE,
    MT_RECLAIMABLE,
    MT_UNMOVABLE,
    NO_ORDER,
    PAGEBLOCK_ORDER,
    PAGEBLOCK_PAGES,
    BuddyAllocator,
    ZoneSpec,
)

TOTAL = 16384  # 64 MiB: a DMA zone and part of DMA32
ZONES = [ZoneSpec(0, "DMA", 0, 4096), ZoneSpec(1, "DMA32", 4096, TOTAL)]
RESERVED = [(0, 1), (0x9F, 0x100), (6000, 6100)]  # BIOS page, VGA hole, a "kernel image"
CMA = (12288, 13312)  # one MAX_ORDER-aligned CMA chunk


def boot(to_tail: bool = True, cma: bool = False) -> BuddyAllocator:
    """Build and fill a small allocator the way the simulator's boot does."""
    buddy = BuddyAllocator(TOTAL, ZONES)
    if cma:
        first, last = CMA[0] >> PAGEBLOCK_ORDER, CMA[1] >> PAGEBLOCK_ORDER
        buddy.pageblock_mt[first:last] = bytes([MT_CMA]) * (last - first)
    cursor = 0
    for start, end in RESERVED:
        if start > cursor:
            buddy.free_range_at_boot(cursor, start, to_tail)
        buddy.reserve_range(start, end)
        cursor = end
    buddy.free_range_at_boot(cursor, TOTAL, to_tail)
    buddy.setup_watermarks()
    return buddy


class BuddyMachine(RuleBasedStateMachine):
    """Allocate, free, split and take specific pages; check everything after each step."""

    blocks = Bundle("blocks")

    def __init__(self) -> None:
        super().__init__()
        self.buddy = boot(cma=True)
        self.live: dict[int, int] = {}  # head pfn -> order

    @rule(target=blocks, order=st.sampled_from([0, 0, 0, 1, 2, 3, 4, 9, 10]),
          mt=st.sampled_from([MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE]),
          zone=st.sampled_from([0, 1, 2]))
    def alloc(self, order: int, mt: int, zone: int) -> tuple[int, int] | None:
        flags = ALLOC_CMA if mt == MT_MOVABLE else 0
        pfn = self.buddy.alloc(order, zone, mt, flags)
        if pfn is None:
            return None
        assert pfn not in self.live
        self.live[pfn] = order
        return (pfn, order)

    @rule(target=blocks, limit=st.integers(1, 3000),
          mt=st.sampled_from([MT_UNMOVABLE, MT_MOVABLE]))
    def alloc_run(self, limit: int, mt: int) -> tuple[int, int] | None:
        run = self.buddy.alloc_run(2, mt, ALLOC_CMA if mt == MT_MOVABLE else 0, limit)
        if run is None:
            return None
        pfn, count = run
        assert 1 <= count <= limit
        for page in range(pfn, pfn + count):
            assert page not in self.live
            self.live[page] = 0
        return (pfn, 0)

    @rule(block=consumes(blocks))
    def free(self, block: tuple[int, int] | None) -> None:
        if block is None or self.live.get(block[0]) != block[1]:
            return
        pfn, order = block
        del self.live[pfn]
        self.buddy.free(pfn, order)

    @rule(block=consumes(blocks))
    def split_and_free_tail(self, block: tuple[int, int] | None) -> None:
        # alloc_pages_exact(): split the block, free the pages past the first
        if block is None or self.live.get(block[0]) != block[1] or block[1] == 0:
            return
        pfn, order = block
        self.buddy.split(pfn)
        self.live[pfn] = 0
        for page in range(pfn + 1, pfn + (1 << order)):
            self.buddy.free(page, 0)
        del self.live[pfn]
        self.buddy.free(pfn, 0)

    @rule(target=blocks, offset=st.integers(0, TOTAL - 1))
    def alloc_at(self, offset: int) -> tuple[int, int] | None:
        if not self.buddy.alloc_at(offset, MT_MOVABLE):
            return None
        self.live[offset] = 0
        return (offset, 0)

    @invariant()
    def no_overlap_and_aligned(self) -> None:
        used = bytearray(TOTAL)
        for pfn, order in self.live.items():
            assert pfn % (1 << order) == 0 or order == 0
            assert not any(used[pfn:pfn + (1 << order)]), "allocations overlap"
            used[pfn:pfn + (1 << order)] = b"\x01" * (1 << order)
        for pfn, order, _ in self.buddy.iter_free_blocks():
            assert pfn % (1 << order) == 0, "free block not aligned to its order"
            assert not any(used[pfn:pfn + (1 << order)]), "free block overlaps an allocation"
            assert not any(self.buddy.reserved[pfn:pfn + (1 << order)])
            used[pfn:pfn + (1 << order)] = b"\x01" * (1 << order)

    @invariant()
    def free_plus_allocated_is_total(self) -> None:
        allocated = sum(1 << order for order in self.live.values())
        assert allocated == self.buddy.allocated_pages
        free = sum(1 << order for _, order, _ in self.buddy.iter_free_blocks())
        assert free == self.buddy.free_pages
        assert free + allocated == self.buddy.managed_pages
        for zone in self.buddy.zones:
            listed = sum(len(zone.lists[o][m]) << o for o in range(MAX_ORDER + 1)
                         for m in range(6))
            assert listed == zone.free
            cma = sum(len(zone.lists[o][MT_CMA]) << o for o in range(MAX_ORDER + 1))
            assert cma == zone.free_cma

    @invariant()
    def no_unmerged_buddies(self) -> None:
        free = {(pfn, order) for pfn, order, _ in self.buddy.iter_free_blocks()}
        for pfn, order in free:
            if order == MAX_ORDER:
                continue
            buddy = pfn ^ (1 << order)
            zone = self.buddy.zone_of(pfn)
            if zone.spec.start_pfn <= buddy < zone.spec.end_pfn and (buddy, order) in free:
                assert order >= PAGEBLOCK_ORDER and {
                    self.buddy.get_pageblock_mt(pfn), self.buddy.get_pageblock_mt(buddy)
                } & {MT_CMA}, f"free buddies {pfn:#x}/{buddy:#x} of order {order} not merged"

    @invariant()
    def per_page_arrays_agree_with_lists(self) -> None:
        heads = {pfn: (order, mt) for pfn, order, mt in self.buddy.iter_free_blocks()}
        marked = {pfn for pfn, value in enumerate(self.buddy.free_order) if value != NO_ORDER}
        assert marked == set(heads)
        for pfn, (order, mt) in heads.items():
            assert self.buddy.free_order[pfn] == order and self.buddy.free_mt[pfn] == mt

    @invariant()
    def free_blocks_sit_on_their_pageblock_list(self) -> None:
        for pfn, _, mt in self.buddy.iter_free_blocks():
            assert mt == self.buddy.get_pageblock_mt(pfn)

    @invariant()
    def free_lists_rebuild_from_the_allocated_set(self) -> None:
        assert self.buddy.rebuild_free_blocks() == set(self.buddy.iter_free_blocks())

    @invariant()
    def cma_pageblocks_stay_cma(self) -> None:
        first, last = CMA[0] >> PAGEBLOCK_ORDER, CMA[1] >> PAGEBLOCK_ORDER
        assert set(self.buddy.pageblock_mt[first:last]) == {MT_CMA}


BuddyMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestBuddyInvariants = BuddyMachine.TestCase


class OldFallbackBuddyMachine(BuddyMachine):
    """The same steps with the v5.10-v6.12.0 fallback (steal_suitable_fallback)."""

    def __init__(self) -> None:
        super().__init__()
        self.buddy.steal_whole_buddy = True

    @invariant()
    def free_blocks_sit_on_their_pageblock_list(self) -> None:
        # a stolen buddy's pieces may sit on the requester's list in another type's
        # pageblock (what 6.10's free page accounting rework ended), never on CMA's
        for pfn, _, mt in self.buddy.iter_free_blocks():
            block_mt = self.buddy.get_pageblock_mt(pfn)
            assert mt == block_mt or MT_CMA not in (mt, block_mt)

    @invariant()
    def free_lists_rebuild_from_the_allocated_set(self) -> None:
        rebuilt = {(pfn, order) for pfn, order, _ in self.buddy.rebuild_free_blocks()}
        assert rebuilt == {(pfn, order) for pfn, order, _ in self.buddy.iter_free_blocks()}


OldFallbackBuddyMachine.TestCase.settings = BuddyMachine.TestCase.settings
TestOldFallbackBuddyInvariants = OldFallbackBuddyMachine.TestCase


def test_boot_free_order_decides_which_pages_go_first() -> None:
    # v5.10+ frees to the tail: the lowest block is handed out first; before, the highest
    assert boot(to_tail=True).alloc(MAX_ORDER, 1, MT_MOVABLE) == 4096
    assert boot(to_tail=False).alloc(MAX_ORDER, 1, MT_MOVABLE) == TOTAL - (1 << MAX_ORDER)


def test_an_unmovable_request_claims_a_whole_movable_pageblock() -> None:
    buddy = boot()
    pfn = buddy.alloc(0, 1, MT_UNMOVABLE)
    assert pfn is not None
    # the largest free block (order 10) was taken: both of its pageblocks changed type
    block = pfn >> PAGEBLOCK_ORDER
    assert buddy.pageblock_mt[block:block + 2] == bytes([MT_UNMOVABLE]) * 2
    assert buddy.pageblock_mt.count(MT_UNMOVABLE) == 2


def _fill_then_free(buddy: BuddyAllocator, block: int, count: int) -> None:
    """Allocate all memory movable, then free `count` pages of one pageblock."""
    while buddy.alloc_run(1, MT_MOVABLE, 0, 1 << 20) is not None:
        pass
    start = block * PAGEBLOCK_PAGES
    for pfn in range(start, start + count):
        buddy.free(pfn, 0)


def test_a_half_free_pageblock_is_claimed_by_an_unmovable_request() -> None:
    buddy = boot()
    _fill_then_free(buddy, 20, 300)
    pfn = buddy.alloc(0, 1, MT_UNMOVABLE)
    assert pfn is not None and pfn >> PAGEBLOCK_ORDER == 20
    assert buddy.pageblock_mt[20] == MT_UNMOVABLE
    assert all(mt == MT_UNMOVABLE for p, _, mt in buddy.iter_free_blocks()
               if p >> PAGEBLOCK_ORDER == 20)


def test_a_mostly_used_pageblock_is_stolen_from_not_claimed() -> None:
    buddy = boot()
    _fill_then_free(buddy, 20, 100)
    before = bytes(buddy.pageblock_mt)
    pfn = buddy.alloc(0, 1, MT_UNMOVABLE)
    # no pageblock is half free: the page is stolen and no pageblock changes type
    assert pfn is not None and buddy.alloc_mt[pfn] == MT_UNMOVABLE
    assert bytes(buddy.pageblock_mt) == before


def test_a_small_movable_fallback_steals_without_claiming() -> None:
    buddy = boot()
    # turn everything Unmovable, leaving one free page of it
    for index in range(len(buddy.pageblock_mt)):
        if buddy.pageblock_mt[index] == MT_MOVABLE:
            buddy.pageblock_mt[index] = MT_UNMOVABLE
    for zone in buddy.zones:
        for order in range(MAX_ORDER + 1):
            movable = zone.lists[order][MT_MOVABLE]
            for pfn in list(movable.seq):
                movable.remove(pfn)
                zone.lists[order][MT_UNMOVABLE].add(pfn)
                buddy.free_mt[pfn] = MT_UNMOVABLE
    taken = []
    while (pfn := buddy.alloc(0, 1, MT_UNMOVABLE)) is not None:
        taken.append(pfn)
    buddy.free(taken[-1], 0)
    # a movable order-0 request may not claim (order < pageblock_order / 2): it steals
    pfn = buddy.alloc(0, 1, MT_MOVABLE, 0)
    assert pfn == taken[-1] or pfn is None
    assert MT_MOVABLE not in set(buddy.pageblock_mt[8:])


def test_watermarks_follow_min_free_kbytes() -> None:
    buddy = boot()
    managed = buddy.managed_pages
    min_free_kbytes = int((managed * 4 * 16) ** 0.5)
    total_min = sum(zone.watermark[0] for zone in buddy.zones)
    assert abs(total_min - min_free_kbytes // 4) <= len(buddy.zones)
    for zone in buddy.zones:
        low_delta = zone.watermark[1] - zone.watermark[0]
        assert zone.watermark[2] - zone.watermark[1] == low_delta
        assert low_delta == max(zone.watermark[0] // 4, zone.managed * 10 // 10000)
    # the DMA zone is protected from allocations that may use DMA32
    assert buddy.zones[0].lowmem_reserve[1] == buddy.zones[1].managed // 256


def test_an_allocation_stops_at_the_min_watermark() -> None:
    buddy = boot()
    count = 0
    while buddy.alloc(0, 1, MT_MOVABLE, ALLOC_CMA) is not None:
        count += 1
    mins = sum(zone.watermark[0] for zone in buddy.zones)
    reserve = buddy.zones[0].lowmem_reserve[1]
    assert buddy.free_pages <= mins + reserve + 2
    assert count == buddy.allocated_pages


def test_a_whole_block_run_matches_single_allocations() -> None:
    one_by_one = boot()
    singles = [one_by_one.alloc(0, 1, MT_MOVABLE) for _ in range(1500)]
    bulk = boot()
    pages: list[int] = []
    while len(pages) < 1500:
        run = bulk.alloc_run(1, MT_MOVABLE, 0, 1500 - len(pages))
        assert run is not None
        pages.extend(range(run[0], run[0] + run[1]))
    assert pages == singles
    assert set(bulk.iter_free_blocks()) == set(one_by_one.iter_free_blocks())
    assert {pfn: (o, m) for pfn, o, m in bulk.iter_free_blocks()} == {
        pfn: (o, m) for pfn, o, m in one_by_one.iter_free_blocks()}


def test_cma_holds_only_movable_allocations() -> None:
    buddy = boot(cma=True)
    while (pfn := buddy.alloc(0, 1, MT_UNMOVABLE)) is not None:
        assert not CMA[0] <= pfn < CMA[1]
    assert any(CMA[0] <= pfn < CMA[1] for pfn, _, _ in buddy.iter_free_blocks())


def test_pageblock_size() -> None:
    assert PAGEBLOCK_PAGES == 512 and MAX_ORDER == 10


def _fallback_from_a_mostly_used_pageblock(steal_whole_buddy: bool) -> tuple[int, BuddyAllocator]:
    """Free 100 pages of pageblock 20 (blocks of order 6, 5 and 2), then ask for one
    unmovable page; return where it came from and the allocator."""
    buddy = boot()
    buddy.steal_whole_buddy = steal_whole_buddy
    for zone in buddy.zones:
        zone.watermark = [0, 0, 0]  # let the fill take every page: block 20 is all that is free
        zone.lowmem_reserve = [0, 0, 0]
    _fill_then_free(buddy, 20, 100)
    assert {p >> PAGEBLOCK_ORDER for p, _, _ in buddy.iter_free_blocks()} == {20}
    pfn = buddy.alloc(0, 1, MT_UNMOVABLE)
    assert pfn is not None
    return pfn, buddy


def test_before_6_12_y_the_whole_largest_buddy_goes_to_the_requester() -> None:
    # v5.10-v6.12.0 steal_suitable_fallback(): the largest fallback block (order 6 at the
    # pageblock's start) is taken; the pageblock is not claimed (100 free pages of 512),
    # so the whole buddy moves to the unmovable list and is split there
    pfn, buddy = _fallback_from_a_mostly_used_pageblock(True)
    start = 20 * PAGEBLOCK_PAGES
    assert pfn == start
    assert buddy.pageblock_mt[20] == MT_MOVABLE
    pieces = {(p, order, mt) for p, order, mt in buddy.iter_free_blocks()
              if start <= p < start + 64}
    assert pieces == {(start + (1 << order), order, MT_UNMOVABLE) for order in range(6)}


def test_from_6_15_the_smallest_block_is_stolen_and_its_rest_stays() -> None:
    # 6.15 (and 6.12.y) __rmqueue_steal(): the smallest fallback block (order 2 at +96)
    # is split on its own list; the order 6 and 5 blocks stay whole and movable
    pfn, buddy = _fallback_from_a_mostly_used_pageblock(False)
    start = 20 * PAGEBLOCK_PAGES
    assert pfn == start + 96
    assert buddy.pageblock_mt[20] == MT_MOVABLE
    pieces = {(p, order, mt) for p, order, mt in buddy.iter_free_blocks()
              if start <= p < start + PAGEBLOCK_PAGES}
    assert pieces == {(start, 6, MT_MOVABLE), (start + 64, 5, MT_MOVABLE),
                      (start + 97, 0, MT_MOVABLE), (start + 98, 1, MT_MOVABLE)}


def test_the_kernel_versions_pick_their_fallback_rule() -> None:
    from pageowner.sim.machine import Machine

    rules = {version: Machine.create(version, 64 << 20, "", 1).buddy.steal_whole_buddy
             for version in ("5.10", "6.1", "6.9", "6.12", "6.19", "7.3")}
    # the 6.12 profile is the learned 6.12.117, a 6.12.y with the 6.15 rule backported
    assert rules == {"5.10": True, "6.1": True, "6.9": True, "6.12": False, "6.19": False,
                     "7.3": False}


def test_thp_raises_min_free_kbytes_as_khugepaged_does() -> None:
    from pageowner.sim.machine import Machine

    def total_min(cmdline: str) -> tuple[int, int]:
        machine = Machine.create("6.12", 256 << 20, cmdline, 1)
        run_boot(machine)
        zones = machine.buddy.zones
        return sum(zone.watermark[0] for zone in zones), machine.buddy.managed_pages

    # set_recommended_min_free_kbytes(): 2 + 3 * 3 pageblocks per populated zone (two
    # here: 11,264 pages), capped at 5 % of RAM: about 2,900 pages on 256 MiB (the
    # watermarks are set before the initrd is freed, so RAM is a little less than now)
    with_thp, managed = total_min("page_owner=on")
    assert abs(with_thp - managed // 20) <= managed // 20 // 50
    assert 2700 <= with_thp <= 3100
    # without THP khugepaged never starts: int_sqrt(lowmem_kbytes * 16) kB, ~480 pages
    without, managed = total_min("page_owner=on transparent_hugepage=never")
    assert abs(without - int((managed * 4 * 16) ** 0.5) // 4) <= 10
    assert 400 <= without <= 560
