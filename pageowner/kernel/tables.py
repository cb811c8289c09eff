"""Kernel name tables as data: GFP flags, page flags, migratetypes and migrate reasons.

Each table is read by one generic function, `decode_flags`, in the way the kernel's `%pGg`
and `%pGp` printers walk theirs: an entry is printed when all of its bits are still set,
those bits are then cleared, and what is left at the end is printed in hex.

The values are those of x86_64 with the fixtures' config (no KASAN_HW_TAGS, no LOCKDEP).
Tables for 6.1 and 6.12 were checked against the real dumps in fixtures/; the older ones
(4.6-4.14) follow the kernel headers of their time and are marked [uncertain] where a bit
position could not be pinned to a release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pageowner.model import MigrateType

__all__ = [
    "DEFAULT_FLAGS_LAYOUT",
    "FLAGS_LAYOUTS",
    "FlagTable",
    "FlagsLayout",
    "GFP_TABLES",
    "LETTER_FLAGS",
    "MIGRATE_REASONS",
    "MIGRATE_REASON_TABLES",
    "MIGRATETYPE_NUMBERS",
    "MIGRATETYPE_NUMBERS_3_19",
    "PAGEFLAG_TABLES",
    "ZONE_NAMES",
    "decode_flags",
    "encode_flags",
    "flags_layout_for_config",
    "gfp_migratetype",
    "gfp_table_for",
    "migrate_reason_names",
    "pageflag_table_for",
]


@dataclass(frozen=True)
class FlagTable:
    """A kernel flag table: the print order of names, and each name's bits."""

    name: str
    entries: tuple[tuple[str, int], ...]

    def value_of(self, name: str) -> int:
        """Return the bits of a name in this table, or raise KeyError."""
        for entry, value in self.entries:
            if entry == name:
                return value
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        """Return every name in print order."""
        return tuple(name for name, _ in self.entries)


def decode_flags(value: int, table: FlagTable) -> str:
    """Render a flag word the way `%pGg`/`%pGp` do: greedy names, hex remainder.

    >>> decode_flags(0xcc0 | 0x100, GFP_TABLES["6.12"])
    'GFP_KERNEL|__GFP_ZERO'
    >>> decode_flags(0x1000000, GFP_TABLES["6.12"])
    '0x1000000'
    >>> decode_flags(0, GFP_TABLES["6.12"])
    ''
    """
    parts: list[str] = []
    rest = value
    for name, bits in table.entries:
        if bits and rest & bits == bits:
            parts.append(name)
            rest &= ~bits
    if rest:
        parts.append(f"{rest:#x}")
    return "|".join(parts)


def encode_flags(text: str, table: FlagTable) -> int:
    """Turn `A|B|0x10` back into a flag word, the inverse of `decode_flags`.

    >>> hex(encode_flags("GFP_KERNEL|__GFP_ZERO", GFP_TABLES["6.12"]))
    '0xdc0'
    """
    value = 0
    for part in filter(None, text.split("|")):
        if part.startswith("0x"):
            value |= int(part, 16)
        else:
            value |= table.value_of(part)
    return value


def _bits(names: Sequence[str]) -> dict[str, int]:
    """Give each name its bit, in order, skipping None placeholders."""
    return {name: 1 << bit for bit, name in enumerate(names) if name}


# Single GFP bits of v4.15 and later (bit 9 was __GFP_ATOMIC until v6.2, unused after).
_BIT_ORDER: tuple[str, ...] = (
    "__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_MOVABLE", "__GFP_RECLAIMABLE",
    "__GFP_HIGH", "__GFP_IO", "__GFP_FS", "__GFP_ZERO", "__GFP_ATOMIC",
    "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_WRITE", "__GFP_NOWARN",
    "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_MEMALLOC",
    "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE",
    "__GFP_ACCOUNT", "__GFP_ZEROTAGS",
)  # fmt: skip
_GFP_BITS_MODERN = _bits(_BIT_ORDER)

