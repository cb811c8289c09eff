"""Hypothesis strategies: page_owner dumps with the oddities real files have."""

from __future__ import annotations

from hypothesis import strategies as st

COMMS = ["swapper/0", "sh", "dd", "(sd-pam)", "my prog", "a(b)c", "", "kworker/u2:0", "x), ts 5"]
FRAMES = [
    " post_alloc_hook+0x1e3/0x210",
    " get_page_from_freelist+0x7b1/0x1180",
    " __alloc_pages_noprof+0x17d/0x350",
    " __alloc_pages_bulk+0x1a/0x60",
    " __vmalloc_node_range+0x39c/0x880",
    " shmem_alloc_folio+0x97/0xb0",
    " xfs_buf_read_map+0x54/0x280 [xfs]",
    " kmem_cache_alloc+0x2a1/0x2f0",
    " do_ts_12_ns+0x1/0x2",
    " [<ffffffff8194b43f>] __alloc_pages_nodemask+0x1e3/0x210",
]
PFN_LINES = [
    "PFN 0x1000 type Unmovable Block 8 type Unmovable Flags 0x100000000000000(node=0|zone=1)",
    "PFN 4096 type Movable Block 8 type CMA Flags 0x100000000000200(slab|node=0|zone=1)",
    "PFN 4130 Block 8 type 2          Flags    U LA    M",
]
TRAILERS = [
    "Page has been migrated, last migrate reason: compaction",
    "Slab cache page",
    "Charged (via objcg) to offline memcg user@1000.service",
]


@st.composite
def headers(draw: st.DrawFn) -> str:
    """Draw a header line of any era (and a few damaged ones)."""
    order = draw(st.sampled_from(["0", "1", "3", "9", "", "65"]))
    pid = draw(st.integers(0, 3000))
    tgid = draw(st.integers(0, 3000))
    ts = draw(st.integers(0, 10**12))
    comm = draw(st.sampled_from(COMMS))
    mask = "mask 0x140cca(GFP_HIGHUSER_MOVABLE|__GFP_COMP)"
    shapes = [
        f"Page allocated via order {order}, {mask}, pid {pid}, tgid {tgid} ({comm}), ts {ts} ns",
        f"Page allocated via order {order}, {mask}, pid {pid}, tgid {tgid} ({comm}), "
        f"ts {ts} ns, free_ts {draw(st.sampled_from([0, ts + 1, 5]))} ns",
        f"Page allocated via order {order}, {mask}, pid {pid}, ts {ts} ns, free_ts 0 ns",
        f"Page allocated via order {order}, {mask}",
        f"Page allocated via order {order}, mask 0x52800",
    ]
    return draw(st.sampled_from(shapes))


@st.composite
def blocks(draw: st.DrawFn) -> str:
    """Draw one block: header, PFN line(s), frames and trailing lines."""
    lines = [draw(headers())]
    pfn_count = draw(st.sampled_from([0, 1, 1, 1, 1, 2]))
    lines += draw(st.lists(st.sampled_from(PFN_LINES), min_size=pfn_count, max_size=pfn_count))
    lines += draw(st.lists(st.sampled_from(FRAMES), min_size=0, max_size=6))
    lines += draw(st.lists(st.sampled_from(TRAILERS), max_size=2))
    if draw(st.booleans()) and len(lines) > 2:
        # A stray PFN line further down, which page_owner_sort also sets aside.
        lines.insert(draw(st.integers(2, len(lines))), PFN_LINES[0])
    return "\n".join(lines) + "\n"


@st.composite
def dumps(draw: st.DrawFn, oddities: bool = True) -> bytes:
    """Draw a dump: blocks separated by blank lines, repeats included (as real dumps have)."""
    pool = draw(st.lists(blocks(), min_size=1, max_size=6))
    chosen = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=30))
    separators = ["\n"] if not oddities else ["\n", "\n", "\n", "\n\n"]
    text = ""
    for block in chosen:
        text += block + draw(st.sampled_from(separators))
    if oddities and draw(st.booleans()):
        text = text.rstrip("\n") + "\n"  # no closing blank line
    return text.encode()


@st.composite
def sort_args(draw: st.DrawFn) -> list[str]:
    """Draw a page_owner_sort command line (options only)."""
    args = []
    flag = draw(st.sampled_from(["", "-a", "-m", "-n", "-p", "-P", "-s", "-t"]))
    if flag:
        args.append(flag)
    if draw(st.booleans()):
        args.append("--cull=" + ",".join(draw(st.lists(
            st.sampled_from(["p", "tg", "n", "st", "ator"]), min_size=1, max_size=3))))
    if draw(st.integers(0, 4)) == 0:
        args.append("--pid=" + ",".join(str(p) for p in draw(st.lists(st.integers(0, 3000), min_size=1, max_size=3))))
    if draw(st.integers(0, 4)) == 0:
        args.append("--name=" + ",".join(draw(st.lists(st.sampled_from(COMMS[:6]), min_size=1, max_size=2))))
    return args


# --- typed records -------------------------------------------------------------------------

