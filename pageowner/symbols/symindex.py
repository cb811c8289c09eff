"""The symbol index of an ELF: sorted code symbols and unit address ranges, cached on disk.

Built from `.symtab` and `.debug_aranges` (or the units' top DIEs without it), and kept
in a cache file keyed by the ELF's build-id and section sizes, so that the next run on the
same vmlinux starts at once.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import sys
import tempfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pageowner.errors import SymbolError
from pageowner.symbols.aranges import AddressRanges, parse_aranges
from pageowner.symbols.dwarf import DwarfReader
from pageowner.symbols.elfimage import (
    SHF_EXECINSTR,
    SHT_SYMTAB,
    STB_LOCAL,
    STT_FUNC,
    STT_GNU_IFUNC,
    STT_NOTYPE,
    ElfImage,
    iter_raw_symbols,
)

__all__ = [
    "CACHE_VERSION",
    "SymbolIndex",
    "build_index",
    "dwarf_reader",
    "fingerprint_of",
    "load_index",
    "save_index",
    "write_atomic",
]

# Bump when the cache file layout or what goes into it changes.
CACHE_VERSION = 1
CACHE_MAGIC = b"PAGEOWNER-SYMIDX"


@dataclass
class SymbolIndex:
    """Sorted function symbols and unit address ranges: what the cache file holds."""

    names: list[str]
    addresses: array.array[int]
    sizes: array.array[int]  # st_size
    spans: array.array[int]  # distance to the next symbol: what kallsyms prints as /size
    ranges: AddressRanges
    has_dwarf: bool
    aranges_source: str  # ".debug_aranges", "units" or "none"


def build_index(image: ElfImage, module: str | None) -> SymbolIndex:
    """Read .symtab and the unit ranges of an ELF image."""
    symtab = next((s for s in image.sections if s.type == SHT_SYMTAB), None)
    if symtab is None or symtab.size == 0:
        raise SymbolError(f"{image.path}: no symbol table (stripped ELF?); use the unstripped "
                          "vmlinux or the -dbg package's copy")  # fmt: skip
    if not 0 < symtab.link < len(image.sections):
        raise SymbolError(f"{image.path}: corrupt ELF: .symtab has no string table")
    strtab = image.section_bytes_raw(image.sections[symtab.link])
    bases = image.section_bases()
    code_sections = {s.index for s in image.sections if s.flags & SHF_EXECINSTR}
    section_ends = {s.index: bases.get(s.index, s.addr) + s.size for s in image.sections}
    entries: list[tuple[int, int, int, str, int]] = []
    for name_offset, info, shndx, value, length, _ in iter_raw_symbols(image, symtab):
        kind = info & 0xF
        if shndx not in code_sections or kind not in (STT_FUNC, STT_NOTYPE, STT_GNU_IFUNC):
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
        rank = (0 if kind != STT_NOTYPE else 2) + (1 if info >> 4 == STB_LOCAL else 0)
        entries.append((address, rank, shndx, name, length))
    if not entries:
        raise SymbolError(f"{image.path}: no symbol table entries for code (stripped ELF?)")
    entries.sort()
    names = [entry[3] for entry in entries]
    addresses = array.array("Q", [entry[0] for entry in entries])
    sizes = array.array("Q", [entry[4] for entry in entries])
    spans = array.array("Q", _spans(entries, section_ends))
    ranges, source = unit_ranges(image)
    return SymbolIndex(names, addresses, sizes, spans, ranges, has_dwarf_sections(image), source)


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


def has_dwarf_sections(image: ElfImage) -> bool:
    """Tell whether the image has the DWARF sections symbolization needs."""
    info = image.by_name.get(".debug_info")
    line = image.by_name.get(".debug_line")
    return bool(info and info.size and line and line.size)


def unit_ranges(image: ElfImage) -> tuple[AddressRanges, str]:
    """Map addresses to units from .debug_aranges, or from unit top DIEs without it."""
    if not has_dwarf_sections(image):
        return AddressRanges.build([]), "none"
    aranges = image.section_bytes(".debug_aranges")
    entries = parse_aranges(aranges, image.endian) if aranges else []
    if entries:
        return AddressRanges.build(entries), ".debug_aranges"
    reader = dwarf_reader(image)
    return AddressRanges.build(reader.iter_unit_ranges()), "units"


def dwarf_reader(image: ElfImage) -> DwarfReader:
    """Make a DwarfReader over an image's sections."""
    return DwarfReader(image.section_bytes, image.section_slice,
                       image.section_size(".debug_info"), image.endian)  # fmt: skip


# -- the cache file ------------------------------------------------------------------------


def fingerprint_of(image: ElfImage) -> dict[str, int]:
    """Sizes that tell apart files sharing a build-id (stripped, debug-only, full)."""
    fingerprint = {"file": image.file_size}
    for name in (".symtab", ".debug_info", ".debug_line", ".debug_aranges"):
        if name in image.by_name:
            fingerprint[name] = image.by_name[name].size
    return fingerprint


def save_index(path: Path, build_id: str, fingerprint: dict[str, int], index: SymbolIndex) -> None:
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
    write_atomic(path, CACHE_MAGIC + b"\n" + json.dumps(header).encode() + b"\n" + body)


def write_atomic(path: Path, blob: bytes) -> None:
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


def load_index(path: Path, build_id: str, fingerprint: dict[str, int]) -> SymbolIndex | None:
    """Read a cached index; None when absent, stale or damaged (it is then rebuilt)."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    try:
        magic, header_line, body = blob.split(b"\n", 2)
        header = json.loads(header_line)
        if (magic != CACHE_MAGIC or header.get("version") != CACHE_VERSION
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
        return SymbolIndex(names, addresses, sizes, spans, ranges, bool(header["has_dwarf"]),
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

