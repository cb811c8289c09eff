"""The page allocator's constants (include/linux/mmzone.h, mm/page_alloc.c of v6.12).

Kept apart from `buddy` so that the fallback rules of `fallback` can share them.
"""

from __future__ import annotations

__all__ = [
    "ALLOC_CMA",
    "ALLOC_NOFRAGMENT",
    "FALLBACKS",
    "LOWMEM_RESERVE_RATIO",
    "MAX_ORDER",
    "MIGRATETYPE_NAMES",
    "MIGRATE_PCPTYPES",
    "MT_CMA",
    "MT_HIGHATOMIC",
    "MT_ISOLATE",
    "MT_MOVABLE",
    "MT_RECLAIMABLE",
    "MT_UNMOVABLE",
    "NO_ORDER",
    "NR_MIGRATETYPES",
    "NR_ORDERS",
    "PAGEBLOCK_ORDER",
    "PAGEBLOCK_PAGES",
    "WATERMARK_SCALE_FACTOR",
    "WMARK_HIGH",
    "WMARK_LOW",
    "WMARK_MIN",
]

MAX_ORDER = 10  # MAX_PAGE_ORDER, inclusive since v6.8 (MAX_ORDER - 1 before, same value)
NR_ORDERS = MAX_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_PAGES = 1 << PAGEBLOCK_ORDER
NO_ORDER = 0xFF  # "not the head of a block" in the per-page order arrays

# Migratetype numbers of v4.4+ (MIGRATE_UNMOVABLE ...), used as list indices.
MT_UNMOVABLE, MT_MOVABLE, MT_RECLAIMABLE, MT_HIGHATOMIC, MT_CMA, MT_ISOLATE = range(6)
NR_MIGRATETYPES = 6
MIGRATE_PCPTYPES = 3
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate")

# mm/page_alloc.c fallbacks[]: which lists a type may take from, in order.
FALLBACKS: dict[int, tuple[int, int]] = {
    MT_UNMOVABLE: (MT_RECLAIMABLE, MT_MOVABLE),
    MT_MOVABLE: (MT_RECLAIMABLE, MT_UNMOVABLE),
    MT_RECLAIMABLE: (MT_UNMOVABLE, MT_MOVABLE),
}

# alloc_flags bits we model.
ALLOC_CMA = 1 << 0
ALLOC_NOFRAGMENT = 1 << 1
WMARK_MIN, WMARK_LOW, WMARK_HIGH = range(3)
# sysctl_lowmem_reserve_ratio: DMA 256, DMA32 256, Normal 32.
LOWMEM_RESERVE_RATIO = (256, 256, 32)
WATERMARK_SCALE_FACTOR = 10  # per 10000 of managed pages
