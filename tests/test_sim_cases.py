"""fixtures/cases/sim-6.12-cma.txt.xz is the simulator's output, and one a kernel could print."""

from __future__ import annotations

import io
import lzma
import re
from pathlib import Path

from pageowner.sim.boot import run_boot
from pageowner.sim.dump import write_page_owner
from pageowner.sim.gfp import canonical_from, gfp_migratetype
from pageowner.sim.machine import Machine
from pageowner.sim.workloads import run_workload

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "cases"
# the commands of fixtures/README.md, as workloads
STEPS = [
    ("pagecache", ["--mb", "8"]),
    ("anon", ["--mb", "8"]),
    ("memcg", ["--name", "system.slice", "--mb", "4", "--comm", "(sd-pam)"]),
    ("memcg", ["--name", "user@1000.service", "--mb", "2", "--comm", "a(b)c", "--offline"]),
    ("cma", ["--mb", "8"]),
    ("compact", []),
]
MIGRATETYPES = ("Unmovable", "Movable", "Reclaimable")
_RECORD = re.compile(r"Page allocated via order (\d+), mask (0x[0-9a-f]+).*\n"
                     r"PFN 0x[0-9a-f]+ type (\w+) Block \d+ type (\w+) "
                     r"Flags (0x[0-9a-f]+)\((?:[a-z0-9_]+\|)*node=(\d+)\|zone=(\d)\)\n")


def test_the_case_is_what_the_simulator_prints() -> None:
    machine = Machine.create("6.12", 128 << 20, "page_owner=on cma=16M", 1)
    run_boot(machine)
    for name, args in STEPS:
        run_workload(machine, name, args)
    out = io.BytesIO()
    write_page_owner(machine, out)
    with lzma.open(CASES / "sim-6.12-cma.txt.xz") as stream:
        assert out.getvalue() == stream.read()


def _inconsistent(text: str) -> list[str]:
    """List the records whose type, node or zone disagree with their mask and flags word."""
    wrong = []
    for match in _RECORD.finditer(text):
        order, mask, page_mt, _, word, node, zone = match.groups()
        expected_mt = MIGRATETYPES[gfp_migratetype(canonical_from(int(mask, 16), "6.12"))]
        value = int(word, 16)
        # x86_64 with NUMA: zone in bits 56-57, node in bits 58-63
        if (page_mt != expected_mt or (value >> 56) & 3 != int(zone)
                or value >> 58 != int(node)):
            wrong.append(match.group(0))
    return wrong


def test_every_record_could_come_from_6_12() -> None:
    with lzma.open(CASES / "sim-6.12-cma.txt.xz") as stream:
        text = stream.read().decode()
    assert len(_RECORD.findall(text)) == text.count("Page allocated via")
    assert _inconsistent(text) == []
    # the CMA allocation: order-0 pages typed from their mask, in CMA pageblocks
    cma = [m for m in _RECORD.finditer(text) if m.group(4) == "CMA"]
    assert len(cma) == 2048
    assert {(m.group(1), m.group(3)) for m in cma} == {("0", "Unmovable")}


def test_the_check_catches_the_hand_made_case() -> None:
    # modern-6.12.txt's split_free_pages records are the ones issue 15 item 11 names
    wrong = _inconsistent((CASES / "modern-6.12.txt").read_text())
    assert any("order 4, mask 0xcc0(GFP_KERNEL)" in record and "type Movable" in record
               for record in wrong)
