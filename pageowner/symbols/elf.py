"""ELF symbol tables with DWARF source lines: vmlinux and module `.ko` files.

The only module that imports elftools (lazily). pyelftools reads the ELF container: header,
section table, notes, compressed sections. The hot paths are ours: `.symtab` is unpacked
with `struct`, and DWARF goes through `pageowner.symbols.dwarf`, which decodes only the units and
the part of their line programs that the asked addresses need. The index (sorted symbols
and address ranges to units) is cached on disk keyed by the ELF's build-id.
"""

from __future__ import annotations

import array
import bisect
import contextlib
import gzip
import io
import json
import lzma
import mmap
import os
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

from pageowner.errors import SymbolError
from pageowner.symbols.aranges import AddressRanges, parse_aranges
from pageowner.symbols.dwarf import DwarfReader
from pageowner.symbols.dwarf_format import DwarfError, LineProgram, LineRow
from pageowner.symbols.symtab import CallSite, Symbol

__all__ = [
    "CACHE_VERSION",
    "ElfSymbolTable",
    "Resolution",
    "SourceLine",
    "call_return_offsets",
    "call_sites",
    "default_cache_dir",
    "tail_calls",
]

WarningHandler = Callable[[str], None]

# Bump when the cache file layout or what goes into it changes.
CACHE_VERSION = 1
_CACHE_MAGIC = b"PAGEOWNER-SYMIDX"

# ELF constants (System V gABI).
_ET_REL = 1
_SHT_SYMTAB = 2
_SHT_NOBITS = 8
_SHT_RELA = 4
_SHT_REL = 9
_SHF_ALLOC = 0x2
_SHF_EXECINSTR = 0x4
_SHF_COMPRESSED = 0x800
_SHN_UNDEF = 0
_SHN_LORESERVE = 0xFF00
_SHN_ABS = 0xFFF1
_STT_NOTYPE = 0
_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_STB_LOCAL = 0

_DEBUG_SECTIONS = (".debug_info", ".debug_abbrev", ".debug_line", ".debug_str",
                   ".debug_line_str", ".debug_ranges", ".debug_rnglists", ".debug_addr",
                   ".debug_str_offsets", ".debug_aranges")  # fmt: skip

# Relocations that debug sections of a relocatable object use, per machine:
# (e_machine, r_type) -> (width in bytes, pc-relative).
_RELOCATIONS: dict[tuple[int, int], tuple[int, bool]] = {
    (62, 1): (8, False),  # x86-64 R_X86_64_64
    (62, 2): (4, True),  # R_X86_64_PC32
    (62, 10): (4, False),  # R_X86_64_32
    (62, 11): (4, False),  # R_X86_64_32S
    (62, 24): (8, True),  # R_X86_64_PC64
    (183, 257): (8, False),  # AArch64 R_AARCH64_ABS64
    (183, 258): (4, False),  # R_AARCH64_ABS32
    (183, 259): (2, False),  # R_AARCH64_ABS16
    (3, 1): (4, False),  # i386 R_386_32
    (40, 2): (4, False),  # ARM R_ARM_ABS32
    (21, 38): (8, False),  # PPC64 R_PPC64_ADDR64
    (21, 1): (4, False),  # R_PPC64_ADDR32
    (22, 22): (8, False),  # s390x R_390_64
    (22, 4): (4, False),  # R_390_32
    (243, 2): (8, False),  # RISC-V R_RISCV_64
    (243, 1): (4, False),  # R_RISCV_32
}
_NO_RELOCATION = {62: 0, 183: 0, 3: 0, 40: 0, 21: 0, 22: 0, 243: 0}


