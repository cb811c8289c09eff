"""Golden outputs of grep, top, diff, stats, frag and flame on the real and hand-made fixtures.

Each case runs the command line and compares its whole stdout with
tests/golden/analyze/<case>.txt. The goldens were reviewed against independent oracles (the
C page_owner_sort outputs and raw-text counts, see test_analyze_oracles.py) and by reading
them; tests/golden/analyze/README.md says what was checked.
"""

from __future__ import annotations

import pytest

from tests.analyze_support import (
    BIG_DUMP,
    CASE_DUMPS,
    REAL_DUMPS,
    SHOW_STACKS,
    check_golden,
    fixture,
)
from tests.analyze_support import run as run_cli


def _stem(name: str) -> str:
    return name.split(".page_owner")[0].split(".show_stacks")[0].removesuffix(".txt")


_CASES: list[tuple[str, list[str]]] = []
for _dump in REAL_DUMPS + CASE_DUMPS:
    _CASES += [
        (f"top-{_stem(_dump)}", ["top", fixture(_dump), "--top", "12"]),
        (f"stats-{_stem(_dump)}", ["stats", fixture(_dump)]),
        (f"frag-{_stem(_dump)}", ["frag", fixture(_dump), "--top", "5"]),
    ]
for _stacks in SHOW_STACKS:
    _CASES += [
        (f"top-{_stem(_stacks)}-stacks", ["top", fixture(_stacks), "--top", "10"]),
        (f"stats-{_stem(_stacks)}-stacks", ["stats", fixture(_stacks)]),
    ]
