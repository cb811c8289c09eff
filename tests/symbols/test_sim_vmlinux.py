"""`pageowner boot --vmlinux`: simulated frames with a real ELF's addresses, sizes and calls.

The ELF is the miniature allocation path of conftest.ALLOC_C. Its functions print with
the ELF's span as /size and a return offset after a call (the call to the frame above
when the function makes one); every other function keeps the built-in values.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import ALLOC_C, Program

from pageowner.cli import cli
from pageowner.dump.dumpfile import parse_frame
from pageowner.kernel.kernels import get_kernel
from pageowner.model import Frame
from pageowner.sim.stacks import TOP_CALLEES, StackBuilder
from pageowner.symbols.elf import ElfSymbolTable, call_return_offsets, call_sites, tail_calls

FUNCTION_RE = re.compile(r"^NOIPA int (\w+)\(", re.MULTILINE)
CALL_RE = re.compile(r"sink = (\w+)\(")
SOURCE_LINES = ALLOC_C.splitlines()
# The functions alloc.c defines, and the ones each calls directly.
ELF_FUNCTIONS = frozenset(FUNCTION_RE.findall(ALLOC_C))
TAIL_RE = re.compile(r"return (\w+)\(")
CALLEES: dict[str, set[str]] = {}
TAILS: dict[str, set[str]] = {}
for _body in ALLOC_C.split("NOIPA int ")[1:]:
    _name, _code = _body.split("(")[0], _body.split("\n}")[0]
    CALLEES[_name] = set(CALL_RE.findall(_code)) - {"fault"}
    TAILS[_name] = set(TAIL_RE.findall(_code))


def invoke(*args: str) -> Result:
    """Run the CLI in-process."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@dataclass(frozen=True)
class Simulated:
    """A booted machine's dump after a workload, and what boot said on stderr."""

    dump: Path
    boot_stderr: str

    def stacks(self) -> list[list[str]]:
        """Return each record's frame lines."""
        blocks = self.dump.read_text().split("\n\n")
        return [[line for line in block.splitlines() if line.startswith(" ")]
                for block in blocks]  # fmt: skip


Simulate = Callable[[str, str | None], Simulated]


@pytest.fixture(scope="module")
def system_map(alloc_program: Program, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A System.map of the ELF's functions, with a marker where padding ends a section."""
    path = tmp_path_factory.mktemp("map") / "System.map"
    with ElfSymbolTable.from_path(str(alloc_program.path), use_cache=False) as table:
        symbols = list(table.iter_symbols())
    lines = []
    for symbol, following in zip(symbols, [*symbols[1:], None], strict=True):
        lines.append(f"{symbol.address:016x} T {symbol.name}\n")
        end = symbol.address + symbol.size
        if following is None or following.address > end:
            lines.append(f"{end:016x} t __section_end\n")
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def simulate(alloc_program: Program, system_map: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulate]:  # fmt: skip
    """Boot a version with a symbol table kind (or none), fault memory in, dump (memoized)."""
    base = tmp_path_factory.mktemp("sim")
    files = {"vmlinux": alloc_program.path, "system-map": system_map}
    made: dict[tuple[str, str | None], Simulated] = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(base / "cache"))

        def run(version: str, kind: str | None) -> Simulated:
            key = (version, kind)
            if key not in made:
                state = base / f"{version}-{kind}"
                table = [f"--{kind}", str(files[kind])] if kind else []
                booted = invoke("boot", "--kernel", version, "--mem", "64M", "--cmdline",
                                "page_owner=on", *table, "--state", str(state))
                assert booted.exit_code == 0, booted.output
                assert invoke("run", "anon", "--mb", "1", "--state", str(state)).exit_code == 0
                dump = base / f"{version}-{kind}.txt"
                assert invoke("dump", "-o", str(dump), "--state", str(state)).exit_code == 0
                made[key] = Simulated(dump, booted.stderr)
            return made[key]

        yield run


def elf_frames(stacks: list[list[str]]) -> Iterator[tuple[Frame, str | None]]:
    """Yield the frames of alloc.c's functions, each with the function above it."""
    for stack in stacks:
        above = None
        for line in stack:
            frame = parse_frame(line)
            if frame.symbol in ELF_FUNCTIONS:
                yield frame, above
            above = frame.symbol


