"""Rank a merged fleet table: `fleet top` and `fleet diff`, with per-host figures."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pageowner.analyze.diff import compare_groups
from pageowner.errors import SpecError, ThresholdExceeded
from pageowner.fleet.discover import Skipped
from pageowner.fleet.sketch import HostPages, HostSpread
from pageowner.fleet.table import FleetGroup, FleetTable

__all__ = [
    "FleetDiffEntry",
    "FleetDiffResult",
    "FleetTopEntry",
    "FleetTopResult",
    "HostSpread",
    "check_fleet_growth",
    "fleet_diff",
    "fleet_top",
    "host_spread",
]


def host_spread(cells: dict[str, int]) -> HostSpread:
    """Summarise exact pages per host; the max host is the first by name among equals.

    >>> host_spread({"a": 1, "b": 5, "c": 3})
    HostSpread(hosts=3, median=3, p95=5, max=5, max_host='b', median_exact=True, p95_exact=True)
    """
    pages = HostPages()
    for host, count in cells.items():
        pages.merge(HostPages.of(host, count))
    return pages.spread()


@dataclass(frozen=True)
class FleetTopEntry:
    """One ranked group over the fleet."""

    rank: int
    label: str
    pages: int
    times: int
    percent: float
    caller: str
    stack: tuple[str, ...]
    spread: HostSpread
    by_group: tuple[int, ...]  # pages per --group-by column, in `FleetTopResult.columns` order


@dataclass(frozen=True)
class FleetTopResult:
    """The ranked groups of a fleet, its totals, and what could not be read."""

    by: str
    by_times: bool
    group_by: str | None
    columns: tuple[str, ...]  # the --group-by values, sorted
    column_hosts: tuple[int, ...]
    column_pages: tuple[int, ...]
    entries: tuple[FleetTopEntry, ...]
    total_pages: int
    total_times: int
    hosts: int
    groups: int
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


def _ranked(table: FleetTable, by_times: bool) -> list[FleetGroup]:
    """Order groups as `top` does: pages (or times) descending, first seen first."""
    if by_times:
        return sorted(table.groups.values(), key=lambda g: (-g.times, -g.pages))
    return sorted(table.groups.values(), key=lambda g: (-g.pages, -g.times))


def fleet_top(table: FleetTable, *, top: int = 20, threshold: int = 0, by_times: bool = False,
              group_by: str | None = None) -> FleetTopResult:  # fmt: skip
    """Rank the groups of a merged fleet table; `group_by` must be one of its columns."""
    if group_by is not None and group_by not in table.columns:
        raise SpecError(f"--group-by {group_by}: the fleet was read keeping only "
                        f"{', '.join(table.columns)} per group")
    host_column = {h: e.value(group_by) for h, e in table.hosts.items()} if group_by else {}
    columns = tuple(sorted(set(host_column.values())))
    index = {name: i for i, name in enumerate(columns)}
    column_pages = [0] * len(columns)
    column_hosts = [0] * len(columns)
    for host, entry in table.hosts.items():
        if group_by:
            column_pages[index[host_column[host]]] += entry.pages
            column_hosts[index[host_column[host]]] += 1
    total_pages = table.total_pages
    entries: list[FleetTopEntry] = []
    for group in _ranked(table, by_times):
        if group.pages < threshold:
            continue
        if top and len(entries) >= top:
            break
        per_column = [0] * len(columns)
        for value, pages in group.columns.get(group_by, {}).items() if group_by else ():
            per_column[index[value]] += pages
        entries.append(FleetTopEntry(
            rank=len(entries) + 1, label=group.label, pages=group.pages, times=group.times,
            percent=_percent(group.pages, total_pages), caller=group.main_caller,
            stack=group.stack.labels() if table.by == "stack" else (),
            spread=group.spread.spread(), by_group=tuple(per_column)))  # fmt: skip
    return FleetTopResult(
        by=table.by, by_times=by_times, group_by=group_by, columns=columns,
        column_hosts=tuple(column_hosts), column_pages=tuple(column_pages),
        entries=tuple(entries), total_pages=total_pages, total_times=table.total_times,
        hosts=len(table.hosts), groups=len(table.groups), skipped=tuple(table.skipped),
        warnings=tuple(table.warnings))  # fmt: skip


@dataclass(frozen=True)
class FleetDiffEntry:
    """One group that changed over the fleet, with the hosts where it grew most."""

    rank: int
    label: str
    caller: str
    before_pages: int
    after_pages: int
    before_hosts: int
    after_hosts: int
    stack: tuple[str, ...]
    top_hosts: tuple[tuple[str, int], ...]  # (host, growth in pages), most first

    @property
    def delta(self) -> int:
        """Return the growth in pages."""
        return self.after_pages - self.before_pages

    @property
    def change(self) -> str:
        """Say whether the group was added, removed or changed."""
        if self.before_pages == 0 and self.before_hosts == 0:
            return "added"
        if self.after_pages == 0 and self.after_hosts == 0:
            return "removed"
        return "changed"


@dataclass(frozen=True)
class FleetDiffResult:
    """The changed groups, most growth first, and both sides' totals."""

    by: str
    entries: tuple[FleetDiffEntry, ...]
    before_pages: int
    after_pages: int
    before_hosts: int
    after_hosts: int
    unchanged: int
    hidden: int
    growth: tuple[tuple[int, str], ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...]

    @property
    def delta(self) -> int:
        """Return the growth of the whole fleet in pages."""
        return self.after_pages - self.before_pages


def fleet_diff(before: FleetTable, after: FleetTable, *, min_delta: int = 1, top: int = 0,
               hosts_shown: int = 3) -> FleetDiffResult:  # fmt: skip
    """Compare two merged fleet tables group by group, most growth first.

    The hosts where a group grew most come from the AFTER table's groups, noted there
    by the tasks that read a host's two captures (`job.host_tables`); at most
    `sketch.TOP_HOSTS` are kept.
    """

    def entry(old: FleetGroup | None, new: FleetGroup | None) -> FleetDiffEntry:
        shown = new if new is not None else old
        assert shown is not None
        return FleetDiffEntry(
            0, shown.label, shown.main_caller, old.pages if old else 0,
            new.pages if new else 0, old.spread.count if old else 0,
            new.spread.count if new else 0,
            shown.stack.labels() if after.by == "stack" else (),
            tuple(new.grew[:hosts_shown]) if new else ())  # fmt: skip

    entries, shown_entries, unchanged = compare_groups(
        before.groups, after.groups, entry, min_delta=min_delta, top=top)
    ranked = tuple(replace(e, rank=rank) for rank, e in enumerate(shown_entries, start=1))
    return FleetDiffResult(
        by=after.by, entries=ranked, before_pages=before.total_pages,
        after_pages=after.total_pages, before_hosts=len(before.hosts),
        after_hosts=len(after.hosts), unchanged=unchanged,
        hidden=len(entries) - len(shown_entries),
        growth=tuple((e.delta, e.label) for e in entries if e.delta > 0),
        skipped=tuple(sorted([*before.skipped, *after.skipped], key=lambda s: (s.host, s.path))),
        warnings=(*before.warnings, *after.warnings))  # fmt: skip


def check_fleet_growth(result: FleetDiffResult, limit: int | None) -> None:
    """Raise ThresholdExceeded when a group grew over the fleet by more than `limit` pages."""
    if limit is None:
        return
    grown = [(delta, label) for delta, label in result.growth if delta > limit]
    if grown:
        delta, label = grown[0]
        raise ThresholdExceeded(
            f"{len(grown)} group(s) grew over the fleet by more than {limit} pages; the "
            f"most: +{delta} pages ({label})")
