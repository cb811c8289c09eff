"""Line programs: a unit's file table, and the rows in effect at the addresses asked for.

The header of DWARF 2-4 and 5 (DWARF 5 section 6.2.4) and the state machine of section
6.2.2, run only as far as the highest address asked for. File paths are joined the way
binutils' addr2line prints them.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Sequence
from typing import Literal

from pageowner.symbols.dwarf_die import CompileUnit, DieReader
from pageowner.symbols.dwarf_format import (
    BLOCK_FORMS,
    BYTEORDER,
    FORM_LINE_STRP,
    FORM_SIZES,
    FORM_STRING,
    FORM_STRP,
    FORM_STRX,
    FORM_STRX1,
    FORM_STRX2,
    FORM_STRX3,
    FORM_STRX4,
    FORM_UDATA,
    STRX_FORMS,
    ULEB_BLOCK_FORMS,
    DwarfError,
    LineProgram,
    LineRow,
    read_cstring,
    read_sleb,
    read_uleb,
)

__all__ = ["lookup_lines", "read_line_header"]


def read_line_header(reader: DieReader, unit: CompileUnit, offset: int) -> LineProgram:
    """Decode a line program header of DWARF 2 to 5."""
    data = reader.section(".debug_line")
    endian = reader.endian
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
        header_length = int.from_bytes(data[pos : pos + offset_size], BYTEORDER[endian])
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
            files, file_base = _v5_files(reader, unit, data, pos, program_start, comp_dir)
        else:
            files, file_base = _v4_files(data, pos, program_start, comp_dir,
                                              unit.name)  # fmt: skip
    except (struct.error, IndexError):
        raise DwarfError(f".debug_line: program at {offset:#x} is truncated") from None
    if not pos <= program_start <= end:
        raise DwarfError(f".debug_line: program at {offset:#x} has a bad header length")
    return LineProgram(version, address_size, min_inst, default_is_stmt, line_base,
                       line_range, opcode_base, standard, files, file_base,
                       program_start, end)  # fmt: skip

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

def _v5_files(reader: DieReader, unit: CompileUnit, data: bytes, pos: int, limit: int,
              comp_dir: str) -> tuple[tuple[str, ...], int]:  # fmt: skip
    """Read the directory and file entry tables of a DWARF 5 header."""
    directories_raw, pos = _v5_entries(reader, unit, data, pos)
    files_raw, pos = _v5_entries(reader, unit, data, pos)
    if pos > limit:
        raise DwarfError(".debug_line: file tables run past the header")
    directories = [str(entry.get(1, "")) for entry in directories_raw]
    files = []
    for entry in files_raw:
        index = entry.get(2, 0)
        files.append(_join(directories, index if isinstance(index, int) else 0,
                           str(entry.get(1, "")), comp_dir))  # fmt: skip
    return tuple(files), 0

def _v5_entries(reader: DieReader, unit: CompileUnit, data: bytes,
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
    forms = _LineFormReader(reader, unit, data)
    entries = []
    for _ in range(count):
        entry: dict[int, int | str] = {}
        for content, form in formats:
            value, pos = forms.read(form, pos)
            entry[content] = value
        entries.append(entry)
    return entries, pos

def lookup_lines(reader: DieReader, program: LineProgram,
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
    data = reader.section(".debug_line")[program.program_start : program.program_end]
    try:
        _run_line_program(program, data, targets, found, BYTEORDER[reader.endian])
    except (IndexError, struct.error):
        raise DwarfError(".debug_line: line program is truncated") from None
    return found

def _run_line_program(program: LineProgram, data: bytes, targets: list[int],
                      found: dict[int, LineRow],
                      order: Literal["little", "big"]) -> None:  # fmt: skip
    """Decode opcodes, assigning rows to targets as the address passes them."""
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

    def __init__(self, reader: DieReader, unit: CompileUnit, data: bytes) -> None:
        self.reader = reader
        self.unit = unit
        self.data = data

    def read(self, form: int, pos: int) -> tuple[int | str, int]:
        """Read one value at `pos` of the line section."""
        data = self.data
        order = BYTEORDER[self.reader.endian]
        if form == FORM_STRING:
            return read_cstring(data, pos)
        if form in (FORM_LINE_STRP, FORM_STRP):
            width = self.unit.offset_size
            offset = int.from_bytes(data[pos : pos + width], order)
            section = ".debug_line_str" if form == FORM_LINE_STRP else ".debug_str"
            return self.reader.section_string(section, offset), pos + width
        if form in (FORM_UDATA,):
            return read_uleb(data, pos)
        if form in STRX_FORMS:
            if form == FORM_STRX:
                index, pos = read_uleb(data, pos)
            else:
                width = {FORM_STRX1: 1, FORM_STRX2: 2, FORM_STRX3: 3, FORM_STRX4: 4}[form]
                index = int.from_bytes(data[pos : pos + width], order)
                pos += width
            name = self.reader.string(self.unit, (FORM_STRX, index))
            return name or "", pos
        width_spec = FORM_SIZES.get(form)
        if isinstance(width_spec, int):
            return int.from_bytes(data[pos : pos + width_spec], order), pos + width_spec
        if form in ULEB_BLOCK_FORMS:
            length, pos = read_uleb(data, pos)
            return 0, pos + length
        prefix = BLOCK_FORMS.get(form)
        if prefix is not None:
            length = int.from_bytes(data[pos : pos + prefix], order)
            return 0, pos + prefix + length
        raise DwarfError(f".debug_line: unsupported entry form {form:#x}")


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
