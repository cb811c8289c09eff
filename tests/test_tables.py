"""The flag tables decode every mask and flag word of the real dumps as the kernel did."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pageowner.kernel.kernels import dump_format_for, get_kernel
from pageowner.kernel.tables import (
    GFP_TABLES,
    decode_flags,
    encode_flags,
    gfp_table_for,
    pageflag_table_for,
)
from pageowner.model import HeaderStyle, PfnStyle

MASK = re.compile(rb"mask (0x[0-9a-f]+)\(([^)]*)\)")
FLAGS = re.compile(rb"Flags (0x[0-9a-f]+)\(([^)]*)\)")


@pytest.mark.parametrize(
    ("dump", "version"),
    [("5.10.223-work", "5.10"), ("6.1.192-boot", "6.1"), ("6.12.117-work", "6.12")],
)
def test_real_masks_and_flags_decode_exactly(
    dump: str, version: str, plain_fixture: Callable[[str], Path]
) -> None:
    # GIVEN every distinct mask and flags word a real kernel printed
    data = plain_fixture(f"real/{dump}.page_owner.txt.xz").read_bytes()
    masks = set(MASK.findall(data))
    flags = set(FLAGS.findall(data))
    gfp, pageflags = gfp_table_for(version), pageflag_table_for(version)
    assert gfp is not None and len(masks) > 10 and len(flags) > 5
    # WHEN decoded with that version's tables THEN the names are the kernel's
    for value, names in masks:
        assert decode_flags(int(value, 16), gfp) == names.decode()
    for value, printed in flags:
        names = "|".join(p for p in printed.decode().split("|") if p and "=" not in p)
        assert decode_flags(int(value, 16) & ((1 << 26) - 1), pageflags) == names


@given(st.integers(0, 2**27 - 1), st.sampled_from(sorted(GFP_TABLES)))
def test_decode_then_encode_keeps_every_bit(value: int, table: str) -> None:
    assert encode_flags(decode_flags(value, GFP_TABLES[table]), GFP_TABLES[table]) == value


@pytest.mark.parametrize(
    ("version", "header", "pfn"),
    [("3.19", HeaderStyle.MASK, PfnStyle.LETTERS), ("4.19", HeaderStyle.MASK_NAMES, PfnStyle.DEC_RAW_FLAGS),
     ("5.11", HeaderStyle.PID_TS, PfnStyle.DEC_RAW_FLAGS), ("5.14", HeaderStyle.PID_TS_FREE, PfnStyle.DEC),
     ("6.1", HeaderStyle.TGID_TS_FREE, PfnStyle.DEC), ("6.6", HeaderStyle.TGID_TS_FREE, PfnStyle.HEX),
     ("6.12", HeaderStyle.TGID_TS, PfnStyle.HEX)],
)
def test_each_version_prints_its_era(version: str, header: HeaderStyle, pfn: PfnStyle) -> None:
    assert (dump_format_for(version).header, dump_format_for(version).pfn) == (header, pfn)
    assert get_kernel(version).fmt == dump_format_for(version)
