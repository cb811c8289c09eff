"""The byte scanner (pageowner.dump.scan) against the typed reader, which is its oracle.

- Over generated dumps of every era (the typed writer prints each one), with runs of
  records that differ only in ts, pfn and block (the scanner's template path), blocks of
  no known shape and odd chunk sizes: every field of every record, the records skipped,
  the warnings and their line numbers are those of `DumpReader`.
- The analysis commands give the same answers on the fast path as on the typed path
  (--strict reads through DumpReader): every --by key, stats, frag, flame weights and
  grep's filters, on generated dumps and on the real ones.
- 7.3 handle-mode records keep their handle and are grouped by it.
"""

from __future__ import annotations

import dataclasses
import io
import lzma
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pageowner.analyze import analysis
from pageowner.analyze.analysis import GROUP_KEYS
from pageowner.analyze.flame import FlameOptions, Weight, read_flame_data
from pageowner.analyze.frag import FragOptions, frag_file
from pageowner.analyze.grep import Selection, grep_file
from pageowner.analyze.stats import stats_file
from pageowner.analyze.top import TopOptions, top_file
from pageowner.dump.dumpfile import DumpReader, format_record
from pageowner.dump.scan import ScanRecord, scan_records
from pageowner.errors import InputError
from pageowner.kernel.frames import StackInterner
from pageowner.kernel.tables import DEFAULT_FLAGS_LAYOUT
from pageowner.model import PageRecord
from tests import analyze_strategies, strategies

_T = TypeVar("_T")

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "real"
REAL73 = ROOT / "fixtures" / "real73"

_SETTINGS = settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

# Every field a command may read, as PageRecord names them.
FIELDS = ("order", "gfp_mask", "gfp_names", "pid", "tgid", "comm", "ts_nsec", "free_ts_nsec",
          "pfn", "page_mt", "block", "block_mt", "flags", "stack", "migrate_reason",
          "slab_cache", "memcg", "extra", "fmt", "lineno", "raw", "nr_pages",
          "has_pfn_line")  # fmt: skip


@st.composite
def _runs(draw: st.DrawFn) -> str:
    """Draw a record of any era and a run of copies that differ in ts, pfn and block."""
    record = draw(strategies.page_records())
    copies = [record]
    for _ in range(draw(st.integers(0, 3))):
        changes: dict[str, object] = {}
        if record.ts_nsec is not None:
            changes["ts_nsec"] = draw(st.integers(0, 2**64 - 1))
        if record.pfn is not None:
            changes["pfn"] = draw(st.integers(0, 2**40))
            changes["block"] = draw(st.integers(0, 2**31))
        copies.append(dataclasses.replace(record, **changes))  # type: ignore[arg-type]
    return "".join(format_record(copy) for copy in copies)


@st.composite
def _mixed_dumps(draw: st.DrawFn) -> bytes:
    """Draw a dump of typed-writer runs and hand-made blocks (some of no known shape)."""
    parts = draw(st.lists(st.one_of(_runs(), _runs(), strategies.blocks().map(lambda b: b + "\n")),
                          min_size=0, max_size=8))  # fmt: skip
    text = "".join(parts)
    if draw(st.booleans()):
        text = text.rstrip("\n") + draw(st.sampled_from(["", "\n"]))  # no closing blank line
    if draw(st.integers(0, 5)) == 0:
        text = text.replace("\n", "\r\n")
    return text.encode("utf-8", "surrogateescape")


def _typed(dump: bytes) -> tuple[list[PageRecord], list[str]]:
    warnings: list[str] = []
    reader = DumpReader(io.BytesIO(dump), "d", on_warning=warnings.append)
    return list(reader), warnings


def _scanned(dump: bytes, chunk_size: int, collapse: bool = False, blocks: bool = False
             ) -> tuple[list[tuple[object, int]], list[str]]:  # fmt: skip
    warnings: list[str] = []
    stream = io.BytesIO(dump)
    got = []
    for record, _, times, numbers in scan_records(
            stream.read, "d", StackInterner(), on_warning=warnings.append, collapse=collapse,
            blocks=blocks, chunk_size=chunk_size):  # fmt: skip
        if numbers is not None and numbers:
            assert len(numbers) == times
            # Each record of the run: the first, with its own pageblock number.
            for number in numbers:
                got.append((_WithBlock(record, int(number)), 1))
        else:
            got.append((record, times))
    return got, warnings


class _WithBlock:
    """A record of a collapsed run: the run's first record with the record's own block."""

    def __init__(self, record: object, block: int) -> None:
        self._record = record
        self.block = block

    def __getattr__(self, name: str) -> object:
        return getattr(self._record, name)