def default_cache_dir() -> Path:
    """Return $XDG_CACHE_HOME/pageowner, or ~/.cache/pageowner."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pageowner"


@dataclass(frozen=True, slots=True)
class SourceLine:
    """One line of an inline chain: the function whose code it is, and where.

    `line` is 0 when DWARF gives no line; `file` is None then too.
    """

    function: str | None
    file: str | None
    line: int
    discriminator: int = 0

    def location(self) -> str:
        """Render `file:line` the way addr2line does.

        >>> SourceLine("f", "mm/page_alloc.c", 4355).location()
        'mm/page_alloc.c:4355'
        """
        return f"{self.file or '??'}:{self.line or '?'}"


@dataclass(frozen=True, slots=True)
class Resolution:
    """An address resolved: its symbol and offset, and the inline chain, innermost first."""

    address: int
    symbol: Symbol | None
    offset: int
    lines: tuple[SourceLine, ...] = ()


# -- the ELF image ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Section:
    """What we keep of a section header."""

    index: int
    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int
    info: int
    align: int


class _ElfImage:
    """An opened ELF file: header facts, sections, and their bytes on demand."""

    def __init__(self, path: str, data: bytes | mmap.mmap, closer: Callable[[], None]) -> None:
        self.path = path
        self.data = data
        self._close = closer
        self._cache: dict[str, bytes] = {}
        self._relocations: dict[str, list[_Relocations]] = {}
        self._values: list[int] | None = None
        self._elf: Any = None
        try:
            self._parse_header()
        except SymbolError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001  pyelftools raises many kinds on bad input
            self.close()
            raise SymbolError(f"{path}: not a valid ELF file: {_describe(exc)}") from None

    @classmethod
    def open(cls, path: str) -> _ElfImage:
        """Map an ELF file (or read a compressed .ko.xz/.ko.gz into memory)."""
        try:
            with open(path, "rb") as handle:
                head = handle.read(6)
                if head.startswith(b"\xfd7zXZ\x00") or head.startswith(b"\x1f\x8b"):
                    handle.seek(0)
                    opener = lzma.open if head.startswith(b"\xfd7zXZ") else gzip.open
                    with opener(handle) as stream:
                        blob = stream.read()
                    return cls(path, blob, lambda: None)
                size = os.fstat(handle.fileno()).st_size
                if size == 0:
                    raise SymbolError(f"{path}: empty file, not an ELF file")
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise SymbolError(f"{path}: {exc.strerror or exc}") from None
        except (lzma.LZMAError, EOFError, gzip.BadGzipFile) as exc:
            raise SymbolError(f"{path}: corrupt compressed ELF: {exc}") from None
        return cls(path, mapped, mapped.close)

    def close(self) -> None:
        """Release the mapping."""
        self._cache.clear()
        self._elf = None
        with contextlib.suppress(BufferError, ValueError):
            self._close()

    def _parse_header(self) -> None:
        """Read the header and section table, checking every size against the file."""
        from elftools.elf.elffile import ELFFile

        path = self.path
        size = len(self.data)
        if bytes(self.data[:4]) != b"\x7fELF":
            raise SymbolError(f"{path}: not an ELF file (bad magic)")
        stream = io.BytesIO(self.data) if isinstance(self.data, bytes) else _MmapStream(self.data)
        elf = ELFFile(cast("IO[bytes]", stream))
        self._elf = elf
        self.endian = "<" if elf.little_endian else ">"
        self.is64 = elf.elfclass == 64
        self.machine_name = str(elf["e_machine"])
        self.machine = _machine_number(elf)
        self.is_relocatable = elf["e_type"] == "ET_REL"
        shoff = elf["e_shoff"]
        entsize = elf["e_shentsize"]
        if shoff == 0:
            raise SymbolError(f"{path}: no section table (not a vmlinux or module?)")
        if entsize < (64 if self.is64 else 40):
            raise SymbolError(f"{path}: corrupt ELF: section header size {entsize}")
        if shoff + entsize > size:
            raise SymbolError(f"{path}: truncated ELF: the section table is past the end of "
                              f"the file ({size} bytes)")  # fmt: skip
        count = elf.num_sections()
        if count > 1 << 20 or shoff + count * entsize > size:
            raise SymbolError(f"{path}: truncated ELF: {count} section headers do not fit in "
                              f"{size} bytes")  # fmt: skip
        sections = []
        for index in range(count):
            entry = elf.get_section(index)
            header = entry.header
            name = entry.name
            sections.append(_Section(index, name, _sh_type(header["sh_type"]),
                                     header["sh_flags"], header["sh_addr"], header["sh_offset"],
                                     header["sh_size"], header["sh_link"], header["sh_info"],
                                     header["sh_addralign"]))  # fmt: skip
        for section in sections:
            if section.type != _SHT_NOBITS and section.offset + section.size > size:
                raise SymbolError(
                    f"{path}: truncated ELF: section {section.name or section.index} ends at "
                    f"{section.offset + section.size} but the file has {size} bytes"
                )
        self.sections = sections
        self.by_name = {section.name: section for section in sections}
        self.file_size = size

    def _plain(self, name: str) -> bytes:
        """Return a section's stored contents, decompressed; b"" when absent."""
        key = "plain:" + name
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        section = self.by_name.get(name)
        if section is None or section.type == _SHT_NOBITS:
            data = b""
        elif section.flags & _SHF_COMPRESSED:
            try:
                data = bytes(self._elf.get_section(section.index).data())
            except Exception as exc:  # noqa: BLE001
                raise SymbolError(f"{self.path}: corrupt compressed section {name}: "
                                  f"{_describe(exc)}") from None  # fmt: skip
        else:
            data = bytes(self.data[section.offset : section.offset + section.size])
        self._cache[key] = data
        return data

    def _needs_relocation(self, name: str) -> bool:
        """Tell whether a section's bytes must be relocated before use (a .ko's DWARF)."""
        return self.is_relocatable and name.startswith(".debug_") and name in self.by_name

    def section_bytes(self, name: str) -> bytes:
        """Return a section's contents (decompressed, relocated); b"" when absent."""
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        data = self._plain(name)
        if self._needs_relocation(name):
            data = self._relocate(name, data, 0)
        self._cache[name] = data
        return data

    def section_size(self, name: str) -> int:
        """Return a section's size once decompressed (0 when absent)."""
        section = self.by_name.get(name)
        if section is None:
            return 0
        if section.flags & _SHF_COMPRESSED:
            return len(self._plain(name))
        return section.size

    def section_slice(self, name: str, offset: int, size: int) -> bytes:
        """Return part of a section without reading (or relocating) the rest.

        .debug_info runs to hundreds of MB in a vmlinux and to tens of MB of relocations in
        a big module; only the units an address needs are read.
        """
        section = self.by_name.get(name)
        if section is None or offset < 0:
            return b""
        if self._needs_relocation(name) or section.flags & _SHF_COMPRESSED:
            data = self._plain(name)[offset : offset + size]
            return self._relocate(name, data, offset) if self._needs_relocation(name) else data
        start = section.offset + offset
        end = min(start + size, section.offset + section.size)
        return bytes(self.data[start:end]) if end > start else b""

    def build_id(self) -> str | None:
        """Return the GNU build-id note as hex, or None."""
        for section in self.sections:
            if section.type != 7:  # SHT_NOTE
                continue
            data = self.section_bytes(section.name) if section.name else b""
            found = _find_build_id(data, self.endian)
            if found:
                return found
        return None

    # -- layout of relocatable objects ------------------------------------------------------

    def section_bases(self) -> dict[int, int]:
        """Give each allocated section of a relocatable object its own address range.

        A .ko's symbols and DWARF addresses are relative to their section, so .text and
        .init.text would both start at 0. Laying the sections out one after another (as a
        loader would) makes every address unique. Executables keep their addresses.
        """
        if not self.is_relocatable:
            return {}
        bases = {}
        cursor = 0x1000
        for section in self.sections:
            if not section.flags & _SHF_ALLOC or section.size == 0:
                continue
            align = max(section.align, 1)
            cursor = (cursor + align - 1) // align * align
            bases[section.index] = cursor
            cursor += section.size
        return bases

    def _relocate(self, name: str, data: bytes, start: int) -> bytes:
        """Apply a relocatable object's relocations to `data`, the bytes at `start` of `name`."""
        tables = self._relocation_tables(name)
        if not tables:
            return data
        buffer = bytearray(data)
        limit = self.section_size(name)
        values = self._symbol_values()
        order: Literal["little", "big"] = "little" if self.endian == "<" else "big"
        for table in tables:
            table.apply(buffer, start, limit, values, order)
        return bytes(buffer)

    def _relocation_tables(self, name: str) -> list[_Relocations]:
        """Return the decoded REL/RELA sections that apply to a section (cached)."""
        cached = self._relocations.get(name)
        if cached is None:
            target = self.by_name[name]
            cached = [
                _Relocations.read(self, section) for section in self.sections
                if section.type in (_SHT_RELA, _SHT_REL) and section.info == target.index
            ]  # fmt: skip
            self._relocations[name] = cached
        return cached

    def _symbol_values(self) -> list[int]:
        """Return each .symtab entry's address under `section_bases` (cached)."""
        if self._values is None:
            symtab = next((s for s in self.sections if s.type == _SHT_SYMTAB), None)
            bases = self.section_bases()
            self._values = [] if symtab is None else [
                value if shndx == _SHN_ABS else bases.get(shndx, 0) + value
                for _, _, shndx, value, _, _ in _iter_raw_symbols(self, symtab)
            ]  # fmt: skip
        return self._values

    def section_bytes_raw(self, section: _Section) -> bytes:
        """Return a section's bytes exactly as stored."""
        return bytes(self.data[section.offset : section.offset + section.size])


