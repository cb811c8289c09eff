"""DWARF 2-5 decoding over raw section bytes: what symbolizing an address needs, nothing more.

`.debug_aranges` (address ranges to compilation units), abbreviation tables, a DIE walk that
finds the subprogram and inlined subroutines holding an address (skipping subtrees through
DW_AT_sibling), range lists, and line programs run only as far as the addresses asked for.
pyelftools decodes whole CUs and takes 0.1-0.3 s a CU on a distro vmlinux; this module takes
a few milliseconds. Every loop is bounded by the bytes it reads: malformed data raises
`DwarfError` instead of looping or reading past a section.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pageowner.errors import SymbolError

__all__ = [
    "AddressRanges",
    "CompileUnit",
    "DwarfError",
    "DwarfReader",
    "LineProgram",
    "LineRow",
    "Scope",
    "parse_aranges",
]

# Tags (DWARF 5 section 7.5.4).
TAG_LEXICAL_BLOCK = 0x0B
TAG_COMPILE_UNIT = 0x11
TAG_INLINED_SUBROUTINE = 0x1D
TAG_SUBPROGRAM = 0x2E
TAG_NAMESPACE = 0x39
TAG_PARTIAL_UNIT = 0x3C
TAG_SKELETON_UNIT = 0x4A
# Scopes that can hold code: they are decoded and entered when they contain the address.
_CODE_SCOPES = frozenset({TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE, TAG_LEXICAL_BLOCK})
# Containers without addresses of their own whose children may be functions (C++ and Rust
# namespaces, Fortran modules). Classes and structs are skipped whole: compilers put member
# function definitions at the top level, pointing back with DW_AT_specification.
_TRANSPARENT = frozenset({TAG_NAMESPACE, 0x1E})

# Attributes.
AT_SIBLING = 0x01
AT_NAME = 0x03
AT_STMT_LIST = 0x10
AT_LOW_PC = 0x11
AT_HIGH_PC = 0x12
AT_COMP_DIR = 0x1B
AT_ABSTRACT_ORIGIN = 0x31
AT_SPECIFICATION = 0x47
AT_RANGES = 0x55
AT_CALL_FILE = 0x58
AT_CALL_LINE = 0x59
AT_LINKAGE_NAME = 0x6E
AT_STR_OFFSETS_BASE = 0x72
AT_ADDR_BASE = 0x73
AT_RNGLISTS_BASE = 0x74
AT_MIPS_LINKAGE_NAME = 0x2007
AT_GNU_ADDR_BASE = 0x2133
AT_GNU_RANGES_BASE = 0x2132

_SCOPE_ATTRS = frozenset({AT_LOW_PC, AT_HIGH_PC, AT_RANGES, AT_SIBLING, AT_ABSTRACT_ORIGIN,
                          AT_SPECIFICATION, AT_NAME, AT_CALL_FILE, AT_CALL_LINE,
                          AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME})  # fmt: skip
_NAME_ATTRS = frozenset({AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME,
                         AT_ABSTRACT_ORIGIN, AT_SPECIFICATION})  # fmt: skip
_UNIT_ATTRS = frozenset({AT_NAME, AT_STMT_LIST, AT_LOW_PC, AT_HIGH_PC, AT_RANGES, AT_COMP_DIR,
                         AT_STR_OFFSETS_BASE, AT_ADDR_BASE, AT_RNGLISTS_BASE,
                         AT_GNU_ADDR_BASE, AT_GNU_RANGES_BASE})  # fmt: skip

# Forms, by how their value is read. `None` size: variable, read by `_read_form`.
FORM_ADDR = 0x01
FORM_DATA2 = 0x05
FORM_DATA4 = 0x06
FORM_DATA8 = 0x07
FORM_STRING = 0x08
FORM_DATA1 = 0x0B
FORM_SDATA = 0x0D
FORM_STRP = 0x0E
FORM_UDATA = 0x0F
FORM_REF_ADDR = 0x10
FORM_REF1 = 0x11
FORM_REF2 = 0x12
FORM_REF4 = 0x13
FORM_REF8 = 0x14
FORM_REF_UDATA = 0x15
FORM_INDIRECT = 0x16
FORM_SEC_OFFSET = 0x17
FORM_STRX = 0x1A
FORM_ADDRX = 0x1B
FORM_DATA16 = 0x1E
FORM_LINE_STRP = 0x1F
FORM_IMPLICIT_CONST = 0x21
FORM_RNGLISTX = 0x23
FORM_STRX1 = 0x25
FORM_STRX2 = 0x26
FORM_STRX3 = 0x27
FORM_STRX4 = 0x28
FORM_ADDRX1 = 0x29
FORM_ADDRX2 = 0x2A
FORM_ADDRX3 = 0x2B
FORM_ADDRX4 = 0x2C
FORM_GNU_ADDR_INDEX = 0x1F01
FORM_GNU_STR_INDEX = 0x1F02

# Sizes that do not depend on the unit; "A" and "O" stand for address and offset size.
_FORM_SIZES: dict[int, int | str] = {
    FORM_ADDR: "A", FORM_DATA2: 2, FORM_DATA4: 4, FORM_DATA8: 8, FORM_DATA1: 1,
    0x0C: 1,  # flag
    FORM_STRP: "O", FORM_REF_ADDR: "O", FORM_REF1: 1, FORM_REF2: 2, FORM_REF4: 4, FORM_REF8: 8,
    FORM_SEC_OFFSET: "O", 0x19: 0,  # flag_present
    0x1C: 4,  # ref_sup4
    0x1D: "O",  # strp_sup
    FORM_DATA16: 16, FORM_LINE_STRP: "O", 0x20: 8,  # ref_sig8
    FORM_IMPLICIT_CONST: 0, 0x24: 8,  # ref_sup8
    FORM_STRX1: 1, FORM_STRX2: 2, FORM_STRX3: 3, FORM_STRX4: 4,
    FORM_ADDRX1: 1, FORM_ADDRX2: 2, FORM_ADDRX3: 3, FORM_ADDRX4: 4,
    0x1F20: "O", 0x1F21: "O",  # GNU_ref_alt, GNU_strp_alt
}  # fmt: skip
_LEB_FORMS = frozenset({FORM_SDATA, FORM_UDATA, FORM_REF_UDATA, FORM_STRX, FORM_ADDRX,
                        0x22, FORM_RNGLISTX, FORM_GNU_ADDR_INDEX, FORM_GNU_STR_INDEX})  # fmt: skip
_BLOCK_FORMS = {0x0A: 1, 0x03: 2, 0x04: 4}  # block1, block2, block4 (length prefix size)
_ULEB_BLOCK_FORMS = frozenset({0x09, 0x18})  # block, exprloc
_CONSTANT_FORMS = frozenset({FORM_DATA1, FORM_DATA2, FORM_DATA4, FORM_DATA8, FORM_SDATA,
                             FORM_UDATA, FORM_IMPLICIT_CONST})  # fmt: skip
_REF_FORMS = frozenset({FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA})
_REF_WIDTHS = {FORM_REF1: 1, FORM_REF2: 2, FORM_REF4: 4, FORM_REF8: 8}
_STRX_FORMS = frozenset({FORM_STRX, FORM_STRX1, FORM_STRX2, FORM_STRX3, FORM_STRX4,
                         FORM_GNU_STR_INDEX})  # fmt: skip
_ADDRX_FORMS = frozenset({FORM_ADDRX, FORM_ADDRX1, FORM_ADDRX2, FORM_ADDRX3, FORM_ADDRX4,
                          FORM_GNU_ADDR_INDEX})  # fmt: skip

# Bytes read to decode a unit's top DIE alone (its producer string can be long).
_UNIT_HEAD = 1 << 14
# Longest chain of DW_AT_abstract_origin/DW_AT_specification followed for a name.
_MAX_ORIGIN_DEPTH = 16


class DwarfError(SymbolError):
    """The DWARF data is malformed or of a kind this reader does not handle."""


def read_uleb(data: bytes, pos: int) -> tuple[int, int]:
    """Read an unsigned LEB128 number; return it and the position after it.

    >>> read_uleb(bytes([0xE5, 0x8E, 0x26]), 0)
    (624485, 3)
    """
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    result = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos + 1
        shift += 7


def read_sleb(data: bytes, pos: int) -> tuple[int, int]:
    """Read a signed LEB128 number; return it and the position after it.

    >>> read_sleb(bytes([0xC0, 0xBB, 0x78]), 0)
    (-123456, 3)
    """
    result = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


def read_cstring(data: bytes, pos: int) -> tuple[str, int]:
    """Read a NUL-terminated string; return it and the position after the NUL."""
    end = data.find(b"\0", pos)
    if end < 0:
        raise DwarfError("string runs past the end of its section")
    return data[pos:end].decode("utf-8", "replace"), end + 1


@dataclass(frozen=True, slots=True)
class AddressRanges:
    """Sorted, non-empty address ranges, each tagged with a value (a CU offset)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    values: tuple[int, ...]

    @classmethod
    def build(cls, entries: Iterable[tuple[int, int, int]]) -> AddressRanges:
        """Sort (start, end, value) triples, dropping empty ranges."""
        ordered = sorted(entry for entry in entries if entry[1] > entry[0])
        return cls(
            tuple(entry[0] for entry in ordered),
            tuple(entry[1] for entry in ordered),
            tuple(entry[2] for entry in ordered),
        )

    def find(self, address: int) -> int | None:
        """Return the value of a range holding `address`, or None.

        >>> AddressRanges.build([(0x10, 0x20, 7), (0x30, 0x40, 9)]).find(0x35)
        9
        """
        index = bisect.bisect_right(self.starts, address) - 1
        # Ranges rarely overlap; look back a little in case a long one holds the address.
        for probe in range(index, max(index - 8, -1), -1):
            if self.starts[probe] <= address < self.ends[probe]:
                return self.values[probe]
        return None

    def __len__(self) -> int:
        return len(self.starts)


