"""DWARF 2-5 decoding over raw section bytes: what symbolizing an address needs, nothing more.

`.debug_aranges` (address ranges to compilation units), abbreviation tables, a DIE walk that
finds the subprogram and inlined subroutines holding an address (skipping subtrees through
DW_AT_sibling), range lists, and line programs run only as far as the addresses asked for.
pyelftools decodes whole CUs and takes 0.1-0.3 s a CU on a distro vmlinux; this module takes
a few milliseconds. Every loop is bounded by the bytes it reads: malformed data raises
`DwarfError` instead of looping or reading past a section.

The encoding and its records are in `dwarf_format`, `.debug_aranges` in `aranges`, the
attribute and range-list decoding in `dwarf_die`, line programs in `dwarf_lines`; this
module walks units and the scopes that hold an address.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence

from pageowner.symbols.aranges import AddressRanges
from pageowner.symbols.dwarf_die import CompileUnit, DieReader, SectionGetter, SliceGetter
from pageowner.symbols.dwarf_format import (
    AT_ABSTRACT_ORIGIN,
    AT_ADDR_BASE,
    AT_CALL_FILE,
    AT_CALL_LINE,
    AT_COMP_DIR,
    AT_GNU_ADDR_BASE,
    AT_LINKAGE_NAME,
    AT_LOW_PC,
    AT_MIPS_LINKAGE_NAME,
    AT_NAME,
    AT_RNGLISTS_BASE,
    AT_SIBLING,
    AT_SPECIFICATION,
    AT_STMT_LIST,
    AT_STR_OFFSETS_BASE,
    BYTEORDER,
    CODE_SCOPES,
    FORM_REF_ADDR,
    MAX_ORIGIN_DEPTH,
    NAME_ATTRS,
    SCOPE_ATTRS,
    TAG_COMPILE_UNIT,
    TAG_LEXICAL_BLOCK,
    TAG_PARTIAL_UNIT,
    TAG_SKELETON_UNIT,
    TRANSPARENT,
    UNIT_ATTRS,
    UNIT_HEAD,
    Abbrev,
    DwarfError,
    LineProgram,
    LineRow,
    Scope,
    parse_abbrevs,
    read_uleb,
)
from pageowner.symbols.dwarf_lines import lookup_lines, read_line_header

__all__ = ["DwarfReader"]


class DwarfReader(DieReader):
    """Decode units of one ELF's DWARF on demand.

    `section(name)` returns a whole section's bytes (b"" when absent) and
    `section_slice(name, offset, size)` part of one (used for .debug_info, which runs to
    hundreds of MB in a vmlinux). Units, abbreviation tables and line program headers are
    kept once decoded.
    """

    def __init__(self, section: SectionGetter, section_slice: SliceGetter,
                 info_size: int, endian: str = "<") -> None:  # fmt: skip
        super().__init__(section, section_slice, info_size, endian)
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
        attrs, _ = self._read_attrs(unit, abbrev, pos, UNIT_ATTRS)
        # Bases first: strx/addrx/rnglistx values of the same DIE depend on them.
        for attr, target in ((AT_STR_OFFSETS_BASE, "str_offsets_base"),
                             (AT_ADDR_BASE, "addr_base"), (AT_GNU_ADDR_BASE, "addr_base"),
                             (AT_RNGLISTS_BASE, "rnglists_base")):  # fmt: skip
            if attr in attrs:
                setattr(unit, target, attrs[attr][1])
        unit.name = self.string(unit, attrs.get(AT_NAME))
        unit.comp_dir = self.string(unit, attrs.get(AT_COMP_DIR))
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
                unit = self._read_unit(offset, limit=UNIT_HEAD)
            except DwarfError:
                unit = self._read_unit(offset)
            entries.extend((start, end, offset) for start, end in unit.ranges)
        return entries

    # -- scopes --------------------------------------------------------------------------

    def functions(self, unit: CompileUnit) -> AddressRanges:
        """Return the unit's subprograms with addresses: one pass over its top level."""
        if unit.functions is not None:
            return unit.functions
        data = unit.data
        size = len(data)
        abbrevs = unit.abbrevs
        order = BYTEORDER[self.endian]
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
                if abbrev.has_pc and abbrev.tag in CODE_SCOPES:
                    attrs, end = self._read_attrs(unit, abbrev, pos, SCOPE_ATTRS)
                    entries.extend((start, stop, die) for start, stop in self._ranges(unit, attrs))
                    pos = self._after(unit, abbrev, attrs, die, end)
                elif abbrev.has_children and abbrev.tag in TRANSPARENT:
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
        attrs, pos = self._read_attrs(unit, abbrev, pos, SCOPE_ATTRS)
        path = []
        if abbrev.tag != TAG_LEXICAL_BLOCK:
            path.append(self._scope(unit, die, abbrev.tag, attrs))
        if not abbrev.has_children:
            return path
        order = BYTEORDER[self.endian]
        try:
            while pos < size:
                die = pos
                code, pos = read_uleb(data, pos)
                if code == 0:
                    break  # the holding scope's children are done: nothing deeper holds it
                abbrev = self._abbrev(unit, code)
                if abbrev.has_pc and abbrev.tag in CODE_SCOPES:
                    attrs, end = self._read_attrs(unit, abbrev, pos, SCOPE_ATTRS)
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
            name = self.string(unit, attrs.get(attr))
            if name is not None:
                return name
        if depth >= MAX_ORIGIN_DEPTH:
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
            origin, _ = self._read_attrs(target_unit, abbrev, pos, NAME_ATTRS)
            return self._name(target_unit, origin, depth + 1)
        return None

    # -- lines ---------------------------------------------------------------------------

    def line_program(self, unit: CompileUnit) -> LineProgram | None:
        """Return the unit's line program header, decoded once."""
        if unit.line_program is None and unit.stmt_list is not None:
            unit.line_program = read_line_header(self, unit, unit.stmt_list)
        return unit.line_program

    def lookup_lines(self, program: LineProgram,
                     addresses: Sequence[int]) -> dict[int, LineRow]:  # fmt: skip
        """Run a line program and return the row in effect at each of `addresses`."""
        return lookup_lines(self, program, addresses)
