"""Fake live machines for the capture/watch/trend tests: debugfs trees made from real dumps.

A tree is a directory laid out like /sys/kernel/debug (page_owner, page_owner_stacks/*)
next to fake /proc and /boot directories, so `Host` can be pointed at it. The contents
come from the real fixtures (6.12.117 dump and show_stacks); the 6.19 handle files are
made from the real show_stacks stacks with our writer.
"""

from __future__ import annotations

import bisect
import dataclasses
import errno
import functools
import lzma
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pageowner.dump.dumpfile import format_frame, format_record, iter_records
from pageowner.dump.stacksfile import format_stack_count, iter_stack_counts
from pageowner.live.clock import ManualClock
from pageowner.live.host import Host, HostPaths
from pageowner.model import PageRecord, StackCount

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REAL = FIXTURES / "real"

Stack = tuple[str, ...]


@functools.cache
def real_bytes(name: str) -> bytes:
    """Return a decompressed real fixture."""
    return lzma.decompress((REAL / name).read_bytes())


@functools.cache
def real_stacks() -> tuple[Stack, ...]:
    """Return the stacks of the real 6.12.117 show_stacks file, as frame lines."""
    data = real_bytes("6.12.117-work.show_stacks.txt.xz")
    return tuple(
        tuple(format_frame(f) for f in entry.stack)
        for entry in iter_stack_counts(data.splitlines(keepends=True))
    )


@functools.cache
def real_records(limit: int = 400) -> tuple[PageRecord, ...]:
    """Return the first records of the real 6.12.117 dump."""
    data = real_bytes("6.12.117-work.page_owner.txt.xz")
    records = []
    for record in iter_records(data.splitlines(keepends=True)):
        records.append(record)
        if len(records) == limit:
            break
    return tuple(records)


def show_stacks_text(counts: Mapping[Stack, int]) -> bytes:
    """Print show_stacks as the kernel does: stacks with pages, in the given order."""
    return "".join(
        format_stack_count(StackCount(_frames(stack), nr_base_pages=pages))
        for stack, pages in counts.items()
        if pages > 0
    ).encode()


def show_handles_text(counts: Mapping[int, int]) -> bytes:
    """Print show_handles (6.19): handle and pages of stacks holding pages."""
    return "".join(
        format_stack_count(StackCount(handle=handle, nr_base_pages=pages))
        for handle, pages in counts.items()
        if pages > 0
    ).encode()


def show_stacks_handles_text(stacks: Mapping[int, Stack]) -> bytes:
    """Print show_stacks_handles (6.19): every stack with its handle, no counts."""
    return "".join(
        format_stack_count(StackCount(_frames(stack), handle=handle))
        for handle, stack in stacks.items()
    ).encode()


def _frames(stack: Stack) -> tuple:  # type: ignore[type-arg]
    """Parse frame lines back into frames for the writer."""
    from pageowner.dump.dumpfile import parse_frame

    return tuple(parse_frame(line) for line in stack)


def dump_text(counts: Mapping[Stack, int]) -> bytes:
    """Print a page_owner dump holding `pages` order-0 records for each stack."""
    template = real_records()[0]
    out = []
    pfn = 0x1000
    for stack, pages in counts.items():
        for _ in range(pages):
            record = dataclasses.replace(template, pfn=pfn, order=0, stack=_frames(stack),
                                         migrate_reason=None, memcg=None, slab_cache=False)
            out.append(format_record(record))
            pfn += 1
    return "".join(out).encode()


@dataclasses.dataclass
class FakeMachine:
    """A tmp directory with debugfs/, proc/ and boot/ trees and a Host pointing at them."""

    root: Path
    euid: int = 0
    release: str = "6.12.117"

    def __post_init__(self) -> None:
        for sub in ("debugfs", "proc/sys/kernel", "boot"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "proc/sys/kernel/osrelease").write_text(self.release + "\n")
        self.set_cmdline("console=ttyS0 page_owner=on")

    @property
    def debugfs(self) -> Path:
        return self.root / "debugfs"

    @property
    def host(self) -> Host:
        """Return a Host reading this machine's trees and facts."""
        paths = HostPaths(debugfs=str(self.debugfs), proc=str(self.root / "proc"),
                          boot=str(self.root / "boot"))
        return Host(paths, geteuid=lambda: self.euid, gethostname=lambda: "testbox",
                    page_size=lambda: 4096, uname_release=lambda: self.release)

    def set_cmdline(self, cmdline: str) -> None:
        (self.root / "proc/cmdline").write_text(cmdline + "\n")

    def set_config(self, text: str) -> None:
        (self.root / "boot" / f"config-{self.release}").write_text(text)

    def mount_debugfs(self) -> None:
        """Give debugfs the entries any mounted debugfs has."""
        (self.debugfs / "bdi").mkdir(exist_ok=True)

    def write(self, name: str, data: bytes) -> Path:
        """Write a file under debugfs (e.g. "page_owner_stacks/show_stacks")."""
        path = self.debugfs / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