def _fields(record: object) -> dict[str, object]:
    return {name: getattr(record, name) for name in FIELDS}


@_SETTINGS
@given(dump=_mixed_dumps(), chunk_size=st.sampled_from([1 << 20, 64, 7]))
def test_every_field_is_the_typed_readers(dump: bytes, chunk_size: int) -> None:
    expected, expected_warnings = _typed(dump)
    got, warnings = _scanned(dump, chunk_size)
    assert warnings == expected_warnings
    assert [times for _, times in got] == [1] * len(expected)
    assert [_fields(record) for record, _ in got] == [_fields(r) for r in expected]
    for record, _ in got:
        if isinstance(record, ScanRecord):
            assert record.to_record() == record.to_record("d")
            assert _fields(record.to_record()) == _fields(record)


@_SETTINGS
@given(dump=_mixed_dumps(), chunk_size=st.sampled_from([1 << 20, 64, 7]), blocks=st.booleans())
def test_collapsed_runs_add_up_to_the_records(dump: bytes, chunk_size: int, blocks: bool
                                              ) -> None:  # fmt: skip
    expected, expected_warnings = _typed(dump)
    got, warnings = _scanned(dump, chunk_size, collapse=True, blocks=blocks)
    assert warnings == expected_warnings
    # Expand each run: its records are the run's first but for ts, pfn and block (and
    # with `blocks`, each record's own block).
    expanded = [record for record, times in got for _ in range(times)]
    assert len(expanded) == len(expected)
    ignored = {"ts_nsec", "pfn", "lineno", "raw"} | (set() if blocks else {"block"})
    for record, typed in zip(expanded, expected, strict=True):
        for name in FIELDS:
            if name not in ignored:
                assert getattr(record, name) == getattr(typed, name), name


def _write(tmp_path: Path, dump: bytes, name: str = "dump.txt") -> str:
    path = tmp_path / name
    path.write_bytes(dump)
    return str(path)


def _typed_samples(read: Callable[[int], bytes], name: str, interner: StackInterner,
                   watch: Any, *, check: bool = True, first_lineno: int = 1, collapse: Any = None,
                   join: Any = None, layout: Any = DEFAULT_FLAGS_LAYOUT) -> Iterator[Any]:
    """Read a dump with the typed reader, lenient: what the commands did before the scanner.

    (--strict also reads with the typed reader, but it refuses what the repair layer mends,
    so it is no longer the lenient typed path to compare with.)
    """
    reader = DumpReader(types.SimpleNamespace(read=read), name, on_warning=watch,
                        first_lineno=first_lineno)  # fmt: skip
    return analysis._record_samples(reader, interner, watch, check=check, join=join,
                                    layout=layout)  # fmt: skip


def _on_typed_reader(call: Callable[[], _T]) -> _T:
    """Run an analysis call on the typed reader instead of the scanner."""
    with mock.patch.object(analysis, "_scan_samples", _typed_samples):
        return call()


def _same_top(path: str) -> None:
    for key in GROUP_KEYS:
        for by_times in (False, True):
            options = TopOptions(by=key.name, top=0, by_times=by_times, jobs=1)
            fast = top_file(path, options)
            typed = _on_typed_reader(lambda options=options: top_file(path, options))
            assert fast == typed, key.name


def _same_stats_frag_flame(path: str) -> None:
    assert stats_file(path, jobs=1) == _on_typed_reader(lambda: stats_file(path, jobs=1))
    for exact in (False, True):
        options = FragOptions(top=0, exact=exact, jobs=1)
        assert frag_file(path, options) == _on_typed_reader(lambda options=options: frag_file(path, options))
    for weight in Weight:
        flame = FlameOptions(weight=weight, jobs=1)
        assert read_flame_data(path, flame) == _on_typed_reader(
            lambda flame=flame: read_flame_data(path, flame))


_GREPS = (
    [("pid", [(1, 2)])], [("tgid", [(1,)])], [("name", [("dd", "")])], [("order", [(0, 2)])],
    [("gfp", ["GFP_KERNEL"])], [("gfp", ["0x400"])], [("migratetype", [("Movable",)])],
    [("block_migratetype", [("CMA", "Unmovable")])], [("zone", [(1,)])], [("node", [(0,)])],
    [("module", [("xfs", "vmlinux")])], [("allocator", [(4, 8)])],
    [("pfn_range", [(0x1000, 0x20000)])], [("ts_range", [(0, 10**11)])],
    [("migrated", [True])], [("memcg", [("wl",)])],
    [("order", [(0, 1, 2)]), ("pfn_range", [(0, 0x30000)])],
)  # fmt: skip