def parse_aranges(data: bytes, endian: str = "<") -> list[tuple[int, int, int]]:
    """Read every set of a .debug_aranges section as (start, end, cu_offset) triples."""
    entries: list[tuple[int, int, int]] = []
    pos = 0
    size = len(data)
    try:
        while pos + 4 <= size:
            (length,) = struct.unpack_from(endian + "I", data, pos)
            offset_size = 4
            header = pos + 4
            if length == 0xFFFFFFFF:
                (length,) = struct.unpack_from(endian + "Q", data, header)
                offset_size = 8
                header += 8
            end = header + length
            if length == 0 or end > size:
                raise DwarfError(f".debug_aranges: set at {pos:#x} runs past the section")
            offset_format = endian + ("I" if offset_size == 4 else "Q")
            (cu_offset,) = struct.unpack_from(offset_format, data, header + 2)
            address_size = data[header + 2 + offset_size]
            segment_size = data[header + 3 + offset_size]
            if address_size not in (4, 8) or segment_size not in (0, 4, 8):
                raise DwarfError(f".debug_aranges: set at {pos:#x} has address size "
                                 f"{address_size}")
            tuple_size = 2 * address_size + segment_size
            address_format = endian + ("I" if address_size == 4 else "Q")
            cursor = header + 4 + offset_size
            # Tuples start at a multiple of their size from the start of the set.
            cursor += -(cursor - pos) % tuple_size
            while cursor + tuple_size <= end:
                cursor += segment_size
                (start,) = struct.unpack_from(address_format, data, cursor)
                (length_,) = struct.unpack_from(address_format, data, cursor + address_size)
                cursor += 2 * address_size
                if start == 0 and length_ == 0:
                    break
                entries.append((start, start + length_, cu_offset))
            pos = end
    except (struct.error, IndexError):
        raise DwarfError(".debug_aranges is truncated") from None
    return entries


@dataclass(frozen=True, slots=True)
class Abbrev:
    """One abbreviation: tag, children flag, attribute specs, and a fast skip plan."""

    tag: int
    has_children: bool
    # (attribute, form, implicit constant) triples in DIE order.
    specs: tuple[tuple[int, int, int], ...]
    # Attribute block size when every form has a fixed size in this unit, else None.
    fixed_size: int | None
    # Where the DW_AT_sibling value sits in a fixed block, and its form.
    sibling_at: int | None
    sibling_form: int
    # Byte width of a unit-relative sibling reference at `sibling_at` (0: not fixed).
    sibling_width: int = 0
    # Whether the DIE carries DW_AT_low_pc or DW_AT_ranges (it can hold code addresses).
    has_pc: bool = False
    # How to read each attribute: (attribute, form, how, width, implicit constant); see
    # `_plan_step` for the meaning of `how`.
    plan: tuple[tuple[int, int, int, int, int], ...] = ()


def parse_abbrevs(
    data: bytes, offset: int, address_size: int, offset_size: int, until: int | None = None
) -> dict[int, Abbrev]:
    """Read the abbreviation table at `offset` of .debug_abbrev, with fixed-size plans.

    With `until`, stop once that code is read (a unit's top DIE needs only its own).
    """
    table: dict[int, Abbrev] = {}
    steps: dict[int, tuple[int, int]] = {}
    pos = offset
    size = len(data)
    try:
        while pos < size:
            code, pos = read_uleb(data, pos)
            if code == 0:
                break
            tag, pos = read_uleb(data, pos)
            has_children = data[pos] != 0
            pos += 1
            specs = []
            fixed: int | None = 0
            sibling_at = None
            sibling_form = 0
            while True:
                attr, pos = read_uleb(data, pos)
                form, pos = read_uleb(data, pos)
                if attr == 0 and form == 0:
                    break
                implicit = 0
                if form == FORM_IMPLICIT_CONST:
                    implicit, pos = read_sleb(data, pos)
                if attr == AT_SIBLING and fixed is not None:
                    sibling_at = fixed
                    sibling_form = form
                specs.append((attr, form, implicit))
                width = _FORM_SIZES.get(form)
                if width is None or fixed is None:
                    fixed = None
                elif width == "A":
                    fixed += address_size
                elif width == "O":
                    fixed += offset_size
                else:
                    fixed += width  # type: ignore[operator]
            sibling_width = _REF_WIDTHS.get(sibling_form, 0) if sibling_at is not None else 0
            has_pc = any(spec[0] in (AT_LOW_PC, AT_RANGES) for spec in specs)
            plan = []
            for attr, form, implicit in specs:
                step = steps.get(form)
                if step is None:
                    step = steps[form] = _plan_step(form, address_size, offset_size)
                plan.append((attr, form, step[0], step[1], implicit))
            table[code] = Abbrev(tag, has_children, tuple(specs), fixed, sibling_at,
                                 sibling_form, sibling_width, has_pc, tuple(plan))  # fmt: skip
            if code == until:
                break
    except IndexError:
        raise DwarfError(f".debug_abbrev: table at {offset:#x} is truncated") from None
    return table