_PFN_RE = re.compile(rb"\nPFN (0x[0-9a-f]+|[0-9]+) ")
_NODE_RE = re.compile(rb"\|node=([0-9]+)\|")
_MODES = (b"stack", b"handle", b"stack_handle")


class KernelLikeFile:
    """A page_owner descriptor with the kernel's and the VFS's semantics (kernel-7.3.md 1, 6).

    The offset is the PFN the next scan starts from; each read() returns one record and
    moves the offset to that PFN + 1. A record longer than min(size, PAGE_SIZE) fails the
    read with ENOMEM, and the offset stays where it was (the VFS stores a new position
    only on success). skip() is lseek(fd, 1, SEEK_CUR). write() takes the 7.3 filter
    tokens all or nothing (EINVAL, ERANGE for nid >= 64, EINVAL over 416 bytes, EBADF
    when opened read-only). Records given with frames and `handle: N` (a stack_handle
    dump) print in the mode written; records without a handle print as given.
    """

    PAGE_SIZE = 4096

    def __init__(self, data: bytes, fail_after: int | None = None, error: int = errno.EIO,
                 *, writable: bool = True, nodes_with_memory: Sequence[int] = (0, 1),
                 accepts_writes: bool = True) -> None:  # fmt: skip
        self.records: list[bytes] = [block + b"\n\n" for block in data.split(b"\n\n") if block]
        self.pfns: list[int] = []
        for record in self.records:
            match = _PFN_RE.search(record)
            pfn = int(match[1], 0) if match else (self.pfns[-1] + 1 if self.pfns else 0)
            self.pfns.append(pfn)
        self.position = 0
        self.reads = 0
        self.fail_after = fail_after
        self.error = error
        self.writable = writable
        self.accepts_writes = accepts_writes  # False: a kernel before 7.3 (no write op)
        self.nodes_with_memory = set(nodes_with_memory)
        self.mode = b"stack"
        self.nids: set[int] | None = None
        self.closed = False

    def _render(self, record: bytes) -> bytes:
        """Print a record in the descriptor's mode."""
        lines = record.split(b"\n")
        if not any(line.startswith(b"handle: ") for line in lines):
            return record
        if self.mode == b"stack":
            lines = [line for line in lines if not line.startswith(b"handle: ")]
        elif self.mode == b"handle":
            lines = [line for line in lines if not line.startswith(b" ")]
        return b"\n".join(lines)

    def read(self, size: int) -> bytes:
        self.reads += 1
        if self.fail_after is not None and self.reads > self.fail_after:
            raise OSError(self.error, os.strerror(self.error))
        index = bisect.bisect_left(self.pfns, self.position)
        for pfn, record in zip(self.pfns[index:], self.records[index:], strict=True):
            node = _NODE_RE.search(record)
            if self.nids is not None and (node is None or int(node[1]) not in self.nids):
                continue
            text = self._render(record)
            if len(text) > min(size, self.PAGE_SIZE):
                raise OSError(errno.ENOMEM, "Cannot allocate memory")
            self.position = pfn + 1
            return text
        return b""

    def skip(self) -> None:
        self.position += 1

    def write(self, data: bytes) -> int:
        if not self.writable:
            raise OSError(errno.EBADF, "Bad file descriptor")
        if not self.accepts_writes or len(data) > 416:
            raise OSError(errno.EINVAL, "Invalid argument")
        mode, nids = self.mode, self.nids
        for token in data.split(b"\0")[0].split():
            key, _, value = token.partition(b"=")
            if key == b"mode" and value in _MODES:
                mode = value
            elif key == b"nid":
                nids = self._nodes(value)
            else:
                raise OSError(errno.EINVAL, "Invalid argument")
        self.mode, self.nids = mode, nids
        return len(data)

    def _nodes(self, text: bytes) -> set[int]:
        """Parse a node list as the kernel does; raise its errno."""
        nodes: set[int] = set()
        parts = text.split(b",")
        if parts and parts[-1] == b"" and len(parts) > 1:
            parts = parts[:-1]  # `nid=0,` is accepted
        for part in parts:
            start, dash, end = part.partition(b"-")
            if not start.isdigit() or (dash and not end.isdigit()):
                raise OSError(errno.EINVAL, "Invalid argument")
            first, last = int(start), int(end) if dash else int(start)
            if first > last:
                raise OSError(errno.EINVAL, "Invalid argument")
            if last >= 64:
                raise OSError(errno.ERANGE, "Numerical result out of range")
            nodes.update(range(first, last + 1))
        if not nodes or not nodes <= self.nodes_with_memory:
            raise OSError(errno.EINVAL, "Invalid argument")
        return nodes

    def close(self) -> None:
        self.closed = True


