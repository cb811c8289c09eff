"""Reading DIEs: attribute values of every form, strings, addresses and range lists.

`DieReader` holds the sections of one ELF and decodes what a DIE says, a few attributes at
a time, with the fixed-size plans of its abbreviation; `pageowner.symbols.dwarf.DwarfReader`
builds the unit and scope walks on it, `dwarf_lines` the line programs.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from pageowner.symbols.aranges import AddressRanges
from pageowner.symbols.dwarf_format import (
    ADDRX_FORMS,
    AT_HIGH_PC,
    AT_LOW_PC,
    AT_RANGES,
    AT_SIBLING,
    BLOCK_FORMS,
    BYTEORDER,
    CONSTANT_FORMS,
    CSTRING,
    FIXED,
    FORM_IMPLICIT_CONST,
    FORM_INDIRECT,
    FORM_LINE_STRP,
    FORM_REF_ADDR,
    FORM_RNGLISTX,
    FORM_SDATA,
    FORM_SIZES,
    FORM_STRING,
    FORM_STRP,
    IMPLICIT,
    LEB_FORMS,
    REF_FORMS,
    SIZED_BLOCK,
    SLEB,
    STRX_FORMS,
    ULEB,
    ULEB_BLOCK,
    ULEB_BLOCK_FORMS,
    Abbrev,
    DwarfError,
    LineProgram,
    read_cstring,
    read_sleb,
    read_uleb,
)

__all__ = ["CompileUnit", "DieReader", "SectionGetter", "SliceGetter"]


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


class DieReader:
    """Decode the DIEs of one ELF's units: attributes, strings, addresses, range lists.

    `section(name)` returns a whole section's bytes (b"" when absent) and
    `section_slice(name, offset, size)` part of one (used for .debug_info, which runs to
    hundreds of MB in a vmlinux).
    """

    def __init__(self, section: SectionGetter, section_slice: SliceGetter,
                 info_size: int, endian: str = "<") -> None:  # fmt: skip
        self._section = section
        self._slice = section_slice
        self.info_size = info_size
        self.endian = endian

    # -- sections ------------------------------------------------------------------------

    def section(self, name: str) -> bytes:
        """Return a whole section's bytes (b"" when absent)."""
        return self._section(name)

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
        order = BYTEORDER[self.endian]
        try:
            for attr, form, how, width, implicit in abbrev.plan:
                if how == FIXED:
                    if attr in wanted:
                        values[attr] = (form, int.from_bytes(data[pos : pos + width], order))
                    pos += width
                elif how == ULEB:
                    if data[pos] < 0x80:
                        value: int | str = data[pos]
                        pos += 1
                    else:
                        value, pos = read_uleb(data, pos)
                    if attr in wanted:
                        values[attr] = (form, value)
                elif how == IMPLICIT:
                    if attr in wanted:
                        values[attr] = (form, implicit)
                elif how == CSTRING:
                    end = data.find(b"\0", pos)
                    if end < 0:
                        raise DwarfError(f"unit at {unit.offset:#x}: unterminated string")
                    if attr in wanted:
                        values[attr] = (form, data[pos:end].decode("utf-8", "replace"))
                    pos = end + 1
                elif how == ULEB_BLOCK:
                    length, pos = read_uleb(data, pos)
                    pos += length
                elif how == SLEB:
                    value, pos = read_sleb(data, pos)
                    if attr in wanted:
                        values[attr] = (form, value)
                elif how == SIZED_BLOCK:
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
        width = FORM_SIZES.get(form)
        if width is not None:
            if width == "A":
                width = unit.address_size
            elif width == "O":
                width = unit.offset_size
            assert isinstance(width, int)
            if width == 0:
                return 1, pos
            if width in (1, 2, 4, 8):
                return int.from_bytes(data[pos : pos + width], BYTEORDER[self.endian]), pos + width
            return int.from_bytes(data[pos : pos + width], BYTEORDER[self.endian]), pos + width
        if form in LEB_FORMS:
            if form == FORM_SDATA:
                return read_sleb(data, pos)
            return read_uleb(data, pos)
        if form == FORM_STRING:
            return read_cstring(data, pos)
        prefix = BLOCK_FORMS.get(form)
        if prefix is not None:
            length = int.from_bytes(data[pos : pos + prefix], BYTEORDER[self.endian])
            return 0, pos + prefix + length
        if form in ULEB_BLOCK_FORMS:
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
        if form in REF_FORMS and isinstance(value, int):
            return value
        if form == FORM_REF_ADDR and isinstance(value, int):
            local = value - unit.offset
            return local if 0 <= local < len(unit.data) else None
        return None

    def string(self, unit: CompileUnit, attr: tuple[int, int | str] | None) -> str | None:
        """Resolve a string attribute of any string form."""
        if attr is None:
            return None
        form, value = attr
        if isinstance(value, str):
            return value
        if form == FORM_STRP:
            return self.section_string(".debug_str", value)
        if form == FORM_LINE_STRP:
            return self.section_string(".debug_line_str", value)
        if form in STRX_FORMS:
            offsets = self._section(".debug_str_offsets")
            entry = unit.str_offsets_base + value * unit.offset_size
            if entry + unit.offset_size > len(offsets):
                raise DwarfError(f"unit at {unit.offset:#x}: string index {value} out of range")
            offset = int.from_bytes(offsets[entry : entry + unit.offset_size],
                                    BYTEORDER[self.endian])  # fmt: skip
            return self.section_string(".debug_str", offset)
        return None

    def section_string(self, name: str, offset: int) -> str:
        """Read a string from .debug_str or .debug_line_str."""
        data = self._section(name)
        if not 0 <= offset < len(data):
            raise DwarfError(f"{name}: offset {offset:#x} is outside the section")
        return read_cstring(data, offset)[0]

    def _address(self, unit: CompileUnit, attr: tuple[int, int | str]) -> int:
        """Resolve an address attribute (DW_FORM_addr or an index into .debug_addr)."""
        form, value = attr
        assert isinstance(value, int)
        if form in ADDRX_FORMS:
            return self._indexed_address(unit, value)
        return value

    def _indexed_address(self, unit: CompileUnit, index: int) -> int:
        """Read entry `index` of the unit's .debug_addr table."""
        table = self._section(".debug_addr")
        entry = unit.addr_base + index * unit.address_size
        if entry + unit.address_size > len(table):
            raise DwarfError(f"unit at {unit.offset:#x}: address index {index} out of range")
        return int.from_bytes(table[entry : entry + unit.address_size], BYTEORDER[self.endian])

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
            end = start + value if form in CONSTANT_FORMS else self._address(unit, high)
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
        relative = int.from_bytes(data[entry : entry + unit.offset_size], BYTEORDER[self.endian])
        return unit.rnglists_base + relative

    def _read_rnglist(self, unit: CompileUnit, offset: int) -> list[tuple[int, int]]:
        """Decode a DWARF 5 range list."""
        data = self._section(".debug_rnglists")
        size = len(data)
        order = BYTEORDER[self.endian]
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
        order = BYTEORDER[self.endian]
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
