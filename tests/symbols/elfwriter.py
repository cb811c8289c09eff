"""A tiny ELF64 little-endian writer for tests: sections, a symbol table, a build-id note.

Written from the System V gABI layout (ELF header, section contents, section header table,
section names in .shstrtab); enough to make stripped, DWARF-less, corrupt and truncated
files whose every byte the tests control.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SHT_PROGBITS = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_NOTE = 7
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
STT_FUNC = 2
STB_GLOBAL = 1
STB_LOCAL = 0
ET_EXEC = 2
EM_X86_64 = 62


@dataclass
class Section:
    """One section to write; `link` names another section (its index is filled in)."""

    name: str
    type: int
    data: bytes = b""
    flags: int = 0
    addr: int = 0
    link: str | None = None
    info: int = 0
    entsize: int = 0
    align: int = 1


def text_section(size: int = 0x100, addr: int = 0x401000) -> Section:
    """Return an executable .text section of `size` bytes of int3 padding."""
    return Section(".text", SHT_PROGBITS, b"\xcc" * size, SHF_ALLOC | SHF_EXECINSTR, addr,
                   align=16)  # fmt: skip


def symbol_sections(symbols: list[tuple[str, int, int]], text_index: int = 1,
                    local: bool = False) -> list[Section]:  # fmt: skip
    """Return .symtab and .strtab for (name, address, size) functions in section `text_index`."""
    strtab = b"\0"
    entries = [struct.pack("<IBBHQQ", 0, 0, 0, 0, 0, 0)]
    bind = STB_LOCAL if local else STB_GLOBAL
    for name, address, size in symbols:
        offset = len(strtab)
        strtab += name.encode() + b"\0"
        entries.append(struct.pack("<IBBHQQ", offset, (bind << 4) | STT_FUNC, 0, text_index,
                                   address, size))  # fmt: skip
    # sh_info of .symtab: index of the first non-local symbol.
    first_global = len(entries) if local else 1
    return [
        Section(".symtab", SHT_SYMTAB, b"".join(entries), link=".strtab", info=first_global,
                entsize=24, align=8),
        Section(".strtab", SHT_STRTAB, strtab),
    ]  # fmt: skip


def build_id_note(build_id: bytes) -> Section:
    """Return a .note.gnu.build-id section holding `build_id`."""
    name = b"GNU\0"
    body = struct.pack("<III", len(name), len(build_id), 3) + name + build_id
    body += b"\0" * (-len(body) % 4)
    return Section(".note.gnu.build-id", SHT_NOTE, body, SHF_ALLOC, align=4)


def write_elf(sections: list[Section], e_type: int = ET_EXEC, machine: int = EM_X86_64) -> bytes:
    """Lay out an ELF64 file: header, section data, .shstrtab, then the section headers."""
    names = b"\0"
    name_offsets = []
    for section in sections:
        name_offsets.append(len(names))
        names += section.name.encode() + b"\0"
    shstrtab_name = len(names)
    names += b".shstrtab\0"
    index = {section.name: number + 1 for number, section in enumerate(sections)}
    body = bytearray()
    offsets = []
    cursor = 64
    for section in sections:
        padding = -cursor % max(section.align, 1)
        body += b"\0" * padding
        cursor += padding
        offsets.append(cursor)
        body += section.data
        cursor += len(section.data)
    names_offset = cursor
    body += names
    cursor += len(names)
    padding = -cursor % 8
    body += b"\0" * padding
    shoff = cursor + padding
    count = len(sections) + 2  # null section first, .shstrtab last
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + b"\0" * 8
    header += struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, 0, shoff, 0, 64, 0, 0, 64,
                          count, count - 1)  # fmt: skip
    table = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    for section, name_offset, offset in zip(sections, name_offsets, offsets, strict=True):
        link = index[section.link] if section.link else 0
        table.append(struct.pack("<IIQQQQIIQQ", name_offset, section.type, section.flags,
                                 section.addr, offset, len(section.data), link, section.info,
                                 section.align, section.entsize))  # fmt: skip
    table.append(struct.pack("<IIQQQQIIQQ", shstrtab_name, SHT_STRTAB, 0, 0, names_offset,
                             len(names), 0, 0, 1, 0))  # fmt: skip
    return bytes(header) + bytes(body) + b"".join(table)


def debug_sections(info: bytes, abbrev: bytes, line: bytes, aranges: bytes) -> list[Section]:
    """Return .debug_info, .debug_abbrev, .debug_line and .debug_aranges with given bytes."""
    return [
        Section(".debug_info", SHT_PROGBITS, info),
        Section(".debug_abbrev", SHT_PROGBITS, abbrev),
        Section(".debug_line", SHT_PROGBITS, line),
        Section(".debug_aranges", SHT_PROGBITS, aranges),
    ]


def aranges_set(cu_offset: int, ranges: list[tuple[int, int]]) -> bytes:
    """Return one DWARF 2 .debug_aranges set (64-bit addresses) for a unit's ranges."""
    body = struct.pack("<HIBB", 2, cu_offset, 8, 0)
    body += b"\0" * (-(4 + len(body)) % 16)  # tuples start at a multiple of 16 from the set
    for start, length in ranges:
        body += struct.pack("<QQ", start, length)
    body += struct.pack("<QQ", 0, 0)
    return struct.pack("<I", len(body)) + body


def encode_uleb(value: int) -> bytes:
    """Encode an unsigned LEB128 number."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode_sleb(value: int) -> bytes:
    """Encode a signed LEB128 number."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte if done else byte | 0x80)
        if done:
            return bytes(out)