# Single GFP bits of v4.6-v4.14 [uncertain: from the 4.6 headers and the 4.6 example
# mask 0x24213ca(GFP_HIGHUSER_MOVABLE|__GFP_COLD|__GFP_NOWARN|__GFP_NORETRY)].
_GFP_BITS_4_6 = _bits(
    [
        "__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_MOVABLE", "__GFP_RECLAIMABLE",
        "__GFP_HIGH", "__GFP_IO", "__GFP_FS", "__GFP_COLD", "__GFP_NOWARN", "__GFP_REPEAT",
        "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_MEMALLOC", "__GFP_COMP", "__GFP_ZERO",
        "__GFP_NOMEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE", "__GFP_ATOMIC",
        "__GFP_ACCOUNT", "__GFP_NOTRACK", "__GFP_DIRECT_RECLAIM", "__GFP_OTHER_NODE",
        "__GFP_WRITE", "__GFP_KSWAPD_RECLAIM",
    ]
)  # fmt: skip


def _gfp_table(
    name: str,
    bits: dict[str, int],
    composites: Sequence[tuple[str, Sequence[str]]],
    singles: Sequence[str],
) -> FlagTable:
    """Build a %pGg table from composite definitions and the single-flag print order."""
    values = dict(bits)
    entries: list[tuple[str, int]] = []
    for composite, parts in composites:
        value = 0
        for part in parts:
            value |= values[part]
        values[composite] = value
        entries.append((composite, value))
    for single in singles:
        entries.append((single, values[single]))
    return FlagTable(name, tuple(entries))


def _modern_composites(atomic: bool, nowait_nowarn: bool) -> list[tuple[str, list[str]]]:
    """Return the GFP_* composites of include/linux/gfp(_types).h in definition order."""
    reclaim = ["__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM"]
    kernel = [*reclaim, "__GFP_IO", "__GFP_FS"]
    user = [*kernel, "__GFP_HARDWALL"]
    highuser_movable = [*user, "__GFP_HIGHMEM", "__GFP_MOVABLE"]
    # GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE|__GFP_COMP|__GFP_NOMEMALLOC|__GFP_NOWARN)
    # & ~__GFP_RECLAIM.
    light = [
        "__GFP_IO", "__GFP_FS", "__GFP_HARDWALL", "__GFP_HIGHMEM", "__GFP_MOVABLE",
        "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_NOWARN",
    ]  # fmt: skip
    return [
        ("GFP_TRANSHUGE", [*light, "__GFP_DIRECT_RECLAIM"]),
        ("GFP_TRANSHUGE_LIGHT", light),
        ("GFP_HIGHUSER_MOVABLE", highuser_movable),
        ("GFP_HIGHUSER", [*user, "__GFP_HIGHMEM"]),
        ("GFP_USER", user),
        ("GFP_KERNEL_ACCOUNT", [*kernel, "__GFP_ACCOUNT"]),
        ("GFP_KERNEL", kernel),
        ("GFP_NOFS", [*reclaim, "__GFP_IO"]),
        ("GFP_ATOMIC", ["__GFP_HIGH", "__GFP_KSWAPD_RECLAIM", *(["__GFP_ATOMIC"] * atomic)]),
        ("GFP_NOIO", reclaim),
        # "mm: add __GFP_NOWARN to GFP_NOWAIT" is in the real 6.12.117 dump, not in 6.1.192.
        ("GFP_NOWAIT", ["__GFP_KSWAPD_RECLAIM"] + (["__GFP_NOWARN"] if nowait_nowarn else [])),
        ("GFP_DMA", ["__GFP_DMA"]),
        ("__GFP_HIGHMEM", ["__GFP_HIGHMEM"]),
        ("GFP_DMA32", ["__GFP_DMA32"]),
    ]  # fmt: skip


