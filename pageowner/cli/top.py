"""`pageowner top`: the groups holding most memory."""

from __future__ import annotations

import click

from pageowner.analyze.top import TopOptions, top_file
from pageowner.cli.analyze import (
    PPROF,
    by_option,
    depth_option,
    exact_option,
    flags_layout_option,
    free_option,
    input_argument,
    jobs_option,
    output_option,
    page_size_option,
    pprof_format_option,
    reading,
    stacks_from_option,
    stacks_option,
    strict_option,
    write_pprof,
    write_report,
)
from pageowner.cli.base import cli, combine_options
from pageowner.dump.fileio import check_output_path
from pageowner.kernel.tables import FlagsLayout
from pageowner.report.summaries import top_report


@cli.command("top")
@input_argument
@combine_options(output_option, by_option)
@click.option(
    "--top",
    "top",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Show this many groups (0: all).",
)
@click.option(
    "--threshold",
    type=click.IntRange(min=0),
    default=0,
    metavar="PAGES",
    help="Leave out groups with fewer pages.",
)
@click.option("--times", "by_times", is_flag=True, help="Rank by times seen instead of pages.")
@combine_options(
    exact_option,
    pprof_format_option,
    page_size_option,
    depth_option,
    stacks_option,
    stacks_from_option,
    strict_option,
    free_option,
    flags_layout_option,
    jobs_option,
)
def top_command(input_path: str, output: str, by: str, top: int, threshold: int,
                by_times: bool, exact: bool, fmt: str, page_size: int, depth: int,
                show_stacks: bool, stacks_from: str | None, strict: bool,
                flags_layout: FlagsLayout | None,
                jobs: int) -> None:  # fmt: skip
    """Show the groups holding most memory, each with its first caller outside the allocator.

    INPUT is a page_owner dump or a show_stacks file (`-` for stdin; .xz and .gz too).
    """
    check_output_path(output, (input_path,))
    if fmt == PPROF:
        write_pprof(
            input_path,
            output,
            page_size,
            strict,
            jobs,
            "times" if by_times else "pages",
            stacks_from,
        )
        return
    options = TopOptions(by=by, top=top, threshold=threshold, by_times=by_times, exact=exact,
                         strict=strict, jobs=jobs, stacks_from=stacks_from,
                         flags_layout=flags_layout)  # fmt: skip
    with reading() as (warnings, progress):
        result = top_file(input_path, options, on_warning=warnings, on_progress=progress)
    write_report(top_report(result, page_size, depth, show_stacks), output, fmt, (input_path,))
