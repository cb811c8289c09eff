"""`pageowner sort`: the drop-in page_owner_sort."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pageowner.cli.base import SpecParam, WarningPrinter, cli, warn
from pageowner.dump.era import detect_kernel
from pageowner.errors import PageOwnerError
from pageowner.model import HeaderStyle
from pageowner.report.progress import Progress
from pageowner.sort.engine import sort_dump
from pageowner.sort.options import (
    SHORT_SORT_FLAGS,
    SortOptions,
    build_options,
    parse_cull_spec,
    parse_name_list,
    parse_sort_spec,
)
from pageowner.units import parse_int_list

_SHORT_HELP = {
    "a": "Sort by memory allocation time.",
    "m": "Sort by total memory.",
    "n": "Sort by task command name.",
    "p": "Sort by pid.",
    "P": "Sort by tgid.",
    "s": "Sort by the stacktrace.",
    "t": "Sort by number of times record is seen (default).",
    "r": "Sort by memory release time (dumps with free_ts, 5.14-6.6).",
}


def _short_flag_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add -a -m -n -p -P -s -t -r as flags collected into one list."""
    for letter in reversed(SHORT_SORT_FLAGS):
        command = click.option(
            f"-{letter}", "short_flags", flag_value=letter, multiple=True,
            help=_SHORT_HELP[letter],
        )(command)  # fmt: skip
    return command


@cli.command("sort", context_settings={"max_content_width": 100})
@click.argument("input_path", metavar="INPUT")
@click.argument("output_path", metavar="OUTPUT")
@_short_flag_options
@click.option("-f", "filter_released", is_flag=True,
              help="Leave out blocks whose page was released (dumps with free_ts, 5.14-6.6).")
@click.option("-d", "debug", is_flag=True, help="Print what was read and skipped to stderr.")
@click.option("--pid", "pids", type=SpecParam("PIDLIST", parse_int_list), metavar="PIDLIST",
              help="Select blocks whose pid is in the comma-separated list.")
@click.option("--tgid", "tgids", type=SpecParam("TGIDLIST", parse_int_list), metavar="TGIDLIST",
              help="Select blocks whose tgid is in the comma-separated list.")
@click.option("--name", "names", type=SpecParam("CMDLIST", parse_name_list), metavar="CMDLIST",
              help="Select blocks whose command name is in the comma-separated list.")
@click.option("--cull", type=SpecParam("RULES", parse_cull_spec), metavar="RULES",
              help="Group by fields: p|pid, tg|tgid, n|name, st|stacktrace, ator|allocator "
                   "(and f|free for dumps with free_ts).")
@click.option("--sort", "sort_spec", type=SpecParam("ORDER", parse_sort_spec), metavar="ORDER",
              help="Sort order as [+|-]key[,[+|-]key...]; keys: p|pid, tg|tgid, n|name, "
                   "st|stacktrace, T|txt, at|alloc_ts, ator|allocator, times, pages, ft|free_ts.")
@click.option("--strict", is_flag=True,
              help="Fail on a block that is not a page_owner record instead of skipping it.")
@click.option("-j", "--jobs", type=click.IntRange(1, 2), default=2, show_default=True,
              help="Processes to use on big files.")
def sort_command(
    input_path: str,
    output_path: str,
    short_flags: tuple[str, ...],
    filter_released: bool,
    debug: bool,
    pids: tuple[int, ...] | None,
    tgids: tuple[int, ...] | None,
    names: tuple[bytes, ...] | None,
    cull: frozenset[str] | None,
    sort_spec: tuple[object, ...] | None,
    strict: bool,
    jobs: int,
) -> None:
    """Group and sort the records of a page_owner dump, as page_owner_sort does.

    INPUT is a dump (`-` for stdin; .xz and .gz are read too); OUTPUT is the report
    (`-` for stdout), written whole or not at all. The output is byte for byte that of
    the kernel's tools/mm/page_owner_sort, except for the deviations in docs/compat.md.
    """
    options = build_options(
        short_flags, sort_spec, cull or frozenset(), pids, tgids, names,  # type: ignore[arg-type]
        filter_released,
    )  # fmt: skip
    if options.legacy:
        _warn_without_free_ts(input_path)
    warnings = WarningPrinter()
    with Progress("reading") as progress:
        engine = sort_dump(input_path, output_path, options, strict=strict, jobs=jobs,
                           on_warning=warnings, on_progress=progress)
    warnings.summary()
    if debug:
        _print_debug(engine.records, engine.selected, len(engine.groups), engine.skipped, options)


_FREE_TS_HEADERS = (HeaderStyle.PID_TS_FREE, HeaderStyle.TGID_TS_FREE)


def _warn_without_free_ts(input_path: str) -> None:
    """Warn once when free_ts options meet a dump whose records carry no free_ts.

    Only 5.14-6.6 kernels print free_ts; elsewhere -f keeps everything and -r, --sort=ft
    and --cull=f see 0, as page_owner_sort 5.18-6.6 would, silently. Standard input
    is not looked at ahead (it can be read once only).
    """
    if input_path == "-":
        return
    try:
        era = detect_kernel(input_path)
    except PageOwnerError:
        return  # the sort itself reports an unreadable input
    fmt = era.fmt
    if fmt is None or fmt.header in _FREE_TS_HEADERS:
        return
    shaped = (f" (shaped as {era.candidates[0]}-{era.candidates[-1]} print them)"
              if era.candidates else "")  # fmt: skip
    warn(f"{input_path}: -f, -r, --sort=ft and --cull=f read free_ts, which only 5.14-6.6 "
         f"kernels print; this dump's records{shaped} have none, so each reads as 0")


def _print_debug(records: int, selected: int, groups: int, skipped: int,
                 options: SortOptions) -> None:
    """Report the counters that page_owner_sort -d would make you infer."""
    mode = "5.18-6.6 (free_ts)" if options.legacy else "6.7+"
    click.echo(
        f"pageowner: read {records} records, selected {selected}, {groups} groups, "
        f"skipped {skipped} other blocks; {mode} semantics", err=True,
    )  # fmt: skip
