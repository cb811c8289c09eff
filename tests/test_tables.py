"""The flag tables decode every mask and flag word of the real dumps as the kernel did."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pageowner.dump.dumpfile import format_record
from pageowner.kernel.kernels import dump_format_for, get_kernel
from pageowner.kernel.tables import (
    GFP_TABLES,
    decode_flags,
    encode_flags,
    gfp_migratetype,
    gfp_table_for,
    pageflag_table_for,
)
from pageowner.model import HeaderStyle, MigrateType, PfnStyle
from pageowner.sim.boot import run_boot
from pageowner.sim.gfp import GFP
from pageowner.sim.machine import AllocClass, Machine
from pageowner.sim.records import record_at

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


REAL73 = ("7.3-boot.page_owner", "7.3-boot.page_owner.nid1", "7.3-boot.page_owner.handle",
          "7.3-boot.page_owner.stack_handle", "7.3-boot.page_owner.handle.nid0")


def test_every_real_7_3_mask_decodes_in_bit_order(plain_fixture: Callable[[str], Path]) -> None:
    # GIVEN every distinct mask the real 7.3 kernel printed, in every print mode
    masks: set[tuple[bytes, bytes]] = set()
    for dump in REAL73:
        masks |= set(MASK.findall(plain_fixture(f"real73/{dump}.txt.xz").read_bytes()))
    assert len(masks) == 45
    table = gfp_table_for("7.3")
    assert table is not None
    # WHEN decoded with the 7.3 table THEN every mask prints exactly the kernel's names
    assert {v.decode(): decode_flags(int(v, 16), table) for v, _ in masks} == {
        v.decode(): n.decode() for v, n in masks
    }
    # AND the 6.12 order (mmflags.h's hand-made list) gets 19 of them wrong: the reason
    # 6.15+ has a table of its own
    old = GFP_TABLES["6.12"]
    assert sum(decode_flags(int(v, 16), old) != n.decode() for v, n in masks) == 19
    assert decode_flags(0x140DCA, table) == "GFP_HIGHUSER_MOVABLE|__GFP_ZERO|__GFP_COMP"


def test_the_published_6_19_record_decodes() -> None:
    # GIVEN the record a 6.19 kernel printed, as its author published it (public-6.19/23)
    # WHEN its mask is decoded with the 6.19 table THEN the names are the published ones
    table = gfp_table_for("6.19")
    assert table is not None and table.name == "6.15"
    assert decode_flags(0xD2CC0, table) == (
        "GFP_KERNEL|__GFP_NOWARN|__GFP_NORETRY|__GFP_COMP|__GFP_NOMEMALLOC"
    )


def test_no_obj_ext_is_named_only_where_mmflags_names_it() -> None:
    # 6.10-6.14 print the bit as a hex remainder (kernel.md B.1); 7.3's TRACE_GFP_FLAGS_SLAB
    # names it with CONFIG_SLAB_OBJ_EXT (on in the real 7.3 config: fixtures/real73).
    t612, t619, t73 = gfp_table_for("6.12"), gfp_table_for("6.19"), gfp_table_for("7.3")
    assert t612 is not None and t619 is not None and t73 is not None
    assert decode_flags(0x1000CC0, t612) == "GFP_KERNEL|0x1000000"
    assert decode_flags(0x1000CC0, t619) == "GFP_KERNEL|0x1000000"
    assert decode_flags(0x1000CC0, t73) == "GFP_KERNEL|__GFP_NO_OBJ_EXT"


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


@pytest.mark.parametrize(
    ("mask", "expected"),
    [(0xCC0, MigrateType.UNMOVABLE), (0x100CCA, MigrateType.MOVABLE),
     (0xD2CD0, MigrateType.RECLAIMABLE), (0xCD8, MigrateType.HIGHATOMIC)],
)  # fmt: skip
def test_gfp_migratetype_shifts_both_mobility_bits(mask: int, expected: MigrateType) -> None:
    # gfp_migratetype() is (gfp & GFP_MOVABLE_MASK) >> GFP_MOVABLE_SHIFT: Movable (bit 3) is
    # 1, Reclaimable (bit 4) is 2, both are 3 = MIGRATE_HIGHATOMIC (v4.4+ numbering).
    assert gfp_migratetype(mask) is expected


def test_simulated_record_with_both_mobility_bits_is_highatomic() -> None:
    # GIVEN a simulated 6.12 page whose recorded mask has Movable and Reclaimable set (the
    # kernel only warns about such a mask; where the buddy then takes the page from is not
    # simulated, so the page is allocated movable and its record given the odd mask)
    machine = Machine.create("6.12", 128 << 20, "page_owner=on", 5)
    run_boot(machine)
    task = machine.tasks.add(1, 1, "init")
    stack = machine.stack(machine.builder.path("anon_fault"))
    movable = AllocClass(stack, GFP["GFP_HIGHUSER_MOVABLE"], task, machine.flags_id(()))
    (pfn,) = machine.alloc(movable)
    odd = GFP["GFP_KERNEL"] | GFP["__GFP_MOVABLE"] | GFP["__GFP_RECLAIMABLE"]
    machine.page.cls[pfn] = machine.class_id(AllocClass(stack, odd, task, machine.flags_id(())))
    # WHEN its record is printed THEN the page's type is the one the kernel derives
    text = format_record(record_at(machine, pfn))
    assert f"PFN {pfn:#x} type HighAtomic Block" in text
    assert "mask 0xcd8(GFP_KERNEL|__GFP_RECLAIMABLE|__GFP_MOVABLE)" in text
