"""`pageowner capture`, `watch` and `trend`: page_owner on a live machine, once or over time."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import click

from pageowner.cli.base import AliasChoice, SpecParam, cli, old_spelling, warn
from pageowner.dump.fileio import atomic_output
from pageowner.live.capture import capture
from pageowner.live.filtertool import USAGE, FilterRequest, FilterToolError, run_filter
from pageowner.live.host import DEFAULT_DEBUGFS, Host, HostPaths
from pageowner.live.trend import TrendOptions, analyze_store
from pageowner.live.watch import SnapshotKind, watch
from pageowner.model import PrintMode
from pageowner.report.live import (
    describe_capture,
    describe_snapshot,
    describe_vmcore_capture,
    describe_watch,
)
from pageowner.report.progress import Progress
from pageowner.report.trend import RENDERERS
from pageowner.units import parse_duration

_DEBUGFS_HELP = "Where debugfs is mounted (or a tree laid out like it)."


def _machine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --debugfs, --proc and --boot: where the watched machine's files are."""
    for option in reversed([
        click.option("--debugfs", default=DEFAULT_DEBUGFS, show_default=True, metavar="DIR",
                     help=_DEBUGFS_HELP),
        click.option("--proc", "proc", default="/proc", show_default=True, metavar="DIR",
                     help="The machine's procfs (cmdline, osrelease, hostname, uptime, "
                          "config.gz); point it at "
                          "a simulated or copied machine's tree."),
        click.option("--boot", "boot", default="/boot", show_default=True, metavar="DIR",
                     help="Where the kernel configs (config-RELEASE) are."),
    ]):
        command = option(command)
    return command


def _host(debugfs: str, proc: str, boot: str) -> Host:
    """Describe the machine the options name."""
    return Host(HostPaths(debugfs=debugfs, proc=proc, boot=boot))


@cli.command("capture")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Where to write the dump; `-` is stdout (then no sidecar).")
@click.option("--page-owner-stacks", "stacks", is_flag=True,
              help="Also copy the page_owner_stacks files that exist (6.9+), beside FILE.")
@old_spelling("--stacks", "--page-owner-stacks", "stacks", is_flag=True)
@click.option("--mode", type=click.Choice([mode.value for mode in PrintMode]), default=None,
              help="7.3+: print stacks, handles (smaller, faster; show_stacks_handles is "
                   "saved beside FILE to join them), or both.")
@click.option("--nid", metavar="LIST", default=None,
              help="7.3+: only the pages of these NUMA nodes (0, 0,2, 0-3).")
@click.option("--vmcore", metavar="FILE", default=None,
              help="Read page_owner out of this crash dump instead of a live machine "
                   "(needs --vmlinux and drgn: pip install 'pageowner[vmcore]').")
@click.option("--vmlinux", metavar="FILE", default=None,
              help="With --vmcore: the dumped kernel's vmlinux with debug info.")
@click.option("--freed", is_flag=True,
              help="With --vmcore: write the freed pages (last allocation and free) "
                   "instead of the allocated ones.")
@_machine_options
def capture_command(output: str, stacks: bool, mode: str | None, nid: str | None,
                    vmcore: str | None, vmlinux: str | None, freed: bool, debugfs: str,
                    proc: str, boot: str) -> None:
    """Copy /sys/kernel/debug/page_owner byte for byte, with a FILE.meta.json sidecar.

    The sidecar records the kernel release, /proc/cmdline, host, time, page size and the
    number of records, so later readers know the dump's kernel. Needs root. --mode and
    --nid (Linux 7.3+) open page_owner read-write and write the filter first. With
    --vmcore, write what page_owner would have printed at the moment of a crash dump.
    """
    if vmcore is not None or vmlinux is not None:
        _capture_vmcore(output, stacks, vmcore, vmlinux, freed, mode or "stack", nid)
        return
    if freed:
        raise click.UsageError("--freed needs --vmcore")
    host = _host(debugfs, proc, boot)
    print_mode = PrintMode(mode) if mode is not None else None
    with Progress("capturing page_owner", count_label="records") as progress:
        result = capture(output, host=host, stacks=stacks, mode=print_mode, nid=nid,
                         on_progress=lambda done, records: progress(done, None, records))
    for note in result.notes:
        warn(note)
    for line in describe_capture(result):
        click.echo(f"pageowner: {line}", err=True)


def _capture_vmcore(output: str, stacks: bool, vmcore: str | None, vmlinux: str | None,
                    freed: bool, mode: str, nid: str | None) -> None:
    """Run `capture --vmcore`: the dump held in a crash dump."""
    if vmcore is None or vmlinux is None:
        raise click.UsageError("--vmcore and --vmlinux go together")
    from pageowner.vmcore.capture import capture_vmcore, parse_nid_list

    nids = parse_nid_list(nid) if nid is not None else None
    with Progress("reading page_ext", count_label="pfns") as progress:
        result = capture_vmcore(vmcore, vmlinux, output, mode=mode, nids=nids, freed=freed,
                                stacks=stacks,
                                on_progress=lambda done, total: progress(done, total))
    for line in describe_vmcore_capture(result):
        click.echo(f"pageowner: {line}", err=True)