class _Relocations:
    """One REL or RELA section of a relocatable object, decoded into parallel arrays."""

    def __init__(self, path: str, name: str, machine: int, machine_name: str,
                 offsets: Sequence[int], infos: Sequence[int], addends: Sequence[int] | None,
                 is64: bool) -> None:  # fmt: skip
        self.path = path
        self.name = name
        self.machine = machine
        self.machine_name = machine_name
        self.offsets = offsets
        self.infos = infos
        self.addends = addends  # None for REL: the addend is in the bytes
        self.is64 = is64
        self.sorted = all(offsets[i] <= offsets[i + 1] for i in range(len(offsets) - 1))

    @classmethod
    def read(cls, image: _ElfImage, section: _Section) -> _Relocations:
        """Decode a REL/RELA section."""
        raw = image.section_bytes_raw(section)
        rela = section.type == _SHT_RELA
        if image.is64 and image.endian == "<" and sys.byteorder == "little":
            words = array.array("Q")
            width = 3 if rela else 2
            words.frombytes(raw[: len(raw) - len(raw) % (8 * width)])
            offsets, infos = words[0::width], words[1::width]
            addends = None
            if rela:
                signed = array.array("q")
                signed.frombytes(words[2::width].tobytes())
                addends = signed
            return cls(image.path, section.name, image.machine, image.machine_name, offsets,
                       infos, addends, True)  # fmt: skip
        if image.is64:
            layout = image.endian + ("QQq" if rela else "QQ")
        else:
            layout = image.endian + ("IIi" if rela else "II")
        size = struct.calcsize(layout)
        rows = list(struct.iter_unpack(layout, raw[: len(raw) - len(raw) % size]))
        return cls(image.path, section.name, image.machine, image.machine_name,
                   [row[0] for row in rows], [row[1] for row in rows],
                   [row[2] for row in rows] if rela else None, image.is64)  # fmt: skip

    def apply(self, buffer: bytearray, start: int, limit: int, values: list[int],
              order: Literal["little", "big"]) -> None:  # fmt: skip
        """Relocate `buffer`, the bytes at `start` of a target section `limit` bytes long."""
        end = start + len(buffer)
        offsets = self.offsets
        if self.sorted:
            first = bisect.bisect_left(offsets, start)
            last = bisect.bisect_left(offsets, end)
            indices: Sequence[int] = range(first, last)
        else:
            indices = [i for i, offset in enumerate(offsets) if start <= offset < end]
        none_type = _NO_RELOCATION.get(self.machine, 0)
        count = len(values)
        shift, mask = (32, 0xFFFFFFFF) if self.is64 else (8, 0xFF)
        prefix = "<" if order == "little" else ">"
        # kind -> (width, pc-relative, struct format, value mask), looked up once per kind.
        plans: dict[int, tuple[int, bool, str, int]] = {}
        infos = self.infos
        addends = self.addends
        size = len(buffer)
        pack = struct.pack_into
        for index in indices:
            info = infos[index]
            kind = info & mask
            plan = plans.get(kind)
            if plan is None:
                if kind == none_type:
                    continue
                recipe = _RELOCATIONS.get((self.machine, kind))
                if recipe is None:
                    raise SymbolError(f"{self.path}: relocation type {kind} in {self.name} is "
                                      f"not supported for {self.machine_name}")  # fmt: skip
                width, pc_relative = recipe
                plan = plans[kind] = (width, pc_relative, prefix + _FORMATS[width],
                                      (1 << (8 * width)) - 1)  # fmt: skip
            width, pc_relative, layout, value_mask = plan
            offset = offsets[index]
            symbol = info >> shift
            if offset + width > limit or symbol >= count:
                raise SymbolError(f"{self.path}: corrupt relocation in {self.name} at offset "
                                  f"{offset:#x}")  # fmt: skip
            place = offset - start
            if place + width > size:
                continue  # it straddles the end of a partial read: the bytes are not used
            if addends is not None:
                value = values[symbol] + addends[index]
            else:
                value = values[symbol] + int.from_bytes(buffer[place : place + width], order)
            if pc_relative:
                value -= offset
            pack(layout, buffer, place, value & value_mask)


