"""Check the analysis results against oracles that do not share our code.

- page_owner_sort (the C tool) grouped the same dumps by pid, tgid, name and allocator; its
  outputs are in fixtures/*/expected. `top --by` must find the same groups and counts.
- Counts taken from the raw text with plain regular expressions (early stacks, migration
  and memcg lines, orders, zone fields) must equal what `stats` reports.
- The kernel's own show_stacks file of a run must agree with that run's page_owner dump,
  except for the early-allocated pages it never counts (Documentation/mm/page_owner.rst).
"""

from __future__ import annotations

import csv
import io
import json
import lzma
import re
from collections import Counter
from pathlib import Path

import pytest

from pageowner.analyze.diff import Change, DiffOptions, diff_files
from pageowner.analyze.flame import FlameOptions, read_flame_data, speedscope_document
from pageowner.analyze.stats import stats_file
from pageowner.analyze.top import TopOptions, top_file
from pageowner.kernel.frames import allocator_layer
from pageowner.model import Frame
from tests.analyze_support import CASES, REAL, REAL_DUMPS, SHOW_STACKS, fixture
from tests.analyze_support import run as run_cli


def _text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xfd7zXZ"):
        data = lzma.decompress(data)
    return data.decode("utf-8", "surrogateescape")


def _expected_rows() -> list[tuple[Path, str, Path]]:
    """Return (dump, cull key, C output) for every cull_pid/tgid/name/ator case."""
    rows = []
    for folder in (REAL, CASES):
        with (folder / "expected" / "index.tsv").open() as index:
            for row in csv.DictReader(index, delimiter="\t"):
                label = row["label"]
                if label in ("cull_pid", "cull_tgid", "cull_name", "cull_ator") and (
                    "work1g" not in row["input"]  # 132 MB: the benchmark reads it
                ):
                    rows.append((folder / row["input"], label[5:],
                                 folder / "expected" / row["expected"]))  # fmt: skip
    return rows


_C_LINE = re.compile(
    r"(?P<times>\d+) times, (?P<pages>\d+) pages, "
    r"(?:PID (?P<pid>-?\d+)|TGID (?P<tgid>-?\d+)|task_comm_name: (?P<name>.*)"
    r"|allocated by (?P<ator>.*))"
)
_BY = {"pid": "pid", "tgid": "tgid", "name": "name", "ator": "allocator"}


@pytest.mark.parametrize(("dump", "key", "expected"), _expected_rows(),
                         ids=lambda v: v.name if isinstance(v, Path) else v)  # fmt: skip
def test_top_by_matches_page_owner_sort_cull(dump: Path, key: str, expected: Path) -> None:
    # GIVEN the C tool's --cull=KEY report of a dump
    c_groups = Counter()
    for line in _text(expected).splitlines():
        match = _C_LINE.fullmatch(line)
        if match is None:
            continue
        value = match[key].strip()
        # The C tool reads a missing pid/tgid as -1 and a missing comm as empty.
        label = {"-1": "-"}.get(value, value) if key in ("pid", "tgid") else value
        c_groups[label] += 0
        c_groups[(label, "times")] += int(match["times"])
        c_groups[(label, "pages")] += int(match["pages"])
    # WHEN top groups the same dump by the same key
    result = top_file(str(dump), TopOptions(by=_BY[key], top=0))
    ours = Counter()
    for entry in result.entries:
        # We show a comm the kernel did not print (before 5.18) as "-"; the C tool as "".
        label = "" if key == "name" and entry.label == "-" else entry.label
        ours[label] += 0
        ours[(label, "times")] += entry.times
        ours[(label, "pages")] += entry.pages
    # THEN both find the same groups with the same times and pages
    assert ours == c_groups
    assert len(result.entries) == result.groups


_DUMPS = [REAL / name for name in REAL_DUMPS] + [
    CASES / name for name in ("era-5.14.txt", "modern-6.12.txt", "era-3.19.txt")
]


