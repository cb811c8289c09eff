"""Walk page_ext in a crash dump and rebuild what page_owner knew of every page.

Everything is read through the dumped kernel's own DWARF types and tables (via drgn), not
fixed offsets: `struct page_owner`, `struct page_ext` and `page_owner_ops.offset`, the
stack depot's `union handle_parts` bit fields and `struct stack_record`, the section table
(`mem_section`), and the name tables that `%pGg`, `%pGp` and the migrate line print from
(`gfpflag_names`, `pageflag_names`, `migrate_reason_names`, `migratetype_names`). So a
kernel of another version with other layouts reads the same way; where a version lacks a
field (tgid before 5.18, free_pid before 6.7...) the record gets None and the writer prints
what that version printed.

page_ext and struct page are read a memory section at a time (2.6 MB and 2 MB on x86_64),
never page by page: the 512 MiB 7.3 fixture is walked in well under a second.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pageowner.model import Frame
from pageowner.vmcore.depot import DepotReader
from pageowner.vmcore.dwarf import has_global
from pageowner.vmcore.image import VmcoreError, VmcoreImage
from pageowner.vmcore.memcg import MemcgReader

__all__ = ["OwnerInfo", "PageOwnerWalker"]

@dataclass(frozen=True, slots=True)
class OwnerInfo:
    """What page_owner holds for one PFN, with the struct page fields the dump prints."""

    pfn: int
    order: int
    gfp_mask: int
    handle: int
    free_handle: int
    ts_nsec: int
    free_ts_nsec: int | None
    comm: str
    pid: int
    tgid: int | None
    free_pid: int | None
    free_tgid: int | None
    last_migrate_reason: int
    allocated: bool
    page_flags: int
    memcg_data: int
    tail: bool
    refcount: int
    mapcount: int


def _ilog2_ceil(value: int) -> int:
    """Return the number of bits that hold values 0..value-1.

    >>> _ilog2_ceil(64), _ilog2_ceil(3), _ilog2_ceil(1)
    (6, 2, 0)
    """
    return max(0, (value - 1).bit_length())


class PageOwnerWalker:
    """Read page_owner's per-page data and its stacks out of an opened crash dump."""

    def __init__(self, image: VmcoreImage) -> None:
        """Look up every type, offset and table the walk needs (fails early, clearly)."""
        self.image = image
        prog = self.prog = image.prog
        drgn = __import__("drgn")
        self._drgn = drgn
        try:
            inited = prog["page_owner_inited"]
            enabled = int(inited.key.enabled.counter)
        except (LookupError, AttributeError) as exc:
            raise VmcoreError(f"{image.vmlinux}: this kernel has no page_owner "
                              "(CONFIG_PAGE_OWNER); hint: no dump of it can hold owner "
                              "data") from exc
        if not enabled:
            raise VmcoreError(f"{image.path}: page_owner was off in the dumped kernel "
                              "(page_owner_inited disabled); hint: boot with page_owner=on")
        self._layout()
        self.depot = DepotReader(prog, self._offset)
        self.memcg = MemcgReader(prog)
        self._flag_text: dict[int, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}
        self._gfp_text: dict[int, str] = {}

    # -- layout ---------------------------------------------------------------------------

    def _offset(self, type_name: str, member: str) -> int:
        """Return offsetof(type, member) from DWARF."""
        return int(self._drgn.offsetof(self.prog.type(type_name), member))

    def _has_member(self, type_name: str, member: str) -> bool:
        """Tell whether a struct has a member (fields come and go between versions)."""
        try:
            self._offset(type_name, member)
        except LookupError:
            return False
        return True

    def _layout(self) -> None:
        """Collect sizes, offsets and bit positions from the kernel's types."""
        prog = self.prog
        self.page_size = int(self.image.vmcoreinfo.get("PAGESIZE", "4096"))
        self.ext_size = int(prog["page_ext_size"])
        self.owner_offset = int(prog["page_owner_ops"].offset)
        self.bit_owner = 1 << int(prog.constant("PAGE_EXT_OWNER"))
        self.bit_allocated = 1 << int(prog.constant("PAGE_EXT_OWNER_ALLOCATED"))
        owner = "struct page_owner"
        fields = ("order", "last_migrate_reason", "gfp_mask", "handle", "free_handle",
                  "ts_nsec", "free_ts_nsec", "comm", "pid", "tgid", "free_pid", "free_tgid")
        self.owner_fields = {
            name: (self._offset(owner, name),
                   int(self._drgn.sizeof(self.prog.type(owner).member(name).type)))
            for name in fields if self._has_member(owner, name)
        }
        self._owner_struct, self._owner_names = _compile(self.owner_fields)
        self.page_struct_size = int(self._drgn.sizeof(prog.type("struct page")))
        self.page_flags_offset = self._offset("struct page", "flags")
        self.memcg_offset = (self._offset("struct page", "memcg_data")
                             if self._has_member("struct page", "memcg_data") else None)
        # Tail pages carry bit 0 in the word after flags (compound_head or compound_info).
        tail_field = next((name for name in ("compound_info", "compound_head")
                           if self._has_member("struct page", name)), None)
        self.tail_offset = self._offset("struct page", tail_field) if tail_field else None
        self.refcount_offset = self._offset("struct page", "_refcount")
        self.mapcount_offset = self._offset("struct page", "_mapcount")
        self.max_pfn = int(prog["max_pfn"])
        self.min_low_pfn = int(prog["min_low_pfn"])
        bits = int(self.image.vmcoreinfo.get("NUMBER(SECTION_SIZE_BITS)", "27"))
        self.section_shift = bits - (self.page_size.bit_length() - 1)
        self.mem_section = prog["mem_section"]
        section_size = int(self._drgn.sizeof(prog.type("struct mem_section")))
        extreme = self.mem_section.type_.type.kind == self._drgn.TypeKind.POINTER
        self.sections_per_root = self.page_size // section_size if extreme else 1
        self.extreme = extreme
        # Page flags: the names %pGp prints, and the node/zone fields above them.
        self.nr_pageflags = int(prog.constant("__NR_PAGEFLAGS"))
        self.max_numnodes = int(prog["node_data"].type_.length)
        self.nodes_width = _ilog2_ceil(self.max_numnodes)
        self.zones_width = _ilog2_ceil(int(prog.constant("__MAX_NR_ZONES")))
        # x86_64 SPARSEMEM_VMEMMAP keeps no section number in page->flags; node then zone sit
        # at the top of the word (include/linux/page-flags-layout.h).
        self.nodes_shift = 64 - self.nodes_width
        self.zones_shift = self.nodes_shift - self.zones_width
        self.pageflag_names = self._flag_table("pageflag_names")
        self.gfpflag_names = self._flag_table("gfpflag_names")
        self.migratetype_names = self._strings("migratetype_names")
        self.migrate_reason_names = self._strings("migrate_reason_names")
        self.pageblock_order = 9  # x86_64 (HPAGE_PMD_ORDER); not in VMCOREINFO
        pb_bits = int(prog.constant("__NR_PAGEBLOCK_BITS"))
        # 6.16+ rounds the per-pageblock field up to a power of two (NR_PAGEBLOCK_BITS).
        self.pageblock_bits = 1 << _ilog2_ceil(pb_bits) if pb_bits > 4 else 4

    def _flag_table(self, name: str) -> tuple[tuple[int, str], ...]:
        """Read a `struct trace_print_flags` table, in print order, from the dump."""
        table = self.prog[name]
        entries = []
        for index in range(int(table.type_.length)):
            entry = table[index]
            pointer = int(entry.name.value_())
            if not pointer:
                break
            entries.append((int(entry.mask), entry.name.string_().decode()))
        return tuple(entries)

    def _strings(self, name: str) -> tuple[str, ...]:
        """Read an array of C strings from the dump."""
        array = self.prog[name]
        return tuple(array[i].string_().decode() for i in range(int(array.type_.length)))

    # -- formatting helpers ---------------------------------------------------------------

    def format_gfp(self, gfp_mask: int) -> str:
        """Render the `%pGg` names of a mask with the dumped kernel's own table."""
        text = self._gfp_text.get(gfp_mask)
        if text is None:
            text = self._gfp_text[gfp_mask] = _format_flags(gfp_mask, self.gfpflag_names)
        return text

    def format_page_flags(self, flags: int) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Return the `%pGp` names and fields (node, zone) of a page flags word."""
        cached = self._flag_text.get(flags)
        if cached is None:
            cached = self._flag_text[flags] = self._page_flags(flags)
        return cached

    def _page_flags(self, flags: int) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Compute the `%pGp` names and fields of a flags word."""
        mask = (1 << self.nr_pageflags) - 1
        text = _format_flags(flags & mask, self.pageflag_names)
        names = tuple(text.split("|")) if text else ()
        fields = []
        if self.nodes_width:
            node = (flags >> self.nodes_shift) & ((1 << self.nodes_width) - 1)
            fields.append(("node", str(node)))
        if self.zones_width:
            zone = (flags >> self.zones_shift) & ((1 << self.zones_width) - 1)
            fields.append(("zone", str(zone)))
        return names, tuple(fields)

    def node_of(self, flags: int) -> int:
        """Return the node number in a page flags word."""
        if not self.nodes_width:
            return 0
        return (flags >> self.nodes_shift) & ((1 << self.nodes_width) - 1)

    # -- sections -------------------------------------------------------------------------

    def _section(self, number: int) -> Any:
        """Return `struct mem_section` number, or None where there is none."""
        if self.extreme:
            root = self.mem_section[number // self.sections_per_root]
            if not int(root.value_()):
                return None
            return root[number % self.sections_per_root]
        return self.mem_section[number // self.sections_per_root][number % self.sections_per_root]

    def sections(self) -> Iterator[tuple[int, int, Any]]:
        """Yield (first pfn, pfn count, mem_section) of every present section."""
        per = 1 << self.section_shift
        last = (self.max_pfn + per - 1) >> self.section_shift
        for number in range(last):
            section = self._section(number)
            if section is None or not int(section.section_mem_map):
                continue
            first = max(number << self.section_shift, self.min_low_pfn)
            end = min((number + 1) << self.section_shift, self.max_pfn)
            if first < end:
                yield first, end - first, section

    def _pageblock_types(self, section: Any, first: int, count: int) -> list[int]:
        """Return the migratetype of every pageblock of a section range."""
        usage = section.usage
        if not int(usage.value_()):
            return []
        base = int(usage.pageblock_flags.address_)
        per_section = 1 << self.section_shift
        blocks = per_section >> self.pageblock_order
        nbytes = (blocks * self.pageblock_bits + 7) // 8
        raw = int.from_bytes(self.prog.read(base, nbytes), "little")
        field = (1 << self.pageblock_bits) - 1
        # PB_migrate_0..2 are the low three bits of each pageblock's field.
        return [((raw >> (index * self.pageblock_bits)) & field) & 0x7 for index in range(blocks)]

    def walk(self, *, freed: bool = False,
             on_progress: Callable[[int, int], None] | None = None) -> Iterator[
                 tuple[OwnerInfo, int]]:
        """Yield (owner info, pageblock migratetype number) as read_page_owner() selects them.

        With `freed`, yield instead the pages whose owner freed them (PAGE_EXT_OWNER set,
        _ALLOCATED clear): their last allocation and free.
        """
        drgn = self._drgn
        fields = self.owner_fields
        ext_words = self.ext_size // 8
        want = self.bit_owner | self.bit_allocated
        total = self.max_pfn - self.min_low_pfn
        done = 0
        page_base = int(self.prog["vmemmap_base"]) if has_global(self.prog, "vmemmap_base") else \
            int(self.image.vmcoreinfo.get("SYMBOL(vmemmap)", "0"), 16)
        for first, count, section in self.sections():
            ext_ptr = int(section.page_ext.value_()) & ~1  # bit 0: PAGE_EXT_INVALID
            done += count
            if not ext_ptr:
                continue
            try:
                ext = self.prog.read(ext_ptr + self.ext_size * first, self.ext_size * count)
                pages = self.prog.read(page_base + self.page_struct_size * first,
                                       self.page_struct_size * count)
            except drgn.FaultError as exc:
                raise VmcoreError(f"{self.image.path}: page_ext of PFN {first:#x} is not in "
                                  "the dump; hint: the vmcore is truncated or filtered "
                                  "(makedumpfile -d must keep kernel data)") from exc
            words = memoryview(ext).cast("Q")
            block_types = self._pageblock_types(section, first, count)
            section_first = (first >> self.section_shift) << self.section_shift
            for index in range(count):
                flags = words[index * ext_words]
                if not flags & self.bit_owner:
                    continue
                allocated = flags & want == want
                if allocated == freed:
                    continue
                base = index * self.ext_size + self.owner_offset
                info = self._owner(ext, base, fields, first + index, allocated, pages,
                                   index * self.page_struct_size)
                if info.pfn & ((1 << info.order) - 1) or not info.handle:
                    continue
                block = (info.pfn - section_first) >> self.pageblock_order
                block_mt = block_types[block] if block < len(block_types) else 0
                yield info, block_mt
            if on_progress is not None:
                on_progress(done, total)

    def _owner(self, ext: bytes, base: int, fields: dict[str, tuple[int, int]], pfn: int,
               allocated: bool, pages: bytes, page_at: int) -> OwnerInfo:
        """Decode one `struct page_owner` and the page's flags."""
        values = dict(zip(self._owner_names, self._owner_struct.unpack_from(ext, base),
                          strict=True))
        comm = values["comm"].split(b"\0", 1)[0]
        page_flags = _U64.unpack_from(pages, page_at + self.page_flags_offset)[0]
        memcg = 0
        if self.memcg_offset is not None:
            memcg = _U64.unpack_from(pages, page_at + self.memcg_offset)[0]
        tail = False
        if self.tail_offset is not None:
            tail = bool(pages[page_at + self.tail_offset] & 1)
        refcount = _S32.unpack_from(pages, page_at + self.refcount_offset)[0]
        mapcount = _S32.unpack_from(pages, page_at + self.mapcount_offset)[0]
        return OwnerInfo(
            pfn=pfn,
            order=values.get("order", 0),
            gfp_mask=values.get("gfp_mask", 0),
            handle=values.get("handle", 0),
            free_handle=values.get("free_handle", 0),
            ts_nsec=values.get("ts_nsec", 0),
            free_ts_nsec=values.get("free_ts_nsec"),
            comm=comm.decode("utf-8", "replace"),
            pid=values.get("pid", 0),
            tgid=values.get("tgid"),
            free_pid=values.get("free_pid"),
            free_tgid=values.get("free_tgid"),
            last_migrate_reason=values.get("last_migrate_reason", 0),
            allocated=allocated,
            page_flags=page_flags,
            memcg_data=memcg,
            tail=tail,
            refcount=refcount,
            mapcount=mapcount,
        )

    def frames(self, handle: int) -> tuple[Frame, ...]:
        """Return the frames of a stack depot handle as `%pS` prints them."""
        return self.depot.frames(handle)

    def memcg_line(self, info: OwnerInfo) -> tuple[bool, tuple[str, bool, bool] | None]:
        """Return (slab cache page, (memcg name, via objcg, offline)) of a page."""
        if info.tail:
            return False, None
        return self.memcg.line(info.memcg_data)


_U64 = struct.Struct("<Q")
_S32 = struct.Struct("<i")
# Signed members of struct page_owner (pid_t and the migrate reason); the rest are unsigned.
_SIGNED = frozenset({"last_migrate_reason", "pid", "tgid", "free_pid", "free_tgid"})


def _compile(fields: dict[str, tuple[int, int]]) -> tuple[struct.Struct, tuple[str, ...]]:
    """Build one struct format that unpacks every known member at its DWARF offset.

    >>> _compile({"order": (0, 2), "pid": (8, 4)})[0].format
    '<H6xi'
    """
    codes = {1: "b", 2: "h", 4: "i", 8: "q"}
    layout = "<"
    at = 0
    names = []
    for name, (offset, size) in sorted(fields.items(), key=lambda item: item[1][0]):
        if offset > at:
            layout += f"{offset - at}x"
        if name == "comm":
            layout += f"{size}s"
        else:
            code = codes[size]
            layout += code if name in _SIGNED else code.upper()
        names.append(name)
        at = offset + size
    return struct.Struct(layout), tuple(names)


def _format_flags(value: int, table: tuple[tuple[int, str], ...]) -> str:
    """Print flags as the kernel's format_flags() does: names in table order, then hex.

    >>> _format_flags(0x7, ((0x3, "AB"), (0x4, "C")))
    'AB|C'
    >>> _format_flags(0x9, ((0x1, "A"),))
    'A|0x8'
    """
    parts = []
    for mask, name in table:
        if mask and value & mask == mask:
            parts.append(name)
            value &= ~mask
            if not value:
                break
    if value:
        parts.append(f"{value:#x}")
    return "|".join(parts)

