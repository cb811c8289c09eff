"""Render the results of top, diff, stats and frag as text, rich tables, JSON or CSV.

Each `*_report` function turns a result into a `Report`: a header line, tables and a JSON
document. `render_report` writes one in the format asked for. Sizes are shown in binary
units of `page_size`-byte pages; JSON and CSV carry raw pages and bytes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from pageowner.analyze.analysis import InputKind
from pageowner.report.tables import (
    CSV_DECIMALS,
    Column,
    Table,
    render_csv,
    render_rich,
    render_text,
)
from pageowner.report.units import format_percent, format_signed, human_size

if TYPE_CHECKING:  # result types only: `top` need not import diff, frag and stats
    from pageowner.analyze.diff import DiffResult
    from pageowner.analyze.frag import FragResult
    from pageowner.analyze.stats import StatsResult
    from pageowner.analyze.top import TopResult

__all__ = [
    "FORMATS",
    "Report",
    "diff_report",
    "frag_report",
    "render_report",
    "stats_report",
    "top_report",
]


@dataclass(frozen=True)
class Report:
    """Everything a renderer needs: a header, tables, extra text lines and a JSON document."""

    header: str
    tables: tuple[Table, ...]
    document: dict[str, Any]
    csv_tables: tuple[Table, ...] | None = None  # when CSV wants other tables
    details: tuple[str, ...] = field(default=())  # printed after the tables (text only)


def _size(value: Any) -> str:
    return human_size(int(value))


def _signed_size(value: Any) -> str:
    text = human_size(int(value))
    return text if text.startswith("-") else "+" + text


def _pct(value: Any) -> str:
    return format_percent(value)


def _signed_pct(value: Any) -> str:
    return format_percent(value, signed=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, CSV_DECIMALS)


def _group_noun(by: str, kind: InputKind) -> str:
    """Name what is being ranked, e.g. 'stacks' or 'pids'."""
    return {"stack": "stacks", "caller": "callers", "allocator": "allocator classes",
            "gfp": "GFP masks", "order": "orders", "zone": "zones", "node": "nodes",
            "name": "command names", "migratetype": "migratetypes", "module": "modules",
            "pid": "pids", "tgid": "tgids"}.get(by, "groups")  # fmt: skip


def top_report(result: TopResult, page_size: int, depth: int = 3, stacks: bool = False) -> Report:
    """Build the report of `top`."""
    counted = "times" if result.by_times else "pages"
    noun = _group_noun(result.by, result.kind)
    total = human_size(result.total_pages * page_size)
    header = (
        f"{result.source}: {result.total_pages} pages ({total})"
        # A show_stacks file's blocks are counted apart from the stacks they group into:
        # blocks whose frames differ only in offsets (or build suffixes) are one stack.
        f" in {result.total_times}"
        f" {'records' if result.kind is InputKind.DUMP else 'show_stacks blocks'};"
        f" top {len(result.entries)} of {result.groups} {noun} by {counted}"
    )
    if result.threshold:
        header += f", at least {result.threshold} pages"
    stack_key = result.by == "stack"
    columns = [
        Column("rank", "rank"),
        Column("pages", "pages"),
        Column("size", "bytes", show=_size),
        Column("%", "percent", show=_pct),
        Column("times" if result.kind is InputKind.DUMP else "stacks", "times"),
    ]
    _add_group_columns(columns, result.by, at=1)
    rows = []
    for entry in result.entries:
        row: list[Any] = [entry.rank, entry.pages, entry.pages * page_size, entry.percent,
                          entry.times]  # fmt: skip
        rows.append(_with_group_cells(row, result.by, 1, entry.label, entry.stack, entry.caller,
                                      depth))  # fmt: skip
    details: list[str] = []
    if result.handle_note is not None:
        details.append(f"note: {result.handle_note}")
    if stacks and stack_key:
        for entry in result.entries:
            details.append(f"#{entry.rank}: {entry.pages} pages, {entry.times} times")
            details.extend(f"  {frame}" for frame in entry.stack)
    document = {
        "source": result.source,
        "kind": result.kind.value,
        "by": result.by,
        "ranked_by": counted,
        "page_size": page_size,
        "total_pages": result.total_pages,
        "total_bytes": result.total_pages * page_size,
        "total_times": result.total_times,
        "groups": result.groups,
        "threshold": result.threshold,
        "entries": [
            {
                "rank": e.rank,
                "key": e.label,
                "pages": e.pages,
                "bytes": e.pages * page_size,
                "percent": _round(e.percent),
                "times": e.times,
                "caller": e.caller,
                "stack": list(e.stack),
            }
            for e in result.entries
        ],
    }
    table = Table(f"{noun} by {counted}", tuple(columns), tuple(rows))
    if result.handle_note is not None:
        document["handle_note"] = result.handle_note
    return Report(header, (table,), document, details=tuple(details))


def _add_group_columns(columns: list[Column], by: str, at: int) -> None:
    """Add what names a group: its stack, or its key at `at` (then also its main caller)."""
    if by == "stack":
        columns.append(Column("stack (first frames outside the allocator)", "caller", "left"))
    else:
        columns.insert(at, Column(by, by, "left"))
    if by not in ("stack", "caller"):
        columns.append(Column("main caller", "caller", "left"))


def _with_group_cells(row: list[Any], by: str, at: int, label: str, stack: tuple[str, ...],
                      caller: str, depth: int) -> tuple[Any, ...]:  # fmt: skip
    """Add the cells of `_add_group_columns` to a row."""
    if by == "stack":
        row.append(_chain(stack, caller, depth))
    else:
        row.insert(at, label)
    if by not in ("stack", "caller"):
        row.append(caller)
    return tuple(row)


def _chain(stack: tuple[str, ...], caller: str, depth: int) -> str:
    """Show the caller and the frames above it, `depth` frames (0: all)."""
    if caller not in stack:
        return caller
    start = stack.index(caller)
    if depth <= 0 or start + depth >= len(stack):
        return " < ".join(stack[start:])
    # The outermost frame often tells apart stacks that share their first callers.
    return " < ".join(stack[start : start + depth]) + " < ... < " + stack[-1]


def diff_report(result: DiffResult, page_size: int, depth: int = 3,
                stacks: bool = False) -> Report:  # fmt: skip
    """Build the report of `diff`."""
    noun = _group_noun(result.by, result.before_kind)
    header = (
        f"diff by {result.by}: {result.before}: {result.before_pages} pages "
        f"({human_size(result.before_pages * page_size)}, {result.before_groups} {noun}) -> "
        f"{result.after}: {result.after_pages} pages "
        f"({human_size(result.after_pages * page_size)}, {result.after_groups} {noun}); "
        f"{format_signed(result.delta)} pages ({_signed_size(result.delta * page_size)})"
    )
    stack_key = result.by == "stack"
    columns = [
        Column("rank", "rank"),
        Column("change", "change", "left"),
        Column("delta", "delta_pages", show=lambda v: format_signed(int(v))),
        Column("size", "delta_bytes", show=_signed_size),
        Column("before", "before_pages"),
        Column("after", "after_pages"),
        Column("growth", "percent", show=_signed_pct),
    ]
    _add_group_columns(columns, result.by, at=2)
    rows = []
    for entry in result.entries:
        row: list[Any] = [entry.rank, entry.change.value, entry.delta, entry.delta * page_size,
                          entry.before_pages, entry.after_pages, entry.percent]  # fmt: skip
        rows.append(_with_group_cells(row, result.by, 2, entry.label, entry.stack, entry.caller,
                                      depth))  # fmt: skip
    notes = []
    if result.unchanged or result.hidden:
        notes.append(
            f"{result.unchanged} {noun} unchanged; {result.hidden} changed ones not shown "
            "(--min-delta, --top)"
        )
    if not result.entries and not result.hidden:
        notes.append("no differences")
    details: list[str] = []
    if stacks and stack_key:
        for entry in result.entries:
            details.append(
                f"#{entry.rank}: {entry.change.value}, {format_signed(entry.delta)} pages"
            )
            details.extend(f"  {frame}" for frame in entry.stack)
    document = {
        "before": result.before,
        "after": result.after,
        "by": result.by,
        "page_size": page_size,
        "before_pages": result.before_pages,
        "after_pages": result.after_pages,
        "delta_pages": result.delta,
        "before_groups": result.before_groups,
        "after_groups": result.after_groups,
        "unchanged": result.unchanged,
        "hidden": result.hidden,
        "entries": [
            {
                "rank": e.rank,
                "change": e.change.value,
                "key": e.label,
                "delta_pages": e.delta,
                "delta_bytes": e.delta * page_size,
                "before_pages": e.before_pages,
                "after_pages": e.after_pages,
                "before_times": e.before_times,
                "after_times": e.after_times,
                "percent": _round(e.percent),
                "caller": e.caller,
                "stack": list(e.stack),
            }
            for e in result.entries
        ],
    }
    table = Table(f"changes by {result.by}, most growth first", tuple(columns), tuple(rows),
                  tuple(notes))  # fmt: skip
    return Report(header, (table,), document, details=tuple(details))


def stats_report(result: StatsResult, page_size: int) -> Report:
    """Build the report of `stats`."""
    unit = "records" if result.kind is InputKind.DUMP else "stacks"
    header = (
        f"{result.source}: {result.pages} pages ({human_size(result.pages * page_size)}) "
        f"in {result.records} {unit}"
    )
    tables = []
    for section in result.sections:
        columns = (
            Column(section.name, "key", "left"),
            Column("pages", "pages"),
            Column("size", "bytes", show=_size),
            Column("%", "percent", show=_pct),
            Column(unit, unit),
        )
        rows = tuple(
            (row.label, row.pages, row.pages * page_size, row.percent, row.records)
            for row in section.rows
        )
        notes = ("(rows overlap: a record counts under each of its flags)",) if (
            section.overlapping
        ) else ()
        tables.append(Table(section.title, columns, rows, notes))
    document = {
        "source": result.source,
        "kind": result.kind.value,
        "page_size": page_size,
        "pages": result.pages,
        "bytes": result.pages * page_size,
        "records": result.records,
        "sections": {
            section.name: [
                {"key": row.label, "pages": row.pages, "bytes": row.pages * page_size,
                 "percent": _round(row.percent), "records": row.records}
                for row in section.rows
            ]
            for section in result.sections
        },  # fmt: skip
        "notes": list(result.notes),
    }
    details = tuple(f"note: {note}" for note in result.notes)
    # CSV: one table, keyed by section name (the titles are for people).
    csv_tables = tuple(
        Table(section.name, table.columns, table.rows)
        for section, table in zip(result.sections, tables, strict=True)
    )
    return Report(header, tuple(tables), document, csv_tables=csv_tables, details=details)


def frag_report(result: FragResult, page_size: int, depth: int = 3) -> Report:
    """Build the report of `frag`."""
    header = (
        f"{result.source}: {result.records} records, {result.mismatched_records} in a pageblock "
        f"of another migratetype"
    )
    types = result.migratetypes
    place = (Column("node", "node"), Column("zone", "zone", "left"))
    mixed = Table(
        "mixed pageblocks per zone (as /proc/pagetypeinfo counts them with page_owner on)",
        place + tuple(Column(mt.value, mt.value) for mt in types),
        tuple((z.node, z.zone, *(count for _, count in z.mixed)) for z in result.zones),
    )
    seen = Table(
        "pageblocks holding allocations, by pageblock migratetype",
        place + tuple(Column(mt.value, mt.value) for mt in types),
        tuple((z.node, z.zone, *(count for _, count in z.blocks)) for z in result.zones),
    )
    notes = []
    if result.reserved:
        notes.append(f"{result.reserved} reserved pages left out (the kernel skips them too)")
    if result.without_pfn:
        notes.append(f"{result.without_pfn} records without a PFN line left out")
    if result.derived_with is not None:
        notes.append(
            f"node, zone: derived from the flags word with the {result.derived_with.name} "
            "layout (no node=/zone= fields before 5.14); --flags-layout names another"
        )
    culprits = Table(
        "stacks behind the mixing (most mixed pageblocks first)",
        (
            Column("rank", "rank"),
            Column("blocks", "blocks"),
            Column("pages", "pages"),
            Column("size", "bytes", show=_size),
            Column("records", "records"),
            Column("what", "migratetypes", "left"),
            Column("stack (first frames outside the allocator)", "caller", "left"),
        ),
        tuple(
            (c.rank, c.blocks, c.pages, c.pages * page_size, c.records, c.migratetypes,
             _chain(c.stack, c.caller, depth))
            for c in result.culprits
        ),  # fmt: skip
        tuple(notes),
    )
    document = {
        "source": result.source,
        "page_size": page_size,
        "records": result.records,
        "mismatched_records": result.mismatched_records,
        "without_pfn": result.without_pfn,
        "reserved": result.reserved,
        "zones": [
            {
                "node": z.node,
                "zone": z.zone,
                "mixed": {mt.value: count for mt, count in z.mixed},
                "blocks": {mt.value: count for mt, count in z.blocks},
            }
            for z in result.zones
        ],
        "culprits": [
            {"rank": c.rank, "blocks": c.blocks, "pages": c.pages,
             "bytes": c.pages * page_size, "records": c.records,
             "migratetypes": c.migratetypes, "caller": c.caller, "stack": list(c.stack)}
            for c in result.culprits
        ],  # fmt: skip
    }
    long_rows = tuple(
        (z.node, z.zone, mt.value, blocks, mixed_count)
        for z in result.zones
        for (mt, blocks), (_, mixed_count) in zip(z.blocks, z.mixed, strict=True)
    )
    csv_table = Table(
        "frag",
        (Column("node", "node"), Column("zone", "zone"), Column("migratetype", "migratetype"),
         Column("blocks", "blocks"), Column("mixed", "mixed")),
        long_rows,
    )  # fmt: skip
    return Report(header, (mixed, seen, culprits), document, csv_tables=(csv_table,))


def _render_json(report: Report, out: TextIO, terminal: bool, width: int | None) -> None:
    json.dump(report.document, out, indent=2, ensure_ascii=True)
    out.write("\n")


def _render_csv(report: Report, out: TextIO, terminal: bool, width: int | None) -> None:
    render_csv(report.csv_tables if report.csv_tables is not None else report.tables, out)


def _render_text(report: Report, out: TextIO, terminal: bool, width: int | None) -> None:
    if terminal:
        render_rich(report.tables, out, report.header, width)
        if report.details:
            from rich.console import Console
            from rich.markup import escape

            console = Console(file=out, width=width, highlight=False)
            for line in report.details:
                console.print(escape(line))
        return
    render_text(report.tables, out, report.header)
    if report.details:
        out.write("\n")
        for line in report.details:
            out.write(line + "\n")


# --format values: text is a rich table on a terminal and plain aligned text otherwise.
FORMATS: dict[str, Callable[[Report, TextIO, bool, int | None], None]] = {
    "text": _render_text,
    "json": _render_json,
    "csv": _render_csv,
}


def render_report(report: Report, out: TextIO, fmt: str = "text", *, terminal: bool = False,
                  width: int | None = None) -> None:  # fmt: skip
    """Write a report in one of `FORMATS`."""
    FORMATS[fmt](report, out, terminal, width)
