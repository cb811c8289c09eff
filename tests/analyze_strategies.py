"""Hypothesis strategies for the analysis tests: page_owner dumps of several eras."""

from __future__ import annotations

from hypothesis import strategies as st

from pageowner.dump.dumpfile import format_record
from pageowner.kernel.tables import GFP_TABLES, decode_flags, gfp_migratetype
from pageowner.model import (
    DumpFormat,
    Frame,
    FrameStyle,
    HeaderStyle,
    MemcgCharge,
    MigrateType,
    PageFlags,
    PageRecord,
    PfnStyle,
)

# Real shapes of three eras: 6.7+ (hex PFN), 5.18-6.6 (tgid, free_ts) and 5.14 (no tgid).
FORMATS = (
    DumpFormat(HeaderStyle.TGID_TS, PfnStyle.HEX, FrameStyle.PLAIN),
    DumpFormat(HeaderStyle.TGID_TS_FREE, PfnStyle.DEC, FrameStyle.PLAIN),
    DumpFormat(HeaderStyle.PID_TS_FREE, PfnStyle.DEC, FrameStyle.PLAIN),
)
_FUNCTIONS = (
    "post_alloc_hook", "get_page_from_freelist", "__alloc_pages_noprof", "new_slab",
    "___slab_alloc", "kmem_cache_alloc_noprof", "alloc_inode", "shmem_alloc_folio",
    "shmem_get_folio_gfp", "vfs_write", "do_syscall_64", "__vmalloc_node_range_noprof",
    "copy_process", "handle_mm_fault",
)  # fmt: skip
_MASKS = (0x0, 0xcc0, 0x400cc0, 0x100cca, 0x140dca, 0x52800, 0x2800, 0x1c20ca)
# Names a user might select by, including the odd ones of fixtures/cases.
COMMS = ("swapper/0", "dd", "sh", "(sd-pam)", "my prog", "a(b)c", "", "kworker/0:1")

frames = st.builds(
    Frame,
    st.sampled_from(_FUNCTIONS),
    st.integers(0, 0x3ff),
    st.integers(0x400, 0xfff),
    st.sampled_from((None, None, None, "xfs")),
)


@st.composite
def records(draw: st.DrawFn, fmt: DumpFormat | None = None) -> PageRecord:
    """Draw one record, printable in its era."""
    fmt = fmt or draw(st.sampled_from(FORMATS))
    mask = draw(st.sampled_from(_MASKS))
    pid = draw(st.integers(0, 6))
    tgid = draw(st.sampled_from((pid, pid, 1, 2))) if fmt.header.has_tgid else None
    page_mt = gfp_migratetype(mask)
    block_mt = draw(st.sampled_from((page_mt, page_mt, MigrateType.MOVABLE,
                                     MigrateType.UNMOVABLE, MigrateType.CMA)))  # fmt: skip
    order = draw(st.integers(0, 4))
    pfn = draw(st.integers(0x1000, 0x40000)) >> order << order
    fields = (("node", "0"), ("zone", str(draw(st.integers(0, 2)))))
    memcg = None
    if fmt.header.has_tgid:
        memcg = draw(st.sampled_from((None, MemcgCharge("wl"), MemcgCharge("gone", offline=True))))
    return PageRecord(
        order=order,
        gfp_mask=mask,
        gfp_names=decode_flags(mask, GFP_TABLES["6.12"]),
        pid=pid,
        tgid=tgid,
        comm=draw(st.sampled_from(COMMS)) if fmt.header.has_tgid else None,
        ts_nsec=draw(st.integers(0, 10**12)),
        free_ts_nsec=0 if fmt.header.has_free_ts else None,
        pfn=pfn,
        page_mt=page_mt,
        block=pfn >> 9,
        block_mt=block_mt,
        flags=PageFlags(0x200000000000000, (), fields),
        stack=tuple(draw(st.lists(frames, min_size=1, max_size=6))),
        migrate_reason=draw(st.sampled_from((None, None, "compaction"))),
        memcg=memcg,
        fmt=fmt,
    )


@st.composite
def dumps(draw: st.DrawFn) -> bytes:
    """Draw a whole dump of one era, as the kernel would print it."""
    fmt = draw(st.sampled_from(FORMATS))
    drawn = draw(st.lists(records(fmt), min_size=0, max_size=25))
    return "".join(format_record(record) for record in drawn).encode()
