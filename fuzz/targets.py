"""What the fuzzers check: one input, every reader, and the promises that must hold for it.

`check_dump(data)` feeds one byte string to the typed reader (`pageowner.dump.dumpfile`:
`iter_blocks`, `iter_blocks_read`, `parse_block` through `DumpReader`, lenient and strict),
to the sort engine's scanner (`pageowner.sort.scan.SortEngine.feed_stream`, whole and in small
reads), to the analysis commands' scanner (`pageowner.dump.scan`, which must agree with the
typed reader field by field) and to the show_stacks reader, and raises AssertionError when
a promise breaks. Any exception other than the library's own `ParseError` where one is
allowed is a crash. Both drivers in fuzz/run.py (atheris, or our own mutator) call it.
"""

from __future__ import annotations

import io
from collections.abc import Callable

from pageowner.analyze.analysis import GROUP_KEYS, Sample, allocator_bits, node_of, zone_of
from pageowner.dump.dumpfile import (
    DumpReader,
    format_record,
    iter_blocks,
    iter_blocks_read,
    parse_block,
)
from pageowner.dump.fileio import iter_lines
from pageowner.dump.scan import scan_records
from pageowner.dump.stacksfile import iter_stack_counts
from pageowner.errors import ParseError
from pageowner.kernel.frames import StackInterner
from pageowner.model import PageRecord
from pageowner.sort.options import SortOptions, build_options
from pageowner.sort.render import render_groups
from pageowner.sort.scan import SortEngine

__all__ = ["SORT_MODES", "check_dump"]

# A few option sets that take the scanner's different paths: the default (ts digits cut),
# -a (digits kept: the "near" path), --cull=st, --cull=ator (PFN line compared) and the
# 5.18-6.6 semantics (-f), and a --name filter (the comm regex).
SORT_MODES: tuple[SortOptions, ...] = (
    SortOptions(),
    build_options(["a"]),
    build_options(["m"], cull=frozenset({"stacktrace"})),
    build_options(cull=frozenset({"allocator", "pid"})),
    build_options(["t"], filter_released=True),
    build_options(names=(b"dd", b"")),
)


def _reader(data: bytes, size: int) -> Callable[[int], bytes]:
    """Return a read(n) over `data` that hands out at most `size` bytes a call."""
    stream = io.BytesIO(data)
    return lambda n: stream.read(min(n, size))


def _blocks(data: bytes) -> list[tuple[int, tuple[str, ...], bool]]:
    """Split into blocks the line-by-line way: (first line, lines, complete)."""
    return [(b.lineno, b.lines, b.complete) for b in iter_blocks(iter_lines(data))]


def _check_blocks(data: bytes, size: int) -> list[tuple[int, tuple[str, ...], bool]]:
    """Both block splitters agree, whatever the read size."""
    by_lines = _blocks(data)
    by_reads = [(b.lineno, b.lines, b.complete) for b in iter_blocks_read(_reader(data, size))]
    assert by_reads == by_lines, "iter_blocks_read and iter_blocks disagree"
    return by_lines


def _check_record(record: PageRecord, interner: StackInterner) -> None:
    """Everything analysis derives from a record can be derived, and it prints back."""
    again = parse_block(tuple(format_record(record).rstrip("\n").split("\n")))
    assert again == record, "format_record does not parse back to the same record"
    assert record.nr_pages >= 1
    zone_of(record)
    node_of(record)
    allocator_bits(record)
    sample = Sample(interner.intern(record.stack), record.nr_pages, 1, record)
    for key in GROUP_KEYS:
        hash(key.key(sample))
        key.label(sample)
    sample.stack.chain(3)
    sample.stack.labels()


