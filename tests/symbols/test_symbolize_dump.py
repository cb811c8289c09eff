"""Symbolizing whole dumps and page_owner_stacks files; goldens from addr2line -i."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Program

from pageowner.dump.dumpfile import DumpReader, parse_frame
from pageowner.dump.stacksfile import iter_stack_counts
from pageowner.errors import SymbolError
from pageowner.sort.engine import sort_dump
from pageowner.sort.options import build_options, parse_cull_spec
from pageowner.symbols.elf import ElfSymbolTable, call_return_offsets
from pageowner.symbols.symbolize import SymbolizeOptions, symbolize_file

HEADER = ("Page allocated via order {order}, mask 0xcc0(GFP_KERNEL), pid {pid}, tgid {pid} "
          "(prog), ts {ts} ns, free_ts 0 ns")  # fmt: skip
PFN = "PFN {pfn} type Unmovable Block {block} type Unmovable Flags 0x100000000000000(node=0|zone=1)"


@dataclass(frozen=True)
class Case:
    """A dump made from a compiled program and the addresses its frames stand for."""

    text: str
    # frame line -> (ELF, address to give addr2line, section for -j or None)
    frames: dict[str, tuple[Path, int, str | None]]


def frame_line(name: str, offset: int, size: int, module: str | None = None) -> str:
    """Print a frame as %pS does."""
    return f" {name}+{offset:#x}/{size:#x}" + (f" [{module}]" if module else "")


def make_case(program: Program, module_dir: Path | None = None) -> Case:
    """Build a dump whose stacks are return addresses of the program's real calls."""
    frames: dict[str, tuple[Path, int, str | None]] = {}
    with ElfSymbolTable.from_path(str(program.path), use_cache=False) as table:
        def returns(name: str, which: int = 0) -> list[str]:
            symbol = table.lookup_all(name)[which]
            lines = []
            for offset in call_return_offsets(table, symbol):
                line = frame_line(name, offset, symbol.size)
                frames[line] = (program.path, symbol.address + offset, None)
                lines.append(line)
            return lines

        outer, pointer, entry = returns("outer"), returns("via_pointer"), returns("b_entry")
        main = returns("main")
        statics = []
        for copy in table.lookup_all("dup_static"):
            # a.c's copy makes no call: any address inside it will do.
            line = frame_line("dup_static", 4, copy.size)
            frames[line] = (program.path, copy.address + 4, None)
            statics.append([line])
        work = table.lookup("work")
        assert work is not None
        raw = f" [<{work.address + 4:016x}>] {work.address + 4:#x}"
        frames[raw] = (program.path, work.address + 4, None)
    stacks = [
        [outer[0], main[0]],
        [outer[-1], main[0]],
        [pointer[0], main[1]],
        [statics[1][0], entry[0], main[-1]],
        [statics[0][0], outer[-1], main[0]],
        [raw, main[0]],
    ]
    if module_dir is not None:
        ko = module_dir / "kernel" / "drivers" / "testmod.ko"
        with ElfSymbolTable.from_path(str(ko), module="testmod", use_cache=False) as module:
            symbol = module.lookup("mod_alloc")
            assert symbol is not None
            offset = call_return_offsets(module, symbol)[0]
            # The file offset is section-relative: that is what addr2line -j .text takes.
            line = frame_line("mod_alloc", offset, symbol.size, "testmod")
            frames[line] = (ko, offset, ".text")
        stacks.append([line, outer[0], main[0]])
    records = []
    for number, stack in enumerate(stacks * 2):  # each stack twice: sort must group them
        lines = [HEADER.format(order=number % 3, pid=100 + number, ts=1000 * number),
                 PFN.format(pfn=4096 + number, block=8)] + stack  # fmt: skip
        records.append("\n".join(lines) + "\n\n")
    return Case("".join(records), frames)


