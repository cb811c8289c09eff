"""Kernel facts held against the source and real dumps (issue 15): each era says so."""

from __future__ import annotations

import doctest
import importlib
import io
import json
import lzma
from pathlib import Path

import pytest

from pageowner.analyze.analysis import open_samples
from pageowner.dump.dumpfile import convert_record, format_record, iter_records
from pageowner.dump.era import versions_printing
from pageowner.kernel.kernels import KernelVersion, dump_format_for
from pageowner.kernel.tables import FLAGS_LAYOUTS, flags_layout_for_config, migrate_reason_names
from pageowner.live.capture import capture
from pageowner.model import FrameStyle
from pageowner.sim.boot import run_boot
from pageowner.sim.dump import stacks_file_text, write_debugfs_tree, write_page_owner
from pageowner.sim.machine import Machine
from pageowner.sim.workloads import run_workload
from tests.analyze_support import run as run_cli
from tests.live_trees import FakeMachine

# -- migrate reasons (mm/debug.c migrate_reason_names[]) ----------------------------------


@pytest.mark.parametrize(
    ("release", "contig_range"),
    [("4.6", "cma"), ("5.1", "cma"), ("5.10", "cma"), ("5.10.69", "cma"),
     ("5.10.70", "contig_range"), ("5.10.223", "contig_range"), ("5.14", "cma"),
     ("5.15", "contig_range"), ("6.12.117", "contig_range"), ("7.3", "contig_range")],
)  # fmt: skip
def test_contig_range_was_cma_until_5_15(release: str, contig_range: str) -> None:
    # "mm/debug: sync up MR_CONTIG_RANGE and MR_LONGTERM_PIN" (5.15-rc3, stable 5.10.70)
    assert migrate_reason_names(release)[6] == contig_range


def test_longterm_pin_had_no_name_before_5_15() -> None:
    # d1e153fea2a8 (5.13) added MR_LONGTERM_PIN to the enum but not to the names: a NULL
    assert migrate_reason_names("5.13")[7] == "(null)"
    assert migrate_reason_names("5.15")[7:] == ("longterm_pin", "demotion")
    assert len(migrate_reason_names("5.10")) == 7


@pytest.mark.parametrize(("version", "reason"), [("5.10", "cma"), ("6.1", "contig_range")])
def test_simulated_cma_migration_prints_the_release_name(version: str, reason: str) -> None:
    # GIVEN a simulated machine with a CMA area whose movable pages cma_alloc migrates out
    machine = Machine.create(version, 128 << 20, "page_owner=on cma=16M", 3)
    run_boot(machine)
    run_workload(machine, "anon", ["--mb", "64"])
    message = run_workload(machine, "cma", ["--mb", "8"])
    out = io.BytesIO()
    write_page_owner(machine, out)
    text = out.getvalue().decode()
    # WHEN the dump is read THEN the migrated pages carry that release's string
    assert f"migrated out, reason {reason})" in message and " 0 migrated" not in message
    assert f"Page has been migrated, last migrate reason: {reason}\n" in text
    other = {"cma", "contig_range"} - {reason}
    assert f"last migrate reason: {other.pop()}" not in text


def test_converting_a_record_renames_contig_range() -> None:
    # GIVEN a 6.1 record migrated by alloc_contig_range
    machine = Machine.create("6.1", 128 << 20, "page_owner=on cma=16M", 3)
    run_boot(machine)
    run_workload(machine, "anon", ["--mb", "64"])
    run_workload(machine, "cma", ["--mb", "8"])
    out = io.BytesIO()
    write_page_owner(machine, out)
    records = [r for r in iter_records(io.BytesIO(out.getvalue())) if r.migrate_reason]
    assert records and records[0].migrate_reason == "contig_range"
    # WHEN printed as 5.10 and as 6.12 print it THEN the name follows the release
    assert "last migrate reason: cma\n" in format_record(convert_record(records[0], KernelVersion("5.10")))
    assert "reason: contig_range\n" in format_record(convert_record(records[0], KernelVersion("6.12")))


# -- count_threshold: "%llu" on 6.9-6.19, "%llu\n" on 7.3 ---------------------------------


