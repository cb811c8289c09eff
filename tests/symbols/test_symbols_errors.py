"""Bad ELF files: stripped, without DWARF, corrupt, truncated. Clear errors, never a hang."""

from __future__ import annotations

import contextlib
import signal
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Program
from elfwriter import (
    Section,
    aranges_set,
    build_id_note,
    debug_sections,
    encode_uleb,
    symbol_sections,
    text_section,
    write_elf,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageowner.errors import PageOwnerError, SymbolError
from pageowner.symbols.dwarf_format import DwarfError
from pageowner.symbols.elf import ElfSymbolTable

FUNCTIONS = [("alloc_pages", 0x401000, 0x40), ("kmalloc", 0x401040, 0x30)]


@contextlib.contextmanager
def hang_guard(seconds: int = 60) -> Iterator[None]:
    """Turn a hang into a test failure (a guard, not a speed measurement)."""

    def expired(signum: int, frame: object) -> None:
        raise AssertionError(f"no answer within {seconds} s: a loop is not bounded")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def write(tmp_path: Path, name: str, blob: bytes) -> str:
    """Write a file and return its path."""
    path = tmp_path / name
    path.write_bytes(blob)
    return str(path)


def plain_elf(extra: list[Section] | None = None, build_id: bytes | None = None) -> bytes:
    """An executable with .text and two functions, no DWARF unless `extra` adds it."""
    sections = [text_section()] + symbol_sections(FUNCTIONS) + (extra or [])
    if build_id is not None:
        sections.append(build_id_note(build_id))
    return write_elf(sections)


def test_stripped_elf_is_a_clear_error(tmp_path: Path) -> None:
    # GIVEN an ELF with code but no .symtab
    path = write(tmp_path, "stripped", write_elf([text_section()]))
    # WHEN it is opened THEN the error says there is no symbol table
    with pytest.raises(SymbolError, match=r"stripped: no symbol table \(stripped ELF\?\)"):
        ElfSymbolTable.from_path(path, use_cache=False)


def test_elf_without_dwarf_gives_symbols(tmp_path: Path) -> None:
    # GIVEN an ELF with a symbol table and no debug sections
    path = write(tmp_path, "nodwarf", plain_elf())
    with ElfSymbolTable.from_path(path, use_cache=False) as table:
        # THEN symbols resolve, with sizes, and no line information
        assert not table.has_dwarf
        assert table.lookup("kmalloc") is not None
        resolution = table.resolve([0x401045])[0x401045]
        assert resolution.symbol is not None and resolution.symbol.name == "kmalloc"
        assert resolution.offset == 5 and resolution.lines == ()


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        (b"", "empty file"),
        (b"MZ\x90\x00" + b"\0" * 100, "not an ELF file"),
        (b"\x7fELF\x02\x01\x01" + b"\0" * 9, "not a valid ELF file"),
    ],
    ids=["empty", "not-elf", "header-cut"],
)
def test_not_an_elf(tmp_path: Path, blob: bytes, message: str) -> None:
    # GIVEN a file that is not an ELF (or only the start of one)
    path = write(tmp_path, "bad", blob)
    # THEN opening it is a one-line SymbolError naming the file
    with pytest.raises(SymbolError, match=message) as caught:
        ElfSymbolTable.from_path(path, use_cache=False)
    assert str(caught.value).startswith(path) and "\n" not in str(caught.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SymbolError, match="No such file"):
        ElfSymbolTable.from_path(str(tmp_path / "absent"), use_cache=False)


def test_truncated_elf_is_reported(tmp_path: Path) -> None:
    # GIVEN an ELF cut before its section table's end
    blob = plain_elf()
    path = write(tmp_path, "cut", blob[: len(blob) - 10])
    # THEN the error says it is truncated
    with pytest.raises(SymbolError, match="truncated ELF"):
        ElfSymbolTable.from_path(path, use_cache=False)


def test_section_past_end_of_file_is_reported(tmp_path: Path) -> None:
    # GIVEN an ELF whose .symtab header points past the end of the file
    blob = bytearray(plain_elf())
    (shoff,) = struct.unpack_from("<Q", blob, 0x28)
    symtab_header = shoff + 2 * 64  # null, .text, .symtab
    struct.pack_into("<Q", blob, symtab_header + 24, len(blob) + 4096)  # sh_offset
    path = write(tmp_path, "past", bytes(blob))
    # THEN the error names the section and says the file is truncated
    with pytest.raises(SymbolError, match=r"truncated ELF: section \.symtab ends at"):
        ElfSymbolTable.from_path(path, use_cache=False)


