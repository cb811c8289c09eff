"""`pageowner boot`, `run`, `workloads`, `dump` and `demo`: the simulated kernel."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from pageowner.cli.base import PageOwnerCommand, SpecParam, cli, old_spelling, warn
from pageowner.demo import demo
from pageowner.errors import SpecError
from pageowner.kernel.kernels import DEFAULT_VERSION, KERNEL_VERSIONS
from pageowner.report.progress import Progress
from pageowner.sim import api, state
from pageowner.sim.dump import PRINT_MODES
from pageowner.sim.machine import SYMBOL_SOURCES
from pageowner.sim.workloads import WORKLOADS, Workload

# `boot --KIND FILE` for every symbol table kind in pageowner.sim.machine.SYMBOL_SOURCES
# (an ELF vmlinux is one more entry there): parameter name -> kind.
SYMBOL_OPTIONS: dict[str, str] = {kind.replace("-", "_"): kind for kind in SYMBOL_SOURCES}


def _state_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --state (also $PAGEOWNER_STATE)."""
    return click.option(
        "--state", "state_dir", metavar="DIR", envvar="PAGEOWNER_STATE",
        help="Where the machine is kept (default: $PAGEOWNER_STATE or ./.pageowner).",
    )(command)


def _symbol_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add one FILE option per registered symbol-table kind."""
    for name, kind in reversed(list(SYMBOL_OPTIONS.items())):
        command = click.option(f"--{kind}", name, metavar="FILE",
                               help=SYMBOL_SOURCES[kind].help)(command)
    return command


def _symbols(options: dict[str, str | None]) -> tuple[str, str] | None:
    """Pick the one symbol table given, if any."""
    given = [(SYMBOL_OPTIONS[name], path) for name, path in options.items() if path]
    if len(given) > 1:
        raise SpecError("give at most one symbol table")
    return given[0] if given else None


@cli.command("boot")
@click.option("--cmdline", default="", metavar="TEXT",
              help='The kernel command line, e.g. "page_owner=on mem=512M cma=64M".')
@click.option("--kernel", "version", type=click.Choice(KERNEL_VERSIONS),
              default=DEFAULT_VERSION, show_default=True, help="The kernel version.")
@click.option("--mem", "mem_bytes", type=SpecParam("SIZE", api.parse_mem), default="1G",
              show_default=True, metavar="SIZE", help="RAM, with K/M/G suffixes.")
@click.option("--seed", type=click.IntRange(0), default=api.DEFAULT_SEED, show_default=True,
              help="Seed of every random choice (layout, hashed pointers).")
@click.option("--force", is_flag=True, help="Replace a machine already booted here.")
@click.option("--nodes", type=click.IntRange(1, 64), default=None, metavar="N",
              help="NUMA nodes: a shortcut for numa=fake=N on the command line.")
@_symbol_options
@_state_option
def boot_command(cmdline: str, version: str, mem_bytes: int, seed: int, force: bool,
                 nodes: int | None, state_dir: str | None, **symbol_files: str | None) -> None:
    """Boot a simulated machine and print what the kernel logs about page_owner."""
    directory = state.default_state_dir(state_dir)
    if nodes is not None:
        cmdline = f"{cmdline} numa=fake={nodes}".strip()
    with Progress("booting", unit="steps"):
        result = api.boot(directory, version, mem_bytes, cmdline, seed, force,
                          _symbols(symbol_files))
    for line in result.dmesg:
        click.echo(line)
    for note in result.notes:
        warn(note)
    if not result.page_owner:
        click.echo("pageowner: hint: boot with --cmdline page_owner=on to record page owners",
                   err=True)
    click.echo(result.summary, err=True)


def _workload_lines(workload: Workload, indent: int) -> list[str]:
    """Describe a workload's options, one line each."""
    lines = []
    for param in workload.params:
        value = "" if param.kind == "flag" else " " + param.kind.upper()
        shown = param.kind != "flag" and param.default not in ("", None)
        default = f" (default {param.default})" if shown else ""
        if param.choices:
            value = " " + "|".join(param.choices)
        lines.append(f"{'':{indent}}{param.option}{value}: {param.help}{default}")
    return lines