def _same_grep(tmp_path: Path, path: str) -> None:
    import re

    for given_ in [*_GREPS, [("regex", [re.compile("slab|shmem")])]]:
        selection = Selection.build(given_)
        outputs = []
        for typed in (False, True):
            for count_only in (False, True):
                out = tmp_path / f"grep-{typed}-{count_only}.txt"

                def run(out: Path = out, count_only: bool = count_only,
                        selection: Selection = selection) -> object:
                    return grep_file(path, str(out), selection, count_only=count_only)
                try:
                    result = _on_typed_reader(run) if typed else run()
                except InputError as exc:  # --ts-range on a dump without ts: both refuse
                    outputs.append((str(exc), b""))
                else:
                    outputs.append((result, out.read_bytes()))
        assert outputs[:2] == outputs[2:], given_


_DUMP_SETTINGS = settings(max_examples=25, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])  # fmt: skip


@_DUMP_SETTINGS
@given(dump=analyze_strategies.dumps())
def test_commands_agree_with_the_typed_path_on_generated_dumps(tmp_path: Path, dump: bytes
                                                               ) -> None:  # fmt: skip
    if not dump:
        return  # an empty input is an error on both paths (test_analyze_cli)
    path = _write(tmp_path, dump)
    _same_top(path)
    _same_stats_frag_flame(path)
    _same_grep(tmp_path, path)


@_DUMP_SETTINGS
@given(runs=st.lists(_runs(), min_size=1, max_size=6))
def test_commands_agree_with_the_typed_path_on_every_era(tmp_path: Path, runs: list[str]
                                                          ) -> None:  # fmt: skip
    path = _write(tmp_path, "".join(runs).encode("utf-8", "surrogateescape"))
    _same_top(path)
    _same_stats_frag_flame(path)


_REAL_DUMPS = ("5.10.223-work.page_owner.txt.xz", "6.12.117-work.page_owner.txt.xz")


@pytest.mark.parametrize("name", _REAL_DUMPS)
def test_commands_agree_with_the_typed_path_on_real_dumps(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path, lzma.decompress((REAL / name).read_bytes()))
    _same_stats_frag_flame(path)
    _same_grep(tmp_path, path)
    for by in ("stack", "pid", "allocator", "zone", "gfp"):
        options = TopOptions(by=by, top=0, jobs=1)
        assert top_file(path, options) == top_file(path, dataclasses.replace(options,
                                                                              strict=True))


def test_handle_records_keep_their_handle_and_group_by_it() -> None:
    dump = lzma.decompress((REAL73 / "7.3-boot.page_owner.handle.txt.xz").read_bytes())
    typed, _ = _typed(dump)
    got, warnings = _scanned(dump, 1 << 20)
    assert warnings == []
    assert len(got) == len(typed) > 0
    handles = {record.handle for record, _ in got if isinstance(record, ScanRecord)}
    assert 1048577 in handles and None not in handles
    first = got[0][0]
    assert isinstance(first, ScanRecord)
    assert first.stack == () and first.info.caller_label == "handle 1048577"
    assert first.info.key == ("handle 1048577",)


def test_stack_handle_records_group_by_their_frames(tmp_path: Path) -> None:
    dump = lzma.decompress((REAL73 / "7.3-boot.page_owner.stack_handle.txt.xz").read_bytes())
    got, _ = _scanned(dump, 1 << 20)
    first = got[0][0]
    assert isinstance(first, ScanRecord)
    assert first.handle == 1048577
    assert first.info.frames == first.stack and first.stack[0].symbol == "register_early_stack"
    path = _write(tmp_path, dump)
    options = TopOptions(by="stack", top=0, jobs=1)
    assert top_file(path, options) == top_file(path, dataclasses.replace(options, strict=True))


# Inputs on which the scanner once disagreed with the typed reader (found by fuzz/run.py):
# a decimal PFN with leading zeros (int(text, 0) refuses it), and a header without ts
# equal to another header's text before its ", ts " (a memo key shared by both).
_FUZZ_FOUND = sorted((ROOT / "fixtures" / "scan").glob("fuzz-*.txt"))


@pytest.mark.parametrize("path", _FUZZ_FOUND, ids=lambda path: path.name)
def test_inputs_the_fuzzer_found(path: Path) -> None:
    from fuzz.targets import check_dump

    check_dump(path.read_bytes())


def test_the_fuzzer_found_inputs_are_there() -> None:
    assert len(_FUZZ_FOUND) == 2
