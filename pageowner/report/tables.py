"""Tables of results, rendered as plain aligned text, a rich table, or CSV.

A `Table` holds raw cell values; each `Column` knows how to show its values to a person.
Plain text and rich tables show formatted values, CSV writes the raw ones. rich is
imported only when a table is drawn for a terminal, and every string that came from a
dump is escaped there (frames contain `[module]`, which rich would read as markup).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["Column", "Table", "render_csv", "render_rich", "render_text"]


def _plain(value: Any) -> str:
    """Show a value as text; None is '-'."""
    return "-" if value is None else str(value)


@dataclass(frozen=True)
class Column:
    """One column: its header, its CSV name, alignment and how values are shown."""

    header: str
    name: str
    align: str = "right"  # "right" or "left"
    show: Callable[[Any], str] = _plain


@dataclass(frozen=True)
class Table:
    """A titled table of raw values, with lines to print under it."""

    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    notes: tuple[str, ...] = field(default=())

    def shown(self) -> list[list[str]]:
        """Return every row as the strings a person reads."""
        return [[col.show(value) for col, value in zip(self.columns, row, strict=True)]
                for row in self.rows]  # fmt: skip


def render_text(tables: Sequence[Table], out: TextIO, header: str | None = None) -> None:
    """Write tables as plain aligned text (no trailing spaces), separated by blank lines."""
    if header:
        out.write(header + "\n\n")
    for index, table in enumerate(tables):
        if index:
            out.write("\n")
        out.write(table.title + "\n")
        cells = [[col.header for col in table.columns], *table.shown()]
        widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
        for row in cells:
            parts = []
            for i, (col, text) in enumerate(zip(table.columns, row, strict=True)):
                last = i == len(row) - 1
                if col.align == "right":
                    parts.append(text.rjust(widths[i]))
                else:
                    parts.append(text if last else text.ljust(widths[i]))
            out.write("  ".join(parts).rstrip() + "\n")
        for note in table.notes:
            out.write(note + "\n")


def render_rich(
    tables: Sequence[Table], out: TextIO, header: str | None = None, width: int | None = None
) -> None:
    """Draw tables with rich, for a terminal."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    console = Console(file=out, width=width, highlight=False)
    if header:
        console.print(escape(header), style="bold")
    for table in tables:
        rich_table = RichTable(title=escape(table.title), title_justify="left",
                               title_style="bold")  # fmt: skip
        for col in table.columns:
            if col.align == "right":
                rich_table.add_column(escape(col.header), justify="right", no_wrap=True)
            else:
                rich_table.add_column(escape(col.header), justify="left", overflow="fold")
        for row in table.shown():
            rich_table.add_row(*(escape(text) for text in row))
        console.print(rich_table)
        for note in table.notes:
            console.print(escape(note))


CSV_DECIMALS = 2  # as the JSON documents round (report.summaries._round)


def _csv_value(value: Any) -> Any:
    """Return a raw value as CSV writes it: None empty, floats rounded as in JSON."""
    if value is None:
        return ""
    if isinstance(value, float):
        return round(value, CSV_DECIMALS)
    return value


def render_csv(tables: Sequence[Table], out: TextIO) -> None:
    """Write raw values as CSV: one header, a `table` column when there are several tables."""
    writer = csv.writer(out, lineterminator="\n")
    several = len(tables) > 1
    if not tables:
        return
    if several:
        writer.writerow(["table", *(col.name for col in tables[0].columns)])
    else:
        writer.writerow([col.name for col in tables[0].columns])
    for table in tables:
        for row in table.rows:
            values = [_csv_value(value) for value in row]
            writer.writerow([table.title, *values] if several else values)
