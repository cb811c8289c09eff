"""ElfSymbolTable against binutils: symbols, file:line and inline chains of compiled programs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import Program

from pageowner.symbols.elf import ElfSymbolTable, Resolution, call_return_offsets
from pageowner.symbols.symtab import Symbol, SymbolTable

OUR_FUNCTIONS = ("outer", "via_pointer", "work", "b_entry", "main", "dup_static")


def addr2line_chains(tool: str, elf: Path, addresses: list[int],
                     section: str | None = None) -> dict[int, list[tuple[str, str]]]:  # fmt: skip
    """Run `addr2line -a -f -i` and return, per address, (function, file:line) innermost first.

    Discriminators are dropped: pageowner prints file:line only.
    """
    command = [tool, "-a", "-f", "-i", "-e", str(elf)]
    if section is not None:
        command += ["-j", section]
    lines = subprocess.run(command + [f"{address:#x}" for address in addresses],
                           check=True, capture_output=True, text=True).stdout.splitlines()
    chains: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    index = 0
    while index < len(lines):
        if re.fullmatch(r"0x[0-9a-f]+", lines[index]):
            current = chains.setdefault(int(lines[index], 16), [])
            index += 1
            continue
        location = re.sub(r" \(discriminator \d+\)$", "", lines[index + 1])
        current.append((lines[index], location))
        index += 2
    return chains


def our_chain(resolution: Resolution) -> list[tuple[str, str]]:
    """Render our chain the way addr2line -f -i prints it.

    Where DWARF has no line (alignment padding after a function), addr2line prints the
    symbol with `??:?`; pageowner gives an empty chain.
    """
    if not resolution.lines:
        name = resolution.symbol.name if resolution.symbol is not None else "??"
        return [(name, "??:?")]
    return [(line.function or "??", line.location()) for line in resolution.lines]


def every_address(table: ElfSymbolTable, names: tuple[str, ...]) -> list[int]:
    """Return every byte address inside the named functions (all same-name copies)."""
    addresses = []
    for name in names:
        for symbol in table.lookup_all(name):
            addresses.extend(range(symbol.address, symbol.address + symbol.size))
    return addresses


@pytest.mark.parametrize("fixture", ["program", "program_dwarf4"])
def test_every_address_matches_addr2line(fixture: str, request: pytest.FixtureRequest,
                                         addr2line: str, cache_dir: Path) -> None:  # fmt: skip
    # GIVEN a gcc -O2 program with nested always_inline functions, in DWARF 5 and DWARF 4
    program: Program = request.getfixturevalue(fixture)
    # WHEN every byte address of its functions is resolved
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        addresses = every_address(table, OUR_FUNCTIONS)
        resolved = table.resolve(addresses)
    # THEN each inline chain is exactly addr2line's (function names, files and lines)
    golden = addr2line_chains(addr2line, program.path, addresses)
    mismatched = [hex(address) for address in addresses
                  if our_chain(resolved[address]) != golden[address]]  # fmt: skip
    assert mismatched == []
    # AND inline chains of depth 3 exist (outer <- mid_inline <- leaf_inline)
    assert max(len(resolved[address].lines) for address in addresses) >= 3


def test_inline_chain_names_the_inlined_functions(program: Program, cache_dir: Path) -> None:
    # GIVEN the return address of the call to work() inlined into outer via two functions
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        outer = table.lookup("outer")
        assert outer is not None
        chains = [table.resolve([outer.address + offset])[outer.address + offset].lines
                  for offset in call_return_offsets(table, outer)]  # fmt: skip
    # WHEN the chains are read innermost first
    functions = {tuple(line.function for line in chain) for chain in chains}
    # THEN one goes leaf_inline -> mid_inline -> outer, at lines of a.c
    assert ("leaf_inline", "mid_inline", "outer") in functions
    deep = next(chain for chain in chains if len(chain) == 3)
    assert all(line.file is not None and line.file.endswith("/a.c") for line in deep)
    assert deep[0].line == 11  # return work(x) + 1;
    assert deep[1].line == 16  # int y = leaf_inline(x * 2);
    assert deep[2].line == 22  # return mid_inline(x) + dup_static(x);


def test_same_name_statics_are_told_apart_by_size(program: Program, cache_dir: Path) -> None:
    # GIVEN two static functions called dup_static, in a.c and b.c, of different sizes
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        copies = table.lookup_all("dup_static")
        assert len(copies) == 2 and copies[0].size != copies[1].size
        # WHEN each is looked up by its own size
        files = set()
        for copy in copies:
            symbol, matched = table.lookup_sized("dup_static", copy.size)
            assert matched and symbol == copy
            lines = table.resolve([symbol.address])[symbol.address].lines
            files.add(Path(lines[-1].file or "").name)
        # THEN they resolve to a.c and b.c
        assert files == {"a.c", "b.c"}
        # AND a size no copy has is reported as not matching
        assert table.lookup_sized("dup_static", 0x12345) == (copies[0], False)


def test_symbol_table_protocol(program: Program, cache_dir: Path) -> None:
    # GIVEN the table of a compiled program, used through the SymbolTable protocol
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        protocol: SymbolTable = table
        work = protocol.lookup("work")
        # THEN lookup and symbol_at agree, and sizes are kallsyms-style spans
        assert work is not None
        assert protocol.symbol_at(work.address + 1) == work
        assert protocol.symbol_at(work.address + work.size - 1) == work
        assert protocol.lookup("no_such_function") is None
        assert protocol.symbol_at(0) is None
        nm = subprocess.run(["nm", "-S", str(program.path)], capture_output=True, text=True)
        if nm.returncode == 0:
            sizes = {fields[3]: int(fields[1], 16) for fields in
                     (line.split() for line in nm.stdout.splitlines()) if len(fields) == 4}
            # st_size never exceeds the span to the next symbol
            assert sizes["work"] <= work.size


def test_index_is_cached_by_build_id(program: Program, cache_dir: Path) -> None:
    # GIVEN a first run that builds the index and resolves some addresses
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as first:
        assert not first.from_cache and first.build_id
        outer = first.lookup("outer")
        assert outer is not None
        addresses = list(range(outer.address, outer.address + 8))
        fresh = first.resolve(addresses)
    # WHEN the same ELF is opened again
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as second:
        cached = second.resolve(addresses)
        # THEN the index and the lines come from the cache and are the same
        assert second.from_cache
        assert second.cached_hits == len(addresses) and second.decoded == 0
        assert cached == fresh
        assert [symbol.name for symbol in second.iter_symbols()] == [
            symbol.name for symbol in first.iter_symbols()]
    assert sorted(path.suffix for path in cache_dir.iterdir()) == [".lines", ".symidx"]


def test_damaged_cache_is_rebuilt(program: Program, cache_dir: Path) -> None:
    # GIVEN a cache whose files were damaged
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        expected = list(table.iter_symbols())
        work = table.lookup("work")
        assert work is not None
        table.resolve([work.address])
    for path in cache_dir.iterdir():
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        path.write_bytes(bytes(blob))
    # WHEN the ELF is opened again
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as again:
        # THEN the damage is ignored: the index is rebuilt, the same as before
        assert not again.from_cache
        assert list(again.iter_symbols()) == expected
        assert again.resolve([work.address])[work.address].lines


def test_cache_directory_defaults_to_xdg(program: Program, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    # GIVEN XDG_CACHE_HOME pointing to a temporary directory
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    # WHEN a table is opened without --cache-dir
    with ElfSymbolTable.from_path(str(program.path)) as table:
        build_id = table.build_id
    # THEN its index is under $XDG_CACHE_HOME/pageowner, named by build-id
    assert (tmp_path / "xdg" / "pageowner" / f"{build_id}.symidx").is_file()


def test_module_sections_get_distinct_addresses(module_dir: Path, addr2line: str,
                                                cache_dir: Path) -> None:  # fmt: skip
    # GIVEN a relocatable object with functions at offset 0 of three different sections
    ko = module_dir / "kernel" / "drivers" / "testmod.ko"
    sections = {"mod_alloc": ".text", "mod_cold": ".text.unlikely", "mod_init": ".init.text"}
    with ElfSymbolTable.from_path(str(ko), module="testmod", cache_dir=cache_dir) as table:
        symbols = {name: table.lookup(name) for name in sections}
        # THEN each function has its own address range
        starts = {symbol.address for symbol in symbols.values() if symbol is not None}
        assert len(starts) == 3
        for name, section in sections.items():
            symbol = symbols[name]
            assert symbol is not None and symbol.module == "testmod"
            offsets = list(range(symbol.size))
            resolved = table.resolve(symbol.address + offset for offset in offsets)
            # AND every address resolves as addr2line does within that section
            golden = addr2line_chains(addr2line, ko, offsets, section=section)
            for offset in offsets:
                assert our_chain(resolved[symbol.address + offset]) == golden[offset], (
                    name, offset)


def test_call_return_offsets_are_real_calls(program: Program, objdump: str,
                                            cache_dir: Path) -> None:  # fmt: skip
    # GIVEN the disassembly of the program's functions (objdump)
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(program.path)],
                             check=True, capture_output=True, text=True).stdout  # fmt: skip
    instructions = re.findall(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$", listing, re.MULTILINE)
    addresses = [int(address, 16) for address, _, _ in instructions]
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as table:
        for name in ("outer", "via_pointer", "b_entry", "main"):
            for symbol in table.lookup_all(name):
                # WHEN candidate return offsets are decoded from the function's bytes
                found = set(call_return_offsets(table, symbol))
                # THEN they are exactly the ends of objdump's call instructions
                expected = set()
                for index, (_, mnemonic, _) in enumerate(instructions):
                    start = addresses[index]
                    if mnemonic.startswith("call") and symbol.address <= start < (
                            symbol.address + symbol.size):  # fmt: skip
                        expected.add(addresses[index + 1] - symbol.address)
                assert found == expected, name
                assert found, f"{name} makes calls"
    # AND indirect calls (via_pointer calls through a register) are among them
    pointer_calls = [operands for _, mnemonic, operands in instructions
                     if mnemonic.startswith("call") and "*" in operands]  # fmt: skip
    assert pointer_calls


def test_symbols_without_dwarf(tmp_path: Path, program: Program, cache_dir: Path) -> None:
    # GIVEN the program with its debug sections removed (objcopy --strip-debug)
    stripped = tmp_path / "nodebug"
    result = subprocess.run(["objcopy", "--strip-debug", str(program.path), str(stripped)],
                            capture_output=True)  # fmt: skip
    if result.returncode != 0:
        pytest.skip("binutils' objcopy is not available")
    with ElfSymbolTable.from_path(str(stripped), cache_dir=cache_dir) as table:
        # THEN symbols still resolve and there are no lines
        assert not table.has_dwarf
        work = table.lookup("work")
        assert work is not None
        resolution = table.resolve([work.address + 2])[work.address + 2]
        assert resolution.symbol == work and resolution.offset == 2 and resolution.lines == ()


def test_symbol_equality_is_by_value() -> None:
    # A Symbol from an ELF compares equal to one built by hand (the simulator relies on it).
    assert Symbol("f", 0x10, 0x20) == Symbol("f", 0x10, 0x20, None)


def test_units_are_found_without_debug_aranges(program: Program, tmp_path: Path,
                                               cache_dir: Path) -> None:
    # GIVEN the program without .debug_aranges (clang does not emit it by default)
    bare = tmp_path / "noaranges"
    result = subprocess.run(["objcopy", "--remove-section=.debug_aranges", str(program.path),
                             str(bare)], capture_output=True)
    if result.returncode != 0:
        pytest.skip("binutils' objcopy is not available")
    with ElfSymbolTable.from_path(str(program.path), cache_dir=cache_dir) as full, \
            ElfSymbolTable.from_path(str(bare), use_cache=False) as table:
        addresses = every_address(full, OUR_FUNCTIONS)
        expected = full.resolve(addresses)
        # WHEN every address is resolved from the units' own ranges
        got = table.resolve(addresses)
        # THEN the answers are the same
        assert table._index.aranges_source == "units"
        assert [got[a].lines for a in addresses] == [expected[a].lines for a in addresses]
