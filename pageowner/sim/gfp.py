"""GFP masks across kernel eras: one canonical encoding, translated per version.

The simulator keeps masks in the v4.15-v6.1 bit layout (include/linux/gfp.h of those
releases, `__GFP_ATOMIC` at bit 9). `to_version` moves a mask to the layout a kernel
prints: v6.2 dropped `__GFP_ATOMIC`; v4.6-v4.14 had other bit positions and names
(`__GFP_REPEAT`, `__GFP_COLD`); v3.19 had `__GFP_WAIT` and `__GFP_NO_KSWAPD`. Zone and
migratetype come from the canonical mask (gfp_zone(), gfp_migratetype()).
"""

from __future__ import annotations

from pageowner.kernel.kernels import version_key
from pageowner.kernel.tables import GFP_TABLES
from pageowner.sim.buddy import MT_HIGHATOMIC, MT_MOVABLE, MT_RECLAIMABLE, MT_UNMOVABLE

__all__ = [
    "GFP",
    "ZONE_DMA",
    "ZONE_DMA32",
    "ZONE_NORMAL",
    "can_spin",
    "canonical_from",
    "gfp_migratetype",
    "gfp_zone",
    "parse_gfp",
    "to_version",
]

ZONE_DMA, ZONE_DMA32, ZONE_NORMAL = 0, 1, 2

_CANONICAL = GFP_TABLES["5.13"]  # the v4.15-v6.1 layout, with __GFP_ATOMIC
# The single bits of that layout, in bit order (kernel.md B.1).
_BIT_NAMES = (
    "__GFP_DMA", "__GFP_HIGHMEM", "__GFP_DMA32", "__GFP_MOVABLE", "__GFP_RECLAIMABLE",
    "__GFP_HIGH", "__GFP_IO", "__GFP_FS", "__GFP_ZERO", "__GFP_ATOMIC",
    "__GFP_DIRECT_RECLAIM", "__GFP_KSWAPD_RECLAIM", "__GFP_WRITE", "__GFP_NOWARN",
    "__GFP_RETRY_MAYFAIL", "__GFP_NOFAIL", "__GFP_NORETRY", "__GFP_MEMALLOC",
    "__GFP_COMP", "__GFP_NOMEMALLOC", "__GFP_HARDWALL", "__GFP_THISNODE",
    "__GFP_ACCOUNT", "__GFP_ZEROTAGS",
)  # fmt: skip
# Named masks in the canonical layout, for workloads and tests.
GFP: dict[str, int] = {name: 1 << bit for bit, name in enumerate(_BIT_NAMES)}
GFP.update((name, value) for name, value in _CANONICAL.entries if name not in GFP)
_ATOMIC_BIT = GFP["__GFP_ATOMIC"]

# v4.6-v4.14: the same flags under other bits; v4.13 renamed __GFP_REPEAT.
_RENAME_4_6 = {"__GFP_RETRY_MAYFAIL": "__GFP_REPEAT"}
# v3.19: __GFP_WAIT was the only reclaim bit; the KSWAPD bit did not exist yet.
_BITS_3_19 = {
    "__GFP_DMA": 0x1, "__GFP_HIGHMEM": 0x2, "__GFP_DMA32": 0x4, "__GFP_MOVABLE": 0x8,
    "__GFP_DIRECT_RECLAIM": 0x10, "__GFP_HIGH": 0x20, "__GFP_IO": 0x40, "__GFP_FS": 0x80,
    "__GFP_NOWARN": 0x200, "__GFP_RETRY_MAYFAIL": 0x400, "__GFP_NOFAIL": 0x800,
    "__GFP_NORETRY": 0x1000, "__GFP_MEMALLOC": 0x2000, "__GFP_COMP": 0x4000,
    "__GFP_ZERO": 0x8000, "__GFP_NOMEMALLOC": 0x10000, "__GFP_HARDWALL": 0x20000,
    "__GFP_THISNODE": 0x40000, "__GFP_RECLAIMABLE": 0x80000, "__GFP_WRITE": 0x1000000,
}  # fmt: skip
_SINGLES = [(name, 1 << bit) for bit, name in enumerate(_BIT_NAMES)]


