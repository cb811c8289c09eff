"""What the analysis commands share: their options, warnings, progress and output.

Each command lives in its own module (`cli/top.py`, `diff.py`, `stats.py`, `frag.py`,
`flame.py`, `grep.py`), imported only when it runs, so `pageowner top` pays at start-up
for the modules `top` uses and no others. Each reads a dump or show_stacks file (`-` for
stdin), calls one library function and renders its result to stdout or `-o FILE`
(written whole or not at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from pageowner.analyze.analysis import (
    DEFAULT_PAGE_SIZE,
    GROUP_KEYS,
    parse_flags_layout,
    parse_page_size,
)
from pageowner.cli.base import SpecParam, WarningPrinter, combine_options, old_spelling
from pageowner.dump.fileio import atomic_output, check_output_path
from pageowner.dump.repair import set_free_stacks
from pageowner.kernel.tables import FLAGS_LAYOUTS
from pageowner.report.output import is_terminal, text_output
from pageowner.report.progress import Progress
from pageowner.report.summaries import FORMATS, Report, render_report

if TYPE_CHECKING:
    from pageowner.analyze.pprof import ProfileData

_BY_KEYS = [key.name for key in GROUP_KEYS]


output_option = click.option(
    "-o",
    "--output",
    default="-",
    metavar="FILE",
    show_default=True,
    help="Write here instead of stdout (written whole or not at all).",
)
format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(list(FORMATS)),
    default="text",
    show_default=True,
    help="text: a rich table on a terminal, aligned text otherwise.",
)
PPROF = "pprof"
pprof_format_option = click.option(
    "--format", "fmt", type=click.Choice([*FORMATS, PPROF]), default="text",
    show_default=True,
    help="text: a rich table on a terminal, aligned text otherwise; pprof: a gzipped "
         "profile.proto of every stack (needs -o FILE).")  # fmt: skip
base_output_option = click.option(
    "--base-output", metavar="FILE",
    help="With --format pprof: also write BEFORE's profile here, for "
         "`pprof -diff_base FILE OUTPUT`.")  # fmt: skip
page_size_option = click.option(
    "--page-size",
    type=SpecParam("SIZE", parse_page_size),
    default=str(DEFAULT_PAGE_SIZE),
    metavar="SIZE",
    show_default=True,
    help="Bytes per page for human sizes (4096, 4K, 64K...).",
)
strict_option = click.option(
    "--strict", is_flag=True, help="Fail on a block that is not a record instead of skipping it."
)
free_option = click.option(
    "--free",
    is_flag=True,
    expose_value=False,
    callback=lambda _ctx, _param, value: set_free_stacks(value),
    help="From a kernel log's __dump_page_owner() output, read each page's "
    "last free stack instead of its allocation stack.",
)
exact_option = click.option(
    "--exact",
    is_flag=True,
    help="Compare stacks with offsets, exactly as printed (default: by "
    "function names and modules).",
)
depth_option = click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Frames shown from the first caller outside the allocator (0: all).",
)
full_stacks_option = click.option(
    "--full-stacks",
    "show_stacks",
    is_flag=True,
    help="Print each ranked stack in full after the table (text format).",
)
# `--stacks` meant three things (here, in dump and in capture); it is --full-stacks here.
stacks_option = combine_options(
    full_stacks_option, old_spelling("--stacks", "--full-stacks", "show_stacks", is_flag=True)
)
by_option = click.option("--by", type=click.Choice(_BY_KEYS), default="stack", show_default=True,
                   help="Group by this key.")  # fmt: skip
input_argument = click.argument("input_path", metavar="INPUT")
stacks_from_option = click.option(
    "--stacks-from",
    metavar="FILE",
    default=None,
    help="Frames for 7.3 handle-mode records: show_stacks_handles, or a stack_handle dump, "
    "of the same boot (default: the one a handle capture's sidecar names).",
)
flags_layout_option = click.option(
    "--flags-layout", type=SpecParam("LAYOUT", parse_flags_layout), default=None,
    metavar="LAYOUT",
    help="Where node and zone sit in the flags word of a dump printed before 5.14 (which "
         f"prints no node=/zone=): {', '.join(FLAGS_LAYOUTS)}. Default: the capture "
         "sidecar's, else numa (x86_64_defconfig).",
)  # fmt: skip
jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(1, 2),
    default=2,
    show_default=True,
    help="Processes to use on big files.",
)


@contextmanager
def reading() -> Iterator[tuple[WarningPrinter, Callable[[int, int | None], None]]]:
    """Collect warnings and show a progress bar on a terminal while reading."""
    warnings = WarningPrinter()
    with Progress("reading") as progress:
        yield warnings, progress
    warnings.summary()


def write_report(report: Report, output: str, fmt: str, inputs: tuple[str, ...]) -> None:
    """Render a report to its output."""
    with text_output(output, inputs=inputs) as out:
        render_report(report, out, fmt, terminal=is_terminal(output))


def _refuse_binary_terminal(output: str) -> None:
    """Refuse to write a binary profile to a terminal."""
    if is_terminal(output):
        raise click.UsageError("a pprof profile is binary; use -o FILE")


# The pprof sample type shown first for each --weight (every profile has all three).
_PPROF_TYPES = {"pages": "pages", "bytes": "bytes", "times": "allocations"}


def save_profile(data: ProfileData, output: str, inputs: tuple[str, ...],
                  weight: str = "pages") -> None:  # fmt: skip
    """Write one profile, whole or not at all."""
    with atomic_output(output, inputs=inputs) as out:
        # protobuf only for the pprof formats: not on every analysis command's start-up.
        from pageowner.report.pprof import write_profile

        write_profile(data, out, _PPROF_TYPES[weight])


def write_pprof(input_path: str, output: str, page_size: int, strict: bool, jobs: int,
                 weight: str = "pages", stacks_from: str | None = None) -> None:  # fmt: skip
    """Write the pprof profile of one input."""
    _refuse_binary_terminal(output)
    from pageowner.analyze.pprof import ProfileOptions, read_profile

    options = ProfileOptions(page_size=page_size, strict=strict, jobs=jobs, stacks_from=stacks_from)
    with reading() as (warnings, progress):
        data = read_profile(input_path, options, on_warning=warnings, on_progress=progress)
    save_profile(data, output, (input_path,), weight)


def write_pprof_pair(before_path: str, after_path: str, output: str, base_output: str | None,
                      page_size: int, strict: bool, jobs: int,
                      weight: str = "pages", stacks_from: str | None = None) -> None:  # fmt: skip
    """Write AFTER's profile to OUTPUT and BEFORE's to the base output (or nowhere)."""
    _refuse_binary_terminal(output)
    inputs = (before_path, after_path)
    if base_output is not None:
        _refuse_binary_terminal(base_output)
        check_output_path(base_output, inputs)
    from pageowner.analyze.pprof import ProfileOptions, read_profile_pair

    options = ProfileOptions(page_size=page_size, strict=strict, jobs=jobs, stacks_from=stacks_from)
    with reading() as (warnings, progress):
        before, after = read_profile_pair(
            before_path, after_path, options, on_warning=warnings, on_progress=progress
        )
    if base_output is not None:
        save_profile(before, base_output, inputs, weight)
    save_profile(after, output, inputs, weight)