from pageowner.kernel.tables import LETTER_FLAGS, MIGRATETYPE_NUMBERS_3_19  # noqa: E402
from pageowner.model import (  # noqa: E402
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

SYMBOL = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.]{0,30}", fullmatch=True)
LINE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
FLAG_NAMES = ["locked", "referenced", "uptodate", "dirty", "lru", "active", "slab", "head",
              "swapbacked", "workingset", "owner_2", "0x200000"]


@st.composite
def frames(draw: st.DrawFn, with_address: bool) -> Frame:
    """Draw a frame printed with or without the [<address>] column."""
    kind = draw(st.sampled_from(["symbol", "symbol", "symbol", "raw_address", "raw"]))
    address = draw(st.integers(0, 2**64 - 1)) if with_address else None
    if kind == "symbol":
        module = draw(st.one_of(st.none(), st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True)))
        return Frame(draw(SYMBOL), draw(st.integers(0, 2**20)), draw(st.integers(0, 2**20)),
                     module, address)
    if kind == "raw_address":
        return Frame(None, address=draw(st.integers(0, 2**64 - 1)))
    return Frame(None, address=address, raw=draw(st.sampled_from(["?", "<unknown>", "  odd text"])))


@st.composite
def page_records(draw: st.DrawFn, fmt: DumpFormat | None = None) -> PageRecord:
    """Draw a self-consistent record in one era's format."""
    if fmt is None:
        fmt = DumpFormat(draw(st.sampled_from(list(HeaderStyle))),
                         draw(st.sampled_from(list(PfnStyle))),
                         draw(st.sampled_from(list(FrameStyle))))
    header = fmt.header
    fields: dict[str, object] = {}
    if header.has_names:
        fields["gfp_names"] = draw(st.sampled_from(["", "GFP_KERNEL", "GFP_KERNEL|__GFP_ZERO|0x1000000"]))
    if header.has_pid:
        fields["pid"] = draw(st.integers(-5, 2**22))
        fields["ts_nsec"] = draw(st.integers(0, 2**64 - 1))
    if header.has_tgid:
        fields["tgid"] = draw(st.integers(-5, 2**22))
        fields["comm"] = draw(LINE_TEXT.filter(lambda s: "\n" not in s and "\r" not in s))
    if header.has_free_ts:
        fields["free_ts_nsec"] = draw(st.integers(0, 2**64 - 1))
    if draw(st.integers(0, 5)):
        pfn = draw(st.integers(0, 2**40))
        fields["pfn"] = pfn
        fields["block"] = draw(st.integers(0, 2**31))
        if fmt.pfn is PfnStyle.LETTERS:
            block_mt = draw(st.sampled_from(MIGRATETYPE_NUMBERS_3_19))
            fields["block_mt"] = block_mt
            fields["page_mt"] = draw(st.sampled_from([None, block_mt]))
            names = tuple(name for _, name in LETTER_FLAGS if draw(st.booleans()))
            fields["flags"] = PageFlags(None, names)
        else:
            fields["block_mt"] = draw(st.sampled_from([m for m in MigrateType if m is not MigrateType.RESERVE]))
            fields["page_mt"] = draw(st.sampled_from([m for m in MigrateType if m is not MigrateType.RESERVE]))
            names = tuple(draw(st.lists(st.sampled_from(FLAG_NAMES), max_size=4, unique=True)))
            extra: tuple[tuple[str, str], ...] = ()
            if fmt.pfn is not PfnStyle.DEC_RAW_FLAGS:
                extra = (("node", str(draw(st.integers(0, 3)))), ("zone", str(draw(st.integers(0, 3)))))
            fields["flags"] = PageFlags(draw(st.integers(0, 2**64 - 1)), names, extra)
    else:
        fmt = DumpFormat(fmt.header, PfnStyle.HEX, fmt.frames)  # no PFN line: style unseen
    with_address = fmt.frames is FrameStyle.ADDRESS
    stack = draw(st.lists(frames(with_address), max_size=8))
    if with_address:
        stack.append(Frame(draw(SYMBOL), 1, 2, None, draw(st.integers(0, 2**64 - 1))))
    # 7.3 print modes: a handle after the frames (stack_handle) or instead of them (handle).
    fields["handle"] = draw(st.one_of(st.none(), st.sampled_from([0, 1, 1048577, 2**32 - 1])))
    fields["migrate_reason"] = draw(st.one_of(st.none(), st.sampled_from(["compaction", "contig_range"])))
    fields["slab_cache"] = draw(st.booleans())
    fields["memcg"] = draw(st.one_of(st.none(), st.builds(
        MemcgCharge, st.sampled_from(["wl", "/", "user@1000.service", "a b"]), st.booleans(), st.booleans())))
    fields["extra"] = tuple(draw(st.lists(st.sampled_from(["handle: -1", "handle: 042", "Something new"]), max_size=2)))
    return PageRecord(order=draw(st.integers(0, 10)), gfp_mask=draw(st.integers(0, 2**32 - 1)),
                      stack=tuple(stack), fmt=fmt, **fields)  # type: ignore[arg-type]
