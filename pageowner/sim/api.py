"""What the simulator commands do, one function each: boot, run, dump.

Each function takes plain values, holds the state's lock for its whole duration, loads
and saves the machine through `pageowner.sim.state` and returns what the command prints.
The CLI (pageowner/cli/sim.py) only converts options and renders.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pageowner.dump.fileio import atomic_output
from pageowner.errors import SpecError, StateError
from pageowner.kernel.kernels import DEFAULT_VERSION, get_kernel
from pageowner.sim import state
from pageowner.sim.boot import run_boot
from pageowner.sim.cmdline import memparse
from pageowner.sim.dump import (
    check_file,
    parse_nodelist,
    stacks_file_text,
    write_debugfs_tree,
    write_page_owner,
    write_proc_tree,
)
from pageowner.sim.machine import Machine, load_symbols
from pageowner.sim.workloads import run_workload

__all__ = [
    "BootResult",
    "DEFAULT_MEM",
    "DEFAULT_SEED",
    "boot",
    "dump",
    "parse_mem",
    "run",
]

DEFAULT_MEM = 1 << 30
MAX_MEM = 64 << 30  # about 40 bytes of state per page: 640 MB of RAM at 64 GiB
DEFAULT_SEED = 1
Progress = Callable[[int, int | None], None]


def parse_mem(text: str) -> int:
    """Parse --mem: bytes with K/M/G suffixes (memparse), at least 32 MiB.

    >>> parse_mem("512M")
    536870912
    """
    size, rest = memparse(text)
    if rest not in ("", "B", "iB") or size < (32 << 20):
        # click names the option ("Invalid value for '--mem'"): the message does not.
        raise SpecError(f"want a size of at least 32M, like 256M or 4G: {text!r}")
    if size > MAX_MEM:
        raise SpecError(f"at most 64G (the simulator keeps every page in memory): {text!r}")
    return size


@dataclass
class BootResult:
    """What `boot` prints: the kernel log lines and our own notes."""

    dmesg: list[str]
    notes: list[str]
    summary: str
    page_owner: bool


def boot(directory: Path, version: str = DEFAULT_VERSION, mem_bytes: int = DEFAULT_MEM,
         cmdline: str = "", seed: int = DEFAULT_SEED, force: bool = False,
         symbols: tuple[str, str] | None = None) -> BootResult:
    """Boot a new machine into a state directory; refuse to replace one without force.

    `symbols` is (kind, path) of a registered symbol table
    (`pageowner.sim.machine.SYMBOL_SOURCES`), read now and again by later commands (so
    its absolute path is kept: `run` may start from another directory).
    """
    get_kernel(version)
    if symbols is not None:
        symbols = (symbols[0], os.path.abspath(symbols[1]))
    with state.locked(directory, exclusive=True, create=True):
        if state.exists(directory) and not force:
            raise StateError(f"{directory}: a machine is already booted here; use --force "
                             "to replace it (its state is lost)")
        table = load_symbols(*symbols) if symbols else None
        machine = Machine.create(version, mem_bytes, cmdline, seed, table, symbols)
        run_boot(machine)
        state.save(machine, directory)
    managed = machine.buddy.managed_pages
    limit = machine.params.mem_limit
    notes = list(machine.notes)
    if limit is not None and limit < mem_bytes:
        # x86 parse_memopt() drops the RAM above mem=: the kernel has that much, not --mem.
        memory = f"{limit >> 20} MiB (mem={_mib(limit)} of {mem_bytes >> 20} MiB of RAM; "
    else:
        memory = f"{mem_bytes >> 20} MiB ("
        if limit is not None:
            notes.append(f"mem={_mib(limit)} is not below the machine's {mem_bytes >> 20} MiB "
                         "of RAM (--mem): nothing is removed, the kernel keeps all of it")
    summary = (f"booted {version} with {memory}{managed * 4 // 1024} MiB managed), "
               f"{machine.buddy.allocated_pages} pages allocated; state in {directory}")
    return BootResult(machine.dmesg, notes, summary, machine.page_owner)


def _mib(size: int) -> str:
    """Name a size in MiB, or GiB when whole."""
    return f"{size >> 30}G" if size % (1 << 30) == 0 else f"{size >> 20}M"


def run(directory: Path, name: str, args: list[str]) -> str:
    """Run a workload on the saved machine and save it again."""
    with state.locked(directory, exclusive=True):
        machine = state.load(directory)
        account = run_workload(machine, name, args)
        state.save(machine, directory)
    used = machine.buddy.allocated_pages
    return f"{account}; {used} pages allocated, {machine.buddy.free_pages} free"


STACKS_KINDS = ("show_stacks", "show_handles", "show_stacks_handles")


def dump(directory: Path, out: BinaryIO | None = None, output: str = "-",
         stacks: str | None = None, threshold: int = 0, tree: str | None = None,
         progress: Progress | None = None, proc_tree: str | None = None,
         mode: str = "stack", nid: str | None = None) -> int:
    """Print page_owner, a page_owner_stacks file, or lay out debugfs and /proc trees.

    `mode` and `nid` (7.3) print page_owner as a descriptor with that filter reads it.

    Read-only: the machine is not changed, so two dumps in a row are identical.
    Returns the number of records (page_owner) or blocks (stacks files) or files (trees).
    """
    if stacks is not None and stacks not in STACKS_KINDS:
        raise SpecError(f"unknown page_owner_stacks file {stacks!r}")
    with state.locked(directory, exclusive=False):
        machine = state.load(directory, with_symbols=False)
    if tree is not None or proc_tree is not None:
        files = write_debugfs_tree(machine, tree, threshold) if tree is not None else []
        if proc_tree is not None:
            files += write_proc_tree(machine, proc_tree)
        return len(files)
    name = stacks or "page_owner"
    check_file(machine, name)
    nids = parse_nodelist(nid, machine) if nid is not None else None
    with _output(out, output, (str(directory / state.STATE_FILE), str(directory / state.LOCK_FILE))
                 ) as stream:
        if stacks is None:
            return write_page_owner(machine, stream, progress, mode, nids)
        text = stacks_file_text(machine, stacks, threshold)
        stream.write(text.encode("utf-8", "surrogateescape"))
        return text.count("\n\n")


@contextlib.contextmanager
def _output(out: BinaryIO | None, path: str, keep: tuple[str, ...]) -> Iterator[BinaryIO]:
    """Yield the given stream, or write `path` atomically (`-` is stdout), never over `keep`."""
    if out is not None and path == "-":
        yield out
        return
    with atomic_output(path, inputs=keep) as stream:
        yield stream
