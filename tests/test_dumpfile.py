"""The dump reader and writer: every era, every oddity, byte-exact round trips."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given

from pageowner.dump.dumpfile import (
    DumpReader,
    convert_record,
    encode,
    format_record,
    iter_records,
    parse_block,
)
from pageowner.errors import ParseError
from pageowner.kernel.kernels import KERNEL_VERSIONS, get_kernel
from pageowner.model import Frame, FrameStyle, HeaderStyle, MemcgCharge, MigrateType, PfnStyle
from tests.conftest import FIXTURES
from tests.strategies import page_records

DUMPS = sorted(
    str(p.relative_to(FIXTURES))
    for p in [*FIXTURES.glob("real/*.page_owner.txt.xz"), *FIXTURES.glob("cases/*.txt"),
              *FIXTURES.glob("real73/*.page_owner*.txt.xz")]
)


def read_all(data: bytes, **kwargs: object) -> list:  # type: ignore[type-arg]
    """Parse a whole dump held in memory."""
    return list(iter_records(io.BytesIO(data), "dump.txt", **kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("name", DUMPS)
def test_real_dumps_print_back_byte_for_byte(name: str, plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN a dump from a real kernel (or a hand-made case) WHEN parsed and printed again
    data = plain_fixture(name).read_bytes()
    warnings: list[str] = []
    records = list(DumpReader(io.BytesIO(data), name, on_warning=warnings.append))
    text = b"".join(encode(format_record(record)) for record in records)
    # THEN every byte comes back (a missing final blank line is added, with a warning)
    if data.endswith(b"\n\n"):
        assert text == data and not warnings
    else:
        assert text == data + b"\n" and len(warnings) == 1
    assert len(records) == data.count(b"Page allocated via order")
    assert all(record.raw is not None and encode(record.raw) in data for record in records[:50])


@given(page_records())
def test_records_of_any_era_survive_format_then_parse(record: object) -> None:
    text = format_record(record)  # type: ignore[arg-type]
    lines = text.rstrip("\n").split("\n")
    assert parse_block(lines) == record


def test_fields_of_a_6_1_record() -> None:
    # GIVEN the first record of the real 6.1 boot dump
    text = (
        "Page allocated via order 0, mask 0x0(), pid 1, tgid 1 (swapper/0), ts 451916501 ns, "
        "free_ts 0 ns\nPFN 4096 type Unmovable Block 8 type Unmovable Flags "
        "0x100000000000000(node=0|zone=1)\n register_early_stack+0x31/0x65\n"
        " xfs_buf_read_map+0x54/0x280 [xfs]\nCharged (via objcg) to offline memcg gone\n\n"
    )
    [record] = read_all(text.encode())
    assert (record.order, record.gfp_mask, record.gfp_names) == (0, 0, "")
    assert (record.pid, record.tgid, record.comm) == (1, 1, "swapper/0")
    assert (record.ts_nsec, record.free_ts_nsec, record.pfn, record.block) == (451916501, 0, 4096, 8)
    assert record.page_mt is record.block_mt is MigrateType.UNMOVABLE
    assert (record.flags.value, record.flags.node, record.flags.zone) == (1 << 56, 0, 1)
    assert record.stack == (Frame("register_early_stack", 0x31, 0x65),
                            Frame("xfs_buf_read_map", 0x54, 0x280, "xfs"))
    assert record.memcg == MemcgCharge("gone", via_objcg=True, offline=True)
    assert record.fmt.header is HeaderStyle.TGID_TS_FREE and record.fmt.pfn is PfnStyle.DEC


def test_3_19_letters_and_addresses() -> None:
    text = (
        b"Page allocated via order 0, mask 0x200da\n"
        b"PFN 674308 Block 1317 type 2 Fallback Flags    U LA    M\n"
        b" [<ffffffff81164e9a>] __alloc_pages_nodemask+0x15a/0xa30\n\n"
    )
    [record] = read_all(text)
    assert record.gfp_names is None and record.pid is None
    assert record.block_mt is MigrateType.MOVABLE and record.page_mt is None  # Fallback
    assert record.flags.names == ("uptodate", "lru", "active", "mappedtodisk")
    assert record.stack[0].address == 0xFFFFFFFF81164E9A
    assert record.fmt.frames is FrameStyle.ADDRESS and record.fmt.pfn is PfnStyle.LETTERS
    assert encode(format_record(record)) == text


@pytest.mark.parametrize("comm", ["(sd-pam)", "my prog", "a(b)c", "", "x), ts 5 ns"])
def test_odd_command_names(comm: str) -> None:
    text = f"Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 ({comm}), ts 9 ns\n\n"
    [record] = read_all(text.encode())
    assert record.comm == comm and record.ts_nsec == 9


def test_crlf_and_missing_final_blank_line() -> None:
    text = (FIXTURES / "cases/no-final-blank-line.txt").read_bytes()
    lf = read_all(text)
    crlf = read_all(text.replace(b"\n", b"\r\n"))
    assert lf == crlf and len(lf) == 40


def test_dump_cut_mid_record(plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN a real dump cut in the middle of a header line (the kernel died while read)
    data = plain_fixture("real/6.12.117-work.page_owner.txt.xz").read_bytes()
    cut = data.find(b"Page allocated", 100_000) + 30
    warnings: list[str] = []
    records = read_all(data[:cut], on_warning=warnings.append)
    # THEN the complete records are read and the torn one is reported, not an error
    assert len(records) == data[:cut].count(b"Page allocated") - 1
    assert "ends inside a record" in warnings[0]


def test_non_records_are_skipped_or_refused() -> None:
    text = b"garbage line\nmore\n\nPage allocated via order 0, mask 0x0\n\n"
    warnings: list[str] = []
    assert len(read_all(text, on_warning=warnings.append)) == 1
    assert warnings == ["dump.txt:1: not a page_owner record: 'garbage line' (block skipped)"]
    with pytest.raises(ParseError) as error:
        read_all(text, strict=True)
    assert str(error.value) == "dump.txt:1: not a page_owner record: 'garbage line'"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (b"Page allocated via order x, mask 0x0\n\n", 1, "malformed page_owner header"),
        (b"Page allocated via order 0, mask 0x0\nPFN 12 type Bogus Block 0 type Movable "
         b"Flags 0x0()\n\n", 2, "unknown migratetype 'Bogus'"),
        (b"Page allocated via order 0, mask 0x0\n foo+0x1/0x2\nSlab cache page\n bar+0x1/0x2\n\n",
         4, "stack frame after the trailing lines"),
    ],
)
def test_parse_errors_name_file_and_line(text: bytes, line: int, reason: str) -> None:
    with pytest.raises(ParseError) as error:
        read_all(b"Page allocated via order 0, mask 0x0\n\n" + text, strict=True)
    assert error.value.lineno == line + 2
    assert error.value.reason == reason
    assert str(error.value).startswith(f"dump.txt:{line + 2}: {reason}: ")


@pytest.mark.parametrize("version", KERNEL_VERSIONS)
def test_convert_to_any_era_reads_back(version: str, plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN real 6.12 records WHEN printed as another kernel would print them
    kernel = get_kernel(version)
    data = plain_fixture("cases/modern-6.12.txt").read_bytes()
    for record in read_all(data)[:60]:
        converted = convert_record(record, kernel)
        text = format_record(converted)
        # THEN the text has that era's shapes and reads back to the same record
        assert parse_block(text.rstrip("\n").split("\n")) == converted
        assert converted.fmt == kernel.fmt or converted.pfn is None
        assert (", tgid " in text) == kernel.fmt.header.has_tgid
        assert ("free_ts" in text) == kernel.fmt.header.has_free_ts
        assert ("[<" in text) == (kernel.fmt.frames is FrameStyle.ADDRESS)
