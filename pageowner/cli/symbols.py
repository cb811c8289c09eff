"""`pageowner symbolize`: file:line and inline chains for every frame of a dump."""

from __future__ import annotations

import click

from pageowner.cli.base import cli, warn
from pageowner.report.progress import Progress
from pageowner.symbols.symbolize import FORMATS, SymbolizeOptions, symbolize_file


@cli.command("symbolize")
@click.argument("input_path", metavar="INPUT")
@click.option("--vmlinux", "vmlinux", required=True, metavar="ELF",
              help="The kernel ELF with .symtab (and DWARF for file:line), e.g. "
                   "/usr/lib/debug/boot/vmlinux-$(uname -r).")
@click.option("--modules", "modules_dir", metavar="DIR",
              help="Directory searched for <module>.ko files (module frames).")
@click.option("-o", "--output", "output_path", default="-", show_default=True, metavar="FILE",
              help="Where to write (`-` for stdout); written whole or not at all.")
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="text",
              show_default=True,
              help="text: the dump with ` (file:line ...)` after each frame; json: the unique "
                   "frames with their inline chains.")
@click.option("--base-path", default="auto", show_default=True, metavar="PATH|auto",
              help="Build directory removed from source paths; `auto` finds it from "
                   "kernel_init as decode_stacktrace.sh does; --base-path '' keeps paths "
                   "whole.")
@click.option("--cache-dir", metavar="DIR",
              help="Where the per-build-id index lives [default: $XDG_CACHE_HOME/pageowner].")
@click.option("--no-cache", is_flag=True,
              help="Neither read nor write the cache (index and resolved lines).")
@click.option("--allow-mismatch", is_flag=True,
              help="Write the output even if frames do not match the ELF (left unchanged).")
@click.option("--stacks-from", metavar="FILE", default=None,
              help="Frames for 7.3 handle-mode records (show_stacks_handles or a stack_handle "
                   "dump of the same boot): they are printed before the handle line.")
def symbolize_command(
    input_path: str,
    vmlinux: str,
    modules_dir: str | None,
    output_path: str,
    output_format: str,
    base_path: str,
    cache_dir: str | None,
    no_cache: bool,
    allow_mismatch: bool,
    stacks_from: str | None,
) -> None:
    """Add file:line and inline chains to the frames of a page_owner dump.

    INPUT is a page_owner dump or a page_owner_stacks file (`-` for stdin; .xz and .gz
    are read too). Frames `func+off/size [module]` are looked up by name (the size picks
    among static functions sharing a name), raw addresses directly. The output is still
    a dump: `pageowner sort` reads it.
    """
    options = SymbolizeOptions(vmlinux, modules_dir, output_format, base_path, cache_dir,
                               not no_cache, allow_mismatch, stacks_from)
    with Progress("symbolizing", unit="frames") as progress:
        symbolize_file(input_path, output_path, options, on_warning=warn,
                       on_progress=progress)