# How `_read_attrs` reads a form: a fixed-width number, LEB128, a string, a block with a
# LEB128 or fixed-width length, an implicit constant, or anything else through `_read_form`.
_FIXED, _ULEB, _SLEB, _CSTRING, _ULEB_BLOCK, _SIZED_BLOCK, _IMPLICIT, _OTHER = range(8)


def _plan_step(form: int, address_size: int, offset_size: int) -> tuple[int, int]:
    """Return (how, width) telling `_read_attrs` how to read a form."""
    width = _FORM_SIZES.get(form)
    if form == FORM_IMPLICIT_CONST:
        return _IMPLICIT, 0
    if width is not None:
        if width == "A":
            return _FIXED, address_size
        if width == "O":
            return _FIXED, offset_size
        return _FIXED, int(width)
    if form == FORM_SDATA:
        return _SLEB, 0
    if form in _LEB_FORMS:
        return _ULEB, 0
    if form == FORM_STRING:
        return _CSTRING, 0
    if form in _ULEB_BLOCK_FORMS:
        return _ULEB_BLOCK, 0
    if form in _BLOCK_FORMS:
        return _SIZED_BLOCK, _BLOCK_FORMS[form]
    return _OTHER, 0


@dataclass(frozen=True, slots=True)
class LineRow:
    """What the line table says about one address: file index, line and discriminator."""

    file: int
    line: int
    discriminator: int = 0


@dataclass(slots=True)
class LineProgram:
    """A CU's line program header: file names and the opcode parameters."""

    version: int
    address_size: int
    min_inst_length: int
    default_is_stmt: bool
    line_base: int
    line_range: int
    opcode_base: int
    standard_lengths: tuple[int, ...]
    files: tuple[str, ...]
    # File index of the first entry of `files`: 1 before DWARF 5, 0 since.
    file_base: int
    program_start: int
    program_end: int

    def file_name(self, index: int) -> str | None:
        """Return the path of a file index, as DW_AT_call_file and the rows use it."""
        position = index - self.file_base
        if 0 <= position < len(self.files):
            return self.files[position]
        return None


@dataclass(frozen=True, slots=True)
class Scope:
    """A subprogram or inlined subroutine DIE on the way to an address."""

    offset: int  # CU-relative
    tag: int
    name: str | None
    call_file: int | None
    call_line: int | None


@dataclass(slots=True)
class CompileUnit:
    """A unit header with the attributes of its top DIE that decoding depends on."""

    offset: int  # in .debug_info
    data: bytes  # the whole unit, header included; DIE offsets are relative to it
    version: int
    unit_type: int
    address_size: int
    offset_size: int
    abbrevs: dict[int, Abbrev]
    first_die: int
    name: str | None = None
    comp_dir: str | None = None
    stmt_list: int | None = None
    low_pc: int = 0
    str_offsets_base: int = 8
    addr_base: int = 0
    rnglists_base: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)
    line_program: LineProgram | None = None
    # Top-level code scopes with addresses: sorted (start, end, DIE offset), built once.
    functions: AddressRanges | None = None


SectionGetter = Callable[[str], bytes]
SliceGetter = Callable[[str, int, int], bytes]


