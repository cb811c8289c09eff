"""`pageowner fleet top|diff|export|simulate`: many hosts' captures, aggregated on Dask.

Needs the `pageowner[fleet]` extra (dask.distributed, pyarrow); without it every fleet
command says how to install it and exits 1. The job runs on a local cluster (one worker
process per core) unless --scheduler or $DASK_SCHEDULER_ADDRESS names one.
"""

from __future__ import annotations

import click

from pageowner.analyze.analysis import DEFAULT_PAGE_SIZE, GROUP_KEYS, parse_page_size
from pageowner.cli.base import (
    CONTEXT_SETTINGS,
    PageOwnerCommand,
    SpecParam,
    WarningPrinter,
    cli,
    combine_options,
    warn,
)
from pageowner.dump.fileio import check_output_path
from pageowner.errors import SpecError
from pageowner.fleet import require_extra
from pageowner.fleet.job import DEFAULT_CHUNK_BYTES, Engine, JobOptions, read_fleet
from pageowner.fleet.results import check_fleet_growth, fleet_diff, fleet_top
from pageowner.report.output import is_terminal, text_output
from pageowner.report.progress import Progress
from pageowner.report.summaries import FORMATS, Report, render_report
from pageowner.sim.cmdline import memparse


def _parse_bytes(text: str) -> int:
    """Parse a byte count with K/M/G suffixes, at least 1 MiB."""
    size, rest = memparse(text)
    if rest not in ("", "B", "iB") or size < (1 << 20):
        raise SpecError(f"want a size of at least 1M, like 64M: {text!r}")
    return size


class FleetGroup(click.Group):
    """The `fleet` commands: a SpecError is a usage error of the command."""

    command_class = PageOwnerCommand


@cli.group("fleet", cls=FleetGroup, context_settings=CONTEXT_SETTINGS,
           invoke_without_command=True)
@click.pass_context
def fleet_group(ctx: click.Context) -> None:
    """Aggregate the page_owner captures of many hosts on Dask (pageowner[fleet]).

    PATH is a folder, a glob or an fsspec URL (file://, s3://, zip://...::file://...) of
    `pageowner capture` outputs; host, kernel release and capture time come from each
    capture's sidecar.
    """
    require_extra()
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


_engine = combine_options(
    click.option("--scheduler", metavar="ADDRESS", envvar="DASK_SCHEDULER_ADDRESS",
                 help="A dask.distributed scheduler, tcp://HOST:PORT (default: "
                      "$DASK_SCHEDULER_ADDRESS, else a local cluster)."),
    click.option("--workers", type=click.IntRange(1, 256), default=None,
                 help="Worker processes of the local cluster (default: one per core)."),
)  # fmt: skip
_reading = combine_options(
    click.option("--by", type=click.Choice([k.name for k in GROUP_KEYS]), default="stack",
                 show_default=True, help="Group by this key."),
    click.option("--exact", is_flag=True, help="Compare stacks with offsets."),
    click.option("--host-from", metavar="PATTERN",
                 help="Name hosts without a sidecar from their path: '{host}/...', "
                      "'{host}/{release}/*.txt'."),
    click.option("--strict", is_flag=True,
                 help="Fail (exit 1) on a capture or block that cannot be read, instead of "
                      "skipping it."),
    click.option("--chunk-size", type=SpecParam("SIZE", _parse_bytes),
                 default=str(DEFAULT_CHUNK_BYTES >> 20) + "M", show_default=True,
                 metavar="SIZE", help="Read a bigger capture in byte ranges of about SIZE."),
)  # fmt: skip
_output = click.option("-o", "--output", default="-", metavar="FILE", show_default=True,
                       help="Write here instead of stdout (written whole or not at all).")
_shown = combine_options(
    click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="text",
                 show_default=True, help="text: a rich table on a terminal."),
    click.option("--page-size", type=SpecParam("SIZE", parse_page_size),
                 default=str(DEFAULT_PAGE_SIZE), metavar="SIZE", show_default=True,
                 help="Bytes per page for human sizes."),
    click.option("--depth", type=click.IntRange(min=0), default=3, show_default=True,
                 help="Frames shown from the first caller outside the allocator (0: all)."),
)  # fmt: skip


def _job(by: str, exact: bool, strict: bool, chunk_size: int,
         group_by: str | None = None) -> JobOptions:  # fmt: skip
    return JobOptions(by=by, exact=exact, strict=strict, chunk_bytes=chunk_size,
                      group_by=group_by)  # fmt: skip


def _write(report: Report, output: str, fmt: str, warnings: tuple[str, ...]) -> None:
    printer = WarningPrinter()
    for message in warnings:
        printer(message)
    printer.summary()
    with text_output(output) as out:
        render_report(report, out, fmt, terminal=is_terminal(output))


@fleet_group.command("top")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@_output
@click.option("--top", "top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Show this many groups (0: all).")
@click.option("--threshold", type=click.IntRange(min=0), default=0, metavar="PAGES",
              help="Leave out groups with fewer pages over the fleet.")
@click.option("--times", "by_times", is_flag=True, help="Rank by times seen instead of pages.")
@click.option("--group-by", metavar="FIELD",
              help="Pages per release, host or sidecar field, side by side.")
@click.option("--stacks", "show_stacks", is_flag=True,
              help="Print each ranked stack in full after the table (text format).")