def _check_reader(data: bytes, blocks: list[tuple[int, tuple[str, ...], bool]]) -> None:
    """The typed reader, lenient and strict, on the lines and on read(n)."""
    warnings: list[str] = []
    lenient = DumpReader(iter_lines(data), "<fuzz>", on_warning=warnings.append)
    records = list(lenient)
    by_read = DumpReader(io.BytesIO(data), "<fuzz>")
    assert list(by_read) == records, "the reader's two input paths disagree"
    assert by_read.skipped == lenient.skipped
    dropped = len(blocks) - len(records) - lenient.skipped
    assert dropped in (0, 1), "a block vanished without a warning"
    assert dropped == 0 or (lenient.truncated and not blocks[-1][2])
    assert len(warnings) >= lenient.skipped + dropped
    interner = StackInterner()
    for record in records:
        _check_record(record, interner)
    lines = data.count(b"\n") + 1
    try:
        strict = list(DumpReader(iter_lines(data), "<fuzz>", strict=True))
    except ParseError as exc:
        assert 1 <= exc.lineno <= lines, f"error line {exc.lineno} outside the input"
        assert lenient.skipped > 0
    else:
        assert strict == records


_SCAN_FIELDS = ("order", "gfp_mask", "gfp_names", "pid", "tgid", "comm", "ts_nsec",
                "free_ts_nsec", "pfn", "page_mt", "block", "block_mt", "flags", "stack",
                "migrate_reason", "slab_cache", "memcg", "extra", "fmt", "lineno", "raw")


def _check_scan(data: bytes, size: int) -> None:
    """The analysis scanner: the typed reader's records, fields and warnings, any read size."""
    warnings: list[str] = []
    records = list(DumpReader(io.BytesIO(data), "<fuzz>", on_warning=warnings.append))
    expected = [[getattr(r, name) for name in _SCAN_FIELDS] for r in records]
    for read in (io.BytesIO(data).read, _reader(data, size)):
        got_warnings: list[str] = []
        scanned = [
            [getattr(record, name) for name in _SCAN_FIELDS]
            for record, _, _, _ in scan_records(read, "<fuzz>", StackInterner(),
                                                    on_warning=got_warnings.append)
        ]  # fmt: skip
        assert scanned == expected, "the scanner and the typed reader disagree"
        assert got_warnings == warnings, "the scanner warns differently"
    runs = scan_records(io.BytesIO(data).read, "<fuzz>", StackInterner(), collapse=True,
                        blocks=True)  # fmt: skip
    assert sum(times for _, _, times, _ in runs) == len(records), "a run lost records"


def _check_sort(data: bytes, size: int, blocks: int) -> None:
    """The sort engine: read size changes nothing, every block is counted or skipped."""
    for mode, options in enumerate(SORT_MODES):
        whole = SortEngine(options).feed_stream(io.BytesIO(data).read)
        assert whole.records + whole.skipped == blocks, "sort and the reader split differently"
        report = b"".join(render_groups(whole.sorted_groups(), options))
        if mode >= 2:  # small reads cost time; the first two modes take the scanner's paths
            continue
        small = SortEngine(options).feed_stream(_reader(data, size))
        assert b"".join(render_groups(small.sorted_groups(), options)) == report
        assert (small.records, small.selected, small.skipped) == (
            whole.records, whole.selected, whole.skipped,
        )  # fmt: skip
        assert small.warnings == whole.warnings
        last_line_open = bool(data) and not data.endswith(b"\n")
        assert whole.next_lineno == data.count(b"\n") + 1 + last_line_open, "lines drifted"
    try:
        SortEngine(SortOptions(), strict=True).feed_stream(io.BytesIO(data).read)
    except ParseError as exc:
        assert 1 <= exc.lineno <= data.count(b"\n") + 1


def _check_stacks(data: bytes) -> None:
    """The show_stacks reader raises nothing but ParseError."""
    try:
        for entry in iter_stack_counts(iter_lines(data), "<fuzz>"):
            assert entry.handle is not None or entry.nr_base_pages is not None
    except ParseError:
        pass


def check_dump(data: bytes, read_size: int | None = None) -> None:
    """Run every reader over `data`; raise AssertionError (or crash) when a promise breaks.

    `read_size` is how many bytes each read hands out on the small-reads path (default:
    1 to 97, picked from the input so that chunk boundaries fall everywhere).
    """
    if read_size is None:
        read_size = 1 + len(data) * 7919 % 97
    blocks = _check_blocks(data, read_size)
    _check_reader(data, blocks)
    _check_scan(data, read_size)
    _check_sort(data, read_size, len(blocks))
    _check_stacks(data)