def golden_source(addr2line: str, elf: Path, address: int, section: str | None) -> str:
    """Return decode_stacktrace.sh's group for an address: addr2line -i lines joined."""
    command = [addr2line, "-i", "-e", str(elf)] + (["-j", section] if section else [])
    output = subprocess.run(command + [f"{address:#x}"], check=True, capture_output=True,
                            text=True).stdout  # fmt: skip
    return " ".join(re.sub(r" \(discriminator \d+\)$", "", line)
                    for line in output.splitlines())  # fmt: skip


def expected_output(case: Case, addr2line: str) -> str:
    """Build the golden symbolized dump: every frame line with its addr2line group."""
    replaced = {}
    for line, (elf, address, section) in case.frames.items():
        source = golden_source(addr2line, elf, address, section)
        frame = parse_frame(line)
        if frame.symbol is None:
            # A raw address comes back as %pS would print it, address kept.
            with ElfSymbolTable.from_path(str(elf), use_cache=False) as table:
                symbol = table.symbol_at(address)
            assert symbol is not None
            replaced[line] = (f" [<{address:016x}>] {symbol.name}+{address - symbol.address:#x}"
                              f"/{symbol.size:#x} ({source})")  # fmt: skip
        else:
            replaced[line] = f"{line} ({source})"
    return "".join(replaced.get(line, line) + "\n" for line in case.text.split("\n")[:-1])


def run(case_text: str, tmp_path: Path, options: SymbolizeOptions, name: str = "dump.txt",
        warnings: list[str] | None = None) -> tuple[Path, str]:  # fmt: skip
    """Symbolize a dump text; return the output path and text."""
    source = tmp_path / name
    source.write_text(case_text)
    output = tmp_path / (name + ".out")
    symbolize_file(str(source), str(output), options,
                   on_warning=warnings.append if warnings is not None else None)  # fmt: skip
    return output, output.read_text()


def test_symbolized_dump_matches_addr2line_golden(program: Program, module_dir: Path,
                                                  addr2line: str, tmp_path: Path) -> None:
    # GIVEN a dump whose frames are real return addresses in a program and a module
    case = make_case(program, module_dir)
    options = SymbolizeOptions(str(program.path), str(module_dir), cache_dir=str(tmp_path / "c"))
    # WHEN it is symbolized
    _, text = run(case.text, tmp_path, options)
    # THEN the whole output is the input with decode_stacktrace.sh's group on each frame
    assert text == expected_output(case, addr2line)


def test_symbolized_dump_is_still_a_dump(program: Program, module_dir: Path,
                                         tmp_path: Path) -> None:  # fmt: skip
    # GIVEN a symbolized dump
    case = make_case(program, module_dir)
    options = SymbolizeOptions(str(program.path), str(module_dir), cache_dir=str(tmp_path / "c"))
    output, _ = run(case.text, tmp_path, options)
    # WHEN both are read strictly
    before = list(DumpReader(iter(case.text.encode().splitlines(keepends=True)), strict=True))
    with output.open("rb") as stream:
        after = list(DumpReader(stream, str(output), strict=True))
    # THEN the records are the same but for each frame's source, which every frame has
    assert len(after) == len(before) > 0
    for old, new in zip(before, after, strict=True):
        assert [frame.source is not None for frame in new.stack] == [True] * len(new.stack)
        assert [(f.symbol, f.offset, f.size, f.module) for f in new.stack
                if f.address is None] == [(f.symbol, f.offset, f.size, f.module)
                                          for f in old.stack if f.address is None]  # fmt: skip
        assert (new.order, new.pid, new.pfn, new.flags) == (old.order, old.pid, old.pfn,
                                                            old.flags)  # fmt: skip


