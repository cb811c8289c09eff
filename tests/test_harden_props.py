"""Hypothesis over the readers and the sort engine, on damaged dumps.

Dumps from tests/strategies.py are damaged (line ends changed to CR-LF or lone CR, NUL and
non-UTF-8 bytes, cut anywhere, numbers made huge) and then read: the two block splitters,
the typed reader (lenient and strict) and the sort engine must agree with each other and
with themselves whatever the read size, and never raise anything but ParseError. Where the
C page_owner_sort is built, lone CRs are checked against it: they are data there too.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fuzz.targets import check_dump
from pageowner.dump.dumpfile import DumpReader, iter_blocks
from pageowner.dump.fileio import CrLfReader, iter_lines
from pageowner.sort.options import SortOptions, build_options
from pageowner.sort.render import render_groups
from pageowner.sort.scan import SortEngine
from tests.strategies import dumps, sort_args
from tests.test_sort_properties import REFERENCE, count_both_ways, options_of, report


@st.composite
def damaged_dumps(draw: st.DrawFn) -> bytes:
    """Draw a dump and damage it in a few of the ways crashed machines and tools do."""
    data = bytearray(draw(dumps()))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["crlf", "cr", "nul", "utf8", "cut", "number", "junk"]))
        at = draw(st.integers(0, len(data)))
        if kind == "crlf":
            data[at:] = bytes(data[at:]).replace(b"\n", b"\r\n", draw(st.integers(1, 50)))
        elif kind == "cr":
            data[at:at] = b"\r"
        elif kind == "nul":
            data[at:at] = b"\x00"
        elif kind == "utf8":
            data[at:at] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"]))
        elif kind == "cut":
            del data[at:]
        elif kind == "number":
            data[at:at] = draw(st.sampled_from([b"99999999999999999999999", b"-1", b"9" * 80]))
        else:
            data[at:at] = draw(st.binary(max_size=40))
    return bytes(data)


@given(damaged_dumps())
def test_every_reader_keeps_its_promises(data: bytes) -> None:
    # The fuzz target's checks (fuzz/targets.py): splitters agree at any read size, the
    # typed reader's two paths agree, records print back, strict raises only ParseError
    # with a line inside the input, sort counts every block, read sizes change nothing.
    check_dump(data)


@given(damaged_dumps(), st.integers(1, 40))
def test_cr_lf_reader_matches_a_whole_replace(data: bytes, size: int) -> None:
    # GIVEN any bytes read in pieces of any size WHEN CR-LF is turned to LF on the fly
    stream = io.BytesIO(data)
    reader = CrLfReader(lambda n: stream.read(min(n, size)))
    pieces = []
    while chunk := reader.read(size):
        pieces.append(chunk)
    # THEN it is what one replace over the whole input gives
    assert b"".join(pieces) == data.replace(b"\r\n", b"\n")


@given(damaged_dumps(), sort_args())
def test_cr_lf_line_ends_change_nothing(data: bytes, args: list[str]) -> None:
    # GIVEN a dump without CRs, and the same with every LF a CR-LF
    assume(b"\r" not in data)
    crlf = data.replace(b"\n", b"\r\n")
    options = options_of(args)
    # THEN sort reports the same, with the same warnings (same line numbers)
    lf_engine = SortEngine(options).feed_stream(io.BytesIO(data).read)
    crlf_engine = SortEngine(options).feed_stream(io.BytesIO(crlf).read)
    assert report(crlf_engine) == report(lf_engine)
    assert crlf_engine.warnings == lf_engine.warnings
    # AND the typed reader reads the same records at the same lines
    assert list(DumpReader(iter_lines(crlf))) == list(DumpReader(iter_lines(data)))


@given(damaged_dumps())
def test_a_lone_cr_is_part_of_its_line(data: bytes) -> None:
    # Every line of every block is exactly the bytes between LFs, less one CR before an LF.
    for block in iter_blocks(iter_lines(data)):
        for line in block.lines:
            assert "\n" not in line


def _lone_crs(data: bytes, positions: list[int]) -> bytes:
    """Insert CRs inside lines: not right before an LF (that is CR-LF, deviation 4 of
    docs/compat.md) nor in the `Page allocated via order ` a block starts with (it is no
    record to us then, but counted by the C tool: deviation 7)."""
    out = bytearray(data)
    for position in sorted(positions, reverse=True):
        at = position % (len(out) + 1)
        start = bytes(out).rfind(b"\n\n", 0, at) + 2 if b"\n\n" in out[:at] else 0
        in_header_prefix = at - start <= len(b"Page allocated via order ")
        if out[at:at + 1] != b"\n" and not in_header_prefix:
            out[at:at] = b"\r"
    return bytes(out)


@pytest.mark.skipif(not shutil.which(REFERENCE) and not Path(REFERENCE).exists(),
                    reason=f"reference page_owner_sort not built at {REFERENCE}")
@settings(max_examples=60)
@given(dumps(oddities=False), sort_args(), st.lists(st.integers(0, 10**6), min_size=1,
                                                    max_size=6))
def test_lone_crs_sort_as_page_owner_sort_does(tmp_path_factory: pytest.TempPathFactory,
                                               data: bytes, args: list[str],
                                               positions: list[int]) -> None:
    # GIVEN a dump with lone CRs inside its lines (never before an LF)
    data = _lone_crs(data, positions)
    assume(len(data) // 100 > data.count(b"\n\n"))  # the tool sizes its table so
    folder = tmp_path_factory.mktemp("cr")
    source, theirs = folder / "in.txt", folder / "theirs.txt"
    source.write_bytes(data)
    # WHEN both tools sort it
    done = subprocess.run([REFERENCE, *args, str(source), str(theirs)], check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assume(done.returncode == 0)
    ours = SortEngine(options_of(args)).feed_stream(io.BytesIO(data).read)
    # THEN the same bytes: a lone CR is data to both
    assert b"".join(render_groups(ours.sorted_groups(), ours.options)) == theirs.read_bytes()


@settings(max_examples=15)
@given(damaged_dumps(), sort_args())
def test_two_cores_equal_one_on_damaged_dumps(tmp_path_factory: pytest.TempPathFactory,
                                              data: bytes, args: list[str]) -> None:
    path = tmp_path_factory.mktemp("split") / "dump.txt"
    # A damaged dump may end mid-record: close it, so the copies stay apart
    path.write_bytes((data.rstrip(b"\n") + b"\n\n") * 40)
    parallel, serial = count_both_ways(path, options_of(args))
    assert report(parallel) == report(serial)
    assert parallel.warnings == serial.warnings
    assert (parallel.records, parallel.selected, parallel.skipped) == (
        serial.records, serial.selected, serial.skipped)


def test_a_header_without_ts_that_gains_digits_is_another_group() -> None:
    # Found by the fuzzer: the scanner took the "3" for the ts digits it cuts and merged
    # the two blocks; page_owner_sort (and the block-by-block path) keeps them apart.
    body = b"PFN\n register_early_stack+0x46/0x80\n kernel_init+0x5/0xfc\n\n"
    data = b"Page allocated via order 0, mask 0x0()\n" + body + \
        b"Page allocated via order 0, mask 0x0()3\n" + body
    for options in (SortOptions(), build_options(["a"]), build_options(filter_released=True)):
        fast = SortEngine(options).feed_stream(io.BytesIO(data).read)
        assert len(fast.groups) == 2, options
        slow = SortEngine(options).feed_blocks(data.split(b"\n\n")[:2])
        assert report(fast) == report(slow), options