def _names(mask: int) -> list[str]:
    """Split a canonical mask into its single-bit flag names."""
    return [name for name, value in _SINGLES if mask & value]


def canonical_from(mask: int, version: str) -> int:
    """Bring a mask printed by a v4.15+ kernel into the canonical layout.

    v6.2+ masks lack __GFP_ATOMIC; GFP_ATOMIC (HIGH|KSWAPD without DIRECT_RECLAIM) gets
    it back so that older eras print `GFP_ATOMIC`.

    >>> hex(canonical_from(0x820, "6.12"))
    '0xa20'
    """
    if version_key(version) >= (6, 2):
        high_kswapd = GFP["__GFP_HIGH"] | GFP["__GFP_KSWAPD_RECLAIM"]
        if mask & high_kswapd == high_kswapd and not mask & GFP["__GFP_DIRECT_RECLAIM"]:
            mask |= _ATOMIC_BIT
    return mask


def to_version(mask: int, version: str) -> int:
    """Translate a canonical mask to the bit layout of a kernel version.

    >>> hex(to_version(0xa20, "6.12")), hex(to_version(0x100cca, "3.19"))
    ('0x820', '0x200da')
    """
    key = version_key(version)
    if key >= (6, 2):
        return mask & ~_ATOMIC_BIT
    if key >= (4, 15):
        return mask
    if key >= (4, 6):
        table = GFP_TABLES["4.6"]
        value = 0
        for name in _names(mask):
            try:
                value |= table.value_of(_RENAME_4_6.get(name, name))
            except KeyError:
                continue
        return value
    value = 0
    for name in _names(mask):
        value |= _BITS_3_19.get(name, 0)
    return value


def can_spin(mask: int) -> bool:
    """Tell whether an allocation may spin on locks: it has a reclaim bit (gfpflags_allow_spinning).

    >>> can_spin(GFP["__GFP_KSWAPD_RECLAIM"]), can_spin(GFP["__GFP_ZERO"])
    (True, False)
    """
    return bool(mask & (GFP["__GFP_DIRECT_RECLAIM"] | GFP["__GFP_KSWAPD_RECLAIM"]))


def gfp_zone(mask: int) -> int:
    """Return the highest zone a canonical mask allows (gfp_zone() on x86_64).

    >>> gfp_zone(GFP["GFP_KERNEL"]), gfp_zone(GFP["__GFP_DMA32"])
    (2, 1)
    """
    if mask & GFP["__GFP_DMA"]:
        return ZONE_DMA
    if mask & GFP["__GFP_DMA32"]:
        return ZONE_DMA32
    return ZONE_NORMAL


def gfp_migratetype(mask: int) -> int:
    """Return the migratetype of a canonical mask (gfp_migratetype()).

    Movable and Reclaimable together shift down to 3, MIGRATE_HIGHATOMIC (v4.4+).

    >>> gfp_migratetype(GFP["GFP_HIGHUSER_MOVABLE"])
    1
    >>> gfp_migratetype(GFP["__GFP_MOVABLE"] | GFP["__GFP_RECLAIMABLE"]) == MT_HIGHATOMIC
    True
    """
    movable = bool(mask & GFP["__GFP_MOVABLE"])
    reclaimable = bool(mask & GFP["__GFP_RECLAIMABLE"])
    if movable and reclaimable:
        return MT_HIGHATOMIC
    if movable:
        return MT_MOVABLE
    if reclaimable:
        return MT_RECLAIMABLE
    return MT_UNMOVABLE


def parse_gfp(text: str) -> int:
    """Turn `GFP_KERNEL|__GFP_ZERO` or `0xcc0` into a canonical mask.

    >>> hex(parse_gfp("GFP_KERNEL|__GFP_ZERO"))
    '0xdc0'
    """
    value = 0
    for part in filter(None, text.split("|")):
        part = part.strip()
        if part.lower().startswith("0x"):
            value |= int(part, 16)
        else:
            value |= GFP[part]
    return value
