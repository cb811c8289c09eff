"""`pageowner grep`: the records that pass every filter, as a dump."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pageowner.analyze.grep import FILTERS, Selection, grep_file
from pageowner.cli.analyze import (
    flags_layout_option,
    input_argument,
    output_option,
    reading,
    stacks_from_option,
    strict_option,
)
from pageowner.cli.base import SpecParam, cli, combine_options
from pageowner.kernel.tables import FlagsLayout

# grep(1)'s status when no line was selected (a usage error is still 2).
EXIT_NOTHING_SELECTED = 1


def _filter_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one option per entry of the grep filter registry."""
    for entry in reversed(FILTERS):
        if entry.metavar is None:
            command = click.option(entry.option, entry.name, is_flag=True,
                                   help=entry.help)(command)  # fmt: skip
        else:
            command = click.option(entry.option, entry.name, multiple=True,
                                   metavar=entry.metavar,
                                   type=SpecParam(entry.metavar, entry.parse),
                                   help=entry.help)(command)  # fmt: skip
    return command


@cli.command("grep")
@input_argument
@combine_options(output_option)
@_filter_options
@click.option(
    "-v",
    "--invert-match",
    "invert",
    is_flag=True,
    help="Keep the records whose stack does NOT match -e.",
)
@click.option(
    "-c",
    "--count",
    "count_only",
    is_flag=True,
    help="Print only the number of matching records (0 too, with exit status 1).",
)
@stacks_from_option
@strict_option
@flags_layout_option
def grep_command(input_path: str, output: str, invert: bool, count_only: bool,
                 stacks_from: str | None, strict: bool, flags_layout: FlagsLayout | None,
                 **filters: Any) -> None:  # fmt: skip
    """Print the records that pass every filter, as a dump that `sort` reads.

    Lists are comma-separated; a repeated option adds alternatives. On a show_stacks file
    only -e and --module apply. As grep(1): exit status 0 when a record was selected, 1
    when none was (with -c too), 2 for a usage error.
    """
    given = [(name, (True,) if value is True else (value or ())) for name, value in filters.items()]
    selection = Selection.build(given, invert_regex=invert)
    with reading() as (warnings, progress):
        result = grep_file(input_path, output, selection, count_only=count_only,
                           strict=strict, stacks_from=stacks_from, on_warning=warnings,
                           on_progress=progress, flags_layout=flags_layout)  # fmt: skip
    if result.selected == 0:
        raise click.exceptions.Exit(EXIT_NOTHING_SELECTED)
