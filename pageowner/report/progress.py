"""A progress bar on stderr, shown only when stderr is a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = ["Progress", "stderr_is_terminal"]


def stderr_is_terminal() -> bool:
    """Tell whether stderr is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A context manager giving an `update(done, total)` callback; silent off a terminal.

    rich is imported only when a bar is actually drawn, so piped runs never pay for it.
    """

    def __init__(self, description: str, unit: str = "bytes") -> None:
        self.description = description
        self.unit = unit
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Callable[[int, int | None], None]:
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
            columns.append(TimeRemainingColumn())
            self._bar = RichProgress(
                *columns, console=Console(stderr=True), transient=True
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=None)
        return self.update

    def update(self, done: int, total: int | None = None) -> None:
        """Move the bar to `done` of `total`."""
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
