"""`pageowner grep`, `top`, `diff`, `stats`, `frag` and `flame`: analysis beyond page_owner_sort.

Each command reads a dump or show_stacks file (`-` for stdin), calls one library function
and renders its result to stdout or `-o FILE` (written whole or not at all).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from pageowner.analyze.analysis import (
    DEFAULT_PAGE_SIZE,
    GROUP_KEYS,
    parse_flags_layout,
    parse_page_size,
)
from pageowner.analyze.diff import DiffOptions, check_growth, diff_files
from pageowner.analyze.flame import FlameOptions, Weight, read_flame_data
from pageowner.analyze.frag import FragOptions, frag_file
from pageowner.analyze.grep import FILTERS, Selection, grep_file
from pageowner.analyze.pprof import ProfileData, ProfileOptions, read_profile, read_profile_pair
from pageowner.analyze.stats import stats_file
from pageowner.analyze.top import TopOptions, top_file
from pageowner.cli.base import SpecParam, cli, combine_options, old_spelling
from pageowner.cli.sort import WarningPrinter
from pageowner.dump.fileio import atomic_output, check_output_path
from pageowner.dump.repair import set_free_stacks
from pageowner.kernel.tables import FLAGS_LAYOUTS, FlagsLayout
from pageowner.report.flamegraph import FLAME_FORMATS, render_flame
from pageowner.report.output import is_terminal, text_output
from pageowner.report.progress import Progress
from pageowner.report.summaries import (
    FORMATS,
    Report,
    diff_report,
    frag_report,
    render_report,
    stats_report,
    top_report,
)

# grep(1)'s status when no line was selected (a usage error is still 2).
EXIT_NOTHING_SELECTED = 1

_BY_KEYS = [key.name for key in GROUP_KEYS]


_output = click.option("-o", "--output", default="-", metavar="FILE", show_default=True,
                       help="Write here instead of stdout (written whole or not at all).")
_format = click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text",
                       show_default=True,
                       help="text: a rich table on a terminal, aligned text otherwise.")
_PPROF = "pprof"
_pprof_format = click.option(
    "--format", "fmt", type=click.Choice([*FORMATS, _PPROF]), default="text",
    show_default=True,
    help="text: a rich table on a terminal, aligned text otherwise; pprof: a gzipped "
         "profile.proto of every stack (needs -o FILE).")  # fmt: skip
_base_output = click.option(
    "--base-output", metavar="FILE",
    help="With --format pprof: also write BEFORE's profile here, for "
         "`pprof -diff_base FILE OUTPUT`.")  # fmt: skip
_page_size = click.option("--page-size", type=SpecParam("SIZE", parse_page_size),
                          default=str(DEFAULT_PAGE_SIZE), metavar="SIZE", show_default=True,
                          help="Bytes per page for human sizes (4096, 4K, 64K...).")
_strict = click.option("--strict", is_flag=True,
                       help="Fail on a block that is not a record instead of skipping it.")
_free = click.option("--free", is_flag=True, expose_value=False,
                     callback=lambda _ctx, _param, value: set_free_stacks(value),
                     help="From a kernel log's __dump_page_owner() output, read each page's "
                          "last free stack instead of its allocation stack.")
_exact = click.option("--exact", is_flag=True,
                      help="Compare stacks with offsets, exactly as printed (default: by "
                           "function names and modules).")
_depth = click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
                      help="Frames shown from the first caller outside the allocator (0: all).")
_full_stacks = click.option("--full-stacks", "show_stacks", is_flag=True,
                            help="Print each ranked stack in full after the table (text "
                                 "format).")
# `--stacks` meant three things (here, in dump and in capture); it is --full-stacks here.
_stacks = combine_options(_full_stacks, old_spelling("--stacks", "--full-stacks", "show_stacks",
                                                     is_flag=True))
_by = click.option("--by", type=click.Choice(_BY_KEYS), default="stack", show_default=True,
                   help="Group by this key.")  # fmt: skip
_input = click.argument("input_path", metavar="INPUT")
_stacks_from = click.option(
    "--stacks-from", metavar="FILE", default=None,
    help="Frames for 7.3 handle-mode records: show_stacks_handles, or a stack_handle dump, "
         "of the same boot (default: the one a handle capture's sidecar names).")
_flags_layout = click.option(
    "--flags-layout", type=SpecParam("LAYOUT", parse_flags_layout), default=None,
    metavar="LAYOUT",
    help="Where node and zone sit in the flags word of a dump printed before 5.14 (which "
         f"prints no node=/zone=): {', '.join(FLAGS_LAYOUTS)}. Default: the capture "
         "sidecar's, else numa (x86_64_defconfig).",
)  # fmt: skip
_jobs = click.option("-j", "--jobs", type=click.IntRange(1, 2), default=2, show_default=True,
                     help="Processes to use on big files.")


@contextmanager
def _reading() -> Iterator[tuple[WarningPrinter, Callable[[int, int | None], None]]]:
    """Collect warnings and show a progress bar on a terminal while reading."""
    warnings = WarningPrinter()
    with Progress("reading") as progress:
        yield warnings, progress
    warnings.summary()


def _write(report: Report, output: str, fmt: str, inputs: tuple[str, ...]) -> None:
    """Render a report to its output."""
    with text_output(output, inputs=inputs) as out:
        render_report(report, out, fmt, terminal=is_terminal(output))


@cli.command("top")
@_input
@combine_options(_output, _by)
@click.option("--top", "top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Show this many groups (0: all).")
@click.option("--threshold", type=click.IntRange(min=0), default=0, metavar="PAGES",
              help="Leave out groups with fewer pages.")
@click.option("--times", "by_times", is_flag=True, help="Rank by times seen instead of pages.")
@combine_options(_exact, _pprof_format, _page_size, _depth, _stacks, _stacks_from, _strict,
                 _free, _flags_layout, _jobs)
def top_command(input_path: str, output: str, by: str, top: int, threshold: int,
                by_times: bool, exact: bool, fmt: str, page_size: int, depth: int,
                show_stacks: bool, stacks_from: str | None, strict: bool,
                flags_layout: FlagsLayout | None,
                jobs: int) -> None:  # fmt: skip
    """Show the groups holding most memory, each with its first caller outside the allocator.

    INPUT is a page_owner dump or a show_stacks file (`-` for stdin; .xz and .gz too).
    """
    check_output_path(output, (input_path,))
    if fmt == _PPROF:
        _write_pprof(input_path, output, page_size, strict, jobs,
                     "times" if by_times else "pages", stacks_from)
        return
    options = TopOptions(by=by, top=top, threshold=threshold, by_times=by_times, exact=exact,
                         strict=strict, jobs=jobs, stacks_from=stacks_from,
                         flags_layout=flags_layout)  # fmt: skip
    with _reading() as (warnings, progress):
        result = top_file(input_path, options, on_warning=warnings, on_progress=progress)
    _write(top_report(result, page_size, depth, show_stacks), output, fmt, (input_path,))


@cli.command("diff")
@click.argument("before_path", metavar="BEFORE")
@click.argument("after_path", metavar="AFTER")
@combine_options(_output, _by, _exact)
@click.option("--min-delta", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="PAGES", help="Leave out groups that changed by fewer pages.")
@click.option("--top", "top", type=click.IntRange(min=0), default=0,
              help="Show this many groups (default: all that changed).")
@click.option("--fail-on-growth", type=click.IntRange(min=0), default=None, metavar="PAGES",
              help="Exit with status 3 when any group grew by more than PAGES.")
@combine_options(_pprof_format, _base_output, _page_size, _depth, _stacks, _stacks_from,
                 _strict, _free, _flags_layout, _jobs)
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
    if fmt == _PPROF:
        _write_pprof_pair(before_path, after_path, output, base_output, page_size, strict,
                          jobs, stacks_from=stacks_from)  # fmt: skip
        return
    if base_output is not None:
        raise click.UsageError("--base-output needs --format pprof")
    options = DiffOptions(by=by, exact=exact, min_delta=min_delta, top=top, strict=strict,
                          jobs=jobs, stacks_from=stacks_from, flags_layout=flags_layout)
    with _reading() as (warnings, progress):
        result = diff_files(before_path, after_path, options, on_warning=warnings,
                            on_progress=progress)  # fmt: skip
    report = diff_report(result, page_size, depth, show_stacks)
    _write(report, output, fmt, (before_path, after_path))
    check_growth(result, fail_on_growth)


@cli.command("stats")
@_input
@combine_options(_output, _format, _page_size, _stacks_from, _strict, _free, _flags_layout, _jobs)
def stats_command(input_path: str, output: str, fmt: str, page_size: int,
                  stacks_from: str | None, strict: bool, flags_layout: FlagsLayout | None,
                  jobs: int) -> None:  # fmt: skip
    """Total a dump by order, GFP flag, zone, node, migratetype, allocator and module.

    Also counts early-allocated pages, migrated pages and pages per memcg. Zone and node
    come from the Flags field (derived from the flags word before 5.14).
    """
    check_output_path(output, (input_path,))
    with _reading() as (warnings, progress):
        result = stats_file(input_path, strict=strict, on_warning=warnings,
                            on_progress=progress, jobs=jobs,
                            stacks_from=stacks_from, flags_layout=flags_layout)  # fmt: skip
    _write(stats_report(result, page_size), output, fmt, (input_path,))


@cli.command("frag")
@_input
@combine_options(_output)
@click.option("--top", "top", type=click.IntRange(min=0), default=10, show_default=True,
              help="List this many culprit stacks (0: all).")
@combine_options(_exact, _format, _page_size, _depth, _stacks_from, _strict, _free,
                 _flags_layout, _jobs)
def frag_command(input_path: str, output: str, top: int, exact: bool, fmt: str,
                 page_size: int, depth: int, stacks_from: str | None, strict: bool,
                 flags_layout: FlagsLayout | None,
                 jobs: int) -> None:  # fmt: skip
    """Count mixed pageblocks per zone and list the stacks that mixed them.

    A pageblock is mixed when it holds a page of another migratetype; /proc/pagetypeinfo
    counts the same with page_owner on.
    """
    check_output_path(output, (input_path,))
    with _reading() as (warnings, progress):
        options = FragOptions(top=top, exact=exact, strict=strict, jobs=jobs,
                              stacks_from=stacks_from, flags_layout=flags_layout)
        result = frag_file(input_path, options, on_warning=warnings, on_progress=progress)
    _write(frag_report(result, page_size, depth), output, fmt, (input_path,))


@cli.command("flame")
@_input
@combine_options(_output)
@click.option("--format", "fmt", type=click.Choice([*FLAME_FORMATS, _PPROF]), default="html",
              show_default=True,
              help="folded (flamegraph.pl, inferno), speedscope JSON, a self-contained HTML "
                   "page, or pprof (gzipped profile.proto, with labels for -tagfocus).")
@click.option("--weight", type=click.Choice([w.value for w in Weight]), default="pages",
              show_default=True,
              help="What frame widths measure (times: dumps only); for pprof, the value "
                   "shown first.")
@click.option("--diff", "before_path", metavar="BEFORE",
              help="A differential graph: widths from INPUT, colours from the change since "
                   "BEFORE.")
@combine_options(_base_output, _page_size, _stacks_from, _strict, _free, _jobs)
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
        raise click.UsageError(f"--format {fmt} writes a document for a file or a program; "
                               "use -o FILE (or --format folded)")
    if fmt == _PPROF:
        # pprof's samples hold pages, bytes and allocations at once: --weight picks the
        # one pprof shows first.
        if before_path is None:
            if base_output is not None:
                raise click.UsageError("--base-output needs --diff BEFORE")
            _write_pprof(input_path, output, page_size, strict, jobs, weight, stacks_from)
        else:
            _write_pprof_pair(before_path, input_path, output, base_output, page_size,
                              strict, jobs, weight, stacks_from)  # fmt: skip
        return
    if base_output is not None:
        raise click.UsageError("--base-output needs --format pprof")
    options = FlameOptions(weight=Weight(weight), page_size=page_size, strict=strict,
                           jobs=jobs, stacks_from=stacks_from)
    with _reading() as (warnings, progress):
        data = read_flame_data(input_path, options, before_path=before_path,
                               on_warning=warnings, on_progress=progress)  # fmt: skip
    with text_output(output, inputs=inputs) as out:
        render_flame(data, out, fmt, page_size)


def _refuse_binary_terminal(output: str) -> None:
    """Refuse to write a binary profile to a terminal."""
    if is_terminal(output):
        raise click.UsageError("a pprof profile is binary; use -o FILE")


# The pprof sample type shown first for each --weight (every profile has all three).
_PPROF_TYPES = {"pages": "pages", "bytes": "bytes", "times": "allocations"}


def _save_profile(data: ProfileData, output: str, inputs: tuple[str, ...],
                  weight: str = "pages") -> None:  # fmt: skip
    """Write one profile, whole or not at all."""
    with atomic_output(output, inputs=inputs) as out:
        # protobuf only for the pprof formats: not on every analysis command's start-up.
        from pageowner.report.pprof import write_profile

        write_profile(data, out, _PPROF_TYPES[weight])


def _write_pprof(input_path: str, output: str, page_size: int, strict: bool, jobs: int,
                 weight: str = "pages", stacks_from: str | None = None) -> None:  # fmt: skip
    """Write the pprof profile of one input."""
    _refuse_binary_terminal(output)
    options = ProfileOptions(page_size=page_size, strict=strict, jobs=jobs,
                             stacks_from=stacks_from)
    with _reading() as (warnings, progress):
        data = read_profile(input_path, options, on_warning=warnings, on_progress=progress)
    _save_profile(data, output, (input_path,), weight)


def _write_pprof_pair(before_path: str, after_path: str, output: str, base_output: str | None,
                      page_size: int, strict: bool, jobs: int,
                      weight: str = "pages", stacks_from: str | None = None) -> None:  # fmt: skip
    """Write AFTER's profile to OUTPUT and BEFORE's to the base output (or nowhere)."""
    _refuse_binary_terminal(output)
    inputs = (before_path, after_path)
    if base_output is not None:
        _refuse_binary_terminal(base_output)
        check_output_path(base_output, inputs)
    options = ProfileOptions(page_size=page_size, strict=strict, jobs=jobs,
                             stacks_from=stacks_from)
    with _reading() as (warnings, progress):
        before, after = read_profile_pair(before_path, after_path, options,
                                          on_warning=warnings, on_progress=progress)
    if base_output is not None:
        _save_profile(before, base_output, inputs, weight)
    _save_profile(after, output, inputs, weight)


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
@_input
@combine_options(_output)
@_filter_options
@click.option("-v", "--invert-match", "invert", is_flag=True,
              help="Keep the records whose stack does NOT match -e.")
@click.option("-c", "--count", "count_only", is_flag=True,
              help="Print only the number of matching records (0 too, with exit status 1).")
@_stacks_from
@_strict
@_flags_layout
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
    with _reading() as (warnings, progress):
        result = grep_file(input_path, output, selection, count_only=count_only,
                           strict=strict, stacks_from=stacks_from, on_warning=warnings,
                           on_progress=progress, flags_layout=flags_layout)  # fmt: skip
    if result.selected == 0:
        raise click.exceptions.Exit(EXIT_NOTHING_SELECTED)