@_reading
@_shown
@_engine
def top_command(paths: tuple[str, ...], output: str, top: int, threshold: int, by_times: bool,
                group_by: str | None, show_stacks: bool, by: str, exact: bool,
                host_from: str | None, strict: bool, chunk_size: int, fmt: str,
                page_size: int, depth: int, scheduler: str | None,
                workers: int | None) -> None:  # fmt: skip
    """Rank stacks (or any --by key) by pages over a fleet, with pages per host."""
    from pageowner.report.fleet import fleet_top_report

    check_output_path(output, paths)
    with Progress("reading captures", unit="tasks") as progress:
        (table,) = read_fleet([paths], _job(by, exact, strict, chunk_size, group_by),
                              Engine(scheduler, workers), host_from=host_from,
                              on_progress=progress)  # fmt: skip
    result = fleet_top(table, top=top, threshold=threshold, by_times=by_times,
                       group_by=group_by)  # fmt: skip
    _write(fleet_top_report(result, page_size, depth, show_stacks), output, fmt,
           result.warnings)  # fmt: skip


@fleet_group.command("diff")
@click.option("--before", multiple=True, required=True, metavar="PATH",
              help="The captures before (repeat for several paths).")
@click.option("--after", multiple=True, required=True, metavar="PATH",
              help="The captures after (repeat for several paths).")
@_output
@click.option("--min-delta", type=click.IntRange(min=1), default=1, show_default=True,
              metavar="PAGES", help="Leave out groups that changed by fewer pages.")
@click.option("--top", "top", type=click.IntRange(min=0), default=20, show_default=True,
              help="Show this many groups (0: all that changed).")
@click.option("--fail-on-growth", type=click.IntRange(min=0), default=None, metavar="PAGES",
              help="Exit with status 3 when a group grew over the fleet by more than PAGES.")
@_reading
@_shown
@_engine
def diff_command(before: tuple[str, ...], after: tuple[str, ...], output: str, min_delta: int,
                 top: int, fail_on_growth: int | None, by: str, exact: bool,
                 host_from: str | None, strict: bool, chunk_size: int, fmt: str,
                 page_size: int, depth: int, scheduler: str | None,
                 workers: int | None) -> None:  # fmt: skip
    """Rank the growth of each group over a fleet, with the hosts where it grew most."""
    from pageowner.report.fleet import fleet_diff_report

    check_output_path(output, (*before, *after))
    with Progress("reading captures", unit="tasks") as progress:
        old, new = read_fleet([before, after], _job(by, exact, strict, chunk_size),
                              Engine(scheduler, workers), host_from=host_from,
                              on_progress=progress)  # fmt: skip
    result = fleet_diff(old, new, min_delta=min_delta, top=top)
    _write(fleet_diff_report(result, page_size, depth), output, fmt, result.warnings)
    check_fleet_growth(result, fail_on_growth)


@fleet_group.command("export")
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("-o", "--output", required=True, metavar="DIR",
              help="A new folder for the Parquet dataset.")
@_reading
@_engine
def export_command(paths: tuple[str, ...], output: str, by: str, exact: bool,
                   host_from: str | None, strict: bool, chunk_size: int,
                   scheduler: str | None, workers: int | None) -> None:  # fmt: skip
    """Write a fleet as Parquet: a row per host and group, partitioned by release."""
    from pageowner.fleet.export import export_fleet

    with Progress("reading captures", unit="tasks") as progress:
        result = export_fleet(paths, _job(by, exact, strict, chunk_size),
                              Engine(scheduler, workers), output, host_from=host_from,
                              on_progress=progress)  # fmt: skip
    table = result.table
    printer = WarningPrinter()
    for message in table.warnings:
        printer(message)
    for skipped in table.skipped:
        printer(f"skipped {skipped.path} ({skipped.host}): {skipped.reason}")
    printer.summary()
    click.echo(f"{result.output}: {result.rows} rows of {len(table.hosts)} hosts, "
               f"{result.stacks} stacks, releases {', '.join(result.releases)}", err=True)


@fleet_group.command("simulate")
@click.option("--hosts", type=click.IntRange(1, 100_000), default=20, show_default=True,
              help="How many machines.")
@click.option("-o", "--output", required=True, metavar="DIR",
              help="A new or empty folder for the captures (DIR/HOST/page_owner.txt).")
@click.option("--seed", type=click.IntRange(0), default=1, show_default=True,
              help="Seed of every choice: kernels, memory, workloads, which hosts leak.")
@click.option("--mem", "mem", type=SpecParam("SIZE", _parse_bytes), default="256M",
              show_default=True, metavar="SIZE",
              help="Memory of the biggest host (others get 1/2 or 3/4 of it).")
@click.option("--leak-every", type=click.IntRange(1), default=10, show_default=True,
              metavar="N", help="One host in N runs a leaking driver (at least one).")
@click.option("--rounds", type=click.IntRange(1, 10), default=1, show_default=True,
              help="Capture each host this many times, into DIR/round-1, DIR/round-2...")
@_engine
def simulate_command(hosts: int, output: str, seed: int, mem: int, leak_every: int,
                     rounds: int, scheduler: str | None, workers: int | None) -> None:  # fmt: skip
    """Boot a fleet of simulated machines (kernels, memory, workloads drawn from a seed)."""
    from pageowner.fleet.simulate import SimulateOptions, simulate_fleet

    options = SimulateOptions(hosts=hosts, seed=seed, mem_mib=mem >> 20,
                              leak_every=leak_every, rounds=rounds)  # fmt: skip
    with Progress("simulating hosts", unit="hosts") as progress:
        result = simulate_fleet(options, output, Engine(scheduler, workers), progress)
    leaking = [plan.name for plan in result.plans if plan.leaks]
    for plan in result.plans:
        click.echo(f"{plan.name}  {plan.version}  {plan.mem_mib} MiB"
                   f"{'  leaks' if plan.leaks else ''}")
    warn_free = f"{len(result.captures)} captures in {output}; leaking: {', '.join(leaking)}"
    click.echo(warn_free, err=True)


__all__ = ["fleet_group", "warn"]
