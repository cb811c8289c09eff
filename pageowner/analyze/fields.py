"""What the analysis reads off a record beyond its printed fields: zone, node, allocator.

Kernels before 5.14 print no node=/zone= fields, so those come from the flags word with a
layout (kernel/tables.py FLAGS_LAYOUTS); the allocator label is page_owner_sort's
classification of the record's text (dump/classify.py).
"""

from __future__ import annotations

from collections.abc import Hashable

from pageowner.dump.classify import ALLOCATOR_LABELS, classify_block
from pageowner.dump.dumpfile import encode, format_record
from pageowner.dump.era import sidecar_flags_layout
from pageowner.dump.scan import AnyRecord, ScanRecord
from pageowner.errors import SpecError
from pageowner.kernel.tables import DEFAULT_FLAGS_LAYOUT, FLAGS_LAYOUTS, ZONE_NAMES, FlagsLayout

__all__ = [
    "FLAGS_LAYOUT_X86_64",
    "allocator_bits",
    "allocator_label",
    "node_of",
    "parse_flags_layout",
    "resolve_flags_layout",
    "shape_of",
    "zone_derived",
    "zone_label",
    "zone_of",
]


# x86_64 with SPARSEMEM_VMEMMAP (no section bits), NODES_SHIFT 6 and four zones
# (ZONES_SHIFT 2): | node:6 | zone:2 | ... from bit 63 down (kernel.tables.FLAGS_LAYOUTS).
FLAGS_LAYOUT_X86_64 = DEFAULT_FLAGS_LAYOUT


def parse_flags_layout(text: str) -> FlagsLayout:
    """Look up a `--flags-layout` name.

    >>> parse_flags_layout("nonuma").zone_shift
    62
    """
    layout = FLAGS_LAYOUTS.get(text)
    if layout is None:
        raise SpecError(f"unknown flags layout {text!r} (choose from {', '.join(FLAGS_LAYOUTS)})")
    return layout


def resolve_flags_layout(path: str, given: FlagsLayout | None) -> FlagsLayout:
    """Return the layout to read a dump with: the one given, its sidecar's, or the default."""
    if given is not None:
        return given
    if path != "-":
        named = sidecar_flags_layout(path)
        if named is not None:
            return FLAGS_LAYOUTS.get(named, DEFAULT_FLAGS_LAYOUT)
    return DEFAULT_FLAGS_LAYOUT


def zone_of(record: AnyRecord, layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT) -> int | None:
    """Return the zone index: printed by %pGp (5.14+), else derived from the flags word.

    The 3.19 letter format prints no flags word, so its zone is unknown (None).
    """
    return _flags_field(record, "zone", layout)


def node_of(record: AnyRecord, layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT) -> int | None:
    """Return the NUMA node, printed or derived like `zone_of` (0 on a layout without NUMA)."""
    return _flags_field(record, "node", layout)


def _flags_field(record: AnyRecord, name: str, layout: FlagsLayout) -> int | None:
    """Return a field %pGp printed, else the bits of the flags word that hold it."""
    flags = record.flags
    if flags is None:
        return None
    printed: int | None = getattr(flags, name)  # PageFlags.zone / PageFlags.node
    if printed is not None:
        return printed
    if flags.value is None:
        return None
    value = layout.field(flags.value, name)
    # A kernel without NUMA keeps no node bits: every page is on node 0.
    return 0 if value is None and name == "node" else value


def shape_of(record: AnyRecord) -> Hashable | None:
    """Return a key shared by records whose fields are all equal but ts, pfn and block.

    Scanned records have one (`ScanRecord.shape`), to memoize per-record work on; typed
    records have none (None).
    """
    return record.shape if isinstance(record, ScanRecord) else None


def zone_derived(record: AnyRecord) -> bool:
    """Tell whether the zone of a record comes from the layout rather than the text."""
    flags = record.flags
    return flags is not None and flags.zone is None and flags.value is not None


def zone_label(zone: int | None) -> str:
    """Name a zone index as x86_64 numbers them.

    >>> zone_label(1)
    'DMA32'
    >>> zone_label(None)
    'unknown'
    """
    if zone is None:
        return "unknown"
    return ZONE_NAMES[zone] if 0 <= zone < len(ZONE_NAMES) else f"zone{zone}"


def allocator_bits(record: AnyRecord) -> int:
    """Classify a record as page_owner_sort does (CMA, SLAB, VMALLOC or OTHERS bits).

    The PFN line of the record itself is used; page_owner_sort lets a block without one
    inherit the previous block's, which only matters for `grep -v ^PFN` dumps.
    """
    if isinstance(record, ScanRecord):
        return classify_block(record.text)
    text = record.raw if record.raw is not None else format_record(record)
    return classify_block(encode(text))


def allocator_label(bits: int) -> str:
    """Name an allocator set, e.g. 'SLAB' or 'CMA SLAB'.

    >>> allocator_label(0b110)
    'CMA SLAB'
    """
    return " ".join(name for bit, name in ALLOCATOR_LABELS if bits & bit)