# The single flags of include/trace/events/mmflags.h after the composites. The order is the
# header's, not bit order: 5.10 prints `...|__GFP_NOMEMALLOC|__GFP_RECLAIMABLE` last.
_MODERN_SINGLES = [
    "__GFP_HIGH", "__GFP_ATOMIC", "__GFP_IO", "__GFP_FS", "__GFP_NOWARN",
    "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_COMP", "__GFP_ZERO",
    "__GFP_NOMEMALLOC", "__GFP_MEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE",
    "__GFP_RECLAIMABLE", "__GFP_MOVABLE", "__GFP_ACCOUNT", "__GFP_WRITE", "__GFP_RECLAIM",
    "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_ZEROTAGS",
]  # fmt: skip


def _modern(name: str, atomic: bool, zerotags: bool, nowait_nowarn: bool) -> FlagTable:
    """Build a v4.15+ table, with or without __GFP_ATOMIC and __GFP_ZEROTAGS."""
    bits = dict(_GFP_BITS_MODERN)
    bits["__GFP_RECLAIM"] = bits["__GFP_DIRECT_RECLAIM"] | bits["__GFP_KSWAPD_RECLAIM"]
    singles = [
        s
        for s in _MODERN_SINGLES
        if (atomic or s != "__GFP_ATOMIC") and (zerotags or s != "__GFP_ZEROTAGS")
    ]
    if not atomic:
        del bits["__GFP_ATOMIC"]
    return _gfp_table(name, bits, _modern_composites(atomic, nowait_nowarn), singles)


def _legacy_4_6() -> FlagTable:
    """Build the v4.6-v4.14 table [uncertain]."""
    bits = dict(_GFP_BITS_4_6)
    bits["__GFP_RECLAIM"] = bits["__GFP_DIRECT_RECLAIM"] | bits["__GFP_KSWAPD_RECLAIM"]
    reclaim = ["__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM"]
    kernel = [*reclaim, "__GFP_IO", "__GFP_FS"]
    user = [*kernel, "__GFP_HARDWALL"]
    composites: list[tuple[str, Sequence[str]]] = [
        ("GFP_TRANSHUGE", [*user, "__GFP_HIGHMEM", "__GFP_MOVABLE", "__GFP_COMP",
                           "__GFP_NOMEMALLOC", "__GFP_NORETRY", "__GFP_NOWARN"]),
        ("GFP_HIGHUSER_MOVABLE", [*user, "__GFP_HIGHMEM", "__GFP_MOVABLE"]),
        ("GFP_HIGHUSER", [*user, "__GFP_HIGHMEM"]),
        ("GFP_USER", user),
        ("GFP_TEMPORARY", [*kernel, "__GFP_RECLAIMABLE"]),
        ("GFP_KERNEL_ACCOUNT", [*kernel, "__GFP_ACCOUNT"]),
        ("GFP_KERNEL", kernel),
        ("GFP_NOFS", [*reclaim, "__GFP_IO"]),
        ("GFP_ATOMIC", ["__GFP_HIGH", "__GFP_ATOMIC", "__GFP_KSWAPD_RECLAIM"]),
        ("GFP_NOIO", reclaim),
        ("GFP_NOWAIT", ["__GFP_KSWAPD_RECLAIM"]),
        ("GFP_DMA", ["__GFP_DMA"]),
        ("__GFP_HIGHMEM", ["__GFP_HIGHMEM"]),
        ("GFP_DMA32", ["__GFP_DMA32"]),
    ]  # fmt: skip
    singles = [
        "__GFP_HIGH", "__GFP_ATOMIC", "__GFP_IO", "__GFP_FS", "__GFP_COLD", "__GFP_NOWARN",
        "__GFP_REPEAT", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_COMP", "__GFP_ZERO",
        "__GFP_NOMEMALLOC", "__GFP_MEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE",
        "__GFP_RECLAIMABLE", "__GFP_MOVABLE", "__GFP_ACCOUNT", "__GFP_NOTRACK", "__GFP_WRITE",
        "__GFP_RECLAIM", "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_OTHER_NODE",
    ]  # fmt: skip
    return _gfp_table("4.6", bits, composites, singles)


