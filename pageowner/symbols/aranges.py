"""Address ranges to compilation units: `.debug_aranges`, and a sorted table to search.

`parse_aranges` reads the section as (start, end, unit offset) triples (DWARF 5 section
6.1.2); `AddressRanges` keeps such triples sorted for a bisecting lookup, for units as for
the functions of one unit.
"""

from __future__ import annotations

import bisect
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from pageowner.symbols.dwarf_format import DwarfError

__all__ = ["AddressRanges", "parse_aranges"]


@dataclass(frozen=True, slots=True)
class AddressRanges:
    """Sorted, non-empty address ranges, each tagged with a value (a CU offset)."""

    starts: tuple[int, ...]
    ends: tuple[int, ...]
    values: tuple[int, ...]

    @classmethod
    def build(cls, entries: Iterable[tuple[int, int, int]]) -> AddressRanges:
        """Sort (start, end, value) triples, dropping empty ranges."""
        ordered = sorted(entry for entry in entries if entry[1] > entry[0])
        return cls(
            tuple(entry[0] for entry in ordered),
            tuple(entry[1] for entry in ordered),
            tuple(entry[2] for entry in ordered),
        )

    def find(self, address: int) -> int | None:
        """Return the value of a range holding `address`, or None.

        >>> AddressRanges.build([(0x10, 0x20, 7), (0x30, 0x40, 9)]).find(0x35)
        9
        """
        index = bisect.bisect_right(self.starts, address) - 1
        # Ranges rarely overlap; look back a little in case a long one holds the address.
        for probe in range(index, max(index - 8, -1), -1):
            if self.starts[probe] <= address < self.ends[probe]:
                return self.values[probe]
        return None

    def __len__(self) -> int:
        return len(self.starts)


def parse_aranges(data: bytes, endian: str = "<") -> list[tuple[int, int, int]]:
    """Read every set of a .debug_aranges section as (start, end, cu_offset) triples."""
    entries: list[tuple[int, int, int]] = []
    pos = 0
    size = len(data)
    try:
        while pos + 4 <= size:
            (length,) = struct.unpack_from(endian + "I", data, pos)
            offset_size = 4
            header = pos + 4
            if length == 0xFFFFFFFF:
                (length,) = struct.unpack_from(endian + "Q", data, header)
                offset_size = 8
                header += 8
            end = header + length
            if length == 0 or end > size:
                raise DwarfError(f".debug_aranges: set at {pos:#x} runs past the section")
            offset_format = endian + ("I" if offset_size == 4 else "Q")
            (cu_offset,) = struct.unpack_from(offset_format, data, header + 2)
            address_size = data[header + 2 + offset_size]
            segment_size = data[header + 3 + offset_size]
            if address_size not in (4, 8) or segment_size not in (0, 4, 8):
                raise DwarfError(f".debug_aranges: set at {pos:#x} has address size "
                                 f"{address_size}")
            tuple_size = 2 * address_size + segment_size
            address_format = endian + ("I" if address_size == 4 else "Q")
            cursor = header + 4 + offset_size
            # Tuples start at a multiple of their size from the start of the set.
            cursor += -(cursor - pos) % tuple_size
            while cursor + tuple_size <= end:
                cursor += segment_size
                (start,) = struct.unpack_from(address_format, data, cursor)
                (length_,) = struct.unpack_from(address_format, data, cursor + address_size)
                cursor += 2 * address_size
                if start == 0 and length_ == 0:
                    break
                entries.append((start, start + length_, cu_offset))
            pos = end
    except (struct.error, IndexError):
        raise DwarfError(".debug_aranges is truncated") from None
    return entries

