"""A progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any, Protocol

__all__ = ["Progress", "ProgressUpdate", "stderr_is_terminal"]


class ProgressUpdate(Protocol):
    """The callback a Progress gives: bytes (or units) done, the total, and a count."""

    def __call__(self, done: int, total: int | None = None, count: int | None = None) -> None:
        """Move the bar."""


def stderr_is_terminal() -> bool:
    """Tell whether stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A context manager giving an `update(done, total)` callback; silent off a terminal.

    With `count_label` (e.g. "records") the bar also shows the `count` passed to update.
    rich is imported only when a bar is actually drawn, so piped runs never pay for it.
    """

    def __init__(
        self, description: str, unit: str = "bytes", count_label: str | None = None
    ) -> None:
        self.description = description
        self.unit = unit
        self.count_label = count_label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressUpdate:
        if stderr_is_terminal():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            columns: list[Any] = [TextColumn("{task.description}"), BarColumn()]
            if self.unit == "bytes":
                columns.append(DownloadColumn())
            if self.count_label is not None:
                columns.append(TextColumn(f"{{task.fields[count]:,}} {self.count_label}"))
            columns.append(TimeRemainingColumn())
            self._bar = RichProgress(
                *columns, console=Console(stderr=True), transient=True
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None, count=0)
        return self.update

    def update(self, done: int, total: int | None = None, count: int | None = None) -> None:
        """Move the bar to `done` of `total`, and show `count` when given."""
        if self._bar is not None:
            fields = {} if count is None else {"count": count}
            self._bar.update(self._task, completed=done, total=total, **fields)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