def _trace_gfp_flags(name: str, no_obj_ext: bool) -> FlagTable:
    """Build a v6.15+ table: composites, then `__GFP_RECLAIM`, then every bit in bit order.

    The 6.15 cycle ("tracing: gfp: Remove duplication of recording GFP flags") made
    mmflags.h list the single flags through TRACE_GFP_FLAGS, which follows the
    ___GFP_*_BIT enum, instead of a hand-ordered list; the composites lost `__GFP_HIGHMEM`
    (it is the second single bit now). Checked against every distinct mask of the real
    7.3 dumps (fixtures/real73) and the published 6.19 record.
    """
    bits = dict(_GFP_BITS_MODERN)
    del bits["__GFP_ATOMIC"]
    bits["__GFP_RECLAIM"] = bits["__GFP_DIRECT_RECLAIM"] | bits["__GFP_KSWAPD_RECLAIM"]
    # The enum packs config-dependent bits after ZEROTAGS: SKIP_ZERO/SKIP_KASAN
    # (KASAN_HW_TAGS), NOLOCKDEP (LOCKDEP), then NO_OBJ_EXT; with neither option (the
    # fixtures' config) NO_OBJ_EXT is bit 24.
    bits["__GFP_NO_OBJ_EXT"] = 1 << 24
    composites = [(c, p) for c, p in _modern_composites(atomic=False, nowait_nowarn=True)
                  if c != "__GFP_HIGHMEM"]
    singles = ["__GFP_RECLAIM"]
    singles += [flag for flag in _BIT_ORDER if flag != "__GFP_ATOMIC"]
    if no_obj_ext:
        singles.append("__GFP_NO_OBJ_EXT")
    return _gfp_table(name, bits, composites, singles)


# Keyed by the first release each table applies to; `gfp_table_for` picks one by version.
GFP_TABLES: dict[str, FlagTable] = {
    "4.6": _legacy_4_6(),
    "4.15": _modern("4.15", atomic=True, zerotags=False, nowait_nowarn=False),
    # __GFP_ZEROTAGS: v5.13 [likely] (arm64 MTE); never set on x86_64.
    "5.13": _modern("5.13", atomic=True, zerotags=True, nowait_nowarn=False),
    "6.2": _modern("6.2", atomic=False, zerotags=True, nowait_nowarn=False),
    "6.12": _modern("6.12", atomic=False, zerotags=True, nowait_nowarn=True),
    "6.15": _trace_gfp_flags("6.15", no_obj_ext=False),
    # TRACE_GFP_FLAGS_SLAB names __GFP_NO_OBJ_EXT under CONFIG_SLAB_OBJ_EXT in the 7.3
    # mmflags.h; a 6.19-era mainline mmflags.h has no such entry [uncertain: the release
    # between 6.19 and 7.3 that added it]. No real dump sets the bit (slab never passes it
    # to the page allocator in the fixtures), so only the source vouches for it.
    "7.3": _trace_gfp_flags("7.3", no_obj_ext=True),
}


def _version_key(version: str) -> tuple[int, ...]:
    """Turn '6.12' into (6, 12) for ordering."""
    return tuple(int(part) for part in version.split("."))


def _pick(tables: dict[str, FlagTable], version: str) -> FlagTable | None:
    """Return the table of the newest key not after `version`."""
    chosen = None
    for key in sorted(tables, key=_version_key):
        if _version_key(key) <= _version_key(version):
            chosen = tables[key]
    return chosen


def gfp_table_for(version: str) -> FlagTable | None:
    """Return the %pGg table of a kernel version, or None before names were printed (4.6).

    >>> gfp_table_for("6.1").name
    '5.13'
    """
    return _pick(GFP_TABLES, version)