@pytest.mark.parametrize("flags", [[], ["m"], ["t"]])
def test_sort_groups_the_symbolized_dump_like_the_original(
    program: Program, tmp_path: Path, flags: list[str]
) -> None:
    # GIVEN a dump and its symbolized copy
    case = make_case(program)
    options = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"))
    output, _ = run(case.text, tmp_path, options)
    original = tmp_path / "dump.txt"
    # WHEN both are sorted and culled by stack, as page_owner_sort does
    sort_options = build_options(flags, cull=parse_cull_spec("st"))
    sort_dump(str(original), str(tmp_path / "a.sorted"), sort_options, jobs=1)
    sort_dump(str(output), str(tmp_path / "b.sorted"), sort_options, jobs=1)
    # THEN the reports agree once the sources are taken off again
    plain = (tmp_path / "a.sorted").read_text()
    symbolized = (tmp_path / "b.sorted").read_text()
    stripped = re.sub(r" \((?:[^()]*:[^()]*)\)$", "", symbolized, flags=re.MULTILINE)
    assert len(plain.split("\n\n")) == len(symbolized.split("\n\n"))
    raw_frame = next(line for line in case.frames if line.startswith(" [<"))
    assert stripped.replace(_symbolic_of(symbolized, raw_frame), raw_frame) == plain


def _symbolic_of(symbolized: str, raw_frame: str) -> str:
    """Return how the raw-address frame reads in the symbolized text, source removed."""
    prefix = raw_frame.split("] ")[0] + "] "
    line = next(line for line in symbolized.splitlines() if line.startswith(prefix))
    return re.sub(r" \([^()]*\)$", "", line)


def test_stacks_file_is_symbolized(program: Program, addr2line: str, tmp_path: Path) -> None:
    # GIVEN a page_owner_stacks/show_stacks file with the program's frames
    case = make_case(program)
    symbolic = [line for line in case.frames if not line.startswith(" [<")]
    pairs = zip(symbolic, symbolic[1:], strict=False)
    text = "".join(f"{a}\n{b}\nnr_base_pages: {n}\n\n" for n, (a, b) in enumerate(pairs, start=1))
    options = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"))
    # WHEN it is symbolized
    output, result = run(text, tmp_path, options, name="show_stacks")
    # THEN every frame has addr2line's group and the file still reads as a stacks file
    expected = text
    for line in symbolic:
        elf, address, section = case.frames[line]
        source = golden_source(addr2line, elf, address, section)
        expected = expected.replace(line + "\n", f"{line} ({source})\n")
    assert result == expected
    with output.open("rb") as stream:
        entries = list(iter_stack_counts(stream))
    assert [entry.nr_base_pages for entry in entries] == list(range(1, len(symbolic)))
    assert all(frame.source for entry in entries for frame in entry.stack)


def test_json_lists_unique_frames_with_inline_chains(program: Program, addr2line: str,
                                                    tmp_path: Path) -> None:  # fmt: skip
    # GIVEN a dump with repeated stacks
    case = make_case(program)
    options = SymbolizeOptions(str(program.path), output_format="json",
                               cache_dir=str(tmp_path / "c"))  # fmt: skip
    # WHEN it is symbolized to JSON
    _, text = run(case.text, tmp_path, options)
    document = json.loads(text)
    # THEN each unique frame appears once, in first-seen order, with addr2line's chain
    assert [frame["text"] for frame in document["frames"]] == list(
        dict.fromkeys(line for line in case.text.split("\n") if line.startswith(" ")))
    for frame in document["frames"]:
        elf, address, section = case.frames[frame["text"]]
        command = [addr2line, "-f", "-i", "-e", str(elf), f"{address:#x}"]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        pairs = output.splitlines()
        expected = [{"function": pairs[i],
                     "location": re.sub(r" \(discriminator \d+\)$", "", pairs[i + 1])}
                    for i in range(0, len(pairs), 2)]  # fmt: skip
        got = [{"function": line["function"], "location": f"{line['file']}:{line['line']}"}
               for line in frame["lines"]]  # fmt: skip
        assert got == expected
        assert frame["status"] == "ok" and int(frame["address"], 16) == address
    assert document["summary"]["statuses"] == {"ok": len(document["frames"])}


def test_same_name_statics_resolve_to_their_own_files(program: Program, tmp_path: Path) -> None:
    # GIVEN frames of both static dup_static functions (a.c and b.c), told apart by size
    case = make_case(program)
    options = SymbolizeOptions(str(program.path), output_format="json",
                               cache_dir=str(tmp_path / "c"))  # fmt: skip
    _, text = run(case.text, tmp_path, options)
    # THEN each resolves to the file its size belongs to
    files = {frame["size"]: Path(frame["lines"][-1]["file"]).name
             for frame in json.loads(text)["frames"] if frame["function"] == "dup_static"}
    assert sorted(files.values()) == ["a.c", "b.c"]