class DwarfReader:
    """Decode units of one ELF's DWARF on demand.

    `section(name)` returns a whole section's bytes (b"" when absent) and
    `section_slice(name, offset, size)` part of one (used for .debug_info, which runs to
    hundreds of MB in a vmlinux). Units, abbreviation tables and line program headers are
    kept once decoded.
    """

    def __init__(self, section: SectionGetter, section_slice: SliceGetter,
                 info_size: int, endian: str = "<") -> None:  # fmt: skip
        self._section = section
        self._slice = section_slice
        self.info_size = info_size
        self.endian = endian
        self._units: dict[int, CompileUnit] = {}
        self._abbrevs: dict[tuple[int, int, int], dict[int, Abbrev]] = {}
        self._unit_starts: list[int] | None = None

    # -- units ---------------------------------------------------------------------------

    def unit(self, offset: int) -> CompileUnit:
        """Return the unit whose header is at `offset` of .debug_info."""
        unit = self._units.get(offset)
        if unit is None:
            unit = self._units[offset] = self._read_unit(offset)
        return unit

    def _read_unit(self, offset: int, limit: int | None = None) -> CompileUnit:
        """Decode a unit header and its top DIE (reading only `limit` bytes if given)."""
        endian = self.endian
        if offset < 0 or offset + 11 > self.info_size:
            raise DwarfError(f".debug_info: no unit at {offset:#x}")
        head = self._slice(".debug_info", offset, 24)
        try:
            (length,) = struct.unpack_from(endian + "I", head, 0)
            offset_size, start = 4, 4
            if length == 0xFFFFFFFF:
                (length,) = struct.unpack_from(endian + "Q", head, 4)
                offset_size, start = 8, 12
            total = start + length
            if length < 7 or offset + total > self.info_size:
                raise DwarfError(f".debug_info: unit at {offset:#x} runs past the section")
            wanted = min(total, limit or total)
            data = self._slice(".debug_info", offset, wanted)
            if len(data) < wanted:
                raise DwarfError(f".debug_info: unit at {offset:#x} is truncated")
            (version,) = struct.unpack_from(endian + "H", data, start)
            offset_format = endian + ("I" if offset_size == 4 else "Q")
            unit_type = 0x01
            if version >= 5:
                unit_type = data[start + 2]
                address_size = data[start + 3]
                (abbrev_offset,) = struct.unpack_from(offset_format, data, start + 4)
                first = start + 4 + offset_size
                if unit_type in (0x02, 0x06):  # type units: signature and type offset
                    first += 8 + offset_size
                elif unit_type in (0x04, 0x05):  # skeleton, split_compile: DWO id
                    first += 8
            elif version >= 2:
                (abbrev_offset,) = struct.unpack_from(offset_format, data, start + 2)
                address_size = data[start + 2 + offset_size]
                first = start + 3 + offset_size
            else:
                raise DwarfError(f".debug_info: unit at {offset:#x} has version {version}")
        except (struct.error, IndexError):
            raise DwarfError(f".debug_info: unit at {offset:#x} is truncated") from None
        if version > 5:
            raise DwarfError(f".debug_info: unit at {offset:#x} has version {version}")
        if address_size not in (4, 8):
            raise DwarfError(f".debug_info: unit at {offset:#x} has address size {address_size}")
        key = (abbrev_offset, address_size, offset_size)
        abbrevs = self._abbrevs.get(key)
        if abbrevs is None and limit is not None:
            # Only the top DIE will be read: parse the table up to its code.
            try:
                top_code = read_uleb(data, first)[0]
            except IndexError:
                raise DwarfError(f".debug_info: unit at {offset:#x} is truncated") from None
            abbrevs = parse_abbrevs(self._section(".debug_abbrev"), abbrev_offset,
                                    address_size, offset_size, until=top_code)  # fmt: skip
        elif abbrevs is None:
            abbrevs = self._abbrevs[key] = parse_abbrevs(
                self._section(".debug_abbrev"), abbrev_offset, address_size, offset_size
            )
        unit = CompileUnit(offset, data, version, unit_type, address_size, offset_size,
                           abbrevs, first)  # fmt: skip
        self._read_unit_die(unit)
        return unit

    def _read_unit_die(self, unit: CompileUnit) -> None:
        """Take the bases, names and ranges of a unit from its top DIE."""
        code, pos = self._read_code(unit, unit.first_die)
        abbrev = self._abbrev(unit, code)
        if abbrev.tag not in (TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT, TAG_SKELETON_UNIT):
            return
        attrs, _ = self._read_attrs(unit, abbrev, pos, _UNIT_ATTRS)
        # Bases first: strx/addrx/rnglistx values of the same DIE depend on them.
        for attr, target in ((AT_STR_OFFSETS_BASE, "str_offsets_base"),
                             (AT_ADDR_BASE, "addr_base"), (AT_GNU_ADDR_BASE, "addr_base"),
                             (AT_RNGLISTS_BASE, "rnglists_base")):  # fmt: skip
            if attr in attrs:
                setattr(unit, target, attrs[attr][1])
        unit.name = self._string(unit, attrs.get(AT_NAME))
        unit.comp_dir = self._string(unit, attrs.get(AT_COMP_DIR))
        low = attrs.get(AT_LOW_PC)
        if low is not None:
            unit.low_pc = self._address(unit, low)
        stmt_list = attrs.get(AT_STMT_LIST)
        if stmt_list is not None and isinstance(stmt_list[1], int):
            unit.stmt_list = stmt_list[1]
        unit.ranges = self._ranges(unit, attrs)

    def unit_starts(self) -> list[int]:
        """Return the offset of every unit in .debug_info (headers only are read)."""
        if self._unit_starts is None:
            starts = []
            pos = 0
            while pos + 4 <= self.info_size:
                head = self._slice(".debug_info", pos, 12)
                (length,) = struct.unpack_from(self.endian + "I", head, 0)
                step = 4 + length
                if length == 0xFFFFFFFF:
                    (length,) = struct.unpack_from(self.endian + "Q", head, 4)
                    step = 12 + length
                if length == 0:
                    break
                starts.append(pos)
                pos += step
            self._unit_starts = starts
        return self._unit_starts

    def unit_containing(self, info_offset: int) -> CompileUnit:
        """Return the unit that holds a .debug_info offset (for DW_FORM_ref_addr)."""
        starts = self.unit_starts()
        index = bisect.bisect_right(starts, info_offset) - 1
        if index < 0:
            raise DwarfError(f".debug_info: no unit holds offset {info_offset:#x}")
        return self.unit(starts[index])

    def iter_unit_ranges(self) -> list[tuple[int, int, int]]:
        """Return (start, end, unit offset) from every unit's top DIE (no .debug_aranges)."""
        entries: list[tuple[int, int, int]] = []
        for offset in self.unit_starts():
            # The top DIE sits at the start of its unit: read a little, not the whole unit.
            try:
                unit = self._read_unit(offset, limit=_UNIT_HEAD)
            except DwarfError:
                unit = self._read_unit(offset)
            entries.extend((start, end, offset) for start, end in unit.ranges)
        return entries

    # -- attributes ----------------------------------------------------------------------

    def _read_code(self, unit: CompileUnit, pos: int) -> tuple[int, int]:
        """Read a DIE's abbreviation code."""
        try:
            return read_uleb(unit.data, pos)
        except IndexError:
            raise DwarfError(f"unit at {unit.offset:#x}: DIE at {pos:#x} is truncated") from None

    @staticmethod
    def _abbrev(unit: CompileUnit, code: int) -> Abbrev:
        """Look up an abbreviation code."""
        abbrev = unit.abbrevs.get(code)
        if abbrev is None:
            raise DwarfError(f"unit at {unit.offset:#x}: unknown abbreviation code {code}")
        return abbrev

    def _read_attrs(
        self, unit: CompileUnit, abbrev: Abbrev, pos: int, wanted: frozenset[int]
    ) -> tuple[dict[int, tuple[int, int | str]], int]:
        """Decode the wanted attributes of a DIE; return {attr: (form, value)} and the end."""
        values: dict[int, tuple[int, int | str]] = {}
        data = unit.data
        order = _BYTEORDER[self.endian]
        try:
            for attr, form, how, width, implicit in abbrev.plan:
                if how == _FIXED:
                    if attr in wanted:
                        values[attr] = (form, int.from_bytes(data[pos : pos + width], order))
                    pos += width
                elif how == _ULEB:
                    if data[pos] < 0x80:
                        value: int | str = data[pos]
                        pos += 1
                    else:
                        value, pos = read_uleb(data, pos)
                    if attr in wanted:
                        values[attr] = (form, value)
                elif how == _IMPLICIT:
                    if attr in wanted:
                        values[attr] = (form, implicit)
                elif how == _CSTRING:
                    end = data.find(b"\0", pos)
                    if end < 0:
                        raise DwarfError(f"unit at {unit.offset:#x}: unterminated string")
                    if attr in wanted:
                        values[attr] = (form, data[pos:end].decode("utf-8", "replace"))
                    pos = end + 1
                elif how == _ULEB_BLOCK:
                    length, pos = read_uleb(data, pos)
                    pos += length
                elif how == _SLEB:
                    value, pos = read_sleb(data, pos)
                    if attr in wanted:
                        values[attr] = (form, value)
                elif how == _SIZED_BLOCK:
                    pos += width + int.from_bytes(data[pos : pos + width], order)
                else:
                    if form == FORM_INDIRECT:
                        form, pos = read_uleb(data, pos)
                    if form == FORM_IMPLICIT_CONST:
                        raise DwarfError(f"unit at {unit.offset:#x}: indirect implicit_const")
                    value, pos = self._read_form(unit, form, pos)
                    if attr in wanted:
                        values[attr] = (form, value)
        except (IndexError, struct.error):
            raise DwarfError(f"unit at {unit.offset:#x}: DIE at {pos:#x} is truncated") from None
        if pos > len(data):
            raise DwarfError(f"unit at {unit.offset:#x}: DIE at {pos:#x} runs past the unit")
        return values, pos

    def _read_form(self, unit: CompileUnit, form: int, pos: int) -> tuple[int | str, int]:
        """Read one attribute value of any form."""
        data = unit.data
        width = _FORM_SIZES.get(form)
        if width is not None:
            if width == "A":
                width = unit.address_size
            elif width == "O":
                width = unit.offset_size
            assert isinstance(width, int)
            if width == 0:
                return 1, pos
            if width in (1, 2, 4, 8):
                return int.from_bytes(data[pos : pos + width], _BYTEORDER[self.endian]), pos + width
            return int.from_bytes(data[pos : pos + width], _BYTEORDER[self.endian]), pos + width
        if form in _LEB_FORMS:
            if form == FORM_SDATA:
                return read_sleb(data, pos)
            return read_uleb(data, pos)
        if form == FORM_STRING:
            return read_cstring(data, pos)
        prefix = _BLOCK_FORMS.get(form)
        if prefix is not None:
            length = int.from_bytes(data[pos : pos + prefix], _BYTEORDER[self.endian])
            return 0, pos + prefix + length
        if form in _ULEB_BLOCK_FORMS:
            length, pos = read_uleb(data, pos)
            return 0, pos + length
        raise DwarfError(f"unit at {unit.offset:#x}: unknown attribute form {form:#x}")

    def _skip_die(self, unit: CompileUnit, abbrev: Abbrev, pos: int) -> int:
        """Return the position after a DIE and all its children."""
        fixed = abbrev.fixed_size
        if fixed is not None:
            if abbrev.has_children and abbrev.sibling_at is not None:
                sibling = self._ref_value(unit, abbrev.sibling_form, pos + abbrev.sibling_at)
                if sibling is not None and sibling > pos:
                    return sibling
            end = pos + fixed
        else:
            attrs, end = self._read_attrs(unit, abbrev, pos, frozenset({AT_SIBLING}))
            sibling_value = attrs.get(AT_SIBLING)
            if abbrev.has_children and sibling_value is not None:
                target = self._ref(unit, sibling_value)
                if target is not None and target > pos:
                    return target
        if not abbrev.has_children:
            return end
        return self._skip_children(unit, end)

    def _skip_children(self, unit: CompileUnit, pos: int) -> int:
        """Return the position after a list of children and its closing null entry."""
        data = unit.data
        size = len(data)
        depth = 1
        while depth:
            if pos >= size:
                raise DwarfError(f"unit at {unit.offset:#x}: children run past the unit")
            code, pos = read_uleb(data, pos)
            if code == 0:
                depth -= 1
                continue
            abbrev = self._abbrev(unit, code)
            pos = self._skip_die(unit, abbrev, pos)
        return pos

    def _ref_value(self, unit: CompileUnit, form: int, pos: int) -> int | None:
        """Read a reference stored at `pos` with a fixed-size form; return it unit-relative."""
        value, _ = self._read_form(unit, form, pos)
        return self._ref(unit, (form, value))

    def _ref(self, unit: CompileUnit, attr: tuple[int, int | str]) -> int | None:
        """Turn a unit-local reference value into a unit-relative offset."""
        form, value = attr
        if form in _REF_FORMS and isinstance(value, int):
            return value
        if form == FORM_REF_ADDR and isinstance(value, int):
            local = value - unit.offset
            return local if 0 <= local < len(unit.data) else None
        return None

    def _string(self, unit: CompileUnit, attr: tuple[int, int | str] | None) -> str | None:
        """Resolve a string attribute of any string form."""
        if attr is None:
            return None
        form, value = attr
        if isinstance(value, str):
            return value
        if form == FORM_STRP:
            return self._section_string(".debug_str", value)
        if form == FORM_LINE_STRP:
            return self._section_string(".debug_line_str", value)
        if form in _STRX_FORMS:
            offsets = self._section(".debug_str_offsets")
            entry = unit.str_offsets_base + value * unit.offset_size
            if entry + unit.offset_size > len(offsets):
                raise DwarfError(f"unit at {unit.offset:#x}: string index {value} out of range")
            offset = int.from_bytes(offsets[entry : entry + unit.offset_size],
                                    _BYTEORDER[self.endian])  # fmt: skip
            return self._section_string(".debug_str", offset)
        return None

    def _section_string(self, name: str, offset: int) -> str:
        """Read a string from .debug_str or .debug_line_str."""
        data = self._section(name)
        if not 0 <= offset < len(data):
            raise DwarfError(f"{name}: offset {offset:#x} is outside the section")
        return read_cstring(data, offset)[0]

    def _address(self, unit: CompileUnit, attr: tuple[int, int | str]) -> int:
        """Resolve an address attribute (DW_FORM_addr or an index into .debug_addr)."""
        form, value = attr
        assert isinstance(value, int)
        if form in _ADDRX_FORMS:
            return self._indexed_address(unit, value)
        return value

    def _indexed_address(self, unit: CompileUnit, index: int) -> int:
        """Read entry `index` of the unit's .debug_addr table."""
        table = self._section(".debug_addr")
        entry = unit.addr_base + index * unit.address_size
        if entry + unit.address_size > len(table):
            raise DwarfError(f"unit at {unit.offset:#x}: address index {index} out of range")
        return int.from_bytes(table[entry : entry + unit.address_size], _BYTEORDER[self.endian])

    # -- ranges --------------------------------------------------------------------------

    def _ranges(self, unit: CompileUnit, attrs: dict[int, tuple[int, int | str]]) -> list[
        tuple[int, int]
    ]:
        """Return the [start, end) ranges a DIE's pc attributes describe.

        DW_AT_ranges wins over DW_AT_low_pc: a unit with both gives its base address in
        low_pc (often 0) and its code in the range list.
        """
        low = attrs.get(AT_LOW_PC)
        if low is not None and AT_RANGES not in attrs:
            start = self._address(unit, low)
            high = attrs.get(AT_HIGH_PC)
            if high is None:
                return [(start, start + 1)]
            form, value = high
            assert isinstance(value, int)
            end = start + value if form in _CONSTANT_FORMS else self._address(unit, high)
            return [(start, end)] if end > start else []
        ranges = attrs.get(AT_RANGES)
        if ranges is None:
            return []
        form, value = ranges
        assert isinstance(value, int)
        if unit.version >= 5:
            if form == FORM_RNGLISTX:
                value = self._rnglist_offset(unit, value)
            return self._read_rnglist(unit, value)
        return self._read_ranges(unit, value)

    def _rnglist_offset(self, unit: CompileUnit, index: int) -> int:
        """Turn a DW_FORM_rnglistx index into a .debug_rnglists offset."""
        data = self._section(".debug_rnglists")
        entry = unit.rnglists_base + index * unit.offset_size
        if entry + unit.offset_size > len(data):
            raise DwarfError(f"unit at {unit.offset:#x}: range list index {index} out of range")
        relative = int.from_bytes(data[entry : entry + unit.offset_size], _BYTEORDER[self.endian])
        return unit.rnglists_base + relative

    def _read_rnglist(self, unit: CompileUnit, offset: int) -> list[tuple[int, int]]:
        """Decode a DWARF 5 range list."""
        data = self._section(".debug_rnglists")
        size = len(data)
        order = _BYTEORDER[self.endian]
        width = unit.address_size
        base = unit.low_pc
        result = []
        pos = offset
        try:
            while True:
                if pos >= size:
                    raise DwarfError(f".debug_rnglists: list at {offset:#x} runs past the section")
                kind = data[pos]
                pos += 1
                if kind == 0:  # DW_RLE_end_of_list
                    break
                if kind == 1:  # base_addressx
                    index, pos = read_uleb(data, pos)
                    base = self._indexed_address(unit, index)
                elif kind == 2:  # startx_endx
                    first, pos = read_uleb(data, pos)
                    second, pos = read_uleb(data, pos)
                    result.append((self._indexed_address(unit, first),
                                   self._indexed_address(unit, second)))  # fmt: skip
                elif kind == 3:  # startx_length
                    first, pos = read_uleb(data, pos)
                    length, pos = read_uleb(data, pos)
                    start = self._indexed_address(unit, first)
                    result.append((start, start + length))
                elif kind == 4:  # offset_pair
                    first, pos = read_uleb(data, pos)
                    second, pos = read_uleb(data, pos)
                    result.append((base + first, base + second))
                elif kind == 5:  # base_address
                    base = int.from_bytes(data[pos : pos + width], order)
                    pos += width
                elif kind == 6:  # start_end
                    start = int.from_bytes(data[pos : pos + width], order)
                    end = int.from_bytes(data[pos + width : pos + 2 * width], order)
                    pos += 2 * width
                    result.append((start, end))
                elif kind == 7:  # start_length
                    start = int.from_bytes(data[pos : pos + width], order)
                    length, pos = read_uleb(data, pos + width)
                    result.append((start, start + length))
                else:
                    raise DwarfError(f".debug_rnglists: unknown entry kind {kind} at {pos - 1:#x}")
        except IndexError:
            raise DwarfError(f".debug_rnglists: list at {offset:#x} is truncated") from None
        return [(start, end) for start, end in result if end > start]

    def _read_ranges(self, unit: CompileUnit, offset: int) -> list[tuple[int, int]]:
        """Decode a DWARF 2-4 .debug_ranges list."""
        data = self._section(".debug_ranges")
        width = unit.address_size
        order = _BYTEORDER[self.endian]
        top = (1 << (8 * width)) - 1
        base = unit.low_pc
        result = []
        pos = offset
        while True:
            if pos + 2 * width > len(data):
                raise DwarfError(f".debug_ranges: list at {offset:#x} runs past the section")
            start = int.from_bytes(data[pos : pos + width], order)
            end = int.from_bytes(data[pos + width : pos + 2 * width], order)
            pos += 2 * width
            if start == 0 and end == 0:
                break
            if start == top:
                base = end
                continue
            if end > start:
                result.append((base + start, base + end))
        return result

    # -- scopes --------------------------------------------------------------------------

    def functions(self, unit: CompileUnit) -> AddressRanges:
        """Return the unit's subprograms with addresses: one pass over its top level."""
        if unit.functions is not None:
            return unit.functions
        data = unit.data
        size = len(data)
        abbrevs = unit.abbrevs
        order = _BYTEORDER[self.endian]
        code, pos = self._read_code(unit, unit.first_die)
        top = self._abbrev(unit, code)
        pos = self._skip_attrs(unit, top, pos)
        entries: list[tuple[int, int, int]] = []
        nested = 0  # depth inside transparent containers (namespaces, classes)
        try:
            while top.has_children and pos < size:
                die = pos
                code = data[pos]
                if code < 0x80:
                    pos += 1
                else:
                    code, pos = read_uleb(data, pos)
                if code == 0:
                    if nested:
                        nested -= 1
                        continue
                    break
                abbrev = abbrevs.get(code)
                if abbrev is None:
                    raise DwarfError(f"unit at {unit.offset:#x}: unknown abbreviation code {code}")
                if abbrev.has_pc and abbrev.tag in _CODE_SCOPES:
                    attrs, end = self._read_attrs(unit, abbrev, pos, _SCOPE_ATTRS)
                    entries.extend((start, stop, die) for start, stop in self._ranges(unit, attrs))
                    pos = self._after(unit, abbrev, attrs, die, end)
                elif abbrev.has_children and abbrev.tag in _TRANSPARENT:
                    pos = self._skip_attrs(unit, abbrev, pos)
                    nested += 1
                elif abbrev.sibling_width and abbrev.has_children:
                    # The common case, inlined: a type or declaration with a fixed layout
                    # and a unit-relative DW_AT_sibling.
                    at = pos + abbrev.sibling_at  # type: ignore[operator]
                    target = int.from_bytes(data[at : at + abbrev.sibling_width], order)
                    pos = target if target > die else self._skip_die(unit, abbrev, pos)
                elif abbrev.fixed_size is not None and not abbrev.has_children:
                    pos += abbrev.fixed_size
                else:
                    pos = self._skip_die(unit, abbrev, pos)
        except IndexError:
            raise DwarfError(f"unit at {unit.offset:#x}: DIEs run past the unit") from None
        unit.functions = AddressRanges.build(entries)
        return unit.functions

    def scopes_at(self, unit: CompileUnit, address: int) -> list[Scope]:
        """Return the subprogram and inlined subroutines holding `address`, outermost first."""
        die = self.functions(unit).find(address)
        if die is None:
            return []
        data = unit.data
        size = len(data)
        code, pos = self._read_code(unit, die)
        abbrev = self._abbrev(unit, code)
        attrs, pos = self._read_attrs(unit, abbrev, pos, _SCOPE_ATTRS)
        path = []
        if abbrev.tag != TAG_LEXICAL_BLOCK:
            path.append(self._scope(unit, die, abbrev.tag, attrs))
        if not abbrev.has_children:
            return path
        order = _BYTEORDER[self.endian]
        try:
            while pos < size:
                die = pos
                code, pos = read_uleb(data, pos)
                if code == 0:
                    break  # the holding scope's children are done: nothing deeper holds it
                abbrev = self._abbrev(unit, code)
                if abbrev.has_pc and abbrev.tag in _CODE_SCOPES:
                    attrs, end = self._read_attrs(unit, abbrev, pos, _SCOPE_ATTRS)
                    if any(start <= address < stop for start, stop in self._ranges(unit, attrs)):
                        if abbrev.tag != TAG_LEXICAL_BLOCK:
                            path.append(self._scope(unit, die, abbrev.tag, attrs))
                        if not abbrev.has_children:
                            break
                        pos = end  # go on with its children
                        continue
                    pos = self._after(unit, abbrev, attrs, die, end)
                elif abbrev.sibling_width and abbrev.has_children:
                    at = pos + abbrev.sibling_at  # type: ignore[operator]
                    target = int.from_bytes(data[at : at + abbrev.sibling_width], order)
                    pos = target if target > die else self._skip_die(unit, abbrev, pos)
                elif abbrev.fixed_size is not None and not abbrev.has_children:
                    pos += abbrev.fixed_size
                else:
                    pos = self._skip_die(unit, abbrev, pos)
        except IndexError:
            raise DwarfError(f"unit at {unit.offset:#x}: DIEs run past the unit") from None
        return path

    def _skip_attrs(self, unit: CompileUnit, abbrev: Abbrev, pos: int) -> int:
        """Return the position after a DIE's attributes (its children start there)."""
        if abbrev.fixed_size is not None:
            return pos + abbrev.fixed_size
        return self._read_attrs(unit, abbrev, pos, frozenset())[1]

    def _after(self, unit: CompileUnit, abbrev: Abbrev,
               attrs: dict[int, tuple[int, int | str]], die: int, end: int) -> int:  # fmt: skip
        """Return the position after a decoded DIE and its children."""
        if not abbrev.has_children:
            return end
        sibling = attrs.get(AT_SIBLING)
        if sibling is not None:
            target = self._ref(unit, sibling)
            if target is not None and target > die:
                return target
        return self._skip_children(unit, end)

    def _scope(self, unit: CompileUnit, die: int, tag: int,
               attrs: dict[int, tuple[int, int | str]]) -> Scope:  # fmt: skip
        """Build a Scope from decoded attributes."""
        call_file = attrs.get(AT_CALL_FILE)
        call_line = attrs.get(AT_CALL_LINE)
        return Scope(
            die, tag, self._name(unit, attrs, 0),
            call_file[1] if call_file is not None and isinstance(call_file[1], int) else None,
            call_line[1] if call_line is not None and isinstance(call_line[1], int) else None,
        )  # fmt: skip

    def _name(self, unit: CompileUnit, attrs: dict[int, tuple[int, int | str]],
              depth: int) -> str | None:  # fmt: skip
        """Name a DIE, following abstract origins and specifications."""
        for attr in (AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME):
            name = self._string(unit, attrs.get(attr))
            if name is not None:
                return name
        if depth >= _MAX_ORIGIN_DEPTH:
            return None
        for attr in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION):
            ref = attrs.get(attr)
            if ref is None:
                continue
            target_unit, target = unit, self._ref(unit, ref)
            if target is None and ref[0] == FORM_REF_ADDR and isinstance(ref[1], int):
                target_unit = self.unit_containing(ref[1])
                target = ref[1] - target_unit.offset
            if target is None or not 0 <= target < len(target_unit.data):
                return None
            code, pos = self._read_code(target_unit, target)
            abbrev = self._abbrev(target_unit, code)
            origin, _ = self._read_attrs(target_unit, abbrev, pos, _NAME_ATTRS)
            return self._name(target_unit, origin, depth + 1)
        return None

    # -- lines ---------------------------------------------------------------------------

    def line_program(self, unit: CompileUnit) -> LineProgram | None:
        """Return the unit's line program header, decoded once."""
        if unit.line_program is None and unit.stmt_list is not None:
            unit.line_program = self._read_line_header(unit, unit.stmt_list)
        return unit.line_program

    def _read_line_header(self, unit: CompileUnit, offset: int) -> LineProgram:
        """Decode a line program header of DWARF 2 to 5."""
        data = self._section(".debug_line")
        endian = self.endian
        try:
            (length,) = struct.unpack_from(endian + "I", data, offset)
            pos = offset + 4
            offset_size = 4
            if length == 0xFFFFFFFF:
                (length,) = struct.unpack_from(endian + "Q", data, pos)
                pos += 8
                offset_size = 8
            end = pos + length
            if end > len(data):
                raise DwarfError(f".debug_line: program at {offset:#x} runs past the section")
            (version,) = struct.unpack_from(endian + "H", data, pos)
            pos += 2
            if not 2 <= version <= 5:
                raise DwarfError(f".debug_line: program at {offset:#x} has version {version}")
            address_size = unit.address_size
            if version >= 5:
                address_size = data[pos]
                pos += 2  # address_size, segment_selector_size
            header_length = int.from_bytes(data[pos : pos + offset_size], _BYTEORDER[endian])
            pos += offset_size
            program_start = pos + header_length
            min_inst = data[pos]
            pos += 1
            if version >= 4:
                pos += 1  # maximum_operations_per_instruction: 1 except on VLIW
            default_is_stmt = data[pos] != 0
            line_base = struct.unpack_from("b", data, pos + 1)[0]
            line_range = data[pos + 2]
            opcode_base = data[pos + 3]
            pos += 4
            standard = tuple(data[pos : pos + opcode_base - 1])
            pos += opcode_base - 1
            if line_range == 0:
                raise DwarfError(f".debug_line: program at {offset:#x} has line_range 0")
            comp_dir = unit.comp_dir or ""
            if version >= 5:
                files, file_base = self._v5_files(unit, data, pos, program_start, comp_dir)
            else:
                files, file_base = self._v4_files(data, pos, program_start, comp_dir,
                                                  unit.name)  # fmt: skip
        except (struct.error, IndexError):
            raise DwarfError(f".debug_line: program at {offset:#x} is truncated") from None
        if not pos <= program_start <= end:
            raise DwarfError(f".debug_line: program at {offset:#x} has a bad header length")
        return LineProgram(version, address_size, min_inst, default_is_stmt, line_base,
                           line_range, opcode_base, standard, files, file_base,
                           program_start, end)  # fmt: skip

    @staticmethod
    def _v4_files(data: bytes, pos: int, limit: int, comp_dir: str,
                  unit_name: str | None) -> tuple[tuple[str, ...], int]:  # fmt: skip
        """Read the include_directories and file_names of a DWARF 2-4 header."""
        directories = []
        while pos < limit:
            name, pos = read_cstring(data, pos)
            if not name:
                break
            directories.append(name)
        files = []
        while pos < limit:
            name, pos = read_cstring(data, pos)
            if not name:
                break
            directory, pos = read_uleb(data, pos)
            _, pos = read_uleb(data, pos)  # modification time
            _, pos = read_uleb(data, pos)  # length
            # Directory 0 is the compilation directory before DWARF 5.
            files.append(_join(directories, directory - 1, name, comp_dir))
        return tuple(files), 1

    def _v5_files(self, unit: CompileUnit, data: bytes, pos: int, limit: int,
                  comp_dir: str) -> tuple[tuple[str, ...], int]:  # fmt: skip
        """Read the directory and file entry tables of a DWARF 5 header."""
        directories_raw, pos = self._v5_entries(unit, data, pos)
        files_raw, pos = self._v5_entries(unit, data, pos)
        if pos > limit:
            raise DwarfError(".debug_line: file tables run past the header")
        directories = [str(entry.get(1, "")) for entry in directories_raw]
        files = []
        for entry in files_raw:
            index = entry.get(2, 0)
            files.append(_join(directories, index if isinstance(index, int) else 0,
                               str(entry.get(1, "")), comp_dir))  # fmt: skip
        return tuple(files), 0

    def _v5_entries(self, unit: CompileUnit, data: bytes,
                    pos: int) -> tuple[list[dict[int, int | str]], int]:  # fmt: skip
        """Read one DWARF 5 entry-format table (directories or files)."""
        format_count = data[pos]
        pos += 1
        formats = []
        for _ in range(format_count):
            content, pos = read_uleb(data, pos)
            form, pos = read_uleb(data, pos)
            formats.append((content, form))
        count, pos = read_uleb(data, pos)
        if count > len(data) - pos:
            raise DwarfError(".debug_line: entry count exceeds the section")
        # Forms are read from the line section here, not the unit.
        reader = _LineFormReader(self, unit, data)
        entries = []
        for _ in range(count):
            entry: dict[int, int | str] = {}
            for content, form in formats:
                value, pos = reader.read(form, pos)
                entry[content] = value
            entries.append(entry)
        return entries, pos

    def lookup_lines(self, program: LineProgram,
                     addresses: Sequence[int]) -> dict[int, LineRow]:  # fmt: skip
        """Run a line program and return the row in effect at each of `addresses`.

        The row in effect at A is the last row at or below A in the sequence whose range
        holds A (rows at one address: the last wins, as in binutils). The program stops
        once every address has its row.
        """
        targets = sorted(set(addresses))
        found: dict[int, LineRow] = {}
        if not targets:
            return found
        data = self._section(".debug_line")[program.program_start : program.program_end]
        try:
            self._run_line_program(program, data, targets, found)
        except (IndexError, struct.error):
            raise DwarfError(".debug_line: line program is truncated") from None
        return found

    def _run_line_program(self, program: LineProgram, data: bytes, targets: list[int],
                          found: dict[int, LineRow]) -> None:  # fmt: skip
        """Decode opcodes, assigning rows to targets as the address passes them."""
        order = _BYTEORDER[self.endian]
        opcode_base = program.opcode_base
        line_base = program.line_base
        line_range = program.line_range
        min_inst = program.min_inst_length
        standard = program.standard_lengths
        # Special opcodes, precomputed: (address advance, line advance).
        special_address = [0] * 256
        special_line = [0] * 256
        for op in range(opcode_base, 256):
            adjusted = op - opcode_base
            special_address[op] = (adjusted // line_range) * min_inst
            special_line[op] = line_base + adjusted % line_range
        const_add = special_address[255]
        count = len(targets)
        wanted = count
        beyond = 1 << 64
        size = len(data)
        pos = 0
        address = 0
        file = 1
        line = 1
        discriminator = 0
        # The previous row of the current sequence (address -1: none yet) and the next
        # target at or above it.
        row_address = -1
        row_file = row_line = row_discriminator = 0
        index = 0
        next_target = -1
        while pos < size:
            op = data[pos]
            pos += 1
            # Branches in the order GCC's programs use them most: special opcodes,
            # set_column, copy, negate_stmt, advance_line, set_file.
            if op >= opcode_base:
                address += special_address[op]
                line += special_line[op]
            elif op == 5:  # DW_LNS_set_column
                if data[pos] < 0x80:
                    pos += 1
                else:
                    _, pos = read_uleb(data, pos)
                continue
            elif op == 1:  # DW_LNS_copy
                pass
            elif op == 6 or op == 7 or op == 10 or op == 11:  # flags without operands
                continue
            elif op == 3:  # DW_LNS_advance_line
                delta, pos = read_sleb(data, pos)
                line += delta
                continue
            elif op == 4:  # DW_LNS_set_file
                file, pos = read_uleb(data, pos)
                continue
            elif op == 0:  # extended opcode
                length, pos = read_uleb(data, pos)
                if length == 0:
                    continue
                sub = data[pos]
                after = pos + length
                if sub == 1:  # DW_LNE_end_sequence: the last row runs up to `address`
                    if row_address >= 0 and next_target < address:
                        last = LineRow(row_file, row_line, row_discriminator)
                        while next_target < address:
                            found.setdefault(next_target, last)
                            index += 1
                            next_target = targets[index] if index < count else beyond
                        if len(found) >= wanted:
                            return
                    address = 0
                    file = 1
                    line = 1
                    discriminator = 0
                    row_address = -1
                elif sub == 2:  # DW_LNE_set_address
                    address = int.from_bytes(data[pos + 1 : after], order)
                elif sub == 4:  # DW_LNE_set_discriminator
                    discriminator = read_uleb(data, pos + 1)[0]
                pos = after
                continue
            elif op == 2:  # DW_LNS_advance_pc
                advance, pos = read_uleb(data, pos)
                address += advance * min_inst
                continue
            elif op == 8:  # DW_LNS_const_add_pc
                address += const_add
                continue
            elif op == 9:  # DW_LNS_fixed_advance_pc
                address += int.from_bytes(data[pos : pos + 2], order)
                pos += 2
                continue
            else:
                # set_isa and opcodes of later DWARF versions: skip their LEB128 operands.
                for _ in range(standard[op - 1] if op - 1 < len(standard) else 0):
                    _, pos = read_uleb(data, pos)
                continue
            # A row is appended at `address` (special opcode or DW_LNS_copy).
            if next_target < address:
                if row_address < 0 or address < row_address:
                    # First row of a sequence (or a step back): targets below it are not
                    # in this sequence.
                    index = bisect.bisect_left(targets, address)
                    next_target = targets[index] if index < count else beyond
                else:
                    last = LineRow(row_file, row_line, row_discriminator)
                    while next_target < address:
                        found.setdefault(next_target, last)
                        index += 1
                        next_target = targets[index] if index < count else beyond
                    if len(found) >= wanted:
                        return
            elif row_address < 0 or address < row_address:
                index = bisect.bisect_left(targets, address)
                next_target = targets[index] if index < count else beyond
            row_address = address
            row_file = file
            row_line = line
            row_discriminator = discriminator
            discriminator = 0


class _LineFormReader:
    """Read DWARF 5 entry-format values stored in .debug_line."""

    def __init__(self, reader: DwarfReader, unit: CompileUnit, data: bytes) -> None:
        self.reader = reader
        self.unit = unit
        self.data = data

    def read(self, form: int, pos: int) -> tuple[int | str, int]:
        """Read one value at `pos` of the line section."""
        data = self.data
        order = _BYTEORDER[self.reader.endian]
        if form == FORM_STRING:
            return read_cstring(data, pos)
        if form in (FORM_LINE_STRP, FORM_STRP):
            width = self.unit.offset_size
            offset = int.from_bytes(data[pos : pos + width], order)
            section = ".debug_line_str" if form == FORM_LINE_STRP else ".debug_str"
            return self.reader._section_string(section, offset), pos + width
        if form in (FORM_UDATA,):
            return read_uleb(data, pos)
        if form in _STRX_FORMS:
            if form == FORM_STRX:
                index, pos = read_uleb(data, pos)
            else:
                width = {FORM_STRX1: 1, FORM_STRX2: 2, FORM_STRX3: 3, FORM_STRX4: 4}[form]
                index = int.from_bytes(data[pos : pos + width], order)
                pos += width
            name = self.reader._string(self.unit, (FORM_STRX, index))
            return name or "", pos
        width_spec = _FORM_SIZES.get(form)
        if isinstance(width_spec, int):
            return int.from_bytes(data[pos : pos + width_spec], order), pos + width_spec
        if form in _ULEB_BLOCK_FORMS:
            length, pos = read_uleb(data, pos)
            return 0, pos + length
        prefix = _BLOCK_FORMS.get(form)
        if prefix is not None:
            length = int.from_bytes(data[pos : pos + prefix], order)
            return 0, pos + prefix + length
        raise DwarfError(f".debug_line: unsupported entry form {form:#x}")


_BYTEORDER: dict[str, Literal["little", "big"]] = {"<": "little", ">": "big"}


def _join(directories: list[str], index: int, name: str, comp_dir: str) -> str:
    """Make a file entry's path the way binutils' addr2line prints it.

    A relative directory entry is placed under the unit's compilation directory; an
    absolute one stands alone.

    >>> _join(["include"], 0, "linux/mm.h", "/src")
    '/src/include/linux/mm.h'
    >>> _join(["/usr/include"], 0, "stdio.h", "/src")
    '/usr/include/stdio.h'
    """
    if name.startswith("/"):
        return name
    subdir: str | None = directories[index] if 0 <= index < len(directories) else None
    base: str | None = comp_dir if not subdir or not subdir.startswith("/") else None
    if not base:
        base, subdir = subdir, None
    if not base:
        return name
    return f"{base}/{subdir}/{name}" if subdir else f"{base}/{name}"
