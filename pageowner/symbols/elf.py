"""ELF symbol tables with DWARF source lines: vmlinux and module `.ko` files.

pyelftools reads the ELF container (`pageowner.symbols.elfimage`, the only module that
imports elftools): header, section table, notes, compressed sections. The hot paths are
ours: `.symtab` is unpacked with `struct`, and DWARF goes through `pageowner.symbols.dwarf`,
which decodes only the units and the part of their line programs that the asked addresses
need. The index (sorted symbols and address ranges to units, `symindex`) is cached on disk
keyed by the ELF's build-id.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pageowner.errors import SymbolError
from pageowner.symbols.dwarf import DwarfReader
from pageowner.symbols.dwarf_format import DwarfError, LineProgram, LineRow
from pageowner.symbols.elfimage import (
    SHF_EXECINSTR,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_RELA,
    SHT_SYMTAB,
    ElfImage,
    Section,
    iter_raw_symbols,
)
from pageowner.symbols.symindex import (
    CACHE_VERSION,
    SymbolIndex,
    build_index,
    dwarf_reader,
    fingerprint_of,
    load_index,
    save_index,
    write_atomic,
)
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


# -- the table ----------------------------------------------------------------------------


class ElfSymbolTable:
    """A SymbolTable read from an ELF's .symtab, with DWARF file:line and inline chains.

    Symbol sizes are the distance to the next symbol: kallsyms keeps no sizes, so the
    `/size` that %pS prints is the gap to the next kallsyms entry (kernel/kallsyms.c,
    get_symbol_pos(), every version). `st_size` is kept too, so a frame's size can match
    either (padding after a function counts in the first only).
    """

    def __init__(self, image: ElfImage, index: SymbolIndex, build_id: str | None,
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
        self.fingerprint_of = fingerprint_of(image)
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
        image = ElfImage.open(path)
        try:
            build_id = image.build_id()
            directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
            cache_file = directory / f"{build_id}.symidx" if build_id and use_cache else None
            fingerprint = fingerprint_of(image)
            index = None
            if cache_file is not None:
                index = load_index(cache_file, build_id or "", fingerprint)
            from_cache = index is not None
            if index is None:
                index = build_index(image, module)
                if cache_file is not None:
                    # A cache that cannot be written only costs time on the next run.
                    with contextlib.suppress(OSError):
                        save_index(cache_file, build_id or "", fingerprint, index)
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
            "fingerprint": self.fingerprint_of,
            "lines": {f"{address:x}": [[line.function, line.file, line.line, line.discriminator]
                                       for line in chain]
                      for address, chain in sorted(self._known.items())},
        }  # fmt: skip
        # A cache that cannot be written only costs time on the next run.
        with contextlib.suppress(OSError):
            write_atomic(self._lines_file, json.dumps(payload).encode())
        self._new_lines = 0

    def _cached_lines(self) -> dict[int, tuple[SourceLine, ...]]:
        """Load the resolved-lines cache once; a stale or damaged one is ignored."""
        if self._known is None:
            self._known = {}
            if self._lines_file is not None:
                self._known = _load_lines(self._lines_file, self.build_id, self.fingerprint_of)
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
            self._dwarf = dwarf_reader(self._image)
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

    def _code_location(self, symbol: Symbol) -> tuple[Section, int] | None:
        """Return the code section holding a function and the function's offset in it."""
        image = self._image
        bases = image.section_bases()
        for section in image.sections:
            if not section.flags & SHF_EXECINSTR or section.type == SHT_NOBITS:
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
            if relocation.type != SHT_RELA or relocation.info != section.index:
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
            symtab = next((s for s in image.sections if s.type == SHT_SYMTAB), None)
            strtab = b"" if symtab is None else image.section_bytes_raw(
                image.sections[symtab.link])
            rows = [] if symtab is None else iter_raw_symbols(image, symtab)
            self._raw_symbols = [
                (strtab[name:strtab.find(b"\0", name)].decode("utf-8", "replace"), shndx)
                for name, _, shndx, _, _, _ in rows
            ]  # fmt: skip
        if number >= len(self._raw_symbols):
            return ()
        name, shndx = self._raw_symbols[number]
        if shndx == SHN_UNDEF:
            return (name,) if name else ()
        values = self._image.symbol_values()
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