def test_mismatched_dump_is_refused(program: Program, tmp_path: Path) -> None:
    # GIVEN a dump whose frames carry sizes and names the program does not have
    case = make_case(program)
    bad = case.text.replace("main+", "no_such_fn+")
    bad = re.sub(r" outer\+(0x[0-9a-f]+)/0x[0-9a-f]+", r" outer+\1/0x999", bad)
    source = tmp_path / "dump.txt"
    source.write_text(bad)
    output = tmp_path / "out.txt"
    options = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"))
    # WHEN it is symbolized THEN it is refused with the count and the first frames named
    with pytest.raises(SymbolError) as caught:
        symbolize_file(str(source), str(output), options)
    message = str(caught.value)
    assert re.match(r"\d+ of \d+ frames do not match the ELF", message)
    assert "outer+" in message and "(ELF size 0x" in message
    assert "(no such function)" in message and "\n" not in message
    assert not output.exists()
    # AND --allow-mismatch writes it, leaving those frames as they were
    warnings: list[str] = []
    allowed = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"),
                               allow_mismatch=True)  # fmt: skip
    symbolize_file(str(source), str(output), allowed, on_warning=warnings.append)
    text = output.read_text()
    assert all(line.endswith("/0x999") for line in text.splitlines() if " outer+" in line)
    assert "frames do not match" in warnings[0]


