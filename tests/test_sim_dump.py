"""Every supported version prints its own era's page_owner format, and reads back."""

from __future__ import annotations

import functools
import io
import re

import pytest

from pageowner.dump.dumpfile import format_record, iter_records
from pageowner.dump.stacksfile import iter_stack_counts as read_stack_counts
from pageowner.kernel.kernels import KERNEL_VERSIONS, version_key
from pageowner.model import PageRecord
from pageowner.sim.boot import run_boot
from pageowner.sim.dump import iter_stack_counts, stacks_file_text, write_page_owner
from pageowner.sim.gfp import can_spin, canonical_from
from pageowner.sim.machine import Machine
from pageowner.sim.records import iter_heads, records
from pageowner.sim.workloads import run_workload
from tests.sim_invariants import free_blocks_rebuild

# Workloads that reach every kind of line: migration (compaction, CMA), memcg and slab
# lines, modules, THP, page cache, the leaking driver.
MIX = [
    ("capture", ["--mb", "8"]),
    ("cma", ["--mb", "4"]),
    ("memcg", ["--name", "web.slice", "--mb", "4", "--offline"]),
    ("thp", ["--count", "2"]),
    ("pagecache", ["--mb", "4"]),
    ("net", ["--mb", "1"]),
    ("vmalloc", ["--kind", "bpf", "--count", "1"]),
    ("leak", ["--pages", "64"]),
    ("compact", []),
]


@functools.cache
def machine_for(version: str) -> Machine:
    """Boot a small machine of a version and run the mix."""
    machine = Machine.create(version, 192 << 20, "page_owner=on cma=16M", 7)
    run_boot(machine)
    for name, args in MIX:
        run_workload(machine, name, args)
    return machine


@functools.cache
def dump_text(version: str) -> bytes:
    """Return the machine's page_owner text."""
    out = io.BytesIO()
    write_page_owner(machine_for(version), out)
    return out.getvalue()


@functools.cache
def records_for(version: str) -> list[PageRecord]:
    """Return the machine's records (cached: they are compared several times)."""
    return records(machine_for(version))


@functools.cache
def parsed_for(version: str) -> list[PageRecord]:
    """Return what the reader makes of the dump, strictly."""
    return list(iter_records(io.BytesIO(dump_text(version)), strict=True))


# The format strings of kernel.md A.2-A.5, as regular expressions, by first version.
NAMES = r"[A-Za-z0-9_|]*"
MT = r"(?:Unmovable|Movable|Reclaimable|HighAtomic|CMA|Isolate)"
HEADERS = [
    ("6.7", rf"Page allocated via order \d+, mask 0x[0-9a-f]+\({NAMES}\), pid \d+, "
            r"tgid \d+ \([^\n]{0,15}\), ts \d+ ns"),
    ("5.18", rf"Page allocated via order \d+, mask 0x[0-9a-f]+\({NAMES}\), pid \d+, "
             r"tgid \d+ \([^\n]{0,15}\), ts \d+ ns, free_ts \d+ ns"),
    ("5.14", rf"Page allocated via order \d+, mask 0x[0-9a-f]+\({NAMES}\), pid \d+, "
             r"ts \d+ ns, free_ts \d+ ns"),
    ("5.11", rf"Page allocated via order \d+, mask 0x[0-9a-f]+\({NAMES}\), pid \d+, ts \d+ ns"),
    ("4.6", rf"Page allocated via order \d+, mask 0x[0-9a-f]+\({NAMES}\)"),
    ("0", r"Page allocated via order \d+, mask 0x[0-9a-f]+"),
]
PFNS = [
    ("6.5", rf"PFN 0x[0-9a-f]+ type {MT} Block \d+ type {MT} "
            rf"Flags 0x[0-9a-f]+\((?:[a-z_0-9]+\|)*node=0\|zone=[012]\)"),
    ("5.14", rf"PFN \d+ type {MT} Block \d+ type {MT} "
             rf"Flags 0x[0-9a-f]+\((?:[a-z_0-9]+\|)*node=0\|zone=[012]\)"),
    ("4.6", rf"PFN \d+ type {MT} Block \d+ type {MT} Flags 0x[0-9a-f]+\([a-z_0-9|]*\)"),
    ("0", r"PFN \d+ Block \d+ type [0-5] (?:Fallback|        ) "
          r"Flags [K ][E ][R ][U ][D ][L ][A ][S ][W ][C ][B ][M ]"),
]
SYMBOL = r"[A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[\w+\])?"
# The `[<%p>]` column printed plain addresses until 4.14 and never a hashed value
# (kernel.kernels.FRAME_ADDRESS_UNTIL; real 4.18/4.19 dumps print ` sym+off/size`).
FRAMES = [
    ("4.15", rf" {SYMBOL}"),
    ("0", rf" \[<ffffffff[0-9a-f]{{8}}>\] {SYMBOL}"),
]
TRAILERS = [
    ("5.18", r"Page has been migrated, last migrate reason: \w+|Slab cache page|"
             r"Charged (?:\(via objcg\) )?to (?:offline )?memcg .+"),
    ("4.6", r"Page has been migrated, last migrate reason: \w+"),
    ("0", r"(?!)"),
]


