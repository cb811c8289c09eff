"""Typed records of page_owner data: frames, page flags, allocation records and stack counts.

Everything here is a frozen, slotted dataclass or an enum, with no I/O. The reader in
`pageowner.dump.dumpfile` builds these from text and the writer prints them back in any era.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "DumpFormat",
    "FrameStyle",
    "Frame",
    "HeaderStyle",
    "MemcgCharge",
    "MigrateType",
    "PageFlags",
    "PageRecord",
    "PfnStyle",
    "PrintMode",
    "StackCount",
    "StacksFileKind",
]


class MigrateType(enum.Enum):
    """A page or pageblock migratetype, valued by the name the kernel prints."""

    UNMOVABLE = "Unmovable"
    MOVABLE = "Movable"
    RECLAIMABLE = "Reclaimable"
    HIGHATOMIC = "HighAtomic"
    CMA = "CMA"
    ISOLATE = "Isolate"
    # MIGRATE_RESERVE existed until v4.4 and only ever appears as a number (3.19 era).
    RESERVE = "Reserve"


class HeaderStyle(enum.Enum):
    """The shape of a record's first line, named by the kernel that introduced it."""

    MASK = "3.19"  # "Page allocated via order %u, mask 0x%x"
    MASK_NAMES = "4.6"  # ", mask %#x(%pGg)"
    PID_TS = "5.11"  # + ", pid %d, ts %llu ns"
    PID_TS_FREE = "5.14"  # + ", free_ts %llu ns"
    TGID_TS_FREE = "5.18"  # ", pid %d, tgid %d (%s), ts %llu ns, free_ts %llu ns"
    TGID_TS = "6.7"  # free_ts dropped again

    @property
    def has_names(self) -> bool:
        """Tell whether the mask is followed by its symbolic names."""
        return self is not HeaderStyle.MASK

    @property
    def has_pid(self) -> bool:
        """Tell whether the header carries pid and ts."""
        return self not in (HeaderStyle.MASK, HeaderStyle.MASK_NAMES)

    @property
    def has_tgid(self) -> bool:
        """Tell whether the header carries tgid and comm."""
        return self in (HeaderStyle.TGID_TS_FREE, HeaderStyle.TGID_TS)

    @property
    def has_free_ts(self) -> bool:
        """Tell whether the header carries free_ts."""
        return self in (HeaderStyle.PID_TS_FREE, HeaderStyle.TGID_TS_FREE)


class PfnStyle(enum.Enum):
    """The shape of the PFN/migratetype/flags line."""

    LETTERS = "3.19"  # "PFN %lu Block %lu type %d %s Flags <12 letter columns>"
    DEC_RAW_FLAGS = "4.6"  # "PFN %lu type %s Block %lu type %s Flags %#lx(%pGp)" (names only)
    DEC = "5.14"  # "... Flags %pGp" where %pGp prints value, names and node/zone fields
    HEX = "6.5"  # "PFN 0x%lx ...": "show pfn in hex format" (Kassey Li, June 2023)


class FrameStyle(enum.Enum):
    """How each stack frame is printed."""

    ADDRESS = "3.19"  # " [<%p>] %pS", unhashed, until v4.14 [uncertain: 4.9-4.14]
    PLAIN = "4.15"  # " %pS" (kernel.kernels.FRAME_ADDRESS_UNTIL)


class PrintMode(enum.Enum):
    """What a 7.3 page_owner descriptor prints after the PFN line (`mode=`, kernel-7.3.md 2)."""

    STACK = "stack"  # the frames (the default, and every kernel before 7.3)
    HANDLE = "handle"  # `handle: %u` instead of the frames
    STACK_HANDLE = "stack_handle"  # the frames, then `handle: %u`


@dataclass(frozen=True, slots=True)
class DumpFormat:
    """The line shapes of one kernel era of /sys/kernel/debug/page_owner."""

    header: HeaderStyle = HeaderStyle.TGID_TS
    pfn: PfnStyle = PfnStyle.HEX
    frames: FrameStyle = FrameStyle.PLAIN

    def __str__(self) -> str:
        """Name the format by its parts, e.g. 'header 6.7, pfn 6.5, frames 4.15'."""
        return (
            f"header {self.header.value}, pfn {self.pfn.value}, frames {self.frames.value}"
        )


@dataclass(frozen=True, slots=True)
class Frame:
    """One stack frame as `%pS` prints it: `symbol+0xoff/0xsize [module]`.

    `address` is the `[<...>]` value of the 3.19-5.1 eras, or the whole frame when the
    kernel had no symbol for it. `raw` keeps a line this reader could not take apart, so
    that it is printed back unchanged. `source` is what `pageowner symbolize` appends in
    parentheses: `file:line` of the address, then of each inlined call site, space-separated
    as scripts/decode_stacktrace.sh prints them.
    """

    symbol: str | None
    offset: int = 0
    size: int = 0
    module: str | None = None
    address: int | None = None
    raw: str | None = None
    source: str | None = None

    @property
    def function(self) -> str:
        """Return the function name, or the raw text for frames without one.

        >>> Frame("shmem_alloc_folio", 0x3f, 0x90).function
        'shmem_alloc_folio'
        """
        if self.symbol is not None:
            return self.symbol
        if self.raw is not None:
            return self.raw.strip()
        return f"{self.address or 0:#x}"

    def symbolic(self) -> str:
        """Render the `%pS` part of the frame.

        >>> Frame("xfs_buf_read_map", 0x54, 0x280, module="xfs").symbolic()
        'xfs_buf_read_map+0x54/0x280 [xfs]'
        """
        if self.raw is not None:
            return self.raw
        if self.symbol is None:
            return f"{self.address or 0:#x}"
        text = f"{self.symbol}+{self.offset:#x}/{self.size:#x}"
        if self.module is not None:
            text += f" [{self.module}]"
        return text