def test_huge_section_count_does_not_hang(tmp_path: Path) -> None:
    # GIVEN an ELF claiming 2^32-1 sections through section 0's sh_size (e_shnum = 0)
    blob = bytearray(plain_elf())
    (shoff,) = struct.unpack_from("<Q", blob, 0x28)
    struct.pack_into("<H", blob, 0x3C, 0)  # e_shnum
    struct.pack_into("<Q", blob, shoff + 32, 0xFFFFFFFF)  # sh_size of section 0
    path = write(tmp_path, "many", bytes(blob))
    # THEN it is reported at once
    with hang_guard(), pytest.raises(SymbolError, match="truncated ELF"):
        ElfSymbolTable.from_path(path, use_cache=False)


def _unit(abbrev_offset: int, dies: bytes, version: int = 4) -> bytes:
    """A DWARF 4 compile unit header (64-bit addresses) followed by `dies`."""
    body = struct.pack("<HIB", version, abbrev_offset, 8) + dies
    return struct.pack("<I", len(body)) + body


# A compile unit with DW_AT_stmt_list (sec_offset) and one child subprogram with
# low_pc/high_pc (addr, data4) and DW_AT_sibling (ref4).
_ABBREV = (
    encode_uleb(1) + encode_uleb(0x11) + b"\x01" + bytes([0x10, 0x17, 0, 0])
    + encode_uleb(2) + encode_uleb(0x2E) + b"\x00"
    + bytes([0x03, 0x08, 0x11, 0x01, 0x12, 0x06, 0, 0])
    + b"\x00"
)  # fmt: skip


def _good_dies() -> bytes:
    """The CU DIE and a subprogram covering alloc_pages."""
    return (
        encode_uleb(1) + struct.pack("<I", 0)
        + encode_uleb(2) + b"alloc_pages\0" + struct.pack("<QI", 0x401000, 0x40)
        + b"\x00"
    )  # fmt: skip


def _line_program() -> bytes:
    """A DWARF 4 line program: one file, rows at 0x401000 (line 10) and 0x401010 (12)."""
    standard = bytes([0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 1])
    header = (bytes([1, 1, 1, 0xFB, 14, 13]) + standard + b"\0" + b"mm.c\0"
              + encode_uleb(0) * 3 + b"\0")  # fmt: skip
    program = (
        b"\x00\x09\x02" + struct.pack("<Q", 0x401000)  # set_address
        + bytes([0x03]) + b"\x09"  # advance_line +9 -> 10
        + b"\x01"  # copy
        + bytes([0x02, 0x10]) + bytes([0x03, 0x02]) + b"\x01"  # +0x10, line 12, copy
        + bytes([0x02, 0x30]) + b"\x00\x01\x01"  # +0x30, end_sequence
    )  # fmt: skip
    body = struct.pack("<H", 4) + struct.pack("<I", len(header)) + header + program
    return struct.pack("<I", len(body)) + body


def dwarf_elf(info: bytes, abbrev: bytes = _ABBREV, line: bytes | None = None,
              aranges: bytes | None = None) -> bytes:  # fmt: skip
    """An ELF with handmade DWARF around the two functions."""
    line = _line_program() if line is None else line
    aranges = aranges_set(0, [(0x401000, 0x70)]) if aranges is None else aranges
    return plain_elf(debug_sections(info, abbrev, line, aranges))


def test_handmade_dwarf_resolves(tmp_path: Path) -> None:
    # GIVEN a well-formed handmade unit (so the corrupt variants below differ by one thing)
    path = write(tmp_path, "good", dwarf_elf(_unit(0, _good_dies())))
    with ElfSymbolTable.from_path(path, use_cache=False) as table:
        lines = table.resolve([0x401004, 0x401012])
    # THEN both rows and the subprogram's name come out
    assert [(line.function, line.file, line.line) for line in lines[0x401004].lines] == [
        ("alloc_pages", "mm.c", 10)]
    assert lines[0x401012].lines[0].line == 12


