"""`pageowner stats`: a dump's totals by order, GFP flag, zone, node and more."""

from __future__ import annotations

from pageowner.analyze.stats import stats_file
from pageowner.cli.analyze import (
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
from pageowner.report.summaries import stats_report


@cli.command("stats")
@input_argument
@combine_options(
    output_option,
    format_option,
    page_size_option,
    stacks_from_option,
    strict_option,
    free_option,
    flags_layout_option,
    jobs_option,
)
def stats_command(input_path: str, output: str, fmt: str, page_size: int,
                  stacks_from: str | None, strict: bool, flags_layout: FlagsLayout | None,
                  jobs: int) -> None:  # fmt: skip
    """Total a dump by order, GFP flag, zone, node, migratetype, allocator and module.

    Also counts early-allocated pages, migrated pages and pages per memcg. Zone and node
    come from the Flags field (derived from the flags word before 5.14).
    """
    check_output_path(output, (input_path,))
    with reading() as (warnings, progress):
        result = stats_file(input_path, strict=strict, on_warning=warnings,
                            on_progress=progress, jobs=jobs,
                            stacks_from=stacks_from, flags_layout=flags_layout)  # fmt: skip
    write_report(stats_report(result, page_size), output, fmt, (input_path,))