# Page flag bits per era, in enum pageflags order (None marks a bit with no printed name).
# 3.19-6.1 share most of the layout; 6.12 moved writeback/head down and renamed bits.
_PAGEFLAGS_6_1 = [
    "locked", "referenced", "uptodate", "dirty", "lru", "active", "workingset", "waiters",
    "error", "slab", "owner_priv_1", "arch_1", "reserved", "private", "private_2",
    "writeback", "head", "mappedtodisk", "reclaim", "swapbacked", "unevictable", "mlocked",
]  # fmt: skip
_PAGEFLAGS_6_12 = [
    "locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head", "waiters",
    "active", "workingset", "owner_priv_1", "owner_2", "arch_1", "reserved", "private",
    "private_2", "reclaim", "swapbacked", "unevictable", "mlocked",
]  # fmt: skip
# [uncertain] 4.6: before waiters (4.10) and workingset (4.20).
_PAGEFLAGS_4_6 = [
    "locked", "error", "referenced", "uptodate", "dirty", "lru", "active", "slab",
    "owner_priv_1", "arch_1", "reserved", "private", "private_2", "writeback", "head",
    "swapcache", "mappedtodisk", "reclaim", "swapbacked", "unevictable", "mlocked",
]  # fmt: skip

# %pGp print order (include/trace/events/mmflags.h), which differs from bit order.
_PRINT_6_1 = [
    "locked", "waiters", "error", "referenced", "uptodate", "dirty", "lru", "active",
    "workingset", "slab", "owner_priv_1", "arch_1", "reserved", "private", "private_2",
    "writeback", "head", "mappedtodisk", "reclaim", "swapbacked", "unevictable", "mlocked",
]  # fmt: skip
_PRINT_6_12 = [
    "locked", "waiters", "referenced", "uptodate", "dirty", "lru", "active", "workingset",
    "owner_priv_1", "owner_2", "arch_1", "reserved", "private", "private_2", "writeback",
    "head", "reclaim", "swapbacked", "unevictable", "mlocked",
]  # fmt: skip


def _pageflags(name: str, bit_order: list[str], print_order: list[str]) -> FlagTable:
    """Build a %pGp name table."""
    bits = _bits(bit_order)
    return FlagTable(name, tuple((flag, bits[flag]) for flag in print_order))


PAGEFLAG_TABLES: dict[str, FlagTable] = {
    "4.6": _pageflags("4.6", _PAGEFLAGS_4_6, _PAGEFLAGS_4_6),
    "4.20": _pageflags("4.20", _PAGEFLAGS_6_1, _PRINT_6_1),
    "6.12": _pageflags("6.12", _PAGEFLAGS_6_12, _PRINT_6_12),
}


def pageflag_table_for(version: str) -> FlagTable:
    """Return the %pGp name table of a kernel version."""
    table = _pick(PAGEFLAG_TABLES, version)
    return table if table is not None else PAGEFLAG_TABLES["4.6"]


# The twelve letter columns of the 3.19 PFN line, in print order.
LETTER_FLAGS: tuple[tuple[str, str], ...] = (
    ("K", "locked"), ("E", "error"), ("R", "referenced"), ("U", "uptodate"),
    ("D", "dirty"), ("L", "lru"), ("A", "active"), ("S", "slab"), ("W", "writeback"),
    ("C", "compound"), ("B", "swapcache"), ("M", "mappedtodisk"),
)  # fmt: skip

# migratetype numbers: since v4.4 (HighAtomic replaced Reserve, Movable moved to 1), and the
# 3.19 order, used only by the 3.19 PFN line which prints the number.
MIGRATETYPE_NUMBERS: tuple[MigrateType, ...] = (
    MigrateType.UNMOVABLE, MigrateType.MOVABLE, MigrateType.RECLAIMABLE,
    MigrateType.HIGHATOMIC, MigrateType.CMA, MigrateType.ISOLATE,
)  # fmt: skip
MIGRATETYPE_NUMBERS_3_19: tuple[MigrateType, ...] = (
    MigrateType.UNMOVABLE, MigrateType.RECLAIMABLE, MigrateType.MOVABLE,
    MigrateType.RESERVE, MigrateType.CMA, MigrateType.ISOLATE,
)  # fmt: skip