@pytest.mark.parametrize(("version", "text"), [("6.9", b"0"), ("6.12", b"0"), ("6.19", b"0")])
def test_simulated_count_threshold_has_no_newline_before_7_3(
    version: str, text: bytes, tmp_path: Path
) -> None:
    # GIVEN a simulated machine's debugfs tree
    machine = Machine.create(version, 64 << 20, "page_owner=on", 1)
    run_boot(machine)
    write_debugfs_tree(machine, str(tmp_path))
    # WHEN count_threshold is read THEN it is the bare number DEFINE_SIMPLE_ATTRIBUTE prints
    assert (tmp_path / "page_owner_stacks" / "count_threshold").read_bytes() == text
    assert stacks_file_text(machine, "count_threshold", 64) == "64"


def test_count_threshold_gains_its_newline_in_7_3() -> None:
    assert KernelVersion("7.3").count_threshold_newline
    assert not KernelVersion("6.19").count_threshold_newline


# -- the `[<address>]` frame column: plain addresses until 4.14, never hashed ------------

# A record in the shape real 4.18/4.19 kernels print (LKML posts of 2018 and later): names
# in the mask, raw flags word, and frames with no address column.
DUMP_4_19 = (
    "Page allocated via order 0, mask 0x100cca(GFP_HIGHUSER_MOVABLE)\n"
    "PFN 262144 type Movable Block 512 type Movable Flags 0x17ffffc0000000()\n"
    " __alloc_pages_nodemask+0xfc/0x270\n"
    " alloc_pages_vma+0x7c/0x1e0\n"
    " do_anonymous_page+0x10d/0x580\n"
    "\n"
)


def test_a_4_19_dump_reads_as_a_4_19_era() -> None:
    # GIVEN a dump a 4.19 kernel printed
    (record,) = iter_records(io.BytesIO(DUMP_4_19.encode()), strict=True)
    # WHEN its shape is matched against the registry THEN 4.19 is among its kernels
    assert record.fmt == dump_format_for("4.19")
    assert "4.19" in versions_printing(record.fmt)
    assert all(frame.address is None for frame in record.stack)
    # AND written back by 4.19 rules it is the same text; by 4.14 rules it gains addresses
    assert format_record(convert_record(record, KernelVersion("4.19"))) == DUMP_4_19
    old = format_record(convert_record(record, KernelVersion("4.14")))
    assert " [<0000000000000000>] __alloc_pages_nodemask+0xfc/0x270\n" in old


@pytest.mark.parametrize(
    ("version", "style"),
    [("3.19", FrameStyle.ADDRESS), ("4.14", FrameStyle.ADDRESS), ("4.15", FrameStyle.PLAIN),
     ("4.19", FrameStyle.PLAIN), ("5.1", FrameStyle.PLAIN)],
)  # fmt: skip
def test_frame_column_era(version: str, style: FrameStyle) -> None:
    assert dump_format_for(version).frames is style


def test_simulated_4_19_prints_plain_frames() -> None:
    # GIVEN a simulated 4.19 machine WHEN its dump is printed THEN no frame has `[<`
    machine = Machine.create("4.19", 64 << 20, "page_owner=on", 1)
    run_boot(machine)
    out = io.BytesIO()
    write_page_owner(machine, out)
    frames = [line for line in out.getvalue().decode().splitlines() if line.startswith(" ")]
    assert frames and not any(line.startswith(" [<") for line in frames)


# -- page->flags layout: zone at bit 56 only with NUMA and NODES_SHIFT 6 ------------------

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_the_numa_layout_reads_node_1_of_the_two_node_7_3_dump() -> None:
    # GIVEN the real 7.3 dump of a two-node machine (NUMA=y, NODES_SHIFT=6 in its config)
    config = lzma.decompress((FIXTURES / "real73/7.3.config.xz").read_bytes()).decode()
    layout = flags_layout_for_config(config)
    assert layout is FLAGS_LAYOUTS["numa"]
    nodes: set[int] = set()
    with open_samples(str(FIXTURES / "real73/7.3-boot.page_owner.txt.xz")) as stream:
        for sample in stream.samples:
            flags = sample.record.flags if sample.record is not None else None
            assert flags is not None and flags.value is not None
            # THEN the layout derives the node= and zone= %pGp printed, record by record
            assert layout.field(flags.value, "node") == flags.node
            assert layout.field(flags.value, "zone") == flags.zone
            nodes.add(flags.node or 0)
    assert nodes == {0, 1}


# A pre-5.14 record (raw flags word, no fields) whose word has bit 63 set: zone 2 (Normal)
# on a kernel without NUMA, but node 32, zone 0 read as the NUMA layout would.
NONUMA_DUMP = (
    "Page allocated via order 0, mask 0x100cca(GFP_HIGHUSER_MOVABLE)\n"
    "PFN 262144 type Movable Block 512 type Movable Flags 0x8000000000000000()\n"
    " __alloc_pages_nodemask+0xfc/0x270\n"
    "\n"
)


