"""`pageowner flame`: a dump's memory as a flame graph."""

from __future__ import annotations

import click

from pageowner.analyze.flame import FlameOptions, Weight, read_flame_data
from pageowner.cli.analyze import (
    PPROF,
    base_output_option,
    free_option,
    input_argument,
    jobs_option,
    output_option,
    page_size_option,
    reading,
    stacks_from_option,
    strict_option,
    write_pprof,
    write_pprof_pair,
)
from pageowner.cli.base import cli, combine_options
from pageowner.dump.fileio import check_output_path
from pageowner.report.flamegraph import FLAME_FORMATS, render_flame
from pageowner.report.output import is_terminal, text_output


@cli.command("flame")
@input_argument
@combine_options(output_option)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([*FLAME_FORMATS, PPROF]),
    default="html",
    show_default=True,
    help="folded (flamegraph.pl, inferno), speedscope JSON, a self-contained HTML "
    "page, or pprof (gzipped profile.proto, with labels for -tagfocus).",
)
@click.option(
    "--weight",
    type=click.Choice([w.value for w in Weight]),
    default="pages",
    show_default=True,
    help="What frame widths measure (times: dumps only); for pprof, the value shown first.",
)
@click.option(
    "--diff",
    "before_path",
    metavar="BEFORE",
    help="A differential graph: widths from INPUT, colours from the change since BEFORE.",
)
@combine_options(
    base_output_option,
    page_size_option,
    stacks_from_option,
    strict_option,
    free_option,
    jobs_option,
)
def flame_command(input_path: str, output: str, fmt: str, weight: str, before_path: str | None,
                  base_output: str | None, page_size: int, stacks_from: str | None, strict: bool,
                  jobs: int) -> None:  # fmt: skip
    """Draw the memory of a dump or show_stacks file as a flame graph.

    Stacks are folded root first and frames named without offsets. Only folded lines go
    to a terminal; the other formats are documents for a file (-o FILE).
    """
    inputs = (input_path,) if before_path is None else (input_path, before_path)
    check_output_path(output, inputs)
    if fmt != "folded" and is_terminal(output):
        # 85 KB of HTML (or binary pprof) on a screen helps nobody.
        raise click.UsageError(
            f"--format {fmt} writes a document for a file or a program; "
            "use -o FILE (or --format folded)"
        )
    if fmt == PPROF:
        # pprof's samples hold pages, bytes and allocations at once: --weight picks the
        # one pprof shows first.
        if before_path is None:
            if base_output is not None:
                raise click.UsageError("--base-output needs --diff BEFORE")
            write_pprof(input_path, output, page_size, strict, jobs, weight, stacks_from)
        else:
            write_pprof_pair(before_path, input_path, output, base_output, page_size,
                              strict, jobs, weight, stacks_from)  # fmt: skip
        return
    if base_output is not None:
        raise click.UsageError("--base-output needs --format pprof")
    options = FlameOptions(
        weight=Weight(weight),
        page_size=page_size,
        strict=strict,
        jobs=jobs,
        stacks_from=stacks_from,
    )
    with reading() as (warnings, progress):
        data = read_flame_data(input_path, options, before_path=before_path,
                               on_warning=warnings, on_progress=progress)  # fmt: skip
    with text_output(output, inputs=inputs) as out:
        render_flame(data, out, fmt, page_size)