# migrate_reason_names[] of mm/debug.c, the strings page_owner prints for `enum
# migrate_reason`, by the first release of each list. The array is sized MR_TYPES, so a
# reason the enum has but the list lacks is a NULL that vsprintf prints as "(null)".
_REASONS_4_6 = (
    "compaction", "memory_failure", "memory_hotplug", "syscall_or_cpuset",
    "mempolicy_mbind", "numa_misplaced", "cma",
)  # fmt: skip
MIGRATE_REASON_TABLES: dict[str, tuple[str, ...]] = {
    "4.6": _REASONS_4_6,
    # 310253514bbf (v5.1) renamed MR_CMA to MR_CONTIG_RANGE in the enum only; d1e153fea2a8
    # (v5.13) added MR_LONGTERM_PIN without a name.
    "5.13": (*_REASONS_4_6, "(null)"),
    # "mm/debug: sync up MR_CONTIG_RANGE and MR_LONGTERM_PIN" and "... sync up latest
    # migrate_reason to migrate_reason_names" (Weizhao Ouyang, akpm's 5.15-rc3 batch of
    # 2021-09-24; MR_DEMOTION came with 26aa2d199d6f in 5.15-rc1).
    "5.15": (*_REASONS_4_6[:6], "contig_range", "longterm_pin", "demotion"),
    # MR_DAMON [uncertain: 6.11].
    "6.11": (*_REASONS_4_6[:6], "contig_range", "longterm_pin", "demotion", "damon"),
}
# Stable releases that took the 5.15-rc3 rename (`cma` -> `contig_range`): 5.10.70.
_CONTIG_RANGE_STABLE: dict[tuple[int, ...], int] = {(5, 10): 70}
# Every reason string some release prints.
MIGRATE_REASONS: tuple[str, ...] = (*MIGRATE_REASON_TABLES["6.11"], "cma")


def migrate_reason_names(release: str) -> tuple[str, ...]:
    """Return the reason strings of a release ("5.10", "5.10.70"), indexed by the enum.

    >>> migrate_reason_names("5.10")[6], migrate_reason_names("5.10.223")[6]
    ('cma', 'contig_range')
    >>> migrate_reason_names("5.14")[7], migrate_reason_names("6.12")[6]
    ('(null)', 'contig_range')
    """
    parts = tuple(int(part) for part in release.split(".")[:3] if part.isdigit())
    major_minor = ".".join(str(part) for part in parts[:2])
    names = _pick_names(major_minor)
    fixed_in = _CONTIG_RANGE_STABLE.get(parts[:2])
    if fixed_in is not None and len(parts) > 2 and parts[2] >= fixed_in:
        names = (*names[:6], "contig_range", *names[7:])
    return names


def _pick_names(version: str) -> tuple[str, ...]:
    """Return the newest reason list not after a major.minor version."""
    chosen = MIGRATE_REASON_TABLES["4.6"]
    for key in sorted(MIGRATE_REASON_TABLES, key=_version_key):
        if _version_key(key) <= _version_key(version):
            chosen = MIGRATE_REASON_TABLES[key]
    return chosen


@dataclass(frozen=True)
class FlagsLayout:
    """Where node and zone sit in page->flags (include/linux/page-flags-layout.h)."""

    name: str
    node_shift: int
    node_width: int  # 0: no node bits, as without CONFIG_NUMA (NODES_SHIFT 0)
    zone_shift: int
    zone_width: int
    description: str = ""

    def field(self, value: int, name: str) -> int | None:
        """Return the node or zone bits of a flags word, None when the layout has none."""
        shift, width = ((self.node_shift, self.node_width) if name == "node"
                        else (self.zone_shift, self.zone_width))  # fmt: skip
        return (value >> shift) & ((1 << width) - 1) if width else None