def test_module_frames_without_modules_directory(program: Program, module_dir: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    # GIVEN a dump with a module frame and no --modules
    case = make_case(program, module_dir)
    warnings: list[str] = []
    options = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"))
    _, text = run(case.text, tmp_path, options, warnings=warnings)
    # THEN the module frame is left as it is and a warning says why
    module_lines = [line for line in text.splitlines() if line.endswith("[testmod]")]
    assert module_lines and all("(" not in line for line in module_lines)
    assert warnings == ["frames of testmod left as they are (1 unique): no --modules directory"]


def old_era_dump(program: Program, slide: int, hashed: bool) -> tuple[str, int, str]:
    """A 3.19-era record: `[<address>] func+off/size` frames moved by `slide`, plus a frame
    %pS could not name. Returns the text, the unnamed frame's link address and its name."""
    with ElfSymbolTable.from_path(str(program.path), use_cache=False) as table:
        lines = []
        for number, name in enumerate(("outer", "b_entry", "main", "via_pointer")):
            symbol = table.lookup(name)
            assert symbol is not None
            offset = call_return_offsets(table, symbol)[0]
            shown = 0x4E6F1A2B + number if hashed else symbol.address + offset + slide
            lines.append(f" [<{shown:016x}>] {name}+{offset:#x}/{symbol.size:#x}")
        work = table.lookup("work")
        assert work is not None
    target = work.address + 3
    hidden = 0x12345678 if hashed else target + slide
    lines.insert(0, f" [<{hidden:016x}>] {target + slide:#x}")
    header = "Page allocated via order 0, mask 0xd0\nPFN 4096 Block 8 type 0          Flags        \n"
    return header + "\n".join(lines) + "\n\n", target, "work"


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed-%p"])
def test_raw_address_is_taken_back_by_the_kaslr_offset(program: Program, tmp_path: Path,
                                                        hashed: bool) -> None:
    # GIVEN an old-era dump from a kernel moved by a KASLR offset, one frame left unnamed
    slide = 0x1A00000
    text, target, name = old_era_dump(program, slide, hashed)
    options = SymbolizeOptions(str(program.path), output_format="json",
                               cache_dir=str(tmp_path / "c"))
    # WHEN it is symbolized
    _, result = run(text, tmp_path, options)
    document = json.loads(result)
    raw = document["frames"][0]
    # THEN the offset is found from the named frames (not when %p hashed their addresses)
    assert document["kaslr_offset"] == (hex(0) if hashed else hex(slide))
    # AND the unnamed frame resolves at its link address when the offset is known
    if hashed:
        assert raw["status"] == "no-symbol"
    else:
        assert (raw["function"], int(raw["address"], 16)) == (name, target)
        assert raw["lines"][0]["file"].endswith("b.c")


def test_progress_is_reported_per_unit(program: Program, module_dir: Path,
                                       tmp_path: Path) -> None:
    # GIVEN a dump with frames in two ELF files
    case = make_case(program, module_dir)
    source = tmp_path / "dump.txt"
    source.write_text(case.text)
    calls: list[tuple[int, int | None]] = []
    options = SymbolizeOptions(str(program.path), str(module_dir), cache_dir=str(tmp_path / "c"))
    # WHEN it is symbolized with a progress callback
    symbolize_file(str(source), str(tmp_path / "out.txt"), options,
                   on_progress=lambda done, total: calls.append((done, total)))
    # THEN progress only goes forward and ends at the number of addresses resolved
    done = [call[0] for call in calls]
    used = {line for line in case.text.split("\n") if line.startswith(" ")}
    addresses = {case.frames[line][:2] for line in used}
    assert calls and done == sorted(done)
    assert calls[-1] == (len(addresses), len(addresses))


def test_symbolizing_twice_changes_nothing(program: Program, module_dir: Path,
                                           tmp_path: Path) -> None:
    # GIVEN a symbolized dump
    case = make_case(program, module_dir)
    options = SymbolizeOptions(str(program.path), str(module_dir), cache_dir=str(tmp_path / "c"))
    first, text = run(case.text, tmp_path, options)
    # WHEN its output is symbolized again
    _, again = run(text, tmp_path, options, name="again.txt")
    # THEN the source groups are replaced, not stacked
    assert again == text


def test_handle_dump_is_symbolized_through_stacks_from(program: Program, addr2line: str,
                                                       tmp_path: Path) -> None:  # fmt: skip
    # GIVEN the case as a 7.3 stack_handle dump, the same records in handle mode, and a
    # show_stacks_handles file listing every handle but the last (printed %d: negative)
    case = make_case(program)
    blocks = case.text.split("\n\n")[:-1]
    handles: dict[str, int] = {}
    both, bare, shows = [], [], []
    for block in blocks:
        lines = block.split("\n")
        stack = "\n".join(lines[2:])
        handle = handles.setdefault(stack, 2**31 + len(handles))
        both.append(f"{block}\nhandle: {handle}\n\n")
        bare.append("\n".join(lines[:2]) + f"\nhandle: {handle}\n\n")
    unlisted = max(handles.values())
    for stack, handle in handles.items():
        if handle != unlisted:
            shows.append(f"{stack}\nhandle: {handle - 2**32}\n\n")
    (tmp_path / "shows.txt").write_text("".join(shows))
    options = SymbolizeOptions(str(program.path), cache_dir=str(tmp_path / "c"),
                               stacks_from=str(tmp_path / "shows.txt"))
    # WHEN both dumps are symbolized
    warnings: list[str] = []
    _, joined = run("".join(bare), tmp_path, options, "handle.txt", warnings)
    _, reference = run("".join(both), tmp_path, options, "both.txt")
    # THEN the handle records come out as the stack_handle ones, symbolized, except the
    # unlisted handle's, which stay bare and are counted in one warning
    expected = [block for block in reference.split("\n\n")
                if block and f"handle: {unlisted}" not in block]
    got = [block for block in joined.split("\n\n") if block and f"handle: {unlisted}" not in block]
    assert got == expected and len(got) == len(blocks) - 2
    assert joined.count(f"\nhandle: {unlisted}\n") == 2
    assert warnings == [f"{tmp_path / 'handle.txt'}: 2 records of 1 handles not in "
                        f"{tmp_path / 'shows.txt'}: left without frames ({len(got)} resolved; "
                        "show_stacks_handles never lists the early and no-reclaim stacks)"]
    assert " (" in joined  # file:line groups were added