_SOURCES = ["auto"] + [kind.value for kind in SnapshotKind]


@cli.command("watch")
@click.option("--into", "store", required=True, metavar="STORE",
              help="The SQLite store to add snapshots to (created if missing).")
@click.option("--interval", type=SpecParam("DURATION", parse_duration), default="10s",
              show_default=True, help="Time between snapshots: 500ms, 10s, 2m, 1h.")
@click.option("--count", type=click.IntRange(min=1), default=None,
              help="Stop after N snapshots (default: until Ctrl-C).")
@click.option("--source", type=click.Choice(_SOURCES), default="auto", show_default=True,
              help="What to read: the cheapest the kernel has, or one forced.")
@click.option("--textfile", metavar="FILE",
              help="Also replace this Prometheus textfile (node_exporter's textfile "
                   "collector, FILE ending in .prom) at each snapshot.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="Stacks written to --textfile (0: all; each is one series).")
@_machine_options
def watch_command(store: str, interval: float, count: int | None, source: str,
                  textfile: str | None, top: int, debugfs: str, proc: str,
                  boot: str) -> None:  # fmt: skip
    """Snapshot the pages held by each stack every INTERVAL into STORE.

    Reads page_owner_stacks/show_handles (6.19+), else show_stacks (6.9+), else the whole
    dump, and prints what each snapshot cost the watched machine. Ctrl-C stops it; the
    snapshots taken are kept.
    """
    result = watch(
        store,
        host=_host(debugfs, proc, boot),
        interval=interval,
        count=count,
        source=None if source == "auto" else SnapshotKind(source),
        on_snapshot=lambda cost: click.echo(describe_snapshot(cost)),
        textfile=textfile,
        textfile_top=top,
    )
    click.echo(describe_watch(result))


@contextlib.contextmanager
def _text_output(path: str, inputs: tuple[str, ...]) -> Iterator[TextIO]:
    """Yield a text stream writing `path` atomically (never over an input), or stdout."""
    if path == "-":
        yield sys.stdout
        return
    with atomic_output(path, inputs=inputs) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        yield text
        text.flush()
        text.detach()


@cli.command("trend")
@click.argument("store")
@click.option("--format", "fmt", type=AliasChoice(list(RENDERERS), {"table": "text"}),
              default="text", show_default=True,
              help="text: a rich table on a terminal, aligned text otherwise; JSON; or a "
                   "self-contained HTML page.")
@click.option("-o", "--output", default="-", show_default=True, metavar="FILE",
              help="Where to write the report.")
@click.option("--top", type=click.IntRange(min=0), default=10, show_default=True,
              help="How many stacks to show (0: all).")
@click.option("--fail-on-slope", type=float, default=None, metavar="PAGES_PER_MIN",
              help="Exit 3 when a stack grows steadily at this many pages/min or more.")
def trend_command(store: str, fmt: str, output: str, top: int,
                  fail_on_slope: float | None) -> None:
    """Rank the stacks in STORE by growth: a steady leak first, noise after.

    Each stack gets a least-squares slope (pages/min), its R² and the share of
    snapshots where it did not shrink; steady growth is slope > 0, R² ≥ 0.8 and ≥ 75 %
    of steps up, over 4 snapshots or more.
    """
    report = analyze_store(store, TrendOptions(top=top, fail_on_slope=fail_on_slope))
    with _text_output(output, (store,)) as out:
        RENDERERS[fmt](report, out)
    report.check()


@cli.command("filter", add_help_option=False)
@click.option("-m", "--mode", default=None, metavar="MODE",
              help="print_mode (stack, handle, or stack_handle)")
@click.option("-n", "--nid", default=None, metavar="NID_LIST",
              help="NUMA node IDs (comma-separated or ranges)")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="output file (default: stdout)")
@click.option("-h", "--help", "show_help", is_flag=True, help="show this help message")
@click.option("--debugfs", default=DEFAULT_DEBUGFS, show_default=True, metavar="DIR",
              help=_DEBUGFS_HELP)
def filter_command(mode: str | None, nid: str | None, output: str | None, show_help: bool,
                   debugfs: str) -> None:  # fmt: skip
    """Drop-in for tools/mm/page_owner_filter (7.3): same options, output and messages."""
    if show_help:
        click.echo(USAGE, err=True, nl=False)
        return
    request = FilterRequest(mode, nid)
    page_owner = HostPaths(debugfs=debugfs).page_owner
    try:
        if output is None:
            run_filter(request, page_owner, sys.stdout.buffer.write)
            sys.stdout.buffer.flush()
        else:
            with atomic_output(output, inputs=(page_owner,)) as out:
                run_filter(request, page_owner, out.write)
    except FilterToolError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
