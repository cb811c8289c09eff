"""`pageowner frag`: mixed pageblocks and the stacks that mixed them."""

from __future__ import annotations

import click

from pageowner.analyze.frag import FragOptions, frag_file
from pageowner.cli.analyze import (
    depth_option,
    exact_option,
    flags_layout_option,
    format_option,
    free_option,
    input_argument,
    jobs_option,
    output_option,
    page_size_option,
    reading,
    stacks_from_option,
    strict_option,
    write_report,
)
from pageowner.cli.base import cli, combine_options
from pageowner.dump.fileio import check_output_path
from pageowner.kernel.tables import FlagsLayout
from pageowner.report.summaries import frag_report


@cli.command("frag")
@input_argument
@combine_options(output_option)
@click.option(
    "--top",
    "top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="List this many culprit stacks (0: all).",
)
@combine_options(
    exact_option,
    format_option,
    page_size_option,
    depth_option,
    stacks_from_option,
    strict_option,
    free_option,
    flags_layout_option,
    jobs_option,
)
def frag_command(input_path: str, output: str, top: int, exact: bool, fmt: str,
                 page_size: int, depth: int, stacks_from: str | None, strict: bool,
                 flags_layout: FlagsLayout | None,
                 jobs: int) -> None:  # fmt: skip
    """Count mixed pageblocks per zone and list the stacks that mixed them.

    A pageblock is mixed when it holds a page of another migratetype; /proc/pagetypeinfo
    counts the same with page_owner on.
    """
    check_output_path(output, (input_path,))
    with reading() as (warnings, progress):
        options = FragOptions(
            top=top,
            exact=exact,
            strict=strict,
            jobs=jobs,
            stacks_from=stacks_from,
            flags_layout=flags_layout,
        )
        result = frag_file(input_path, options, on_warning=warnings, on_progress=progress)
    write_report(frag_report(result, page_size, depth), output, fmt, (input_path,))
