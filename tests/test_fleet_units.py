"""The fleet library's pieces that need no cluster: doctests, discovery, ranking, merging."""

from __future__ import annotations

import doctest
import importlib
import io
import json
import math
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pageowner.errors import SpecError
from pageowner.fleet.discover import discover, host_pattern
from pageowner.fleet.job import _note_growth
from pageowner.fleet.results import fleet_diff, fleet_top, host_spread
from pageowner.fleet.sketch import (
    EXACT_HOSTS,
    GAMMA,
    LINEAR_PAGES,
    RELATIVE_ERROR,
    TOP_HOSTS,
    HostPages,
    bucket_of,
    bucket_value,
)
from pageowner.fleet.table import FleetGroup, FleetTable, HostEntry
from pageowner.kernel.frames import StackInterner
from pageowner.model import Frame


@pytest.mark.parametrize("name", ["pageowner.fleet.discover", "pageowner.fleet.results",
                                  "pageowner.fleet.sketch"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_host_spread_nearest_rank_p95() -> None:
    cells = {f"h{i:02d}": i for i in range(1, 21)}  # 1..20 pages
    spread = host_spread(cells)
    assert (spread.hosts, spread.median, spread.p95, spread.max, spread.max_host) == \
        (20, 10.5, 19, 20, "h20")
    assert spread.exact


@pytest.mark.parametrize("pattern", ["{name}/...", "{host}/{host}", "no-host/..."])
def test_bad_host_from_is_a_usage_error(pattern: str) -> None:
    with pytest.raises(SpecError):
        host_pattern(pattern)


def _table(interner: StackInterner, host: str, groups: dict[str, int],
           columns: tuple[str, ...] = ("release", "host")) -> FleetTable:
    table = FleetTable("caller", columns)
    table.hosts[host] = HostEntry(host, "6.1", "t", f"/{host}", sum(groups.values()),
                                  len(groups))
    for name, pages in groups.items():
        stack = interner.intern((Frame(name, 0, 0),))
        values = {"release": "6.1", "host": host}
        table.groups[name] = FleetGroup(name, name, stack, pages, 1, {name: pages},
                                        HostPages.of(host, pages),
                                        {c: {values[c]: pages} for c in columns})
    return table


def test_merge_is_the_same_for_any_tree() -> None:
    interner = StackInterner()
    parts = [_table(interner, f"h{i}", {"a": i, f"only{i}": 1, "b": 2}) for i in range(5)]
    left = FleetTable("caller", ("release", "host"))
    for part in parts:
        left.merge(FleetTable.from_json(part.to_json(), interner))
    pairs = FleetTable("caller", ("release", "host"))
    first, second = FleetTable("caller", ("release", "host")), FleetTable("caller", ("release", "host"))
    for part in parts[:2]:
        first.merge(part)
    for part in parts[2:]:
        second.merge(part)
    pairs.merge(first)
    pairs.merge(second)
    assert left.to_json() == pairs.to_json()
    assert left.groups["a"].pages == sum(range(5))
    assert list(left.groups)[:3] == ["a", "only0", "b"]


def test_diff_names_the_hosts_that_grew_most() -> None:
    interner = StackInterner()
    before, after = FleetTable("caller", ("release", "host")), FleetTable("caller", ("release", "host"))
    for host, (old, new) in {"h1": (10, 15), "h2": (10, 50), "h3": (10, 5)}.items():
        old_table = _table(interner, host, {"leak": old})
        new_table = _table(interner, host, {"leak": new})
        _note_growth(old_table, new_table, host)  # what the task reading both does
        before.merge(old_table)
        after.merge(new_table)
    result = fleet_diff(before, after)
    (entry,) = result.entries
    assert entry.delta == 40
    assert entry.top_hosts == (("h2", 40), ("h1", 5))
    top = fleet_top(after, group_by="host")
    assert top.columns == ("h1", "h2", "h3")
    assert top.entries[0].by_group == (15, 50, 5)


def test_missing_paths_and_duplicates(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "d.txt").write_text("x\n")
        (tmp_path / name / "d.txt.meta.json").write_text(json.dumps(
            {"hostname": "web", "captured_at": "2027-01-01T00:00:00Z", "kernel_release": "6.1"}))
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "d.txt").write_text("x\n")
    (tmp_path / "c" / "d.txt.meta.json").write_text(json.dumps(
        {"hostname": "web", "captured_at": "2026-01-01T00:00:00Z"}))
    found = discover([str(tmp_path), str(tmp_path / "nowhere")])
    assert [c.path for c in found.captures] == [str(tmp_path / "a" / "d.txt")]
    assert [s.reason for s in found.skipped] == ["no such file or folder"]
    assert len(found.warnings) == 2
    assert any("same time" in w and "counted once" in w for w in found.warnings)
    assert any("older" in w and str(tmp_path / "c") in w for w in found.warnings)


def _merged_in_order(values: list[int], cuts: list[int]) -> HostPages:
    """Merge one-host summaries as the job's tree does: contiguous runs, then the runs."""
    bounds = sorted({0, len(values), *(c % (len(values) + 1) for c in cuts)})
    runs = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        run = HostPages()
        for i in range(start, end):
            run.merge(HostPages.of(f"host-{i:04d}", values[i]))
        runs.append(HostPages.from_json(json.loads(json.dumps(run.to_json()))))
    merged = runs[0]
    for run in runs[1:]:
        merged.merge(run)
    return merged


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.integers(0, 50_000_000), min_size=1, max_size=400),
       cuts=st.lists(st.integers(0, 400), max_size=12))
