"""An ELF file opened for symbolization: header, sections, relocations, raw symbols.

pyelftools reads the container (header, section table, notes, compressed sections); the
section bytes come from an mmap of the file, relocated for a relocatable `.ko` as the
kernel's module loader would place its sections. The only module that imports elftools
(lazily, inside the functions that need it).
"""

from __future__ import annotations

import array
import bisect
import contextlib
import gzip
import io
import lzma
import mmap
import os
import struct
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any, Literal, cast

from pageowner.errors import SymbolError

__all__ = ["ElfImage", "Section", "describe", "iter_raw_symbols"]

# ELF constants (System V gABI).
ET_REL = 1
SHT_SYMTAB = 2
SHT_NOBITS = 8
SHT_RELA = 4
SHT_REL = 9
SHF_ALLOC = 0x2
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_ABS = 0xFFF1
STT_NOTYPE = 0
STT_FUNC = 2
STT_GNU_IFUNC = 10
STB_LOCAL = 0

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


@dataclass(frozen=True, slots=True)
class Section:
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


class ElfImage:
    """An opened ELF file: header facts, sections, and their bytes on demand."""

    def __init__(self, path: str, data: bytes | mmap.mmap, closer: Callable[[], None]) -> None:
        self.path = path
        self.data = data
        self._close = closer
        self._cache: dict[str, bytes] = {}
        self._relocations: dict[str, list[Relocations]] = {}
        self._values: list[int] | None = None
        self._elf: Any = None
        try:
            self._parse_header()
        except SymbolError:
            self.close()
            raise
        except Exception as exc:  # noqa: BLE001  pyelftools raises many kinds on bad input
            self.close()
            raise SymbolError(f"{path}: not a valid ELF file: {describe(exc)}") from None

    @classmethod
    def open(cls, path: str) -> ElfImage:
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
        stream = io.BytesIO(self.data) if isinstance(self.data, bytes) else MmapStream(self.data)
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
            sections.append(Section(index, name, _sh_type(header["sh_type"]),
                                     header["sh_flags"], header["sh_addr"], header["sh_offset"],
                                     header["sh_size"], header["sh_link"], header["sh_info"],
                                     header["sh_addralign"]))  # fmt: skip
        for section in sections:
            if section.type != SHT_NOBITS and section.offset + section.size > size:
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
        if section is None or section.type == SHT_NOBITS:
            data = b""
        elif section.flags & SHF_COMPRESSED:
            try:
                data = bytes(self._elf.get_section(section.index).data())
            except Exception as exc:  # noqa: BLE001
                raise SymbolError(f"{self.path}: corrupt compressed section {name}: "
                                  f"{describe(exc)}") from None  # fmt: skip
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
        if section.flags & SHF_COMPRESSED:
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
        if self._needs_relocation(name) or section.flags & SHF_COMPRESSED:
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
            if not section.flags & SHF_ALLOC or section.size == 0:
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
        values = self.symbol_values()
        order: Literal["little", "big"] = "little" if self.endian == "<" else "big"
        for table in tables:
            table.apply(buffer, start, limit, values, order)
        return bytes(buffer)

    def _relocation_tables(self, name: str) -> list[Relocations]:
        """Return the decoded REL/RELA sections that apply to a section (cached)."""
        cached = self._relocations.get(name)
        if cached is None:
            target = self.by_name[name]
            cached = [
                Relocations.read(self, section) for section in self.sections
                if section.type in (SHT_RELA, SHT_REL) and section.info == target.index
            ]  # fmt: skip
            self._relocations[name] = cached
        return cached

    def symbol_values(self) -> list[int]:
        """Return each .symtab entry's address under `section_bases` (cached)."""
        if self._values is None:
            symtab = next((s for s in self.sections if s.type == SHT_SYMTAB), None)
            bases = self.section_bases()
            self._values = [] if symtab is None else [
                value if shndx == SHN_ABS else bases.get(shndx, 0) + value
                for _, _, shndx, value, _, _ in iter_raw_symbols(self, symtab)
            ]  # fmt: skip
        return self._values

    def section_bytes_raw(self, section: Section) -> bytes:
        """Return a section's bytes exactly as stored."""
        return bytes(self.data[section.offset : section.offset + section.size])


class Relocations:
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
    def read(cls, image: ElfImage, section: Section) -> Relocations:
        """Decode a REL/RELA section."""
        raw = image.section_bytes_raw(section)
        rela = section.type == SHT_RELA
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


class MmapStream:
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


def describe(exc: BaseException) -> str:
    """Name an exception from a parser in a short phrase."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}"[:160] if text else type(exc).__name__


def _sh_type(value: object) -> int:
    """Turn pyelftools' section type (a name or a number) into its number."""
    names = {"SHT_SYMTAB": SHT_SYMTAB, "SHT_NOBITS": SHT_NOBITS, "SHT_RELA": SHT_RELA,
             "SHT_REL": SHT_REL, "SHT_NOTE": 7, "SHT_PROGBITS": 1, "SHT_STRTAB": 3}  # fmt: skip
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


def iter_raw_symbols(
    image: ElfImage, symtab: Section
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