def pick(table: list[tuple[str, str]], version: str) -> re.Pattern[str]:
    """Return the pattern of the newest era not after a version."""
    for since, pattern in table:
        if version_key(version) >= version_key(since):
            return re.compile(pattern)
    raise AssertionError(version)


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_every_line_matches_its_era(version: str) -> None:
    # GIVEN a busy machine of that version WHEN it dumps THEN each line has the era's shape
    header, pfn, frame, trailer = (pick(t, version) for t in (HEADERS, PFNS, FRAMES, TRAILERS))
    depth = 8 if version_key(version) < (4, 8) else 16
    text = dump_text(version).decode()
    assert text.endswith("\n\n")
    blocks = text[:-2].split("\n\n")
    assert len(blocks) > 1000
    for block in blocks:
        lines = block.split("\n")
        assert header.fullmatch(lines[0]), lines[0]
        assert pfn.fullmatch(lines[1]), lines[1]
        frames = [line for line in lines[2:] if line.startswith(" ")]
        assert 1 <= len(frames) <= depth, block
        assert lines[2:2 + len(frames)] == frames, block
        for line in frames:
            assert frame.fullmatch(line), line
        for line in lines[2 + len(frames):]:
            assert trailer.fullmatch(line), line


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_the_reader_parses_back_the_same_records(version: str) -> None:
    assert parsed_for(version) == records_for(version)


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_the_fast_writer_prints_what_format_record_prints(version: str) -> None:
    expected = "".join(format_record(record) for record in records_for(version))
    assert dump_text(version) == expected.encode("utf-8", "surrogateescape")


def _stack_functions(version: str) -> list[list[str]]:
    """Return the function names of every record's stack."""
    return [[frame.function for frame in record.stack] for record in parsed_for(version)]