@pytest.fixture(scope="module")
def round_trip(simulate: Simulate, alloc_program: Program,
               tmp_path_factory: pytest.TempPathFactory) -> tuple[Simulated, dict[str, Any]]:  # fmt: skip
    """A 6.12 dump made with the ELF, and symbolize's JSON verdict per unique frame line."""
    simulated = simulate("6.12", "vmlinux")
    out = tmp_path_factory.mktemp("symbolized") / "frames.json"
    result = invoke("symbolize", "--vmlinux", str(alloc_program.path), "--no-cache",
                    "--allow-mismatch", "--format", "json", "-o", str(out),
                    str(simulated.dump))
    assert result.exit_code == 0, result.output
    frames = json.loads(out.read_text())["frames"]
    return simulated, {frame["text"]: frame for frame in frames}


def expected_calls(function: str, above: str | None) -> set[str]:
    """Return the calls alloc.c's `function` may return to under `above`; empty: any call.

    The call to the frame above (page_owner's hook for the top frame), else a call to a
    function that makes that call or jumps there.
    """
    wanted = {above} if above is not None else set(TOP_CALLEES)
    direct = CALLEES[function] & wanted
    return direct or {inner for inner in CALLEES[function]
                      if (CALLEES.get(inner, set()) | TAILS.get(inner, set())) & wanted}


def test_round_trip_through_symbolize(round_trip: tuple[Simulated, dict[str, Any]]) -> None:
    # GIVEN a 6.12 machine booted with the ELF, after anonymous faults, dumped and
    # symbolized against the same ELF
    simulated, resolved = round_trip
    checked = set()
    for stack in simulated.stacks():
        above = None
        for line in stack:
            frame = parse_frame(line)
            verdict = resolved[line]
            if frame.symbol not in ELF_FUNCTIONS:
                # THEN a function the ELF lacks stays as the simulator printed it
                assert verdict["status"] == "unknown-symbol", line
                above = frame.symbol
                continue
            # THEN the ELF's frames resolve to the simulated function, not inlined
            assert verdict["status"] == "ok", line
            assert verdict["function"] == frame.symbol
            assert [entry["function"] for entry in verdict["lines"]] == [frame.symbol]
            # AND their line is a call in alloc.c: to the frame above when the function
            # calls it, else to a function that does
            location = verdict["lines"][0]
            assert location["file"].endswith("alloc.c")
            call = CALL_RE.search(SOURCE_LINES[location["line"] - 1])
            assert call is not None, (line, SOURCE_LINES[location["line"] - 1])
            expected = expected_calls(frame.symbol, above)
            assert call.group(1) in expected or not expected, (line, above)
            checked.add((frame.symbol, call.group(1)))
            above = frame.symbol
    # AND the whole fault path was seen, with the calls each frame had to take
    assert checked == {
        ("get_page_from_freelist", "post_alloc_hook"),  # the top: reaches __set_page_owner
        ("__alloc_pages_noprof", "get_page_from_freelist"),
        ("alloc_pages_mpol_noprof", "__alloc_pages_noprof"),
        ("vma_alloc_folio_noprof", "folio_alloc_mpol"),  # which tail-calls the frame above
        ("pte_alloc_one", "alloc_pages_mpol_noprof"),
        ("__pte_alloc", "pte_alloc_one"),
        ("__handle_mm_fault", "vma_alloc_folio_noprof"),
        ("__handle_mm_fault", "__pte_alloc"),
        ("handle_mm_fault", "__handle_mm_fault"),
        ("exc_page_fault", "fault"),  # only a pointer call
        ("asm_exc_page_fault", "pf_entry_body"),  # through a function it calls
    }


def test_round_trip_lines_match_addr2line(round_trip: tuple[Simulated, dict[str, Any]],
                                          alloc_program: Program, addr2line: str) -> None:
    # GIVEN the symbolized frames of alloc.c's functions
    _, resolved = round_trip
    ours = {int(frame["address"], 16): f"{frame['lines'][0]['file']}:{frame['lines'][0]['line']}"
            for frame in resolved.values() if frame["status"] == "ok"}
    assert ours
    # WHEN addr2line resolves the same return addresses
    addresses = sorted(ours)
    output = subprocess.run([addr2line, "-e", str(alloc_program.path),
                             *(f"{address:#x}" for address in addresses)],
                            check=True, capture_output=True, text=True).stdout.splitlines()
    # THEN both give the same file and line
    assert output == [ours[address] for address in addresses]