CORRUPT_UNITS = {
    "unit-length-past-section": struct.pack("<I", 0x7FFFFFF0) + b"\x04\x00",
    "unknown-abbrev-code": _unit(0, encode_uleb(1) + struct.pack("<I", 0) + encode_uleb(9)),
    "die-cut-short": _unit(0, encode_uleb(1) + struct.pack("<I", 0) + encode_uleb(2) + b"al"),
    "bad-version": _unit(0, _good_dies(), version=9),
    "abbrev-offset-outside": _unit(0x10000, _good_dies()),
    "uleb-runs-off-the-end": _unit(0, b"\xff\xff\xff"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT_UNITS))
def test_corrupt_dwarf_is_a_clear_error(tmp_path: Path, name: str) -> None:
    # GIVEN an ELF whose .debug_info unit is damaged in one way
    path = write(tmp_path, name, dwarf_elf(CORRUPT_UNITS[name]))
    # WHEN an address in that unit is resolved
    with hang_guard(), ElfSymbolTable.from_path(path, use_cache=False) as table:
        try:
            table.resolve([0x401004])
        except SymbolError as exc:
            # THEN the error is one line naming the file
            assert str(exc).startswith(path) and "\n" not in str(exc)
        else:
            # Some damage only loses lines (e.g. an abbrev table that reads as empty).
            assert name == "abbrev-offset-outside"


def test_corrupt_line_program_is_a_clear_error(tmp_path: Path) -> None:
    # GIVEN a line program whose length runs past .debug_line
    line = bytearray(_line_program())
    struct.pack_into("<I", line, 0, 0x7FFFFFFF)
    path = write(tmp_path, "badline", dwarf_elf(_unit(0, _good_dies()), line=bytes(line)))
    with (hang_guard(), ElfSymbolTable.from_path(path, use_cache=False) as table,
          pytest.raises(SymbolError, match="corrupt DWARF: .debug_line")):
        table.resolve([0x401004])


def test_corrupt_aranges_is_a_clear_error(tmp_path: Path) -> None:
    # GIVEN a .debug_aranges set whose length runs past the section
    aranges = bytearray(aranges_set(0, [(0x401000, 0x70)]))
    struct.pack_into("<I", aranges, 0, 0x1000)
    path = write(tmp_path, "badaranges", dwarf_elf(_unit(0, _good_dies()),
                                                   aranges=bytes(aranges)))  # fmt: skip
    # THEN opening reports it (the index is built from it)
    with pytest.raises(DwarfError, match=".debug_aranges"):
        ElfSymbolTable.from_path(path, use_cache=False)


def test_backward_sibling_does_not_loop(tmp_path: Path) -> None:
    # GIVEN a type DIE with children whose DW_AT_sibling points back at itself
    abbrev = (
        encode_uleb(1) + encode_uleb(0x11) + b"\x01" + bytes([0x10, 0x17, 0, 0])
        + encode_uleb(3) + encode_uleb(0x13) + b"\x01" + bytes([0x01, 0x13, 0, 0])
        + b"\x00"
    )  # fmt: skip
    dies = encode_uleb(1) + struct.pack("<I", 0) + encode_uleb(3) + struct.pack("<I", 11)
    path = write(tmp_path, "loop", dwarf_elf(_unit(0, dies), abbrev=abbrev))
    # THEN resolving ends (with an error: the children run past the unit)
    with (hang_guard(), ElfSymbolTable.from_path(path, use_cache=False) as table,
          pytest.raises(SymbolError, match="corrupt DWARF")):
        table.resolve([0x401004])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damaged_compiled_elf_never_crashes_or_hangs(program: Program, tmp_path: Path,
                                                     data: st.DataObject) -> None:  # fmt: skip
    # GIVEN the compiled test program with some bytes overwritten or the file cut short
    blob = bytearray(program.path.read_bytes())
    if data.draw(st.booleans(), label="truncate"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="length")]
    else:
        for _ in range(data.draw(st.integers(1, 16), label="flips")):
            position = data.draw(st.integers(0, len(blob) - 1), label="position")
            blob[position] = data.draw(st.integers(0, 255), label="value")
    path = tmp_path / "damaged"
    path.write_bytes(bytes(blob))
    # WHEN it is opened and addresses of every function are resolved
    with hang_guard():
        try:
            with ElfSymbolTable.from_path(str(path), use_cache=False) as table:
                addresses = [symbol.address + offset for symbol in table.iter_symbols()
                             for offset in range(0, symbol.size, 3)]  # fmt: skip
                table.resolve(addresses)
        except PageOwnerError as exc:
            # THEN the only failure is a one-line library error
            assert isinstance(exc, SymbolError) and "\n" not in str(exc)