def test_a_dump_without_fields_is_read_with_the_layout_named(tmp_path: Path) -> None:
    dump = tmp_path / "d.txt"
    dump.write_text(NONUMA_DUMP)
    # WHEN read as the default (NUMA) layout THEN bits 56-63 give zone 0, node 32
    default = run_cli(["top", "--by", "zone", str(dump), "--format", "csv"])
    assert default.exit_code == 0 and "DMA," in default.stdout
    # WHEN told the kernel had no NUMA THEN bits 62-63 give Normal
    nonuma = run_cli(["top", "--by", "zone", "--flags-layout", "nonuma", str(dump),
                      "--format", "csv"])
    assert nonuma.exit_code == 0 and "Normal," in nonuma.stdout
    assert run_cli(["grep", "-c", "--node", "32", str(dump)]).stdout == "1\n"
    assert run_cli(["grep", "-c", "--node", "0", "--flags-layout", "nonuma",
                    str(dump)]).stdout == "1\n"
    # AND stats says which layout it used
    stats = run_cli(["stats", "--flags-layout", "nonuma", str(dump)]).stdout
    assert "derived from the flags word with the nonuma layout" in stats
    frag = run_cli(["frag", "--flags-layout", "nonuma", str(dump)]).stdout
    assert "   0  Normal" in frag and "with the nonuma layout" in frag
    # AND a name that is no layout is a usage error
    bad = run_cli(["stats", "--flags-layout", "sparc", str(dump)])
    assert bad.exit_code == 2 and "unknown flags layout 'sparc'" in bad.stderr


def test_the_capture_sidecar_names_the_layout_of_the_kernel_config(tmp_path: Path) -> None:
    # GIVEN a machine whose kernel config has no NUMA, and a pre-5.14 dump on it
    fake = FakeMachine(tmp_path / "host", release="5.10.0-nonuma")
    fake.set_config("CONFIG_X86_64=y\nCONFIG_PAGE_OWNER=y\n# CONFIG_NUMA is not set\n")
    fake.write("page_owner", NONUMA_DUMP.encode())
    # WHEN it is captured THEN the sidecar names the layout
    out = tmp_path / "d.txt"
    capture(str(out), host=fake.host)
    assert json.loads((tmp_path / "d.txt.meta.json").read_text())["flags_layout"] == "nonuma"
    # AND readers use it unless told otherwise
    assert "Normal," in run_cli(["top", "--by", "zone", str(out), "--format", "csv"]).stdout
    told = run_cli(["top", "--by", "zone", "--flags-layout", "numa", str(out), "--format", "csv"])
    assert "DMA," in told.stdout


def test_converting_to_5_14_prints_only_the_fields_the_layout_has() -> None:
    # GIVEN a pre-5.14 record with no node=/zone= fields
    (record,) = iter_records(io.BytesIO(NONUMA_DUMP.encode()), strict=True)
    # WHEN printed as 6.1 prints it THEN node and zone come from the layout, not `node=0`
    numa = format_record(convert_record(record, KernelVersion("6.1")))
    assert "Flags 0x8000000000000000(node=32|zone=0)\n" in numa
    nonuma = format_record(convert_record(record, KernelVersion("6.1"), FLAGS_LAYOUTS["nonuma"]))
    assert "Flags 0x8000000000000000(zone=2)\n" in nonuma


@pytest.mark.parametrize(
    ("name", "node", "zone"),
    [("numa", (58, 6), (56, 2)), ("nonuma", (64, 0), (62, 2)), ("maxsmp", (54, 10), (52, 2)),
     ("numa-device", (58, 6), (55, 3))],
)  # fmt: skip
def test_layouts_follow_page_flags_layout_h(name: str, node: tuple[int, int],
                                            zone: tuple[int, int]) -> None:
    layout = FLAGS_LAYOUTS[name]
    assert (layout.node_shift, layout.node_width) == node
    assert (layout.zone_shift, layout.zone_width) == zone


@pytest.mark.parametrize(
    "module", ["pageowner.kernel.tables", "pageowner.kernel.kernels", "pageowner.kernel.kstrtox"]
)
def test_kernel_docstring_examples(module: str) -> None:
    failures, tried = doctest.testmod(importlib.import_module(module))
    assert tried > 0 and failures == 0