def test_host_pages_is_within_its_bound_for_any_tree(values: list[int], cuts: list[int]) -> None:
    """Median and p95 within 1 % of the exact ones; count, max and max host exact; the
    summary the same bytes whatever the tree."""
    merged = _merged_in_order(values, cuts)
    serial = _merged_in_order(values, [])
    assert merged.to_json() == serial.to_json()
    exact = host_spread({f"host-{i:04d}": v for i, v in enumerate(values)})
    got = merged.spread()
    assert (got.hosts, got.max, got.max_host) == (exact.hosts, exact.max, exact.max_host)
    assert merged.exact == (len(values) <= EXACT_HOSTS)
    assert abs(got.median - exact.median) <= RELATIVE_ERROR * exact.median
    assert abs(got.p95 - exact.p95) <= RELATIVE_ERROR * exact.p95
    if got.median_exact:
        assert got.median == exact.median
    if got.p95_exact:
        assert got.p95 == exact.p95
    assert len(merged.names or ()) <= EXACT_HOSTS
    assert len(merged.top) <= TOP_HOSTS


def test_host_pages_on_a_seeded_fleet_says_which_values_are_estimates() -> None:
    """A lognormal fleet of 5,000 hosts (seeded)."""
    rng = random.Random(12)
    values = [int(rng.lognormvariate(8, 2)) + 1 for _ in range(5000)]
    merged = _merged_in_order(values, [rng.randrange(5000) for _ in range(40)])
    got = merged.spread()
    ordered = sorted(values)
    assert got.hosts == 5000 and got.max == ordered[-1]
    assert not got.median_exact and not got.p95_exact
    assert abs(got.median - (ordered[2499] + ordered[2500]) / 2) <= 0.01 * got.median
    assert abs(got.p95 - ordered[4749]) <= 0.01 * ordered[4749]
    # Bounded: ~1,200 buckets of 4 bytes over 7 orders of magnitude, not a cell per host.
    assert len(merged.counts) < 1500 and len(merged.top) == TOP_HOSTS


@settings(max_examples=2000, deadline=None)
@given(pages=st.integers(0, 1 << 40))
def test_a_bucket_stands_for_its_members_within_the_bound(pages: int) -> None:
    assert abs(bucket_value(bucket_of(pages)) - pages) <= RELATIVE_ERROR * pages


