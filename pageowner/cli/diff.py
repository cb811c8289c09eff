"""`pageowner diff`: what grew (or shrank) between two dumps."""

from __future__ import annotations

import click

from pageowner.analyze.diff import DiffOptions, check_growth, diff_files
from pageowner.cli.analyze import (
    PPROF,
    base_output_option,
    by_option,
    depth_option,
    exact_option,
    flags_layout_option,
    free_option,
    jobs_option,
    output_option,
    page_size_option,
    pprof_format_option,
    reading,
    stacks_from_option,
    stacks_option,
    strict_option,
    write_pprof_pair,
    write_report,
)
from pageowner.cli.base import cli, combine_options
from pageowner.dump.fileio import check_output_path
from pageowner.kernel.tables import FlagsLayout
from pageowner.report.summaries import diff_report


@cli.command("diff")
@click.argument("before_path", metavar="BEFORE")
@click.argument("after_path", metavar="AFTER")
@combine_options(output_option, by_option, exact_option)
@click.option(
    "--min-delta",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="PAGES",
    help="Leave out groups that changed by fewer pages.",
)
@click.option(
    "--top",
    "top",
    type=click.IntRange(min=0),
    default=0,
    help="Show this many groups (default: all that changed).",
)
@click.option(
    "--fail-on-growth",
    type=click.IntRange(min=0),
    default=None,
    metavar="PAGES",
    help="Exit with status 3 when any group grew by more than PAGES.",
)
@combine_options(
    pprof_format_option,
    base_output_option,
    page_size_option,
    depth_option,
    stacks_option,
    stacks_from_option,
    strict_option,
    free_option,
    flags_layout_option,
    jobs_option,
)
def diff_command(before_path: str, after_path: str, output: str, by: str, exact: bool,
                 min_delta: int, top: int, fail_on_growth: int | None, fmt: str,
                 base_output: str | None, page_size: int, depth: int, show_stacks: bool,
                 stacks_from: str | None, strict: bool, flags_layout: FlagsLayout | None,
                 jobs: int) -> None:  # fmt: skip
    """Rank the groups that grew (or shrank) between two dumps, most growth first.

    BEFORE and AFTER are page_owner dumps or show_stacks files, from any boot or kernel:
    timestamps and PFNs are ignored and stacks compare by function names and modules.
    """
    check_output_path(output, (before_path, after_path))
    if fmt == PPROF:
        write_pprof_pair(before_path, after_path, output, base_output, page_size, strict,
                          jobs, stacks_from=stacks_from)  # fmt: skip
        return
    if base_output is not None:
        raise click.UsageError("--base-output needs --format pprof")
    options = DiffOptions(
        by=by,
        exact=exact,
        min_delta=min_delta,
        top=top,
        strict=strict,
        jobs=jobs,
        stacks_from=stacks_from,
        flags_layout=flags_layout,
    )
    with reading() as (warnings, progress):
        result = diff_files(before_path, after_path, options, on_warning=warnings,
                            on_progress=progress)  # fmt: skip
    report = diff_report(result, page_size, depth, show_stacks)
    write_report(report, output, fmt, (before_path, after_path))
    check_growth(result, fail_on_growth)