@dataclass(frozen=True, slots=True)
class PageFlags:
    """The page flags of a record: the raw word, the set flag names and the `%pGp` fields."""

    value: int | None  # None in the 3.19 letter format, which prints no number
    names: tuple[str, ...] = ()
    # Fields that %pGp appends since its 2021 rework, in print order: node, zone, ...
    fields: tuple[tuple[str, str], ...] = ()

    def field(self, name: str) -> str | None:
        """Return a printed field such as 'node' or 'zone', or None when absent."""
        for key, value in self.fields:
            if key == name:
                return value
        return None

    @property
    def node(self) -> int | None:
        """Return the NUMA node printed in the flags, when the era prints it (and is a number)."""
        return _small_int(self.field("node"))

    @property
    def zone(self) -> int | None:
        """Return the zone index printed in the flags, when the era prints it (and is a number)."""
        return _small_int(self.field("zone"))


def _small_int(text: str | None) -> int | None:
    """Read a %pGp field value (decimal, as %d prints it); None if absent or not a number.

    >>> _small_int("2"), _small_int("x"), _small_int(None)
    (2, None, None)
    """
    if text is None or not text.isascii() or not text.isdigit() or len(text) > 20:
        return None
    return int(text)


@dataclass(frozen=True, slots=True)
class MemcgCharge:
    """A `Charged [(via objcg) ]to [offline ]memcg NAME` line (v5.18+)."""

    name: str
    via_objcg: bool = False
    offline: bool = False


@dataclass(frozen=True, slots=True)
class PageRecord:
    """One record of /sys/kernel/debug/page_owner: an allocation at its head page."""

    order: int
    gfp_mask: int
    # What %pGg printed after the mask; the names depend on the kernel, the mask does not.
    gfp_names: str | None = None
    pid: int | None = None
    tgid: int | None = None
    comm: str | None = None
    ts_nsec: int | None = None
    free_ts_nsec: int | None = None
    pfn: int | None = None
    page_mt: MigrateType | None = None
    block: int | None = None
    block_mt: MigrateType | None = None
    flags: PageFlags | None = None
    stack: tuple[Frame, ...] = ()
    # The stack depot handle that 7.3's `mode=handle` prints instead of the frames and
    # `mode=stack_handle` after them (`handle: %u`, kernel-7.3.md 2); None in stack mode.
    handle: int | None = None
    migrate_reason: str | None = None
    slab_cache: bool = False
    memcg: MemcgCharge | None = None
    # Trailing lines this reader does not know, kept verbatim in their order.
    extra: tuple[str, ...] = ()
    fmt: DumpFormat = field(default_factory=DumpFormat)
    # Where the record started in its file, and the block text exactly as read (every line
    # with its newline, the blank separator excluded): what page_owner_sort groups by.
    lineno: int = field(default=0, compare=False)
    raw: str | None = field(default=None, compare=False, repr=False)

    @property
    def nr_pages(self) -> int:
        """Return the number of base pages the allocation covers (2^order)."""
        return 1 << self.order

    @property
    def print_mode(self) -> PrintMode:
        """Return the 7.3 print mode the record was printed in."""
        if self.handle is None:
            return PrintMode.STACK
        return PrintMode.STACK_HANDLE if self.stack else PrintMode.HANDLE

    @property
    def handle_only(self) -> bool:
        """Tell whether the record names its stack by handle only (7.3 `mode=handle`)."""
        return self.handle is not None and not self.stack

    @property
    def has_pfn_line(self) -> bool:
        """Tell whether the record carried its PFN line (`grep -v ^PFN` removes it)."""
        return self.pfn is not None


class StacksFileKind(enum.Enum):
    """Which page_owner_stacks file a block came from (v6.9+, handles v6.19+)."""

    SHOW_STACKS = "show_stacks"
    SHOW_HANDLES = "show_handles"
    SHOW_STACKS_HANDLES = "show_stacks_handles"


@dataclass(frozen=True, slots=True)
class StackCount:
    """One block of a page_owner_stacks file: a stack, its handle and/or its page count.

    `count_label` is the label the kernel printed before the count: `stack_count` in the
    pre-release 6.9 code, `nr_base_pages` in every release.
    """

    stack: tuple[Frame, ...] = ()
    handle: int | None = None
    nr_base_pages: int | None = None
    count_label: str = "nr_base_pages"
    lineno: int = field(default=0, compare=False)
