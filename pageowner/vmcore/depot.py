"""The stack depot of a dumped kernel: handles to return addresses, and page_owner's stack list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from pageowner.model import Frame
from pageowner.vmcore.dwarf import bit_field, has_global
from pageowner.vmcore.kallsyms import KallsymsTable, KernelSymbol

__all__ = ["DepotReader"]

# depot_stack_handle_t offsets count in units of 1 << DEPOT_STACK_ALIGN bytes (4 since the
# stack depot's pools; lib/stackdepot.c).
_DEPOT_STACK_ALIGN = 4


class DepotReader:
    """Decode stack depot handles and name their frames by kallsyms rules."""

    def __init__(self, prog: Any, offset: Callable[[str, str], int]) -> None:
        """Find the handle layout in the kernel's types."""
        self.prog = prog
        self._drgn = __import__("drgn")
        self._offset = offset
        self._symbols: KallsymsTable | None = None
        self._stacks: dict[int, tuple[int, ...]] = {}
        self._frames: dict[int, tuple[Frame, ...]] = {}
        self._stack_list: tuple[tuple[int, int], ...] | None = None
        self._depot_layout()

    def _depot_layout(self) -> None:
        """Find the stack depot's handle fields and pools, whichever era named them.

        6.8+: `pool_index_plus_1` (0 means no stack) into `stack_pools[]`; 6.3-6.7:
        `pool_index` into `stack_pools[]`; before: `slabindex` into `stack_slabs[]`. Where
        none is found, drgn's own stack_depot_fetch() decodes the handles.
        """
        prog = self.prog
        self.depot_direct = False
        try:
            parts = prog.type("union handle_parts")
            for field, bias in (("pool_index_plus_1", 1), ("pool_index", 0),
                                ("slabindex", 0)):
                try:
                    self.handle_pool = bit_field(parts, field)
                except LookupError:
                    continue
                self.pool_bias = bias
                break
            else:
                return
            self.handle_offset = bit_field(parts, "offset")
            record = "struct stack_record"
            self.stack_size_offset = self._offset(record, "size")
            self.stack_entries_offset = self._offset(record, "entries")
            self.stack_pools = next(prog[name] for name in ("stack_pools", "stack_slabs")
                                    if has_global(prog, name))
        except (LookupError, StopIteration):
            return
        self.depot_direct = True

    def stack_entries(self, handle: int) -> tuple[int, ...]:
        """Return the return addresses a stack depot handle stands for (() if unknown)."""
        cached = self._stacks.get(handle)
        if cached is not None:
            return cached
        if not self.depot_direct:
            fetched = self._fetch_with_drgn(handle)
            self._stacks[handle] = fetched
            return fetched
        pool_shift, pool_width = self.handle_pool
        off_shift, off_width = self.handle_offset
        pool = ((handle >> pool_shift) & ((1 << pool_width) - 1)) - self.pool_bias
        offset = ((handle >> off_shift) & ((1 << off_width) - 1)) << _DEPOT_STACK_ALIGN
        entries: tuple[int, ...] = ()
        if pool >= 0:
            try:
                base = int(self.stack_pools[pool].value_())
                if base:
                    record = base + offset
                    size = self.prog.read_u32(record + self.stack_size_offset)
                    if size <= 4096:
                        raw = self.prog.read(record + self.stack_entries_offset, 8 * size)
                        entries = tuple(memoryview(raw).cast("Q"))
            except self._drgn.FaultError:
                entries = ()
        self._stacks[handle] = entries
        return entries

    def _fetch_with_drgn(self, handle: int) -> tuple[int, ...]:
        """Decode a handle with drgn's helper (its own era rules), outer frames only."""
        from drgn.helpers.linux.stackdepot import stack_depot_fetch

        drgn = self._drgn
        try:
            trace = stack_depot_fetch(drgn.Object(self.prog, "depot_stack_handle_t", handle))
        except (drgn.FaultError, LookupError, ValueError):
            return ()
        if trace is None:
            return ()
        # drgn adds the inlined calls it finds in DWARF; %pS prints only real frames.
        return tuple(int(frame.pc) for frame in trace if not frame.is_inline)

    def symbols(self) -> KallsymsTable:
        """Return the kernel's symbols as kallsyms holds them (built once)."""
        if self._symbols is None:
            drgn = self._drgn
            skip = (drgn.SymbolKind.FILE, drgn.SymbolKind.SECTION)
            self._symbols = KallsymsTable(
                KernelSymbol(symbol.name, symbol.address,
                             symbol.binding == drgn.SymbolBinding.WEAK)
                for symbol in self.prog.symbols()
                if symbol.kind not in skip and symbol.name and not symbol.name.startswith(
                    ("$", ".L", "__crc_", "__kstrtab", "__ksymtab"))
            )
        return self._symbols

    def frames(self, handle: int) -> tuple[Frame, ...]:
        """Return the frames of a handle as `%pS` prints them (one lookup per handle)."""
        cached = self._frames.get(handle)
        if cached is None:
            table = self.symbols()
            cached = tuple(table.frame(address) for address in self.stack_entries(handle))
            self._frames[handle] = cached
        return cached

    def stack_list(self) -> tuple[tuple[int, int], ...]:
        """Return (handle, refcount) of page_owner's stack list, in the kernel's print order.

        The list exists from 6.9 (page_owner_stacks); older kernels have none. Read once.
        """
        if self._stack_list is None:
            self._stack_list = tuple(self._read_stack_list())
        return self._stack_list

    def _read_stack_list(self) -> Iterator[tuple[int, int]]:
        """Walk the list through the kernel's types."""
        try:
            node = self.prog["stack_list"]
        except LookupError:
            return
        seen = 0
        while int(node.value_()) and seen < 1 << 22:
            record = node.stack_record
            yield int(record.handle.handle), int(record.count.refs.counter)
            node = node.next
            seen += 1

    def pages_threshold(self) -> int:
        """Return page_owner_stacks/count_threshold as the dumped kernel had it."""
        try:
            return int(self.prog["pages_threshold"])
        except LookupError:
            return 0