def noise_series(seed: int, length: int, base: int, amplitude: int) -> list[int]:
    """Return pages that wobble around `base` without a trend (page cache, slab churn)."""
    rng = random.Random(seed)
    return [max(0, base + rng.randint(-amplitude, amplitude)) for _ in range(length)]


@dataclasses.dataclass
class ScriptedSeries:
    """Per-snapshot page counts per stack, written into a FakeMachine before each read."""

    machine: FakeMachine
    counts: Sequence[Mapping[Stack, int]]
    mode: str = "show_stacks"  # or "show_handles" or "page_owner"
    handles: dict[Stack, int] = dataclasses.field(default_factory=dict)
    step: int = 0
    uptimes: Sequence[str] | None = None  # /proc/uptime's text at each snapshot, if any
    boot_ids: Sequence[str] | None = None  # /proc/sys/kernel/random/boot_id's, if any

    def write(self, index: int) -> None:
        """Lay out snapshot `index` under debugfs (and its /proc/uptime when scripted)."""
        counts = self.counts[index]
        if self.uptimes is not None:
            (self.machine.root / "proc/uptime").write_text(self.uptimes[index])
        if self.boot_ids is not None:
            path = self.machine.root / "proc/sys/kernel/random/boot_id"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.boot_ids[index] + "\n")
        self.machine.write("page_owner", dump_text(counts) if self.mode == "page_owner" else b"")
        if self.mode == "show_stacks":
            self.machine.write("page_owner_stacks/show_stacks", show_stacks_text(counts))
        elif self.mode == "show_handles":
            for stack in counts:
                self.handles.setdefault(stack, 1000 + 8 * len(self.handles))
            by_handle = {self.handles[s]: pages for s, pages in counts.items()}
            self.machine.write("page_owner_stacks/show_handles", show_handles_text(by_handle))
            self.machine.write("page_owner_stacks/show_stacks_handles",
                               show_stacks_handles_text({h: s for s, h in self.handles.items()}))

    def clock(self, start: float = 1_800_000_000.0) -> ManualClock:
        """Return a clock whose every sleep moves the series one step on."""
        self.write(0)

        def advance(_: ManualClock) -> None:
            self.step += 1
            if self.step < len(self.counts):
                self.write(self.step)

        return ManualClock(start, on_sleep=advance)


def leak_and_noise(length: int, seed: int = 7, leak_rate: int = 40,
                   stacks: int = 8) -> tuple[list[dict[Stack, int]], Stack]:
    """Make a series where one real stack leaks steadily and the others wobble."""
    chosen = real_stacks()[:stacks]
    leak = chosen[3]
    noise = {s: noise_series(seed + i, length, 200 + 50 * i, 60) for i, s in enumerate(chosen)}
    series = []
    for step in range(length):
        counts = {s: noise[s][step] for s in chosen}
        counts[leak] = 20 + leak_rate * step
        series.append(counts)
    return series, leak


def noise_only(length: int, seed: int, stacks: int = 8,
               amplitude: int = 60) -> list[dict[Stack, int]]:
    """Make a series where every stack only wobbles."""
    chosen = real_stacks()[:stacks]
    noise = {s: noise_series(seed * 31 + i, length, 100 + 40 * i, amplitude)
             for i, s in enumerate(chosen)}
    return [{s: noise[s][step] for s in chosen} for step in range(length)]


Opener = Callable[[str], object]