_FORMATS = {2: "H", 4: "I", 8: "Q"}


class _MmapStream:
    """A read-only file object over an mmap, for pyelftools (no copy of the file)."""

    def __init__(self, data: mmap.mmap) -> None:
        self._data = data
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = len(self._data) + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk


def _describe(exc: BaseException) -> str:
    """Name an exception from a parser in a short phrase."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


def _sh_type(value: object) -> int:
    """Turn pyelftools' section type (a name or a number) into its number."""
    names = {"SHT_SYMTAB": _SHT_SYMTAB, "SHT_NOBITS": _SHT_NOBITS, "SHT_RELA": _SHT_RELA,
             "SHT_REL": _SHT_REL, "SHT_NOTE": 7, "SHT_PROGBITS": 1, "SHT_STRTAB": 3}  # fmt: skip
    if isinstance(value, int):
        return value
    return names.get(str(value), -1)


def _machine_number(elf: Any) -> int:
    """Return e_machine as a number (pyelftools gives a name)."""
    from elftools.elf.enums import ENUM_E_MACHINE

    value = elf["e_machine"]
    if isinstance(value, int):
        return value
    return int(ENUM_E_MACHINE.get(value, -1))


def _find_build_id(data: bytes, endian: str) -> str | None:
    """Find an NT_GNU_BUILD_ID note in a note section's bytes."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from(endian + "III", data, pos)
        name_end = pos + 12 + namesz
        desc = name_end + (-namesz % 4)
        end = desc + descsz + (-descsz % 4)
        if end > len(data) or end <= pos:
            return None
        if kind == 3 and data[pos + 12 : name_end].rstrip(b"\0") == b"GNU" and descsz:
            return data[desc : desc + descsz].hex()
        pos = end
    return None


def _iter_raw_symbols(
    image: _ElfImage, symtab: _Section
) -> Iterable[tuple[int, int, int, int, int, int]]:
    """Yield (name offset, info, shndx, value, size, index) for each .symtab entry."""
    raw = image.section_bytes_raw(symtab)
    if image.is64:
        layout, size = image.endian + "IBBHQQ", 24
    else:
        layout, size = image.endian + "IIIBBH", 16
    usable = len(raw) - len(raw) % size
    for index, fields in enumerate(struct.iter_unpack(layout, raw[:usable])):
        if image.is64:
            name, info, _, shndx, value, length = fields
        else:
            name, value, length, info, _, shndx = fields
        yield name, info, shndx, value, length, index


# -- the index ----------------------------------------------------------------------------


@dataclass
class _Index:
    """Sorted function symbols and unit address ranges: what the cache file holds."""

    names: list[str]
    addresses: array.array[int]
    sizes: array.array[int]  # st_size
    spans: array.array[int]  # distance to the next symbol: what kallsyms prints as /size
    ranges: AddressRanges
    has_dwarf: bool
    aranges_source: str  # ".debug_aranges", "units" or "none"


def _build_index(image: _ElfImage, module: str | None) -> _Index:
    """Read .symtab and the unit ranges of an ELF image."""
    symtab = next((s for s in image.sections if s.type == _SHT_SYMTAB), None)
    if symtab is None or symtab.size == 0:
        raise SymbolError(f"{image.path}: no symbol table (stripped ELF?); use the unstripped "
                          "vmlinux or the -dbg package's copy")  # fmt: skip
    if not 0 < symtab.link < len(image.sections):
        raise SymbolError(f"{image.path}: corrupt ELF: .symtab has no string table")
    strtab = image.section_bytes_raw(image.sections[symtab.link])
    bases = image.section_bases()
    code_sections = {s.index for s in image.sections if s.flags & _SHF_EXECINSTR}
    section_ends = {s.index: bases.get(s.index, s.addr) + s.size for s in image.sections}
    entries: list[tuple[int, int, int, str, int]] = []
    for name_offset, info, shndx, value, length, _ in _iter_raw_symbols(image, symtab):
        kind = info & 0xF
        if shndx not in code_sections or kind not in (_STT_FUNC, _STT_NOTYPE, _STT_GNU_IFUNC):
            continue
        end = strtab.find(b"\0", name_offset)
        if name_offset >= len(strtab) or end < 0:
            raise SymbolError(f"{image.path}: corrupt ELF: a symbol name is outside .strtab")
        name = strtab[name_offset:end].decode("utf-8", "replace")
        # Assembler-local labels and ARM/AArch64 mapping symbols are not functions.
        if not name or name.startswith((".L", "$")):
            continue
        address = bases.get(shndx, 0) + value if image.is_relocatable else value
        # Sort key: functions before labels at one address, global before local.
        rank = (0 if kind != _STT_NOTYPE else 2) + (1 if info >> 4 == _STB_LOCAL else 0)
        entries.append((address, rank, shndx, name, length))
    if not entries:
        raise SymbolError(f"{image.path}: no symbol table entries for code (stripped ELF?)")
    entries.sort()
    names = [entry[3] for entry in entries]
    addresses = array.array("Q", [entry[0] for entry in entries])
    sizes = array.array("Q", [entry[4] for entry in entries])
    spans = array.array("Q", _spans(entries, section_ends))
    ranges, source = _unit_ranges(image)
    return _Index(names, addresses, sizes, spans, ranges, _has_dwarf(image), source)


def _spans(entries: Sequence[tuple[int, int, int, str, int]],
           section_ends: dict[int, int]) -> list[int]:  # fmt: skip
    """Return, per symbol, the distance to the next higher symbol start in its section."""
    spans = []
    count = len(entries)
    following = 0
    for index, (address, _, shndx, _, length) in enumerate(entries):
        if following <= index:
            following = index + 1
            while following < count and entries[following][0] == address:
                following += 1
        if following < count and entries[following][2] == shndx:
            spans.append(entries[following][0] - address)
        else:
            spans.append(max(section_ends.get(shndx, address + length) - address, length))
    return spans


def _has_dwarf(image: _ElfImage) -> bool:
    """Tell whether the image has the DWARF sections symbolization needs."""
    info = image.by_name.get(".debug_info")
    line = image.by_name.get(".debug_line")
    return bool(info and info.size and line and line.size)


def _unit_ranges(image: _ElfImage) -> tuple[AddressRanges, str]:
    """Map addresses to units from .debug_aranges, or from unit top DIEs without it."""
    if not _has_dwarf(image):
        return AddressRanges.build([]), "none"
    aranges = image.section_bytes(".debug_aranges")
    entries = parse_aranges(aranges, image.endian) if aranges else []
    if entries:
        return AddressRanges.build(entries), ".debug_aranges"
    reader = _dwarf_reader(image)
    return AddressRanges.build(reader.iter_unit_ranges()), "units"


def _dwarf_reader(image: _ElfImage) -> DwarfReader:
    """Make a DwarfReader over an image's sections."""
    return DwarfReader(image.section_bytes, image.section_slice,
                       image.section_size(".debug_info"), image.endian)  # fmt: skip


