"""LEB128, .debug_aranges and address ranges: the byte-level pieces of pageowner.symbols.dwarf."""

from __future__ import annotations

import doctest
import importlib

import pytest
from elfwriter import aranges_set, encode_sleb, encode_uleb
from hypothesis import given
from hypothesis import strategies as st

from pageowner.symbols.aranges import AddressRanges, parse_aranges
from pageowner.symbols.dwarf_format import DwarfError, read_sleb, read_uleb


@given(st.integers(0, 1 << 70), st.binary(max_size=4))
def test_uleb_round_trip(value: int, tail: bytes) -> None:
    encoded = encode_uleb(value)
    assert read_uleb(encoded + tail, 0) == (value, len(encoded))


@given(st.integers(-(1 << 70), 1 << 70), st.binary(max_size=4))
def test_sleb_round_trip(value: int, tail: bytes) -> None:
    encoded = encode_sleb(value)
    assert read_sleb(encoded + tail, 0) == (value, len(encoded))


def test_truncated_leb_raises_index_error() -> None:
    # The readers raise IndexError at the end of the data; callers turn it into DwarfError.
    with pytest.raises(IndexError):
        read_uleb(b"\x80\x80", 0)


@given(st.lists(st.tuples(st.integers(0, (1 << 32) - 1), st.lists(
    st.tuples(st.integers(1, 1 << 48), st.integers(1, 1 << 16)), max_size=5)), max_size=6))
def test_aranges_sets_are_read_back(sets: list[tuple[int, list[tuple[int, int]]]]) -> None:
    # GIVEN several .debug_aranges sets written as gcc lays them out
    data = b"".join(aranges_set(cu, ranges) for cu, ranges in sets)
    # THEN every (start, end, unit) comes back in order
    assert parse_aranges(data) == [(start, start + length, cu) for cu, ranges in sets
                                   for start, length in ranges]


def test_truncated_aranges_set_is_an_error() -> None:
    data = aranges_set(0, [(0x1000, 0x10)])
    with pytest.raises(DwarfError, match="runs past the section"):
        parse_aranges(data[:-4])


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(1, 50)), max_size=30,
                unique_by=lambda item: item[0]), st.integers(-10, 1100))
def test_address_ranges_find_a_holding_range(ranges: list[tuple[int, int]], address: int) -> None:
    # GIVEN non-overlapping ranges (each trimmed to end before the next starts)
    ordered = sorted(ranges)
    triples = []
    for index, (start, length) in enumerate(ordered):
        end = start + length
        if index + 1 < len(ordered):
            end = min(end, ordered[index + 1][0])
        triples.append((start, end, index))
    table = AddressRanges.build(triples)
    # THEN find agrees with a scan of every range
    expected = next((value for start, end, value in triples if start <= address < end), None)
    assert table.find(address) == expected


@pytest.mark.parametrize("module", ["pageowner.symbols.dwarf_format", "pageowner.symbols.aranges",
                                    "pageowner.symbols.dwarf_lines"])
def test_docstring_examples(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
