"""Name a kernel text address as `%pS` does: by kallsyms rules, not by ELF symbol sizes.

The kernel prints `sym+0xoff/0xsize` from kallsyms: the nearest symbol at or below the
address (asm labels of ELF size 0 included, e.g. `entry_SYSCALL_64_after_hwframe`), and a
size that runs to the next symbol's address (so it includes the padding up to the next
`__pfx_` symbol). Among symbols at one address, scripts/kallsyms sorts strong before weak,
compiler symbols before linker-script ones, and fewer leading underscores first; the lookup
takes the first of them. (Facts from shared/fixtures/vmcore73/README.md: with ELF sizes
every record of the 7.3 vmcore would differ; with these rules all match.)
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from pageowner.model import Frame

__all__ = ["KallsymsTable", "KernelSymbol"]


@dataclass(frozen=True, slots=True)
class KernelSymbol:
    """One symbol as kallsyms would hold it."""

    name: str
    address: int
    weak: bool = False


def _linker_provided(name: str) -> bool:
    """Tell whether a name looks like a linker-script symbol (scripts/kallsyms' rule).

    >>> _linker_provided("__start_alloc_tags"), _linker_provided("do_sys_open")
    (True, False)
    """
    if name.startswith(("__start_", "__stop_")):
        return True
    return name.endswith(("_start", "_end")) or name.startswith(("_s", "_e")) and (
        name in ("_stext", "_etext", "_sdata", "_edata", "_sinittext", "_einittext",
                 "_text", "_end")
    )


def _alias_rank(symbol: KernelSymbol) -> tuple[int, int, int]:
    """Order symbols at one address the way scripts/kallsyms does (first wins)."""
    underscores = len(symbol.name) - len(symbol.name.lstrip("_"))
    return (int(symbol.weak), int(_linker_provided(symbol.name)), underscores)


class KallsymsTable:
    """Sorted kernel symbols with the `%pS` lookup."""

    def __init__(self, symbols: Iterable[KernelSymbol]) -> None:
        """Sort the symbols by address, aliases in kallsyms order."""
        by_address: dict[int, list[KernelSymbol]] = {}
        for symbol in symbols:
            by_address.setdefault(symbol.address, []).append(symbol)
        self._addresses = sorted(by_address)
        # The first alias in kallsyms order is the one the lookup returns.
        self._names = [
            min(by_address[address], key=lambda s: (_alias_rank(s), s.name)).name
            if len(by_address[address]) > 1 else by_address[address][0].name
            for address in self._addresses
        ]
        self._cache: dict[int, Frame] = {}

    def __len__(self) -> int:
        """Return the number of distinct symbol addresses."""
        return len(self._addresses)

    def frame(self, address: int) -> Frame:
        """Return the frame `%pS` prints for a return address.

        >>> table = KallsymsTable([KernelSymbol("a", 0x1000), KernelSymbol("b", 0x1040)])
        >>> table.frame(0x1013).symbolic()
        'a+0x13/0x40'
        """
        cached = self._cache.get(address)
        if cached is not None:
            return cached
        index = bisect.bisect_right(self._addresses, address) - 1
        if index < 0 or index + 1 >= len(self._addresses):
            # Below the first or past the last symbol: %pS prints the bare address.
            frame = Frame(None, address=address, raw=f"{address:#x}")
        else:
            start = self._addresses[index]
            frame = Frame(self._names[index], address - start,
                          self._addresses[index + 1] - start)
        self._cache[address] = frame
        return frame