# -- the cache file ------------------------------------------------------------------------


def _fingerprint(image: _ElfImage) -> dict[str, int]:
    """Sizes that tell apart files sharing a build-id (stripped, debug-only, full)."""
    fingerprint = {"file": image.file_size}
    for name in (".symtab", ".debug_info", ".debug_line", ".debug_aranges"):
        if name in image.by_name:
            fingerprint[name] = image.by_name[name].size
    return fingerprint


def _save_index(path: Path, build_id: str, fingerprint: dict[str, int], index: _Index) -> None:
    """Write the index atomically: a JSON header line, then arrays and names."""
    names = "\0".join(index.names).encode("utf-8", "surrogateescape")
    arrays = [index.addresses, index.sizes, index.spans,
              array.array("Q", index.ranges.starts), array.array("Q", index.ranges.ends),
              array.array("Q", index.ranges.values)]  # fmt: skip
    blobs = [names] + [_little(item).tobytes() for item in arrays]
    body = b"".join(blobs)
    header = {
        "version": CACHE_VERSION, "build_id": build_id, "fingerprint": fingerprint,
        "lengths": [len(blob) for blob in blobs], "crc32": zlib.crc32(body),
        "has_dwarf": index.has_dwarf, "aranges_source": index.aranges_source,
    }  # fmt: skip
    _write_atomic(path, _CACHE_MAGIC + b"\n" + json.dumps(header).encode() + b"\n" + body)


def _write_atomic(path: Path, blob: bytes) -> None:
    """Write a cache file through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(blob)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _load_lines(path: Path, build_id: str | None,
                fingerprint: dict[str, int]) -> dict[int, tuple[SourceLine, ...]]:  # fmt: skip
    """Read the resolved-lines cache; empty when absent, stale or damaged."""
    try:
        payload = json.loads(path.read_bytes())
        if (payload.get("version") != CACHE_VERSION or payload.get("build_id") != build_id
                or payload.get("fingerprint") != fingerprint):  # fmt: skip
            return {}
        return {
            int(address, 16): tuple(SourceLine(function, file, int(line), int(discriminator))
                                    for function, file, line, discriminator in chain)
            for address, chain in payload["lines"].items()
        }  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _load_index(path: Path, build_id: str, fingerprint: dict[str, int]) -> _Index | None:
    """Read a cached index; None when absent, stale or damaged (it is then rebuilt)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        magic, header_line, body = blob.split(b"\n", 2)
        header = json.loads(header_line)
        if (magic != _CACHE_MAGIC or header.get("version") != CACHE_VERSION
                or header.get("build_id") != build_id
                or header.get("fingerprint") != fingerprint
                or zlib.crc32(body) != header.get("crc32")
                or sum(header["lengths"]) != len(body)):  # fmt: skip
            return None
        parts = []
        pos = 0
        for length in header["lengths"]:
            parts.append(body[pos : pos + length])
            pos += length
        names = parts[0].decode("utf-8", "surrogateescape").split("\0")
        numbers = [_from_little(part) for part in parts[1:]]
        addresses, sizes, spans, starts, ends, values = numbers
        if not len(names) == len(addresses) == len(sizes) == len(spans):
            return None
        ranges = AddressRanges(tuple(starts), tuple(ends), tuple(values))
        return _Index(names, addresses, sizes, spans, ranges, bool(header["has_dwarf"]),
                      str(header["aranges_source"]))  # fmt: skip
    except (ValueError, KeyError, TypeError, UnicodeError):
        return None


def _little(numbers: array.array[int]) -> array.array[int]:
    """Return a little-endian copy of an array of 64-bit numbers."""
    if sys.byteorder == "little":
        return numbers
    swapped = array.array("Q", numbers)
    swapped.byteswap()
    return swapped


def _from_little(blob: bytes) -> array.array[int]:
    """Read an array of little-endian 64-bit numbers."""
    numbers = array.array("Q")
    numbers.frombytes(blob)
    if sys.byteorder != "little":
        numbers.byteswap()
    return numbers


# -- the table ----------------------------------------------------------------------------


