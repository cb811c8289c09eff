"""Symbol tables without ELF parsing: the protocol, System.map and /proc/kallsyms.

The simulator takes function addresses and sizes from a `SymbolTable`; the ELF-backed
table (pyelftools, with DWARF lines) lives in `pageowner.symbols.elf`; only
`pageowner.symbols.elfimage` imports elftools. Text tables have no sizes, so a symbol's
size runs to the next symbol, and no code, so they know no call sites.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from pageowner.errors import SymbolError

__all__ = ["CallSite", "Symbol", "SymbolTable", "TextSymbolTable", "parse_symbol_lines"]


@dataclass(frozen=True, slots=True)
class Symbol:
    """A function symbol: name, start address, size in bytes, and module if not vmlinux."""

    name: str
    address: int
    size: int
    module: str | None = None


@dataclass(frozen=True, slots=True)
class CallSite:
    """A call instruction in a function: the return address's offset, and where it goes.

    `targets` names the function called (every name at its address), or is empty for an
    indirect call or a target that is not the start of a known function.
    """

    offset: int
    targets: tuple[str, ...] = ()


class SymbolTable(Protocol):
    """What the simulator and the symbolizer need from a symbol table."""

    def lookup(self, name: str) -> Symbol | None:
        """Return the function called `name`, or None."""
        ...

    def symbol_at(self, address: int) -> Symbol | None:
        """Return the function containing `address`, or None."""
        ...

    def call_sites(self, symbol: Symbol) -> tuple[CallSite, ...]:
        """Return the calls a function makes, by return offset; () without code bytes."""
        ...

    def tail_calls(self, symbol: Symbol) -> tuple[str, ...]:
        """Return the functions a function jumps to instead of calling; () without code."""
        ...


_LINE_RE = re.compile(
    r"(?P<address>[0-9a-fA-F]+) (?P<type>[A-Za-z]) (?P<name>\S+)(?:\s+\[(?P<module>[^\]]+)\])?"
)


def parse_symbol_lines(lines: Iterable[str], path: str) -> list[Symbol]:
    """Parse System.map or /proc/kallsyms lines into text symbols sorted by address."""
    raw: list[tuple[int, str, str | None]] = []
    for lineno, line in enumerate(lines, start=1):
        line = line.rstrip("\n")
        if not line:
            continue
        match = _LINE_RE.fullmatch(line)
        if match is None:
            raise SymbolError(f"{path}:{lineno}: not a System.map/kallsyms line: {line[:60]!r}")
        if match["type"] in "tTwW":
            raw.append((int(match["address"], 16), match["name"], match["module"]))
    raw.sort()
    symbols = []
    for index, (address, name, module) in enumerate(raw):
        following = raw[index + 1][0] if index + 1 < len(raw) else address
        symbols.append(Symbol(name, address, max(following - address, 0), module))
    if not symbols:
        raise SymbolError(f"{path}: no function symbols (kallsyms read without root shows zeros)")
    if all(symbol.address == 0 for symbol in symbols):
        raise SymbolError(f"{path}: every address is 0; read /proc/kallsyms as root")
    return symbols


class TextSymbolTable:
    """A SymbolTable read from System.map or /proc/kallsyms text."""

    def __init__(self, symbols: list[Symbol]) -> None:
        self._symbols = symbols
        self._starts = [symbol.address for symbol in symbols]
        self._by_name: dict[str, Symbol] = {}
        for symbol in symbols:
            self._by_name.setdefault(symbol.name, symbol)

    @classmethod
    def from_file(cls, path: str) -> TextSymbolTable:
        """Read a System.map or kallsyms file."""
        try:
            with open(path, encoding="utf-8", errors="replace") as text:
                return cls(parse_symbol_lines(text, path))
        except OSError as exc:
            raise SymbolError(f"{path}: {exc.strerror or exc}") from None

    def lookup(self, name: str) -> Symbol | None:
        """Return the first symbol of that name."""
        return self._by_name.get(name)

    def symbol_at(self, address: int) -> Symbol | None:
        """Return the symbol whose range holds the address."""
        index = bisect.bisect_right(self._starts, address) - 1
        if index < 0:
            return None
        symbol = self._symbols[index]
        return symbol if address < symbol.address + max(symbol.size, 1) else None

    def call_sites(self, symbol: Symbol) -> tuple[CallSite, ...]:
        """Return no call sites: a System.map or kallsyms has no code to read them from."""
        return ()

    def tail_calls(self, symbol: Symbol) -> tuple[str, ...]:
        """Return no tail calls: there is no code to read them from."""
        return ()
