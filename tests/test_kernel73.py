"""Kernel 7.3's print modes in the typed reader and writer, on the real 7.3 dumps."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

from pageowner.dump.dumpfile import DumpReader, convert_record, format_record, parse_block
from pageowner.kernel.kernels import get_kernel
from pageowner.model import PrintMode


def records(path: Path) -> list:  # type: ignore[type-arg]
    """Read every record of a dump."""
    return list(DumpReader(io.BytesIO(path.read_bytes()), path.name, strict=True))


def test_the_three_modes_of_one_boot_read_as_fields(plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN the stack, handle and stack_handle dumps of the real 7.3 boot run
    stack = records(plain_fixture("real73/7.3-boot.page_owner.txt.xz"))
    handle = records(plain_fixture("real73/7.3-boot.page_owner.handle.txt.xz"))
    both = records(plain_fixture("real73/7.3-boot.page_owner.stack_handle.txt.xz"))
    # THEN each record says its mode, and handle lines never end up as unknown lines
    assert {r.print_mode for r in stack} == {PrintMode.STACK}
    assert {r.print_mode for r in handle} == {PrintMode.HANDLE}
    assert {r.print_mode for r in both} == {PrintMode.STACK_HANDLE}
    assert not any(r.extra for r in stack + handle + both)
    # AND the early-allocation record carries the handle the README names (1048577)
    assert handle[0].handle == both[0].handle == 1048577 and handle[0].stack == ()
    assert both[0].stack == stack[0].stack and both[0].stack[0].symbol == "register_early_stack"
    # AND the memcg line still follows the handle
    charged = next(r for r in handle if r.memcg is not None)
    assert charged.memcg is not None and charged.memcg.name in {"/", "wl"}


def test_handle_line_shapes() -> None:
    # GIVEN a 7.3 record whose line after the PFN is a handle, and ones that are not %u
    head = ["Page allocated via order 0, mask 0x0(), pid 0, tgid 0 (swapper), ts 1 ns",
            "PFN 0x1000 type Unmovable Block 8 type Unmovable Flags 0x4(referenced|node=0|zone=1)"]
    assert parse_block([*head, "handle: 4294967295"]).handle == 2**32 - 1
    # THEN a signed, zero-padded or out-of-range value stays an unknown line, printed back
    for odd in ("handle: -1", "handle: 042", "handle: 4294967296"):
        record = parse_block([*head, odd])
        assert record.handle is None and record.extra == (odd,)
        assert format_record(record) == "\n".join([*head, odd]) + "\n\n"


def test_convert_drops_the_handle_before_7_3(plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN a stack_handle record of the real boot
    record = records(plain_fixture("real73/7.3-boot.page_owner.stack_handle.txt.xz"))[0]
    # WHEN printed as 6.12 and as 7.3 would print it
    old = format_record(convert_record(record, get_kernel("6.12")))
    new = format_record(convert_record(record, get_kernel("7.3")))
    # THEN only 7.3 prints the handle line, after the frames
    assert "handle:" not in old
    assert new.endswith(" start_kernel+0x3ef/0x850\nhandle: 1048577\n\n")
    assert new == record.raw + "\n"


def test_sort_help_exits_0_like_the_7_3_tool(runner: object) -> None:
    # GIVEN page_owner_sort 7.3's -h/--help (usage, exit 0) WHEN ours gets either
    from click.testing import CliRunner

    from pageowner.cli import cli

    assert isinstance(runner, CliRunner)
    for flag in ("-h", "--help"):
        result = runner.invoke(cli, ["sort", flag])
        # THEN it prints its usage and exits 0, not a usage error
        assert result.exit_code == 0
        assert result.output.startswith("Usage: pageowner sort [OPTIONS] INPUT OUTPUT\n")
