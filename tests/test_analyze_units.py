"""Unit behaviour of the analysis library: frame classification, frag, sizes, doctests."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from pageowner.analyze.analysis import parse_page_size, zone_of
from pageowner.analyze.frag import frag_file
from pageowner.dump.dumpfile import format_record
from pageowner.errors import SpecError
from pageowner.kernel.frames import StackInterner, allocator_layer, first_caller, normalize_function
from pageowner.model import DumpFormat, Frame, MigrateType, PageFlags, PageRecord

_M, _U, _R, _C = (MigrateType.MOVABLE, MigrateType.UNMOVABLE, MigrateType.RECLAIMABLE,
                  MigrateType.CMA)  # fmt: skip


def _stack(*names: str) -> tuple[Frame, ...]:
    return tuple(Frame(name, 0x10, 0x100) for name in names)


@pytest.mark.parametrize(
    ("names", "caller"),
    [
        # 4.x page cache: the page cache is a caller, named on purpose.
        (("__alloc_pages_nodemask", "alloc_pages_current", "__page_cache_alloc", "x"),
         "__page_cache_alloc"),
        # 5.10 slab refill down to the kmem_cache_alloc caller.
        (("prep_new_page", "get_page_from_freelist", "__alloc_pages_nodemask", "allocate_slab",
          "___slab_alloc", "__slab_alloc", "kmem_cache_alloc", "alloc_inode"), "alloc_inode"),
        # 6.12 kmalloc and its _noprof names.
        (("get_page_from_freelist", "__alloc_pages_noprof", "alloc_pages_mpol_noprof",
          "new_slab", "___slab_alloc", "__kmalloc_cache_noprof", "syslog_print_all"),
         "syslog_print_all"),
        # vmalloc: named after the vmalloc() caller.
        (("post_alloc_hook", "get_page_from_freelist", "__alloc_pages_bulk",
          "__vmalloc_area_node", "__vmalloc_node_range", "module_alloc"), "module_alloc"),
        (("__alloc_pages", "__kmalloc_node", "kvmalloc_node", "seq_read_iter"),
         "seq_read_iter"),
        # THP: vma_alloc_anon_folio_pmd is the fault path, not the allocator.
        (("__alloc_pages_noprof", "vma_alloc_folio_noprof", "vma_alloc_anon_folio_pmd"),
         "vma_alloc_anon_folio_pmd"),
        # GCC clone suffixes do not hide an allocator frame.
        (("get_page_from_freelist", "___slab_alloc.constprop.0", "d_alloc"), "d_alloc"),
        (("register_early_stack", "init_page_owner"), "register_early_stack"),
    ],
)
def test_first_caller_skips_every_allocator_layer(names: tuple[str, ...], caller: str) -> None:
    stack = _stack(*names)
    index = first_caller(stack)
    assert index is not None and stack[index].symbol == caller


def test_a_stack_inside_the_allocator_only_has_no_caller() -> None:
    info = StackInterner().intern(_stack("post_alloc_hook", "get_page_from_freelist"))
    assert info.caller is None and info.caller_label == "(allocator only)"
    assert StackInterner().intern(()).caller_label == "(no stack)"


def test_layers() -> None:
    assert [allocator_layer(f) for f in _stack("prep_new_page", "new_slab", "vzalloc",
                                               "kvfree_rcu", "filemap_alloc_folio_noprof")] == [
        "page", "slab", "vmalloc", None, "profiling"]  # fmt: skip


def test_stacks_that_differ_only_in_offsets_and_suffixes_share_a_key() -> None:
    interner = StackInterner()
    a = interner.intern((Frame("alloc_pages_noprof", 1, 2), Frame("f.isra.0", 3, 4, "m")))
    b = interner.intern((Frame("alloc_pages", 5, 6), Frame("f", 7, 8, "m")))
    assert a.key == b.key == ("alloc_pages", "f [m]")
    assert a.exact_key != b.exact_key
    assert normalize_function("move_page_tables.part.0.constprop.0") == "move_page_tables"


def test_interner_recognises_a_stack_by_its_frame_objects() -> None:
    interner = StackInterner()
    frames = _stack("a", "b")
    assert interner.intern(frames) is interner.intern(tuple(frames))
    assert interner.intern(_stack("a", "b")).key == ("a", "b")
    assert len(interner) == 1


def test_zone_is_derived_from_the_flags_word_before_5_14() -> None:
    # 5.10 prints `Flags 0x100000000000000()`: bit 56 is zone 1 in the x86_64 layout.
    assert zone_of(PageRecord(0, 0, flags=PageFlags(0x100000000000000))) == 1
    assert zone_of(PageRecord(0, 0, flags=PageFlags(0x4000000000000000, (), (("zone", "2"),)))) == 2
    assert zone_of(PageRecord(0, 0, flags=PageFlags(None, ("uptodate",)))) is None


def _record(pfn: int, block_mt: MigrateType, page_mt: MigrateType, stack: str, zone: int = 1,
            order: int = 0, reserved: bool = False) -> PageRecord:  # fmt: skip
    mask = {_M: 0x100cca, _U: 0xcc0, _R: 0xcd0}[page_mt]
    names = ("reserved",) if reserved else ()
    return PageRecord(
        order=order, gfp_mask=mask, gfp_names="", pid=1, tgid=1, comm="t", ts_nsec=1,
        pfn=pfn, page_mt=page_mt, block=pfn >> 9, block_mt=block_mt,
        flags=PageFlags(0, names, (("node", "0"), ("zone", str(zone)))),
        stack=_stack("get_page_from_freelist", stack), fmt=DumpFormat(),
    )  # fmt: skip


def test_frag_counts_mixed_blocks_as_pagetypeinfo_does(tmp_path: Path) -> None:
    # GIVEN pageblocks 8..12 with known contents
    records = [
        _record(8 << 9, _M, _M, "movable_user"),
        _record((8 << 9) + 1, _M, _U, "unmovable_intruder"),  # mixes Movable block 8
        _record(9 << 9, _U, _U, "unmovable_user"),  # block 9 is clean
        _record(10 << 9, _C, _M, "cma_user", order=2),  # CMA block 10: counted as Movable
        _record(11 << 9, _R, _U, "firmware", reserved=True),  # reserved pages never count
        _record(12 << 9, _U, _R, "reclaimable_intruder", zone=0),  # zone DMA
        _record((12 << 9) + 8, _U, _R, "reclaimable_intruder", zone=0),
    ]
    dump = tmp_path / "dump.txt"
    dump.write_text("".join(format_record(r) for r in records))
    # WHEN frag reads it
    result = frag_file(str(dump))
    zones = {z.zone: z for z in result.zones}
    # THEN the mixed counts are the kernel's: per zone, per block type, CMA as Movable
    assert dict(zones["DMA32"].mixed) == {_U: 0, _M: 2, _R: 0, MigrateType.HIGHATOMIC: 0,
                                          _C: 0, MigrateType.ISOLATE: 0}  # fmt: skip
    assert dict(zones["DMA32"].blocks)[_C] == 1 and dict(zones["DMA32"].blocks)[_R] == 1
    assert zones["DMA"].mixed_total == 1 and dict(zones["DMA"].mixed)[_U] == 1
    assert result.reserved == 1 and result.mismatched_records == 4
    # ... and the culprits are ranked by mixed blocks, then pages
    assert [(c.caller, c.blocks, c.pages) for c in result.culprits] == [
        ("cma_user", 1, 4), ("reclaimable_intruder", 1, 2), ("unmovable_intruder", 1, 1)]
    assert result.culprits[0].migratetypes == "Movable in CMA"


@pytest.mark.parametrize(("text", "size"), [("4096", 4096), ("4K", 4096), ("64KiB", 65536),
                                            ("2m", 2 << 20), ("16 kB", 16384)])  # fmt: skip
def test_page_size(text: str, size: int) -> None:
    assert parse_page_size(text) == size


@pytest.mark.parametrize("text", ["0", "3K", "4 pages", "-4K", ""])
def test_bad_page_size(text: str) -> None:
    with pytest.raises(SpecError):
        parse_page_size(text)


@pytest.mark.parametrize(
    "module",
    ["pageowner.kernel.frames", "pageowner.analyze.analysis", "pageowner.analyze.grep",
     "pageowner.sort.fields", "pageowner.sort.options", "pageowner.sort.render",
     "pageowner.dump.classify", "pageowner.units", "pageowner.report.units"],
)  # fmt: skip
def test_doctests(module: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried > 0 and failures == 0
