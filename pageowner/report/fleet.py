"""Render `fleet top` and `fleet diff` results as text, rich tables, JSON or CSV.

The JSON of `fleet top` has the fields of `top --format json` (`total_pages`, `entries`
with `key`, `pages`, `times`...) plus the fleet's: hosts per entry, pages per host
(median, p95, max; `exact` false when the median or p95 is an estimate within 1 %), the
host with most, pages per --group-by column, and the captures
skipped with their reasons.
"""

from __future__ import annotations

from typing import Any

from pageowner.fleet.discover import Skipped
from pageowner.fleet.results import FleetDiffResult, FleetTopResult
from pageowner.fleet.sketch import EXACT_HOSTS, RELATIVE_ERROR
from pageowner.report.summaries import Report, _chain
from pageowner.report.tables import Column, Table
from pageowner.report.units import format_percent, format_signed, human_size

__all__ = ["fleet_diff_report", "fleet_top_report"]


def _number(value: Any) -> str:
    """Show a count; a median halfway between two counts keeps its .5; text as it is."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.1f}"
    return str(int(value))


def _estimate(value: Any, exact: bool) -> Any:
    """Mark a value read from a histogram of pages per host with `~`."""
    return value if exact else f"~{_number(value)}"


def _skipped_table(skipped: tuple[Skipped, ...]) -> Table:
    rows = tuple((s.host, s.path, s.reason) for s in skipped)
    columns = (Column("host", "host", "left"), Column("capture", "path", "left"),
               Column("reason", "reason", "left"))  # fmt: skip
    return Table(f"skipped: {len(skipped)} capture(s)", columns, rows)


def _skipped_json(skipped: tuple[Skipped, ...]) -> list[dict[str, str]]:
    return [{"host": s.host, "path": s.path, "reason": s.reason} for s in skipped]


def _group_cell(label: str, stack: tuple[str, ...], caller: str, by: str, depth: int) -> str:
    return _chain(stack, caller, depth) if by == "stack" else label


def fleet_top_report(result: FleetTopResult, page_size: int, depth: int = 3,
                     stacks: bool = False) -> Report:  # fmt: skip
    """Build the report of `fleet top`."""
    counted = "times" if result.by_times else "pages"
    header = (f"fleet of {result.hosts} hosts: {result.total_pages} pages "
              f"({human_size(result.total_pages * page_size)}) in {result.total_times} records; "
              f"top {len(result.entries)} of {result.groups} groups by {result.by}, by {counted}")
    if result.skipped:
        header += f"; {len(result.skipped)} capture(s) skipped"
    columns = [Column("rank", "rank"), Column("pages", "pages"),
               Column("size", "bytes", show=lambda v: human_size(int(v))),
               Column("%", "percent", show=format_percent), Column("times", "times"),
               Column("hosts", "hosts"), Column("median", "median", show=_number),
               Column("p95", "p95"), Column("max", "max"), Column("max host", "max_host", "left")]
    columns += [Column(f"{result.group_by}={name}", f"pages_{name}") for name in result.columns]
    columns.append(Column(result.by if result.by != "stack" else
                          "stack (first frames outside the allocator)", "key", "left"))
    rows = []
    for e in result.entries:
        rows.append((e.rank, e.pages, e.pages * page_size, e.percent, e.times, e.spread.hosts,
                     _estimate(e.spread.median, e.spread.median_exact),
                     _estimate(e.spread.p95, e.spread.p95_exact), e.spread.max,
                     e.spread.max_host, *e.by_group,
                     _group_cell(e.label, e.stack, e.caller, result.by, depth)))  # fmt: skip
    notes = [f"pages per host: over the hosts that hold the {result.by}"]
    if any(not e.spread.exact for e in result.entries):
        notes.append(f"~: an estimate within {RELATIVE_ERROR:.0%} (a group on more than "
                     f"{EXACT_HOSTS} hosts keeps a histogram of its pages per host)")
    if result.columns:
        notes.append("; ".join(f"{result.group_by}={name}: {hosts} hosts, {pages} pages"
                               for name, hosts, pages in zip(result.columns, result.column_hosts,
                                                             result.column_pages, strict=True)))
    table = Table(f"{result.by} groups over the fleet, by {counted}", tuple(columns),
                  tuple(rows), tuple(notes))  # fmt: skip
    tables = [table]
    if result.skipped:
        tables.append(_skipped_table(result.skipped))
    details: list[str] = []
    if stacks and result.by == "stack":
        for e in result.entries:
            details.append(f"#{e.rank}: {e.pages} pages on {e.spread.hosts} hosts")
            details.extend(f"  {frame}" for frame in e.stack)
    document = {
        "by": result.by,
        "ranked_by": counted,
        "page_size": page_size,
        "hosts": result.hosts,
        "total_pages": result.total_pages,
        "total_bytes": result.total_pages * page_size,
        "total_times": result.total_times,
        "groups": result.groups,
        "group_by": result.group_by,
        "columns": [{"name": name, "hosts": hosts, "pages": pages}
                    for name, hosts, pages in zip(result.columns, result.column_hosts,
                                                  result.column_pages, strict=True)],
        "entries": [
            {
                "rank": e.rank, "key": e.label, "pages": e.pages, "bytes": e.pages * page_size,
                "percent": round(e.percent, 2), "times": e.times, "caller": e.caller,
                "stack": list(e.stack), "hosts": e.spread.hosts,
                "host_pages": {"median": e.spread.median, "p95": e.spread.p95,
                               "max": e.spread.max, "exact": e.spread.exact},
                "max_host": e.spread.max_host,
                "by_group": dict(zip(result.columns, e.by_group, strict=True)),
            }
            for e in result.entries
        ],
        "skipped": _skipped_json(result.skipped),
        "warnings": list(result.warnings),
    }  # fmt: skip
    return Report(header, tuple(tables), document, csv_tables=(table,), details=tuple(details))


def fleet_diff_report(result: FleetDiffResult, page_size: int, depth: int = 3) -> Report:
    """Build the report of `fleet diff`."""
    header = (f"fleet diff by {result.by}: before {result.before_hosts} hosts, "
              f"{result.before_pages} pages -> after {result.after_hosts} hosts, "
              f"{result.after_pages} pages; {format_signed(result.delta)} pages "
              f"({human_size(result.delta * page_size)})")
    if result.skipped:
        header += f"; {len(result.skipped)} capture(s) skipped"
    columns = (Column("rank", "rank"), Column("change", "change", "left"),
               Column("delta", "delta_pages", show=lambda v: format_signed(int(v))),
               Column("before", "before_pages"), Column("after", "after_pages"),
               Column("hosts before", "before_hosts"), Column("hosts after", "after_hosts"),
               Column("grew most on", "top_hosts", "left"),
               Column(result.by if result.by != "stack" else
                      "stack (first frames outside the allocator)", "key", "left"))  # fmt: skip
    rows = tuple(
        (e.rank, e.change, e.delta, e.before_pages, e.after_pages, e.before_hosts,
         e.after_hosts, ", ".join(f"{h} {format_signed(d)}" for h, d in e.top_hosts) or "-",
         _group_cell(e.label, e.stack, e.caller, result.by, depth))
        for e in result.entries)  # fmt: skip
    notes = []
    if result.unchanged or result.hidden:
        notes.append(f"{result.unchanged} groups unchanged; {result.hidden} changed ones not "
                     "shown (--min-delta, --top)")
    table = Table(f"changes by {result.by} over the fleet, most growth first", columns, rows,
                  tuple(notes))  # fmt: skip
    tables = [table] + ([_skipped_table(result.skipped)] if result.skipped else [])
    document = {
        "by": result.by,
        "page_size": page_size,
        "before_hosts": result.before_hosts,
        "after_hosts": result.after_hosts,
        "before_pages": result.before_pages,
        "after_pages": result.after_pages,
        "delta_pages": result.delta,
        "unchanged": result.unchanged,
        "hidden": result.hidden,
        "entries": [
            {"rank": e.rank, "change": e.change, "key": e.label, "delta_pages": e.delta,
             "delta_bytes": e.delta * page_size, "before_pages": e.before_pages,
             "after_pages": e.after_pages, "before_hosts": e.before_hosts,
             "after_hosts": e.after_hosts, "caller": e.caller, "stack": list(e.stack),
             "top_hosts": [{"host": h, "delta_pages": d} for h, d in e.top_hosts]}
            for e in result.entries
        ],
        "skipped": _skipped_json(result.skipped),
        "warnings": list(result.warnings),
    }  # fmt: skip
    return Report(header, tuple(tables), document, csv_tables=(table,))