@pytest.mark.parametrize("dump", _DUMPS, ids=lambda p: p.name)
def test_stats_match_raw_text_counts(dump: Path) -> None:
    # GIVEN counts taken from the raw text with regular expressions
    text = _text(dump)
    blocks = [block for block in re.split(r"\n\n+", text) if block.startswith("Page allocated")]
    orders = Counter(int(re.match(r"Page allocated via order (\d+)", b)[1]) for b in blocks)
    early = sum(1 for b in blocks if re.search(r"^ (\[<\w+>\] )?register_early_stack\+", b, re.M))
    migrated = len(re.findall(r"^Page has been migrated, last migrate reason: ", text, re.M))
    charged = Counter(re.findall(r"^Charged (?:\(via objcg\) )?to (?:offline )?memcg (.*)$",
                                 text, re.M))  # fmt: skip
    # WHEN stats totals the dump
    result = stats_file(str(dump))
    sections = {s.name: {row.label: row for row in s.rows} for s in result.sections}
    # THEN every total agrees
    assert result.records == len(blocks)
    assert {int(k): row.records for k, row in sections["order"].items()} == dict(orders)
    assert result.pages == sum(count << order for order, count in orders.items())
    early_row = sections["origin"].get("early-allocated (before page_owner init)")
    assert (early_row.records if early_row else 0) == early
    moved = sum(row.records for label, row in sections["migrated"].items()
                if label.startswith("migrated: "))  # fmt: skip
    assert moved == migrated
    if "memcg" in sections:
        ours = Counter({label.removesuffix(" (offline)"): row.records
                        for label, row in sections["memcg"].items()
                        if not label.startswith(("not charged", "slab cache page"))})  # fmt: skip
        assert ours == charged
    zones = Counter(re.findall(r"\|zone=(\d+)\)", text))
    if zones:
        names = {"1": "DMA32", "2": "Normal"}
        assert {names[z]: n for z, n in zones.items()} == {
            label: row.records for label, row in sections["zone"].items()
        }


def test_diff_of_the_612_show_stacks_names_the_tmpfs_write_first() -> None:
    # GIVEN the show_stacks files read after boot and after the workload (64 MB tmpfs write)
    boot, work = (str(REAL / name) for name in SHOW_STACKS)
    # WHEN diff ranks the growth
    result = diff_files(boot, work, DiffOptions())
    top = result.entries[0]
    # THEN the top growth is the tmpfs (shmem) write path, new since boot
    assert top.change is Change.ADDED
    assert top.caller == "shmem_alloc_folio"
    assert {"shmem_write_begin", "shmem_file_write_iter", "ksys_write"} <= set(top.stack)
    # ... and it is most of the 64 MB file: 24968 pages of 4 KiB = 97.5 MiB (16 MB huge too)
    assert top.delta == 24968
    assert all(entry.delta <= top.delta for entry in result.entries)


def test_diff_of_a_dump_and_its_show_stacks_differs_only_by_early_pages() -> None:
    # GIVEN the 6.12 run's page_owner dump and the show_stacks file read right after it
    dump, stacks = str(REAL / REAL_DUMPS[3]), str(REAL / SHOW_STACKS[1])
    # WHEN they are compared stack by stack
    result = diff_files(dump, stacks, DiffOptions())
    # THEN the early-allocated pages are gone (show_stacks never counts them) and at most a
    # handful of other stacks moved (pages freed or faulted between the two reads)
    removed = [e for e in result.entries if e.change is Change.REMOVED]
    assert [e.caller for e in removed] == ["register_early_stack"]
    early = stats_file(dump).sections
    early_pages = next(r.pages for s in early if s.name == "origin" for r in s.rows
                       if r.label.startswith("early"))  # fmt: skip
    assert removed[0].delta == -early_pages
    assert result.unchanged >= 480 and len(result.entries) <= 3


@pytest.mark.parametrize("name", [*REAL_DUMPS, *SHOW_STACKS, "modern-6.12.txt"])
def test_flame_folded_weights_add_up_to_top_totals(name: str) -> None:
    # GIVEN a dump's folded stacks and its top totals
    path = fixture(name)
    folded = run_cli(["flame", path, "--format", "folded"]).stdout.splitlines()
    total = top_file(str(Path(__file__).resolve().parents[1] / path), TopOptions()).total_pages
    # THEN every line is `frames count`, frames root first, and the counts sum to the total
    counts = [int(line.rsplit(" ", 1)[1]) for line in folded]
    assert sum(counts) == total
    assert all(count > 0 for count in counts)
    roots = Counter(line.split(";", 1)[0] for line in folded)
    leaves = Counter(line.rsplit(" ", 1)[0].rsplit(";", 1)[-1] for line in folded)
    # page_owner stacks end (leaf) in the allocator and start (root) at an entry point.
    assert not any(allocator_layer(Frame(root)) for root in roots)
    allocator_leaves = sum(n for leaf, n in leaves.items() if allocator_layer(Frame(leaf)))
    assert allocator_leaves >= 0.9 * sum(n for leaf, n in leaves.items()
                                         if not leaf.startswith("register_"))  # fmt: skip