def test_every_bucket_edge_is_within_the_bound() -> None:
    """The worst members of a bucket are at its edges: check both edges of each bucket."""
    for bucket in range(LINEAR_PAGES, LINEAR_PAGES + 2500):
        upper = LINEAR_PAGES * GAMMA ** (bucket - LINEAR_PAGES)
        for pages in (math.floor(upper), math.floor(upper / GAMMA) + 1):
            if bucket_of(pages) == bucket:
                assert abs(bucket_value(bucket) - pages) <= RELATIVE_ERROR * pages, pages


def test_a_group_on_many_hosts_says_its_median_is_an_estimate() -> None:
    """100 hosts merged as the job merges them: exact totals, marked estimates."""
    from pageowner.fleet.results import fleet_top as rank
    from pageowner.report.fleet import fleet_top_report
    from pageowner.report.summaries import render_report

    interner = StackInterner()
    pages = [1000 + 37 * i for i in range(100)]
    merged = FleetTable("caller", ("release", "host"))
    for i, count in enumerate(pages):
        merged.merge(FleetTable.from_json(
            _table(interner, f"h{i:03d}", {"leak": count, "small": 3}).to_json(), interner))
    result = rank(merged, group_by="release")
    leak, small = result.entries
    assert (leak.pages, leak.spread.hosts, leak.spread.max, leak.spread.max_host) == \
        (sum(pages), 100, pages[-1], "h099")
    assert leak.by_group == (sum(pages),)
    assert not leak.spread.median_exact and leak.spread.p95_exact  # p95: among the top 8
    assert abs(leak.spread.median - (pages[49] + pages[50]) / 2) <= 0.01 * leak.spread.median
    assert leak.spread.p95 == pages[94]
    assert small.spread.exact and small.spread.median == 3  # under 128 pages: exact buckets
    out = io.StringIO()
    render_report(fleet_top_report(result, 4096), out, "text")
    text = out.getvalue()
    assert f"~{leak.spread.median:.0f}" in text or f"~{leak.spread.median:.1f}" in text
    assert "~: an estimate within 1%" in text
    out = io.StringIO()
    render_report(fleet_top_report(result, 4096), out, "json")
    host_pages = [e["host_pages"] for e in json.loads(out.getvalue())["entries"]]
    assert [h["exact"] for h in host_pages] == [False, True]


@pytest.mark.parametrize("strict", [False, True])
def test_a_later_range_numbers_its_warnings_and_errors_by_the_file(
        tmp_path: Path, strict: bool) -> None:  # fmt: skip
    """A range read from the middle of a file counts the lines before it only when needed."""
    from pageowner.analyze.analysis import GroupTable, aggregate_range, get_group_key
    from pageowner.errors import ParseError

    record = ("Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), "
              "ts 100 ns\n post_alloc_hook+0x1a/0x20\n\n")  # fmt: skip
    head = record * 50  # 3 lines each: the range starts at line 151
    bad = "not a record\n\n"
    path = tmp_path / "dump.txt"
    path.write_text(head + record * 3 + bad + record * 2)
    key = get_group_key("stack")
    warnings: list[str] = []
    start = len(head.encode())
    if strict:
        # THEN --strict's error names the bad block's own line in the file
        with pytest.raises(ParseError) as caught:
            aggregate_range(str(path), lambda: GroupTable(key), start, None, strict=True)
        assert caught.value.lineno == 151 + 3 * 3
        return
    samples, table = aggregate_range(str(path), lambda: GroupTable(key), start, None,
                                     on_warning=warnings.append)  # fmt: skip
    # THEN the records after the bad block count, and the warning names its file line
    assert (samples, table.total_pages) == (5, 5)
    assert len(warnings) == 1 and f"{path}:{151 + 3 * 3}:" in warnings[0], warnings
    # AND a clean range gives the same table as when nothing had to be counted
    clean, clean_table = aggregate_range(str(path), lambda: GroupTable(key), start,
                                         start + len((record * 3).encode()))  # fmt: skip
    assert (clean, clean_table.total_pages) == (3, 3)
