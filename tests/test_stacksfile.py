"""page_owner_stacks files: read and print back byte for byte, all three kinds."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from pageowner.dump.stacksfile import (
    format_stack_count,
    iter_stack_counts,
    sniff_kind,
    write_stack_counts,
)
from pageowner.errors import ParseError
from pageowner.model import StackCount, StacksFileKind


@pytest.mark.parametrize("name", ["6.12.117-boot.show_stacks.txt.xz", "6.12.117-work.show_stacks.txt.xz"])
def test_real_show_stacks_round_trip(name: str, plain_fixture: Callable[[str], Path]) -> None:
    data = plain_fixture(f"real/{name}").read_bytes()
    entries = list(iter_stack_counts(io.BytesIO(data), name))
    out = io.BytesIO()
    assert write_stack_counts(entries, out) == len(entries) == data.count(b"nr_base_pages:")
    assert out.getvalue() == data
    assert sniff_kind(data[:4096]) is StacksFileKind.SHOW_STACKS
    assert sum(entry.nr_base_pages or 0 for entry in entries) > 1000


def test_handle_files() -> None:
    handles = b"handle: 42\nnr_base_pages: 20824\n\nhandle: 7\nnr_base_pages: 0\n\n"
    stacks_handles = b" post_alloc_hook+0x177/0x1a0\nhandle: x\n\n"
    entries = list(iter_stack_counts(io.BytesIO(handles)))
    assert entries == [StackCount((), 42, 20824), StackCount((), 7, 0)]
    assert "".join(map(format_stack_count, entries)).encode() == handles
    assert sniff_kind(handles) is StacksFileKind.SHOW_HANDLES
    both = b" post_alloc_hook+0x177/0x1a0\nhandle: 42\n\n"
    [entry] = iter_stack_counts(io.BytesIO(both))
    assert (entry.handle, entry.nr_base_pages, entry.stack[0].symbol) == (42, None, "post_alloc_hook")
    assert sniff_kind(both) is StacksFileKind.SHOW_STACKS_HANDLES
    with pytest.raises(ParseError, match="stacks.txt:2: not a page_owner_stacks line"):
        list(iter_stack_counts(io.BytesIO(stacks_handles), "stacks.txt"))