_CASES += [
    # The benchmark dump: every feature of 6.1 at scale (memcg online and offline,
    # migrated pages, THP), read once per command.
    ("top-6.1-work1g-json", ["top", fixture(BIG_DUMP), "--top", "8", "--format", "json"]),
    ("stats-6.1-work1g", ["stats", fixture(BIG_DUMP)]),
    ("frag-6.1-work1g", ["frag", fixture(BIG_DUMP)]),
    # Every --by key, on the dump that exercises the most fields.
    *[
        (f"top-modern-by-{key}", ["top", fixture("modern-6.12.txt"), "--by", key, "--top", "8"])
        for key in ("stack", "caller", "pid", "tgid", "name", "module", "allocator", "gfp",
                    "order", "zone", "node", "migratetype")
    ],
    ("top-6.12-work-times", ["top", fixture(REAL_DUMPS[3]), "--times", "--top", "5"]),
    ("top-6.12-work-threshold", ["top", fixture(REAL_DUMPS[3]), "--threshold", "600",
                                 "--top", "0", "--depth", "0"]),
    ("top-6.12-work-stacks", ["top", fixture(REAL_DUMPS[3]), "--top", "3", "--full-stacks"]),
    ("top-6.12-work-exact", ["top", fixture(REAL_DUMPS[3]), "--top", "5", "--exact"]),
    ("top-6.12-work-page-size", ["top", fixture(REAL_DUMPS[3]), "--top", "3",
                                 "--page-size", "64K"]),
    ("top-6.12-work-csv", ["top", fixture(REAL_DUMPS[3]), "--top", "5", "--format", "csv"]),
    ("top-5.10-work-by-pid", ["top", fixture(REAL_DUMPS[1]), "--by", "pid"]),
    ("top-5.10-boot-by-zone", ["top", fixture(REAL_DUMPS[0]), "--by", "zone"]),
    ("stats-6.1-boot-json", ["stats", fixture(REAL_DUMPS[2]), "--format", "json"]),
    ("stats-modern-csv", ["stats", fixture("modern-6.12.txt"), "--format", "csv"]),
    ("frag-modern-json", ["frag", fixture("modern-6.12.txt"), "--format", "json"]),
    ("frag-modern-csv", ["frag", fixture("modern-6.12.txt"), "--format", "csv"]),
    # the README's frag example: a CMA allocation on the simulated 6.12 (issue 15 item 11)
    ("frag-sim-6.12-cma", ["frag", fixture("sim-6.12-cma.txt.xz"), "--top", "1"]),
    # diff: the case (boot -> work show_stacks), across boots, across eras, itself.
    ("diff-6.12-stacks", ["diff", fixture(SHOW_STACKS[0]), fixture(SHOW_STACKS[1]),
                          "--top", "15"]),
    ("diff-6.12-stacks-json", ["diff", fixture(SHOW_STACKS[0]), fixture(SHOW_STACKS[1]),
                               "--top", "5", "--format", "json", "--full-stacks"]),
    ("diff-5.10-boot-work", ["diff", fixture(REAL_DUMPS[0]), fixture(REAL_DUMPS[1]),
                             "--min-delta", "100"]),
    ("diff-5.10-6.12-by-caller", ["diff", fixture(REAL_DUMPS[1]), fixture(REAL_DUMPS[3]),
                                  "--by", "caller", "--top", "12"]),
    ("diff-6.12-dump-vs-stacks", ["diff", fixture(REAL_DUMPS[3]), fixture(SHOW_STACKS[1]),
                                  "--top", "8"]),
    ("diff-6.1-boot-5.14-by-order", ["diff", fixture(REAL_DUMPS[2]), fixture("era-5.14.txt"),
                               "--by", "order"]),
    ("diff-self", ["diff", fixture(REAL_DUMPS[2]), fixture(REAL_DUMPS[2])]),
    ("diff-6.12-stacks-csv", ["diff", fixture(SHOW_STACKS[0]), fixture(SHOW_STACKS[1]),
                              "--top", "5", "--format", "csv"]),
    # flame: folded (plain and differential) and speedscope.
    ("flame-6.12-work-folded", ["flame", fixture(REAL_DUMPS[3]), "--format", "folded"]),
    ("flame-6.12-stacks-diff-folded", ["flame", fixture(SHOW_STACKS[1]), "--diff",
                                       fixture(SHOW_STACKS[0]), "--format", "folded"]),
    ("flame-modern-speedscope", ["flame", fixture("modern-6.12.txt"), "--format",
                                 "speedscope", "--weight", "bytes"]),
    ("flame-3.19-times-folded", ["flame", fixture("era-3.19.txt"), "--format", "folded",
                                 "--weight", "times"]),
    # grep: counts for each filter, and two whole outputs.
    *[
        (f"grep-count-{label}", ["grep", "-c", *args, fixture("modern-6.12.txt")])
        for label, args in (
            ("regex", ["-e", "shmem_"]),
            ("regex-invert", ["-e", "shmem_", "-v"]),
            ("pid", ["--pid", "1,412"]),
            ("tgid", ["--tgid", "970"]),
            ("name", ["--name", "(sd-pam)", "--name", "my prog"]),
            ("order", ["--order", "3,4,9"]),
            ("gfp", ["--gfp", "__GFP_ZERO"]),
            ("gfp-composite", ["--gfp", "GFP_KERNEL"]),
            ("migratetype", ["--migratetype", "movable"]),
            ("block-migratetype", ["--block-migratetype", "CMA"]),
            ("zone", ["--zone", "Normal"]),
            ("node", ["--node", "0"]),
            ("module", ["--module", "xfs"]),
            ("allocator", ["--allocator", "VMALLOC"]),
            ("pfn-range", ["--pfn-range", "0x1000-0x10ff"]),
            ("migrated", ["--migrated"]),
            ("memcg", ["--memcg", "system.slice"]),
            ("combined", ["--migratetype", "Movable", "--block-migratetype", "Unmovable"]),
        )
    ],
    ("grep-count-5.10-gfp", ["grep", "-c", "--gfp", "GFP_HIGHUSER_MOVABLE",
                             fixture(REAL_DUMPS[1])]),
    ("grep-count-3.19-hex-gfp", ["grep", "-c", "--gfp", "0x800", fixture("era-3.19.txt")]),
    ("grep-modern-memcg", ["grep", "--memcg", "system.slice", fixture("modern-6.12.txt")]),
    ("grep-stacks-regex", ["grep", "-e", "shmem_write_begin", fixture(SHOW_STACKS[1])]),
]


@pytest.mark.parametrize(("name", "args"), _CASES, ids=[name for name, _ in _CASES])
def test_golden(name: str, args: list[str]) -> None:
    # GIVEN a fixture and a command line / WHEN it runs / THEN stdout is the golden, whole.
    result = run_cli(args)
    assert result.exit_code == 0, result.stderr
    check_golden(f"{name}.txt", result.stdout)
