"""The `pageowner` command line: a click group and one module per family of commands.

Commands are thin: they turn options into library values, call one library function and
render its result. Errors are converted in `pageowner.cli.base` only, and command modules
are imported on first use (`COMMAND_MODULES`).
"""

from __future__ import annotations

from pageowner.cli.base import COMMAND_MODULES, cli, main

__all__ = ["COMMAND_MODULES", "cli", "main"]