class _RunCommand(PageOwnerCommand):
    """`run`: `run WORKLOAD --help` describes that workload, not `run` itself."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] in WORKLOADS and any(a in ("-h", "--help") for a in args[1:]):
            workload = WORKLOADS[args[0]]
            click.echo(f"Usage: pageowner run {workload.name} [OPTIONS]\n")
            click.echo(f"  {workload.summary[:1].upper()}{workload.summary[1:]}.\n")
            click.echo("Options:" if workload.params else "No options.")
            for line in _workload_lines(workload, 2):
                click.echo(line)
            ctx.exit(0)
        return super().parse_args(ctx, args)


@cli.command("run", cls=_RunCommand, context_settings={"ignore_unknown_options": True,
                                                      "allow_extra_args": False})
@click.argument("name", metavar="WORKLOAD")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="[OPTIONS]")
@_state_option
def run_command(name: str, args: tuple[str, ...], state_dir: str | None) -> None:
    """Drive the machine with a workload (see `pageowner workloads`).

    `pageowner run WORKLOAD --help` lists that workload's options.
    """
    directory = state.default_state_dir(state_dir)
    click.echo(api.run(directory, name, list(args)))


@cli.command("workloads")
def workloads_command() -> None:
    """List the workloads `pageowner run` knows, with their options."""
    for workload in WORKLOADS.values():
        click.echo(f"{workload.name:10} {workload.summary}")
        for line in _workload_lines(workload, 12):
            click.echo(line)


@cli.command("dump")
@click.option("-o", "--output", default="-", metavar="FILE",
              help="Write here (whole or not at all) instead of stdout.")
@click.option("--show-stacks", "stacks", flag_value="show_stacks",
              help="page_owner_stacks/show_stacks (6.9+).")
@old_spelling("--stacks", "--show-stacks", "stacks", flag_value="show_stacks")
@click.option("--handles", "stacks", flag_value="show_handles",
              help="page_owner_stacks/show_handles (6.19+).")
@click.option("--stacks-handles", "stacks", flag_value="show_stacks_handles",
              help="page_owner_stacks/show_stacks_handles (6.19+).")
@click.option("--threshold", type=click.IntRange(0), default=None, metavar="N",
              help="count_threshold: only stacks holding at least N pages (implies "
                   "--show-stacks).")
@click.option("--debugfs-tree", "tree", metavar="DIR",
              help="Lay out page_owner and page_owner_stacks/ under DIR, as in debugfs.")
@click.option("--proc-tree", metavar="DIR",
              help="Lay out cmdline, sys/kernel/osrelease and config.gz under DIR, as in /proc.")
@click.option("--mode", type=click.Choice(PRINT_MODES), default="stack", show_default=True,
              help="7.3 print mode, as written to page_owner: frames, `handle: N` instead, "
                   "or both.")
@click.option("--nid", metavar="LIST", default=None,
              help="7.3 node filter, as written to page_owner: only pages of these nodes "
                   "(e.g. 0,2-3).")
@_state_option
def dump_command(output: str, stacks: str | None, threshold: int | None, tree: str | None,
                 proc_tree: str | None, mode: str, nid: str | None,
                 state_dir: str | None) -> None:
    """Print what reading /sys/kernel/debug/page_owner prints on the machine."""
    directory = state.default_state_dir(state_dir)
    trees = tree is not None or proc_tree is not None
    if (mode != "stack" or nid is not None) and (stacks is not None or threshold is not None
                                                 or trees):
        raise click.UsageError("--mode and --nid filter page_owner itself; drop --stacks, "
                               "--threshold and the trees")
    if threshold is not None and stacks is None and not trees:
        stacks = "show_stacks"
    if trees and (stacks is not None or output != "-"):
        raise click.UsageError("--debugfs-tree/--proc-tree write every file; drop -o and "
                               "--show-stacks/--handles/--stacks-handles")
    with Progress("dumping", unit="pages") as progress:
        count = api.dump(directory, sys.stdout.buffer, output, stacks, threshold or 0, tree,
                         progress, proc_tree, mode, nid)
    if trees:
        where = " and ".join(d for d in (tree, proc_tree) if d)
        click.echo(f"pageowner: {count} files written under {where}", err=True)
    elif output != "-":
        click.echo(f"pageowner: {count} {'records' if stacks is None else 'stacks'} "
                   f"written to {output}", err=True)


_DEMO_TEXT = """\
What happened: a simulated {version} kernel booted with page_owner=on, a busy workload
ran (tmpfs files, page cache, forks, network, a memcg, and a driver that leaks pages),
the simulated /sys/kernel/debug/page_owner was dumped ({records} records) and sorted by
pages per stack ({groups} distinct stacks). Each block below is one stack with how many
allocations and pages it holds right now. Look for stacks you did not expect to be that
big: `leaky_refill [leaky]` is the driver that never frees what it allocates.
"""


_DEMO_FILES = """\
The demo's files are in {folder}: page_owner.txt (the dump), sorted.txt (the whole
report) and state/ (the machine). Try, for instance:
  pageowner top {folder}/page_owner.txt
  PAGEOWNER_STATE={folder}/state pageowner run leak --pages 1000
"""


@cli.command("demo")
@click.option("--lines", default=40, show_default=True, help="How much of the report to show.")
@click.option("--kernel", "version", type=click.Choice(KERNEL_VERSIONS),
              default=DEFAULT_VERSION, show_default=True, help="The kernel version.")
@click.option("--dir", "folder", metavar="DIR",
              help="Leave the machine, page_owner.txt and sorted.txt here (a new or empty "
                   "folder; default: a new temporary one).")
def demo_command(lines: int, version: str, folder: str | None) -> None:
    """Boot a simulated machine, run a workload, dump page_owner and sort it by memory."""
    with Progress("demo", unit="steps"):
        result = demo(version, lines, folder)
    for step in result.steps:
        click.echo(f"$ {step}")
    click.echo("")
    click.echo(_DEMO_TEXT.format(version=version, records=result.records,
                                 groups=result.groups))
    for line in result.report_head:
        click.echo(line)
    where = os.path.join(result.folder, "sorted.txt")
    if result.report_lines > len(result.report_head):
        click.echo(f"[... cut here: {result.report_lines - len(result.report_head)} more "
                   f"lines in {where}]")
    click.echo("")
    click.echo(_DEMO_FILES.format(folder=result.folder))

