"""The fleet library's pieces that need no cluster: doctests, discovery, ranking, merging."""

from __future__ import annotations

import doctest
import importlib
import json
from pathlib import Path

import pytest

from pageowner.errors import SpecError
from pageowner.fleet.discover import discover, host_pattern
from pageowner.fleet.results import fleet_diff, fleet_top, host_spread
from pageowner.fleet.table import FleetGroup, FleetTable, HostEntry
from pageowner.kernel.frames import StackInterner
from pageowner.model import Frame


@pytest.mark.parametrize("name", ["pageowner.fleet.discover", "pageowner.fleet.results"])
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


def test_host_spread_nearest_rank_p95() -> None:
    cells = {f"h{i:02d}": [i, 1] for i in range(1, 21)}  # 1..20 pages
    spread = host_spread(cells)
    assert (spread.hosts, spread.median, spread.p95, spread.max, spread.max_host) == \
        (20, 10.5, 19, 20, "h20")


@pytest.mark.parametrize("pattern", ["{name}/...", "{host}/{host}", "no-host/..."])
def test_bad_host_from_is_a_usage_error(pattern: str) -> None:
    with pytest.raises(SpecError):
        host_pattern(pattern)


def _table(interner: StackInterner, host: str, groups: dict[str, int]) -> FleetTable:
    table = FleetTable("caller")
    table.hosts[host] = HostEntry(host, "6.1", "t", f"/{host}", sum(groups.values()),
                                  len(groups))
    for name, pages in groups.items():
        stack = interner.intern((Frame(name, 0, 0),))
        table.groups[name] = FleetGroup(name, name, stack, pages, 1, {name: pages},
                                        {host: [pages, 1]})
    return table


def test_merge_is_the_same_for_any_tree() -> None:
    interner = StackInterner()
    parts = [_table(interner, f"h{i}", {"a": i, f"only{i}": 1, "b": 2}) for i in range(5)]
    left = FleetTable("caller")
    for part in parts:
        left.merge(FleetTable.from_json(part.to_json(), interner))
    pairs = FleetTable("caller")
    first, second = FleetTable("caller"), FleetTable("caller")
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
    before, after = FleetTable("caller"), FleetTable("caller")
    for host, (old, new) in {"h1": (10, 15), "h2": (10, 50), "h3": (10, 5)}.items():
        before.merge(_table(interner, host, {"leak": old}))
        after.merge(_table(interner, host, {"leak": new}))
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