def test_speedscope_document_follows_the_file_format() -> None:
    # GIVEN the speedscope export of a dump, in bytes
    result = run_cli(["flame", fixture("modern-6.12.txt"), "--format", "speedscope",
                      "--weight", "bytes", "--page-size", "16K"])  # fmt: skip
    document = json.loads(result.stdout)
    # THEN it has the fields of file-format-spec.ts, with consistent samples and weights
    assert document["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = document["shared"]["frames"]
    assert all(set(frame) == {"name"} for frame in frames)
    (profile,) = document["profiles"]
    assert profile["type"] == "sampled" and profile["unit"] == "bytes"
    assert len(profile["samples"]) == len(profile["weights"])
    assert all(0 <= index < len(frames) for sample in profile["samples"] for index in sample)
    assert profile["startValue"] == 0 and profile["endValue"] == sum(profile["weights"])
    top = top_file(str(CASES / "modern-6.12.txt"), TopOptions())
    assert profile["endValue"] == top.total_pages * 16384
    # Samples are root first: the biggest sample is the top stack (printed leaf first),
    # reversed.
    biggest = max(range(len(profile["weights"])), key=profile["weights"].__getitem__)
    names = [frames[index]["name"] for index in profile["samples"][biggest]]
    assert names == list(reversed(top.entries[0].stack))
    assert profile["weights"][biggest] == top.entries[0].pages * 16384


def test_differential_speedscope_has_both_profiles() -> None:
    boot, work = (str(REAL / name) for name in SHOW_STACKS)
    data = read_flame_data(work, FlameOptions(), before_path=boot)
    document = speedscope_document(data)
    names = [profile["name"] for profile in document["profiles"]]
    assert names == [f"before: {boot}", f"after: {work}"]
    assert [p["endValue"] for p in document["profiles"]] == [2229, 33161]
    assert document["activeProfileIndex"] == 1


# Allocator entry points and internals of 4.x to 6.12, listed independently of frames.py.
_KNOWN_ALLOCATOR_FUNCTIONS = {
    "post_alloc_hook", "prep_new_page", "get_page_from_freelist", "__alloc_pages",
    "__alloc_pages_nodemask", "__alloc_pages_noprof", "alloc_pages_current", "alloc_pages_vma",
    "alloc_pages_mpol", "alloc_pages_mpol_noprof", "alloc_page_interleave", "folio_alloc",
    "folio_alloc_mpol_noprof", "vma_alloc_folio", "vma_alloc_folio_noprof", "__folio_alloc",
    "new_slab", "allocate_slab", "___slab_alloc", "__slab_alloc", "kmem_cache_alloc",
    "kmem_cache_alloc_noprof", "kmem_cache_alloc_lru", "kmem_cache_alloc_lru_noprof",
    "kmem_cache_alloc_node", "__kmalloc", "__kmalloc_noprof", "__kmalloc_node",
    "kmalloc_trace", "kmalloc_large", "__kmalloc_cache_noprof", "__vmalloc_node_range",
    "__vmalloc_node_range_noprof", "__vmalloc_node", "vmalloc", "vzalloc", "kvmalloc_node",
    "__get_free_pages", "get_zeroed_page", "alloc_pages_exact", "alloc_pages_exact_noprof",
    "__kmem_cache_alloc_node", "kmalloc_node_trace", "memcg_alloc_slab_cgroups",
}  # fmt: skip


@pytest.mark.parametrize("name", [*REAL_DUMPS, *SHOW_STACKS, "era-3.19.txt", "modern-6.12.txt"])
def test_no_caller_is_an_allocator_function(name: str) -> None:
    # GIVEN every caller named by top --by caller
    result = run_cli(["top", fixture(name), "--by", "caller", "--top", "0", "--format", "csv"])
    callers = {row["caller"] for row in csv.DictReader(io.StringIO(result.stdout))}
    # THEN none is an allocator function (of any era), so the table covers them all
    assert callers
    assert not {caller.split(" [")[0] for caller in callers} & _KNOWN_ALLOCATOR_FUNCTIONS


def test_shmem_pages_match_the_kernels_meminfo() -> None:
    # GIVEN the guest's /proc/meminfo, printed on the console just before the 6.12 dump
    console = (REAL / "6.12.117-work.console.txt").read_text()
    shmem_kb = int(re.search(r"^Shmem:\s+(\d+) kB", console, re.M)[1])
    huge_kb = int(re.search(r"^ShmemHugePages:\s+(\d+) kB", console, re.M)[1])
    # WHEN top groups the dump by the first caller outside the allocator
    result = top_file(str(REAL / REAL_DUMPS[3]), TopOptions(by="caller", top=0))
    by_caller = {entry.label: entry.pages for entry in result.entries}
    # THEN the shmem callers hold exactly the kernel's Shmem figure
    assert by_caller["shmem_alloc_folio"] * 4 == shmem_kb
    huge = run_cli(["grep", "-c", "--order", "9", "-e", "^shmem_", fixture(REAL_DUMPS[3])])
    assert int(huge.stdout) * 512 * 4 == huge_kb


@pytest.mark.parametrize("name", [REAL_DUMPS[2], REAL_DUMPS[3]])
def test_x86_64_flags_layout_agrees_with_printed_node_and_zone(name: str) -> None:
    # GIVEN dumps whose %pGp prints node= and zone= (5.14+), from the fixtures' x86_64 config
    from pageowner.analyze.analysis import FLAGS_LAYOUT_X86_64 as layout
    from pageowner.analyze.analysis import open_samples

    checked = 0
    with open_samples(str(REAL / name)) as stream:
        for sample in stream.samples:
            flags = sample.record.flags  # type: ignore[union-attr]
            assert flags is not None and flags.value is not None
            # THEN the layout used for older dumps derives the same node and zone
            assert (flags.value >> layout.zone_shift) & 3 == flags.zone
            assert flags.value >> layout.node_shift == flags.node
            checked += 1
    assert checked > 3000


@pytest.mark.parametrize(("name", "ranges"), [
    ("6.12.117-work.page_owner.txt.xz", ["5s-10s"]),
    ("6.12.117-work.page_owner.txt.xz", ["12s-", "-500ms"]),
    ("6.12.117-work.page_owner.txt.xz", ["1.5s-2500ms", "13s-14.1s"]),
    ("6.1.192-boot.page_owner.txt.xz", ["0-0"]),
])
def test_grep_ts_range_keeps_the_records_whose_ts_is_inside(name: str, ranges: list[str]) -> None:
    # GIVEN the records a regular expression finds within the ranges, in nanoseconds
    def bounds(text: str) -> tuple[float, float]:
        units = {"ms": 1e6, "s": 1e9, "m": 60e9}
        parts = []
        for side in text.split("-"):
            match = re.fullmatch(r"([\d.]+)(ms|s|m)?", side)
            parts.append(float(match[1]) * units[match[2] or "s"] if match else None)
        return (parts[0] or 0.0, parts[1] if parts[1] is not None else float("inf"))

    windows = [bounds(r) for r in ranges]
    blocks = [b for b in re.split(r"\n\n+", _text(REAL / name)) if b.startswith("Page allocated")]
    wanted = [b for b in blocks
              if any(lo <= int(re.search(r", ts (\d+) ns", b)[1]) <= hi for lo, hi in windows)]
    # WHEN grep selects by --ts-range
    args = [arg for r in ranges for arg in ("--ts-range", r)]
    result = run_cli(["grep", *args, fixture(name)])
    # THEN it prints exactly those records, in file order (grep(1): status 1 for none)
    assert result.exit_code == (0 if wanted else 1), result.stderr
    kept = [b for b in re.split(r"\n\n+", result.stdout) if b.startswith("Page allocated")]
    assert kept == wanted
    assert 0 < len(wanted) < len(blocks) or ranges == ["0-0"]


def test_grep_ts_range_refuses_a_dump_without_ts() -> None:
    # GIVEN a 5.10 dump, whose records print no ts WHEN grep selects by time
    result = run_cli(["grep", "--ts-range", "1m-2m", fixture("5.10.223-work.page_owner.txt.xz")])
    # THEN it says so, naming the first record, instead of printing nothing
    assert result.exit_code == 1
    assert result.stderr == (
        "pageowner: fixtures/real/5.10.223-work.page_owner.txt.xz:1: this dump's records "
        "carry no ts (kernels before 5.11 print none), so --ts-range selects nothing\n")
