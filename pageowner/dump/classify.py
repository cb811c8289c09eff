"""Which allocator a page_owner block comes from, as page_owner_sort reads it off the text.

page_owner_sort (Linux 5.19+, tools/mm/page_owner_sort) sorts and culls by allocator:
CMA and SLAB from the words on a block's PFN line, VMALLOC from `__vmalloc_node_range`
under a page allocator frame, OTHERS when none fits (../shared/reference/kernel.md
section C). The sort engine and the analysis commands both classify this way, so it
lives here, below both.
"""

from __future__ import annotations

from pageowner.dump.fileio import iter_lines

__all__ = [
    "ALLOCATOR_CMA",
    "ALLOCATOR_LABELS",
    "ALLOCATOR_OTHERS",
    "ALLOCATOR_SLAB",
    "ALLOCATOR_VMALLOC",
    "block_allocator",
    "classify_block",
    "pfn_allocator_bits",
    "vmalloc_bit",
]

# Allocator bits (5.19+), compared as integers by the `ator` key.
ALLOCATOR_CMA = 1 << 1
ALLOCATOR_SLAB = 1 << 2
ALLOCATOR_VMALLOC = 1 << 3
ALLOCATOR_OTHERS = 1 << 4
ALLOCATOR_LABELS: tuple[tuple[int, str], ...] = (
    (ALLOCATOR_CMA, "CMA"),
    (ALLOCATOR_SLAB, "SLAB"),
    (ALLOCATOR_VMALLOC, "VMALLOC"),
    (ALLOCATOR_OTHERS, "OTHERS"),
)


def vmalloc_bit(buf: bytes) -> int:
    """Return VMALLOC when __vmalloc_node_range sits under a page allocator frame."""
    where = buf.find(b"__vmalloc_node_range")
    if where > 0:
        # The search window runs from the start of the line above up to the match itself.
        line_start = buf.rfind(b"\n", 0, where)
        above = buf.rfind(b"\n", 0, max(line_start, 0)) + 1
        hit = buf.find(b"alloc_pages", above)
        if 0 <= hit < where:
            return ALLOCATOR_VMALLOC
    return 0


def pfn_allocator_bits(pfn_line: bytes) -> int:
    """Return CMA/SLAB as page_owner_sort reads them off a PFN line (5.19+)."""
    bits = 0
    if b"CMA" in pfn_line:
        bits |= ALLOCATOR_CMA
    if b"slab" in pfn_line:
        bits |= ALLOCATOR_SLAB
    return bits


def block_allocator(buf: bytes, pfn_line: bytes) -> int:
    """Classify a block: CMA/SLAB from its PFN line, VMALLOC from its stack."""
    return (pfn_allocator_bits(pfn_line) | vmalloc_bit(buf)) or ALLOCATOR_OTHERS


def classify_block(block: bytes) -> int:
    """Classify one whole block, PFN line included, as page_owner_sort would.

    For analysis code that holds a record's text (`PageRecord.raw`): the PFN lines are set
    aside exactly as the sort engine does, so the answer is the sort engine's.

    >>> classify_block(b"Page allocated via order 0\\nPFN 1 type CMA Block 0 type CMA\\n")
    2
    """
    if b"__vmalloc_node_range" not in block:
        # Without that frame only the last PFN line can add anything (CMA, SLAB).
        start = block.rfind(b"\nPFN") + 1
        if start == 0 and not block.startswith(b"PFN"):
            return block_allocator(b"", b"")
        end = block.find(b"\n", start)
        return block_allocator(b"", block[start : end if end >= 0 else len(block)])
    kept = []
    pfn_line = b""
    for line in iter_lines(block):
        if line.startswith(b"PFN"):
            pfn_line = line
        else:
            kept.append(line)
    return block_allocator(b"".join(kept), pfn_line)