def _x86_64_layout(name: str, nodes_shift: int, zones: int, description: str) -> FlagsLayout:
    """Place node and zone from bit 63 down, as page-flags-layout.h does on x86_64.

    SPARSEMEM_VMEMMAP keeps no section bits in page->flags, so the node field ends at bit
    63 and the zone field sits right below it; ZONES_SHIFT is 2 for up to four zones (DMA,
    DMA32, Normal, Movable) and 3 with ZONE_DEVICE.
    """
    zone_width = 2 if zones <= 4 else 3
    node_shift = 64 - nodes_shift
    return FlagsLayout(name, node_shift, nodes_shift, node_shift - zone_width, zone_width,
                       description)  # fmt: skip


# The layouts a reader can be told to use (`--flags-layout`), by name. Checked: `numa`
# against the node= and zone= fields %pGp printed for every record of the real 6.1, 6.12
# and two-node 7.3 dumps; the others follow the header's arithmetic.
FLAGS_LAYOUTS: dict[str, FlagsLayout] = {
    layout.name: layout
    for layout in (
        _x86_64_layout("numa", 6, 4, "x86_64 with NUMA and NODES_SHIFT 6, as x86_64_defconfig"),
        _x86_64_layout("nonuma", 0, 4, "x86_64 without NUMA: zone at bits 62-63, no node"),
        _x86_64_layout("maxsmp", 10, 4, "x86_64 with MAXSMP, NODES_SHIFT 10"),
        _x86_64_layout("numa-device", 6, 5, "x86_64 with NUMA and ZONE_DEVICE"),
        _x86_64_layout("nonuma-device", 0, 5, "x86_64 without NUMA, with ZONE_DEVICE"),
        _x86_64_layout("maxsmp-device", 10, 5, "x86_64 with MAXSMP and ZONE_DEVICE"),
    )
}
DEFAULT_FLAGS_LAYOUT = FLAGS_LAYOUTS["numa"]


def flags_layout_for_config(config: str) -> FlagsLayout | None:
    """Pick the layout of a kernel .config (x86_64 only), or None for another machine.

    >>> flags_layout_for_config("CONFIG_X86_64=y\\nCONFIG_NUMA=y\\nCONFIG_NODES_SHIFT=6\\n").name
    'numa'
    >>> flags_layout_for_config("CONFIG_X86_64=y\\n# CONFIG_NUMA is not set\\n").name
    'nonuma'
    """
    options: dict[str, str] = {}
    for line in config.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            options[key] = value.strip()
    if options.get("CONFIG_X86_64") != "y" or options.get("CONFIG_SPARSEMEM_VMEMMAP", "y") != "y":
        return None
    numa = options.get("CONFIG_NUMA") == "y"
    nodes_shift = int(options.get("CONFIG_NODES_SHIFT", "0")) if numa else 0
    zones = 5 if options.get("CONFIG_ZONE_DEVICE") == "y" else 4
    for layout in FLAGS_LAYOUTS.values():
        if layout.node_width == nodes_shift and layout.zone_width == (2 if zones == 4 else 3):
            return layout
    return _x86_64_layout(f"x86_64 NODES_SHIFT {nodes_shift}", nodes_shift, zones, "")


# x86_64 zone numbering in page->flags with DMA, DMA32 and Normal configured.
ZONE_NAMES: tuple[str, ...] = ("DMA", "DMA32", "Normal", "Movable", "Device")


def gfp_migratetype(gfp_mask: int, table: FlagTable | None = None) -> MigrateType:
    """Return the migratetype the page allocator derives from a GFP mask.

    The kernel shifts the two mobility bits down (`(gfp & GFP_MOVABLE_MASK) >>
    GFP_MOVABLE_SHIFT`, v4.4+ numbering), so both together give 3, MIGRATE_HIGHATOMIC
    (a combination the kernel warns about but still prints so).

    >>> gfp_migratetype(0x100cca).value, gfp_migratetype(0x18).value
    ('Movable', 'HighAtomic')
    """
    table = table or GFP_TABLES["6.12"]
    movable = bool(gfp_mask & table.value_of("__GFP_MOVABLE"))
    reclaimable = bool(gfp_mask & table.value_of("__GFP_RECLAIMABLE"))
    return MIGRATETYPE_NUMBERS[movable | reclaimable << 1]
