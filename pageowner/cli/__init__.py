"""The `pageowner` command line: a click group and one module per family of commands.

Commands are thin: they turn options into library values, call one library function and
render its result. Errors are converted in `pageowner.cli.base` only.
"""

from __future__ import annotations

from pageowner.cli import analyze as _analyze  # noqa: F401  (registers the commands)
from pageowner.cli import live as _live  # noqa: F401  (registers the commands)
from pageowner.cli import sort as _sort  # noqa: F401  (registers the commands)
from pageowner.cli import symbols as _symbols  # noqa: F401
from pageowner.cli.base import cli, main

__all__ = ["cli", "main"]