class ElfSymbolTable:
    """A SymbolTable read from an ELF's .symtab, with DWARF file:line and inline chains.

    Symbol sizes are the distance to the next symbol: kallsyms keeps no sizes, so the
    `/size` that %pS prints is the gap to the next kallsyms entry (kernel/kallsyms.c,
    get_symbol_pos(), every version). `st_size` is kept too, so a frame's size can match
    either (padding after a function counts in the first only).
    """

    def __init__(self, image: _ElfImage, index: _Index, build_id: str | None,
                 module: str | None, from_cache: bool,
                 lines_file: Path | None = None) -> None:  # fmt: skip
        self._image = image
        self._index = index
        self.path = image.path
        self.build_id = build_id
        self.module = module
        self.from_cache = from_cache
        self.is_relocatable = image.is_relocatable
        self._by_name: dict[str, list[int]] | None = None
        self._raw_symbols: list[tuple[str, int]] | None = None
        self._dwarf: DwarfReader | None = None
        # Inline chains already resolved, kept on disk beside the index (None: no cache).
        self._lines_file = lines_file
        self._fingerprint = _fingerprint(image)
        self._known: dict[int, tuple[SourceLine, ...]] | None = None
        self._new_lines = 0
        # How many addresses the last `resolve` took from the cache and decoded.
        self.cached_hits = 0
        self.decoded = 0

    @classmethod
    def from_path(
        cls,
        path: str,
        *,
        module: str | None = None,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> ElfSymbolTable:
        """Open an ELF file and load or build its index (cached by build-id)."""
        image = _ElfImage.open(path)
        try:
            build_id = image.build_id()
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            cache_file = directory / f"{build_id}.symidx" if build_id and use_cache else None
            fingerprint = _fingerprint(image)
            index = None
            if cache_file is not None:
                index = _load_index(cache_file, build_id or "", fingerprint)
            from_cache = index is not None
            if index is None:
                index = _build_index(image, module)
                if cache_file is not None:
                    # A cache that cannot be written only costs time on the next run.
                    with contextlib.suppress(OSError):
                        _save_index(cache_file, build_id or "", fingerprint, index)
        except SymbolError:
            image.close()
            raise
        lines_file = cache_file.with_suffix(".lines") if cache_file is not None else None
        return cls(image, index, build_id, module, from_cache, lines_file)

    def close(self) -> None:
        """Save newly resolved lines to the cache and release the file mapping."""
        self.save_cache()
        self._dwarf = None
        self._image.close()

    def save_cache(self) -> None:
        """Write the resolved-lines cache if this table resolved new addresses."""
        if self._lines_file is None or not self._new_lines or self._known is None:
            return
        payload = {
            "version": CACHE_VERSION, "build_id": self.build_id,
            "fingerprint": self._fingerprint,
            "lines": {f"{address:x}": [[line.function, line.file, line.line, line.discriminator]
                                       for line in chain]
                      for address, chain in sorted(self._known.items())},
        }  # fmt: skip
        # A cache that cannot be written only costs time on the next run.
        with contextlib.suppress(OSError):
            _write_atomic(self._lines_file, json.dumps(payload).encode())
        self._new_lines = 0

    def _cached_lines(self) -> dict[int, tuple[SourceLine, ...]]:
        """Load the resolved-lines cache once; a stale or damaged one is ignored."""
        if self._known is None:
            self._known = {}
            if self._lines_file is not None:
                self._known = _load_lines(self._lines_file, self.build_id, self._fingerprint)
        return self._known

    def __enter__(self) -> ElfSymbolTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- symbols ---------------------------------------------------------------------------

    @property
    def has_dwarf(self) -> bool:
        """Tell whether file:line information is available."""
        return self._index.has_dwarf

    def __len__(self) -> int:
        return len(self._index.names)

    def _symbol(self, position: int) -> Symbol:
        """Build the Symbol of an index position."""
        index = self._index
        return Symbol(index.names[position], index.addresses[position], index.spans[position],
                      self.module)  # fmt: skip

    def _names(self) -> dict[str, list[int]]:
        """Map names to index positions (built on first use)."""
        if self._by_name is None:
            by_name: dict[str, list[int]] = {}
            for position, name in enumerate(self._index.names):
                by_name.setdefault(name, []).append(position)
            self._by_name = by_name
        return self._by_name

    def lookup(self, name: str) -> Symbol | None:
        """Return the first function called `name`, or None."""
        positions = self._names().get(name)
        return self._symbol(positions[0]) if positions else None

    def lookup_all(self, name: str) -> list[Symbol]:
        """Return every function called `name` (static functions can share one)."""
        return [self._symbol(position) for position in self._names().get(name, [])]

    def lookup_sized(self, name: str, size: int) -> tuple[Symbol | None, bool]:
        """Return the function `name` whose size is `size`, and whether the size matched.

        The size matches either the kallsyms span or st_size. Without a match the first
        function of that name is returned with False; without the name, (None, False).
        """
        positions = self._names().get(name)
        if not positions:
            return None, False
        index = self._index
        for position in positions:
            if size in (index.spans[position], index.sizes[position]):
                return self._symbol(position), True
        return self._symbol(positions[0]), False

    def symbol_at(self, address: int) -> Symbol | None:
        """Return the function holding `address`, or None."""
        index = self._index
        position = bisect.bisect_right(index.addresses, address) - 1
        if position < 0:
            return None
        start = index.addresses[position]
        # Several symbols at one address: the sort put the preferred one first.
        while position > 0 and index.addresses[position - 1] == start:
            position -= 1
        if address >= start + max(index.spans[position], 1):
            return None
        return self._symbol(position)

    def iter_symbols(self) -> Iterable[Symbol]:
        """Yield every function symbol in address order."""
        for position in range(len(self._index.names)):
            yield self._symbol(position)

    # -- source lines ----------------------------------------------------------------------

    def _reader(self) -> DwarfReader:
        """Return the DWARF reader, made on first use."""
        if self._dwarf is None:
            self._dwarf = _dwarf_reader(self._image)
        return self._dwarf

    def resolve(
        self, addresses: Iterable[int], on_progress: Callable[[int], None] | None = None
    ) -> dict[int, Resolution]:
        """Resolve addresses to symbols and inline chains, decoding each unit once.

        `on_progress(done)` is called after each unit with the number of addresses done.
        """
        wanted = sorted(set(addresses))
        by_unit: dict[int, list[int]] = {}
        results: dict[int, Resolution] = {}
        known = self._cached_lines()
        self.cached_hits = self.decoded = 0
        for address in wanted:
            symbol = self.symbol_at(address)
            offset = address - symbol.address if symbol is not None else 0
            chain = known.get(address)
            results[address] = Resolution(address, symbol, offset, chain or ())
            if chain is not None:
                self.cached_hits += 1
            elif self._index.has_dwarf:
                unit = self._index.ranges.find(address)
                if unit is not None:
                    by_unit.setdefault(unit, []).append(address)
        done = len(wanted) - sum(len(unit_addresses) for unit_addresses in by_unit.values())
        try:
            for unit_offset, unit_addresses in by_unit.items():
                self._resolve_unit(unit_offset, unit_addresses, results)
                done += len(unit_addresses)
                if on_progress is not None:
                    on_progress(done)
        except DwarfError as exc:
            raise SymbolError(f"{self.path}: corrupt DWARF: {exc}") from None
        for unit_addresses in by_unit.values():
            for address in unit_addresses:
                known[address] = results[address].lines
            self.decoded += len(unit_addresses)
            self._new_lines += len(unit_addresses)
        return results

    def _resolve_unit(self, unit_offset: int, addresses: list[int],
                      results: dict[int, Resolution]) -> None:  # fmt: skip
        """Fill in the inline chains of addresses that fall in one unit."""
        reader = self._reader()
        unit = reader.unit(unit_offset)
        program = reader.line_program(unit)
        rows: dict[int, LineRow] = reader.lookup_lines(program, addresses) if program else {}
        for address in addresses:
            scopes = reader.scopes_at(unit, address)
            row = rows.get(address)
            previous = results[address]
            fallback = previous.symbol.name if previous.symbol is not None else None
            results[address] = Resolution(
                address, previous.symbol, previous.offset,
                _chain(scopes, row, program, fallback),
            )  # fmt: skip

    def source_prefix(self) -> str | None:
        """Return the build directory to strip from paths, as decode_stacktrace.sh finds it.

        It is where `kernel_init` lives minus `/init/main.c`; None when that is unknown.
        """
        symbol = self.lookup("kernel_init")
        if symbol is None or not self.has_dwarf:
            return None
        lines = self.resolve([symbol.address])[symbol.address].lines
        if not lines or not lines[-1].file:
            return None
        path = lines[-1].file
        suffix = "/init/main.c"
        return path[: -len(suffix)] if path.endswith(suffix) else None

    def _code_location(self, symbol: Symbol) -> tuple[_Section, int] | None:
        """Return the code section holding a function and the function's offset in it."""
        image = self._image
        bases = image.section_bases()
        for section in image.sections:
            if not section.flags & _SHF_EXECINSTR or section.type == _SHT_NOBITS:
                continue
            base = bases.get(section.index, section.addr)
            if base <= symbol.address < base + section.size:
                return section, symbol.address - base
        return None

    def code_bytes(self, symbol: Symbol) -> bytes:
        """Return the bytes of a function as they are in the file (empty for NOBITS)."""
        location = self._code_location(symbol)
        if location is None:
            return b""
        section, start = location
        end = min(start + symbol.size, section.size)
        # Slice the mapping directly: a vmlinux .text is tens of MB, a function a few hundred.
        return bytes(self._image.data[section.offset + start : section.offset + end])

    def names_at(self, address: int) -> tuple[str, ...]:
        """Return the names of every function starting exactly at `address`."""
        index = self._index
        position = bisect.bisect_left(index.addresses, address)
        names = []
        while position < len(index.names) and index.addresses[position] == address:
            names.append(index.names[position])
            position += 1
        return tuple(names)

    def call_relocations(self, symbol: Symbol) -> dict[int, tuple[str, ...]]:
        """Map offsets in a relocatable function where a PC-relative call target goes to it.

        In a .ko, `call foo` is `e8 00 00 00 00` with an R_X86_64_PLT32 or PC32 relocation
        on the four zero bytes; the bytes alone do not say where it goes. The relocation's
        symbol does: an undefined one by its name (a vmlinux function), a defined one (or a
        section symbol plus addend) by the function at S + A + 4.
        """
        location = self._code_location(symbol)
        if location is None or not self.is_relocatable:
            return {}
        section, start = location
        image = self._image
        found: dict[int, tuple[str, ...]] = {}
        for relocation in image.sections:
            if relocation.type != _SHT_RELA or relocation.info != section.index:
                continue
            raw = image.section_bytes_raw(relocation)
            usable = len(raw) - len(raw) % 24
            for offset, info, addend in struct.iter_unpack(image.endian + "QQq", raw[:usable]):
                if info & 0xFFFFFFFF in (2, 4) and start <= offset - 1 < start + symbol.size:
                    found[offset - start] = self._relocation_target(info >> 32, addend)
        return found

    def _relocation_target(self, number: int, addend: int) -> tuple[str, ...]:
        """Name the function a call relocation against symbol `number` reaches."""
        if self._raw_symbols is None:
            image = self._image
            symtab = next((s for s in image.sections if s.type == _SHT_SYMTAB), None)
            strtab = b"" if symtab is None else image.section_bytes_raw(
                image.sections[symtab.link])
            rows = [] if symtab is None else _iter_raw_symbols(image, symtab)
            self._raw_symbols = [
                (strtab[name:strtab.find(b"\0", name)].decode("utf-8", "replace"), shndx)
                for name, _, shndx, _, _, _ in rows
            ]  # fmt: skip
        if number >= len(self._raw_symbols):
            return ()
        name, shndx = self._raw_symbols[number]
        if shndx == _SHN_UNDEF:
            return (name,) if name else ()
        values = self._image._symbol_values()
        return self.names_at(values[number] + addend + 4)

    def call_sites(self, symbol: Symbol) -> tuple[CallSite, ...]:
        """Return the calls a function makes (see `call_sites`)."""
        return call_sites(self, symbol)

    def tail_calls(self, symbol: Symbol) -> tuple[str, ...]:
        """Return the functions a function jumps to at its end (see `tail_calls`)."""
        return tail_calls(self, symbol)


def _chain(scopes: Sequence[Any], row: LineRow | None, program: LineProgram | None,
           fallback: str | None) -> tuple[SourceLine, ...]:  # fmt: skip
    """Build the addr2line -i chain: the address's row, then each inlined call site."""
    if not scopes and row is None:
        return ()

    def file_of(index: int | None) -> str | None:
        return program.file_name(index) if program is not None and index is not None else None

    names = [scope.name for scope in scopes] or [fallback]
    lines = []
    file = file_of(row.file) if row is not None else None
    line = row.line if row is not None else 0
    discriminator = row.discriminator if row is not None else 0
    for depth in range(len(names) - 1, -1, -1):
        lines.append(SourceLine(names[depth] or fallback, file, line, discriminator))
        if depth == 0:
            break
        scope = scopes[depth]
        file = file_of(scope.call_file)
        line = scope.call_line or 0
        discriminator = 0
    return tuple(lines)


# -- call instructions ----------------------------------------------------------------------

# Indirect call encodings recognised besides E8 rel32: FF /2 with a register operand
# (ff d0..d7, with a REX.B prefix for r8-r15) and RIP-relative memory (ff 15 disp32).
_X86_MACHINES = {62, 3}


def call_return_offsets(table: ElfSymbolTable, symbol: Symbol) -> tuple[int, ...]:
    """Return offsets inside `symbol` that follow an x86 call: where a return address points.

    The offsets of `call_sites`, without their targets.
    """
    return tuple(site.offset for site in call_sites(table, symbol))


def call_sites(table: ElfSymbolTable, symbol: Symbol) -> tuple[CallSite, ...]:
    """Return the x86 calls inside `symbol`: return offsets, with the function each calls.

    Direct calls (E8 rel32) count only when their target is the start of a known function
    (or, in a .ko, when a call relocation covers the rel32), which keeps bytes that merely
    look like E8 inside other instructions out; the target names come with them. Indirect
    calls through a register (FF D0-D7, REX 41 for r8-r15) or RIP-relative memory (FF 15)
    are recognised by their encoding and have no target. Other machines give no calls.
    An offset can equal the size (a call to a noreturn function ends it).

    >>> call_sites.__name__
    'call_sites'
    """
    if table._image.machine not in _X86_MACHINES:
        return ()
    code = table.code_bytes(symbol)
    found = dict(_direct_branches(table, symbol, code, 0xE8))
    size = len(code)
    position = code.find(b"\xff")
    while 0 <= position < size - 1:
        modrm = code[position + 1]
        if 0xD0 <= modrm <= 0xD7:
            found.setdefault(position + 2, ())
        elif modrm == 0x15 and position + 6 <= size:
            found.setdefault(position + 6, ())
        position = code.find(b"\xff", position + 1)
    return tuple(CallSite(offset, targets) for offset, targets in sorted(found.items())
                 if offset <= size)  # fmt: skip


def tail_calls(table: ElfSymbolTable, symbol: Symbol) -> tuple[str, ...]:
    """Return the functions `symbol` jumps to the start of (E9 rel32, EB rel8): tail calls.

    A tail call leaves no frame of its own: `f` ending in `jmp g` puts `g` (and what `g`
    calls) right under `f`'s caller on a stack.

    >>> tail_calls.__name__
    'tail_calls'
    """
    if table._image.machine not in _X86_MACHINES:
        return ()
    code = table.code_bytes(symbol)
    names: dict[str, None] = {}
    for _, targets in _direct_branches(table, symbol, code, 0xE9):
        names.update(dict.fromkeys(targets))
    # A short jump reaches only a neighbour; its target must start a function too.
    position = code.find(b"\xeb")
    while 0 <= position <= len(code) - 2:
        target = symbol.address + position + 2 + int.from_bytes(code[position + 1 : position + 2],
                                                                "little", signed=True)
        if not symbol.address <= target < symbol.address + len(code):
            names.update(dict.fromkeys(table.names_at(target)))
        position = code.find(b"\xeb", position + 1)
    names.pop(symbol.name, None)
    return tuple(names)


def _direct_branches(table: ElfSymbolTable, symbol: Symbol, code: bytes,
                     opcode: int) -> Iterable[tuple[int, tuple[str, ...]]]:  # fmt: skip
    """Yield (offset after, targets) of each E8 call or E9 jump to a function's start.

    Only targets that start a known function count (or, in a .ko, a rel32 a call
    relocation covers), which keeps bytes that merely look like the opcode out.
    """
    starts = table._index.addresses
    relocated = table.call_relocations(symbol) if table.is_relocatable else {}
    size = len(code)
    marker = bytes((opcode,))
    position = code.find(marker)
    while 0 <= position <= size - 5:
        relative = int.from_bytes(code[position + 1 : position + 5], "little", signed=True)
        target = symbol.address + position + 5 + relative
        slot = bisect.bisect_left(starts, target)
        if position + 1 in relocated:
            yield position + 5, relocated[position + 1]
        elif slot < len(starts) and starts[slot] == target:
            yield position + 5, table.names_at(target)
        position = code.find(marker, position + 1)