PLACEHOLDER = ("register_early_stack", "register_dummy_stack", "register_failure_stack",
               "init_pages_in_zone")


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_stacks_start_where_that_era_starts_them(version: str) -> None:
    key = version_key(version)
    if key >= (6, 0):
        allowed = {"post_alloc_hook", "get_page_from_freelist"}
    elif key >= (4, 8):
        allowed = {"prep_new_page", "post_alloc_hook"}
    else:
        allowed = {"__alloc_pages_nodemask", "post_alloc_hook"}
    firsts = {names[0] for names in _stack_functions(version) if names[0] not in PLACEHOLDER}
    assert firsts <= allowed
    assert len(firsts) >= 1


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_noprof_names_appear_from_6_10(version: str) -> None:
    names = {name for stack in _stack_functions(version) for name in stack}
    noprof = {name for name in names if name.endswith("_noprof")}
    if version_key(version) >= (7, 3):
        # the real 7.3 dumps (fixtures/real73) enter the buddy through this one
        assert "__alloc_frozen_pages_noprof" in noprof
        assert "__alloc_pages_noprof" not in noprof
    elif version_key(version) >= (6, 10):
        assert "__alloc_pages_noprof" in noprof
    else:
        assert not noprof


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_stacks_file_exists_from_6_9_and_counts_the_pages(version: str) -> None:
    machine = machine_for(version)
    if version_key(version) < (6, 9):
        with pytest.raises(Exception, match="page_owner_stacks/show_stacks: No such file"):
            stacks_file_text(machine, "show_stacks")
        return
    text = stacks_file_text(machine, "show_stacks").encode()
    blocks = list(read_stack_counts(io.BytesIO(text)))
    # every page allocated since page_owner started is counted once, early pages never;
    # from 6.18 a stack whose first allocation could not spin is never listed
    records = [r for r in records_for(version) if r.stack[0].function != "register_early_stack"]
    listed = {block.stack for block in blocks}
    if version_key(version) >= (6, 18):
        unlisted = [r for r in records if r.stack not in listed]
        assert unlisted, "6.18+ show_stacks must leave out the stacks that could not spin"
        cannot_spin = {r.stack for r in records
                       if not can_spin(canonical_from(r.gfp_mask, version))}
        assert {r.stack for r in unlisted} <= cannot_spin
        records = [r for r in records if r.stack in listed]
    counted = sum(r.nr_pages for r in records)
    assert sum(block.nr_base_pages or 0 for block in blocks) == counted
    assert all((block.nr_base_pages or 0) >= 1 for block in blocks)
    biggest = max(block.nr_base_pages or 0 for block in blocks)
    above = list(iter_stack_counts(machine, "show_stacks", threshold=biggest))
    assert [entry.nr_base_pages for entry in above] == [biggest]


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_handle_files_exist_from_6_19(version: str) -> None:
    machine = machine_for(version)
    if version_key(version) < (6, 19):
        with pytest.raises(Exception, match="show_handles: No such file"):
            stacks_file_text(machine, "show_handles")
        return
    handles = list(read_stack_counts(io.BytesIO(stacks_file_text(machine,
                                                                  "show_handles").encode())))
    joined = list(read_stack_counts(io.BytesIO(
        stacks_file_text(machine, "show_stacks_handles").encode())))
    stacks = list(read_stack_counts(io.BytesIO(stacks_file_text(machine,
                                                                 "show_stacks").encode())))
    by_handle = {entry.handle: entry.stack for entry in joined}
    # show_stacks_handles lists every stack, zero-page ones too; handles join the files
    assert len(joined) >= len(handles) == len(stacks)
    assert [by_handle[h.handle] for h in handles] == [s.stack for s in stacks]
    assert [h.nr_base_pages for h in handles] == [s.nr_base_pages for s in stacks]
    assert len(set(by_handle)) == len(joined)


def test_two_dumps_are_byte_identical() -> None:
    machine = machine_for("6.12")
    first, second = io.BytesIO(), io.BytesIO()
    write_page_owner(machine, first)
    write_page_owner(machine, second)
    assert first.getvalue() == second.getvalue()


def test_the_same_seed_gives_the_same_dump_and_another_seed_another_layout() -> None:
    def boot(seed: int) -> tuple[bytes, object]:
        machine = Machine.create("4.19", 256 << 20, "page_owner=on", seed)
        run_boot(machine)
        run_workload(machine, "anon", ["--mb", "2"])
        out = io.BytesIO()
        write_page_owner(machine, out)
        return out.getvalue(), machine.layout.reserved

    assert boot(3) == boot(3)
    # KASLR-like placement of the kernel image moves with the seed. (Until the frame
    # column's era was corrected, 4.19 also printed seeded hashes of the addresses; no
    # kernel printed hashed `[<%p>]` columns, so a 4.19 dump no longer shows the seed.)
    assert boot(3)[1] != boot(4)[1]


@pytest.mark.parametrize("version", ["3.19", "5.10", "6.1", "6.19"])
def test_page_owner_data_matches_the_allocator(version: str) -> None:
    # GIVEN a machine after the whole mix (migrations, CMA, frees, splits)
    machine = machine_for(version)
    buddy = machine.buddy
    owned = {pfn: machine.page.order[pfn] for pfn in iter_heads(machine)}
    allocated = dict(buddy.iter_allocated())
    # THEN every allocated block has exactly its page_owner record, and nothing else does
    assert owned == allocated
    assert buddy.free_pages + buddy.allocated_pages == buddy.managed_pages
    assert free_blocks_rebuild(buddy)
    # and each stack's count is the pages its records hold (early pages are never counted)
    pages: dict[int, int] = {}
    for pfn, order in owned.items():
        stack = machine.classes[machine.page.cls[pfn]].stack
        pages[stack] = pages.get(stack, 0) + (1 << order)
    pages.pop(2, None)  # the early stack
    assert {i: n for i, n in enumerate(machine.depot.nr_pages) if n and i != 2} == pages
