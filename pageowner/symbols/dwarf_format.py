"""DWARF's encoding: tags, attributes, forms, LEB128, abbreviation tables, decoded records.

The numbers are those of the DWARF 5 standard (section 7) and the GNU extensions GCC
emits; the records (`LineRow`, `LineProgram`, `Scope`) are what the readers in
`dwarf_die`, `dwarf_lines` and `dwarf` fill in. Malformed data raises `DwarfError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pageowner.errors import SymbolError

__all__ = [
    "Abbrev",
    "DwarfError",
    "LineProgram",
    "LineRow",
    "Scope",
    "parse_abbrevs",
    "read_cstring",
    "read_sleb",
    "read_uleb",
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
CODE_SCOPES = frozenset({TAG_SUBPROGRAM, TAG_INLINED_SUBROUTINE, TAG_LEXICAL_BLOCK})
# Containers without addresses of their own whose children may be functions (C++ and Rust
# namespaces, Fortran modules). Classes and structs are skipped whole: compilers put member
# function definitions at the top level, pointing back with DW_AT_specification.
TRANSPARENT = frozenset({TAG_NAMESPACE, 0x1E})

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

SCOPE_ATTRS = frozenset({AT_LOW_PC, AT_HIGH_PC, AT_RANGES, AT_SIBLING, AT_ABSTRACT_ORIGIN,
                          AT_SPECIFICATION, AT_NAME, AT_CALL_FILE, AT_CALL_LINE,
                          AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME})  # fmt: skip
NAME_ATTRS = frozenset({AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME,
                         AT_ABSTRACT_ORIGIN, AT_SPECIFICATION})  # fmt: skip
UNIT_ATTRS = frozenset({AT_NAME, AT_STMT_LIST, AT_LOW_PC, AT_HIGH_PC, AT_RANGES, AT_COMP_DIR,
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
FORM_SIZES: dict[int, int | str] = {
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
LEB_FORMS = frozenset({FORM_SDATA, FORM_UDATA, FORM_REF_UDATA, FORM_STRX, FORM_ADDRX,
                        0x22, FORM_RNGLISTX, FORM_GNU_ADDR_INDEX, FORM_GNU_STR_INDEX})  # fmt: skip
BLOCK_FORMS = {0x0A: 1, 0x03: 2, 0x04: 4}  # block1, block2, block4 (length prefix size)
ULEB_BLOCK_FORMS = frozenset({0x09, 0x18})  # block, exprloc
CONSTANT_FORMS = frozenset({FORM_DATA1, FORM_DATA2, FORM_DATA4, FORM_DATA8, FORM_SDATA,
                             FORM_UDATA, FORM_IMPLICIT_CONST})  # fmt: skip
REF_FORMS = frozenset({FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA})
REF_WIDTHS = {FORM_REF1: 1, FORM_REF2: 2, FORM_REF4: 4, FORM_REF8: 8}
STRX_FORMS = frozenset({FORM_STRX, FORM_STRX1, FORM_STRX2, FORM_STRX3, FORM_STRX4,
                         FORM_GNU_STR_INDEX})  # fmt: skip
ADDRX_FORMS = frozenset({FORM_ADDRX, FORM_ADDRX1, FORM_ADDRX2, FORM_ADDRX3, FORM_ADDRX4,
                          FORM_GNU_ADDR_INDEX})  # fmt: skip

# Bytes read to decode a unit's top DIE alone (its producer string can be long).
UNIT_HEAD = 1 << 14
# Longest chain of DW_AT_abstract_origin/DW_AT_specification followed for a name.
MAX_ORIGIN_DEPTH = 16


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
    # `plan_step` for the meaning of `how`.
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
                width = FORM_SIZES.get(form)
                if width is None or fixed is None:
                    fixed = None
                elif width == "A":
                    fixed += address_size
                elif width == "O":
                    fixed += offset_size
                else:
                    fixed += width  # type: ignore[operator]
            sibling_width = REF_WIDTHS.get(sibling_form, 0) if sibling_at is not None else 0
            has_pc = any(spec[0] in (AT_LOW_PC, AT_RANGES) for spec in specs)
            plan = []
            for attr, form, implicit in specs:
                step = steps.get(form)
                if step is None:
                    step = steps[form] = plan_step(form, address_size, offset_size)
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
FIXED, ULEB, SLEB, CSTRING, ULEB_BLOCK, SIZED_BLOCK, IMPLICIT, OTHER = range(8)


def plan_step(form: int, address_size: int, offset_size: int) -> tuple[int, int]:
    """Return (how, width) telling `_read_attrs` how to read a form."""
    width = FORM_SIZES.get(form)
    if form == FORM_IMPLICIT_CONST:
        return IMPLICIT, 0
    if width is not None:
        if width == "A":
            return FIXED, address_size
        if width == "O":
            return FIXED, offset_size
        return FIXED, int(width)
    if form == FORM_SDATA:
        return SLEB, 0
    if form in LEB_FORMS:
        return ULEB, 0
    if form == FORM_STRING:
        return CSTRING, 0
    if form in ULEB_BLOCK_FORMS:
        return ULEB_BLOCK, 0
    if form in BLOCK_FORMS:
        return SIZED_BLOCK, BLOCK_FORMS[form]
    return OTHER, 0


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


BYTEORDER: dict[str, Literal["little", "big"]] = {"<": "little", ">": "big"}