@pytest.mark.parametrize("version", ["3.19", "4.6"])
def test_address_columns_carry_real_addresses(simulate: Simulate, alloc_program: Program,
                                              version: str) -> None:
    # GIVEN a machine of an era that prints `[<address>]` unhashed, booted with the ELF
    simulated = simulate(version, "vmlinux")
    frames = list(elf_frames(simulated.stacks()))
    assert {frame.symbol for frame, _ in frames} >= {"__alloc_pages_nodemask",
                                                      "alloc_pages_vma", "handle_mm_fault"}
    with ElfSymbolTable.from_path(str(alloc_program.path), use_cache=False) as table:
        for frame, _ in frames:
            assert frame.symbol is not None and frame.address is not None
            symbol = table.lookup(frame.symbol)
            assert symbol is not None
            # THEN each address is the function's address plus the offset, the size its span,
            # and the offset a return address after one of its calls
            assert frame.address == symbol.address + frame.offset
            assert frame.size == symbol.size
            assert frame.offset in call_return_offsets(table, symbol)


def test_4_19_frames_have_no_address_column(simulate: Simulate) -> None:
    # GIVEN a 4.19 machine booted with the ELF (real 4.18/4.19 dumps print ` sym+off/size`:
    # the `[<%p>]` column was gone by 4.15, kernel.kernels.FRAME_ADDRESS_UNTIL)
    frames = list(elf_frames(simulate("4.19", "vmlinux").stacks()))
    assert frames
    # THEN no frame carries an address, hashed or not
    assert all(frame.address is None for frame, _ in frames)


def test_missing_functions_keep_the_builtin_values(simulate: Simulate,
                                                   alloc_program: Program) -> None:
    # GIVEN the same 6.12 boot and workload with and without the ELF
    with_elf = simulate("6.12", "vmlinux")
    builtin = simulate("6.12", None)
    lines = with_elf.dump.read_text().splitlines()
    plain = builtin.dump.read_text().splitlines()
    # THEN the dumps differ only in frames of the ELF's functions
    assert len(lines) == len(plain)
    changed = {parse_frame(ours).symbol for ours, theirs in zip(lines, plain, strict=True)
               if ours != theirs}  # fmt: skip
    assert changed and changed <= ELF_FUNCTIONS
    # AND boot said how many of the functions 6.12 stacks show the ELF lacks, in one line
    catalogue = StackBuilder(get_kernel("6.12"), 1).catalogue()
    found = {function for function, _ in catalogue if function in ELF_FUNCTIONS}
    note = (f"pageowner: warning: {len(catalogue) - len(found)} of the {len(catalogue)} "
            f"functions 6.12 stacks show are not in {alloc_program.path}; they keep the "
            f"built-in offsets and sizes (")
    notes = [line for line in with_elf.boot_stderr.splitlines() if " are not in " in line]
    assert len(notes) == 1 and notes[0].startswith(note)
    assert " are not in " not in builtin.boot_stderr


def test_system_map_and_vmlinux_agree(simulate: Simulate, system_map: Path) -> None:
    # GIVEN 4.6 boots with the ELF and with a System.map of the same functions
    elf = simulate("4.6", "vmlinux")
    text = simulate("4.6", "system-map")
    pairs = list(zip(elf.dump.read_text().splitlines(), text.dump.read_text().splitlines(),
                     strict=True))
    # THEN they print the same frames, but for the offset: the System.map has no code, so
    # its offsets are mid-function, the ELF's follow calls
    different = [(parse_frame(ours), parse_frame(theirs)) for ours, theirs in pairs
                 if ours != theirs]  # fmt: skip
    assert different
    for ours, theirs in different:
        assert ours.symbol == theirs.symbol and ours.symbol in ELF_FUNCTIONS
        assert ours.size == theirs.size
        assert ours.address is not None and theirs.address is not None
        assert ours.address - ours.offset == theirs.address - theirs.offset
        assert 0 < theirs.offset < theirs.size
    # AND both boots count the same missing functions
    notes = [[line.split(" are not in ")[0] for line in sim.boot_stderr.splitlines()
              if " are not in " in line] for sim in (elf, text)]  # fmt: skip
    assert notes[0] == notes[1] and len(notes[0]) == 1


def test_offsets_follow_the_seed_and_the_caller(alloc_program: Program) -> None:
    # GIVEN the ELF's table and the 6.12 page-table path
    with ElfSymbolTable.from_path(str(alloc_program.path), use_cache=False) as table:

        def calls_to(function: str, callee: str) -> set[int]:
            symbol = table.lookup(function)
            assert symbol is not None
            return {site.offset for site in call_sites(table, symbol)
                    if site.targets == (callee,)}  # fmt: skip

        def offsets(stacks: list[tuple[str, ...]], function: str) -> set[int]:
            return {frame.offset for stack in stacks for line in stack
                    if (frame := parse_frame(line)).symbol == function}  # fmt: skip

        # WHEN the stack is built under several seeds
        stacks = [StackBuilder(get_kernel("6.12"), seed, table).path("pte_alloc")
                  for seed in range(1, 13)]  # fmt: skip
        # THEN a seed always gives the same frames
        assert StackBuilder(get_kernel("6.12"), 3, table).path("pte_alloc") == stacks[2]
        # AND where a function calls the frame above twice, the seed picks either call
        assert offsets(stacks, "__pte_alloc") == calls_to("__pte_alloc", "pte_alloc_one")
        assert len(calls_to("__pte_alloc", "pte_alloc_one")) == 2
        # AND the top frame takes the call reaching page_owner's hook, whatever the seed
        assert offsets(stacks, "get_page_from_freelist") == calls_to(
            "get_page_from_freelist", "post_alloc_hook")


def test_call_targets_match_objdump(alloc_program: Program, objdump: str) -> None:
    # GIVEN objdump's direct calls and jumps to functions in the allocation path
    listing = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(alloc_program.path)],
                             check=True, capture_output=True, text=True).stdout
    expected: dict[str, set[str]] = {}
    jumps: dict[str, set[str]] = {}
    current = ""
    for line in listing.splitlines():
        header = re.match(r"^[0-9a-f]+ <(\S+)>:$", line)
        if header:
            current = header.group(1)
        call = re.search(r"\scall\s+[0-9a-f]+ <([^>+]+)>$", line)
        if call and current in ELF_FUNCTIONS:
            expected.setdefault(current, set()).add(call.group(1))
        jump = re.search(r"\sjmp\s+[0-9a-f]+ <([^>+]+)>$", line)
        if jump and current in ELF_FUNCTIONS and jump.group(1) != current:
            jumps.setdefault(current, set()).add(jump.group(1))
    # WHEN call_sites names the targets from the bytes
    with ElfSymbolTable.from_path(str(alloc_program.path), use_cache=False) as table:
        for name in ELF_FUNCTIONS:
            symbol = table.lookup(name)
            assert symbol is not None
            found = {target for site in call_sites(table, symbol) for target in site.targets}
            # THEN they are objdump's, and the calls the C source makes
            assert found == expected.get(name, set()), name
            assert found == CALLEES[name], name
            # AND the jumps to other functions' starts are the source's tail calls
            assert set(tail_calls(table, symbol)) == jumps.get(name, set()) == TAILS[name], name


def test_module_call_targets_come_from_relocations(module_dir: Path) -> None:
    # GIVEN a relocatable module whose calls are all `e8 00 00 00 00` plus a relocation
    path = next(module_dir.rglob("testmod.ko"))
    with ElfSymbolTable.from_path(str(path), module="testmod", use_cache=False) as table:
        targets = {symbol.name: [site.targets for site in call_sites(table, symbol)]
                   for symbol in table.iter_symbols()}  # fmt: skip
    # THEN a call to vmlinux is named by the undefined symbol, one inside by the function
    # at the relocation's target (mod_cold sits in another section)
    assert targets["mod_alloc"] == [("helper_ext",)]
    assert targets["mod_cold"] == [("helper_ext",)]
    assert targets["mod_init"] == [("mod_alloc",), ("mod_cold",)]
