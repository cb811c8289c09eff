"""`pageowner watch`: snapshot the pages held per stack at each interval into a store.

The cheapest source the kernel has is used (kernel.md D): `show_handles` (6.19+), joined
with `show_stacks_handles` read once (and again only when a new handle shows up), else
`show_stacks` (6.9+), else the whole page_owner dump summed per stack.

show_stacks and show_handles under-count: the early-allocation stack and every stack first
allocated without a reclaim flag never join the kernel's stack list (about a third of the
pages after a workload on 7.3, kernel-7.3.md 6). `--source page_owner` counts every page;
on 7.3 it reads the dump in `mode=handle` (a third of the bytes) and learns the frames of
new handles from one `mode=stack_handle` read.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pageowner.dump.dumpfile import decode, format_frame
from pageowner.dump.era import version_from_release
from pageowner.dump.stacksfile import parse_stack_block
from pageowner.errors import CaptureError, SpecError, StateError
from pageowner.kernel.kernels import version_key
from pageowner.live.capture import (
    READ_SIZE,
    FilterFile,
    RawFile,
    copy_records,
    open_filtered,
    open_raw,
    open_raw_rw,
)
from pageowner.live.clock import Clock, SystemClock
from pageowner.live.diagnose import diagnose_missing, diagnose_open_error
from pageowner.live.host import Host
from pageowner.live.store import StackSample, Store
from pageowner.live.textfile import TextfileSnapshot, write_textfile
from pageowner.model import Frame

__all__ = [
    "Reading",
    "SnapshotCost",
    "SnapshotKind",
    "WatchResult",
    "choose_source",
    "StackBlock",
    "group_dump_by_stack",
    "iter_stack_blocks",
    "make_reader",
    "watch",
]


class SnapshotKind(enum.Enum):
    """Where a snapshot's counts come from, cheapest first."""

    SHOW_HANDLES = "show_handles"
    SHOW_STACKS = "show_stacks"
    PAGE_OWNER = "page_owner"


@dataclass(frozen=True)
class Reading:
    """One snapshot's stacks and what reading them cost in bytes."""

    samples: tuple[StackSample, ...]
    bytes_read: int


@dataclass(frozen=True)
class SnapshotCost:
    """What one snapshot found and cost the watched machine."""

    index: int
    taken_at: float
    source: str
    bytes_read: int
    seconds: float
    nr_stacks: int
    nr_base_pages: int


@dataclass(frozen=True)
class WatchResult:
    """The snapshots a watch took, and whether Ctrl-C ended it."""

    store: str
    source: str
    snapshots: tuple[SnapshotCost, ...]
    interrupted: bool

    @property
    def mean_bytes(self) -> float:
        """Return the mean bytes read per snapshot."""
        return sum(s.bytes_read for s in self.snapshots) / max(1, len(self.snapshots))

    @property
    def mean_seconds(self) -> float:
        """Return the mean time a snapshot took to read and store."""
        return sum(s.seconds for s in self.snapshots) / max(1, len(self.snapshots))


def choose_source(host: Host) -> SnapshotKind:
    """Pick the cheapest source this kernel offers, or raise the error saying why none."""
    paths = host.paths
    if os.path.exists(paths.stacks_file("show_handles")) and os.path.exists(
        paths.stacks_file("show_stacks_handles")
    ):
        return SnapshotKind.SHOW_HANDLES
    if os.path.exists(paths.stacks_file("show_stacks")):
        return SnapshotKind.SHOW_STACKS
    if os.path.exists(paths.page_owner):
        return SnapshotKind.PAGE_OWNER
    raise diagnose_missing(host, paths.page_owner)


class _FileReader:
    """Reads whole debugfs files with big raw reads."""

    def __init__(self, host: Host, opener: Callable[[str], RawFile], read_size: int,
                 filter_opener: Callable[[str], FilterFile] = open_raw_rw) -> None:  # fmt: skip
        self.host = host
        self.opener = opener
        self.read_size = read_size
        self.filter_opener = filter_opener

    def read_chunks(self, path: str, command: bytes | None = None) -> list[bytes]:
        """Return a whole file as read; raise the diagnosed CaptureError if it can't be read.

        `command` is a 7.3 filter written to the descriptor first.
        """
        try:
            if command is not None:
                raw = open_filtered(self.host, path, command, self.filter_opener)
            else:
                raw = self.opener(path)
        except OSError as exc:
            raise diagnose_open_error(self.host, path, exc) from None
        chunks: list[bytes] = []
        try:
            stats = copy_records(raw, chunks.append, read_size=self.read_size)
        finally:
            raw.close()
        if stats.error is not None:
            raise CaptureError(f"read error on {path} after {stats.bytes_read} bytes: "
                               f"{stats.error.strerror or stats.error}")
        return chunks

    def read_bytes(self, path: str) -> bytes:
        """Return a whole file."""
        return b"".join(self.read_chunks(path))


def _frames_of(stack: tuple[Frame, ...]) -> tuple[str, ...]:
    """Return a parsed stack's frame lines as the kernel printed them."""
    return tuple(format_frame(frame) for frame in stack)


_HANDLE_PREFIX = "handle: "
_COUNT_PREFIXES = ("nr_base_pages: ", "stack_count: ")


@dataclass(frozen=True)
class StackBlock:
    """One block of a page_owner_stacks file with its frames as printed lines."""

    frames: tuple[str, ...]
    handle: int | None
    nr_base_pages: int | None


def iter_stack_blocks(data: bytes, path: str) -> Iterator[StackBlock]:
    """Yield the blocks of a page_owner_stacks file, frames kept as printed lines.

    A watch reads these files over and over; this skips parsing every frame, and hands a
    block it does not recognise to the full parser, whose ParseError names the line.
    """
    lineno = 1
    for block in decode(data).split("\n\n"):
        lines = block.split("\n")
        start = lineno
        lineno += len(lines) + 1
        if not block.strip("\n"):
            continue
        frames: list[str] = []
        handle = count = None
        try:
            for line in lines:
                if line.startswith(" "):
                    frames.append(line)
                elif line.startswith(_HANDLE_PREFIX):
                    handle = int(line[len(_HANDLE_PREFIX):])
                elif line.startswith(_COUNT_PREFIXES):
                    count = int(line.split(": ", 1)[1])
                elif line:
                    raise ValueError(line)
        except ValueError:
            parsed = parse_stack_block([line for line in lines if line], path, start)
            yield StackBlock(_frames_of(parsed.stack), parsed.handle, parsed.nr_base_pages)
            continue
        yield StackBlock(tuple(frames), handle, count)


class _ShowStacksReader(_FileReader):
    """Snapshots from page_owner_stacks/show_stacks (6.9+)."""

    def read(self) -> Reading:
        path = self.host.paths.stacks_file("show_stacks")
        data = self.read_bytes(path)
        samples = tuple(
            StackSample(entry.frames, entry.nr_base_pages or 0)
            for entry in iter_stack_blocks(data, path)
        )
        return Reading(samples, len(data))


class _ShowHandlesReader(_FileReader):
    """Snapshots from show_handles, joined to stacks with show_stacks_handles (6.19+)."""

    def __init__(self, host: Host, opener: Callable[[str], RawFile], read_size: int,
                 filter_opener: Callable[[str], FilterFile] = open_raw_rw) -> None:  # fmt: skip
        super().__init__(host, opener, read_size, filter_opener)
        self.stacks_by_handle: dict[int, tuple[str, ...]] = {}

    def _load_handles(self) -> int:
        """Read show_stacks_handles into the handle map; return the bytes read."""
        path = self.host.paths.stacks_file("show_stacks_handles")
        data = self.read_bytes(path)
        for entry in iter_stack_blocks(data, path):
            if entry.handle is not None:
                self.stacks_by_handle[entry.handle] = entry.frames
        return len(data)

    def read(self) -> Reading:
        path = self.host.paths.stacks_file("show_handles")
        data = self.read_bytes(path)
        entries = list(iter_stack_blocks(data, path))
        bytes_read = len(data)
        # Stacks are never removed from the kernel's list, so a handle once mapped stays
        # valid; only a handle first seen now needs another read (kernel.md D).
        if any(e.handle not in self.stacks_by_handle for e in entries):
            bytes_read += self._load_handles()
        samples = tuple(
            StackSample(
                self.stacks_by_handle.get(e.handle, (f" <handle {e.handle}: no stack>",)),
                e.nr_base_pages or 0,
                e.handle,
            )
            for e in entries
            if e.handle is not None
        )
        return Reading(samples, bytes_read)


_HEADER = b"Page allocated via order "
_HANDLE_LINE = b"handle: "


def group_dump_by_stack(chunks: Iterable[bytes], prefix: bytes = b" ") -> dict[bytes, int]:
    """Sum 2^order base pages per stack (its lines starting with `prefix`) over a dump.

    >>> group_dump_by_stack([b"Page allocated via order 2, mask 0x0()\\n f+0x1/0x2\\n\\n"])
    {b' f+0x1/0x2': 4}
    """
    totals: dict[bytes, int] = {}
    pending = b""
    for chunk in chunks:
        blocks = (pending + chunk).split(b"\n\n")
        pending = blocks.pop()
        for block in blocks:
            _add_record(block, totals, prefix)
    _add_record(pending, totals, prefix)
    return totals


def _add_record(block: bytes, totals: dict[bytes, int], prefix: bytes = b" ") -> None:
    """Add one record's pages to its stack; blocks that are no record are left out."""
    block = block.strip(b"\n")
    if not block.startswith(_HEADER):
        return
    start = len(_HEADER)
    end = block.find(b",", start)
    try:
        order = int(block[start:end])
    except ValueError:
        return
    stack = b"\n".join(line for line in block.split(b"\n")[1:] if line.startswith(prefix))
    totals[stack] = totals.get(stack, 0) + (1 << order)


def group_dump_by_handle(chunks: Iterable[bytes]) -> dict[int, int]:
    """Sum 2^order base pages per handle over the records of a 7.3 handle-mode dump.

    >>> group_dump_by_handle([b"Page allocated via order 2, mask 0x0()\\nhandle: 7\\n\\n"])
    {7: 4}
    """
    totals: dict[int, int] = {}
    for stack, pages in group_dump_by_stack(chunks, _HANDLE_LINE).items():
        handle = int(stack.removeprefix(_HANDLE_LINE))
        totals[handle] = totals.get(handle, 0) + pages
    return totals


def _handle_stacks(chunks: Iterable[bytes]) -> dict[int, tuple[str, ...]]:
    """Return the frame lines of each handle of a stack_handle dump."""
    stacks: dict[int, tuple[str, ...]] = {}
    for block in b"".join(chunks).split(b"\n\n"):
        lines = block.strip(b"\n").split(b"\n")
        frames = tuple(decode(line) for line in lines if line.startswith(b" "))
        for line in lines:
            if line.startswith(_HANDLE_LINE) and line[len(_HANDLE_LINE):].isdigit():
                stacks.setdefault(int(line[len(_HANDLE_LINE):]), frames)
    return stacks


class _PageOwnerReader(_FileReader):
    """Snapshots from the whole page_owner dump, grouped by stack (any kernel).

    On 7.3 the dump is read in handle mode; the frames of a handle seen for the first time
    come from one stack_handle read (a handle's stack never changes within a boot).
    """

    def __init__(self, host: Host, opener: Callable[[str], RawFile], read_size: int,
                 filter_opener: Callable[[str], FilterFile] = open_raw_rw) -> None:  # fmt: skip
        super().__init__(host, opener, read_size, filter_opener)
        version = version_from_release(host.release())
        self.handle_mode = version is not None and _has_print_modes(version)
        self.stacks_by_handle: dict[int, tuple[str, ...]] = {}

    def read(self) -> Reading:
        if self.handle_mode:
            return self._read_handles()
        chunks = self.read_chunks(self.host.paths.page_owner)
        totals = group_dump_by_stack(chunks)
        samples = tuple(
            StackSample(tuple(decode(stack).split("\n")) if stack else (), pages)
            for stack, pages in totals.items()
        )
        return Reading(samples, sum(map(len, chunks)))


    def _read_handles(self) -> Reading:
        path = self.host.paths.page_owner
        chunks = self.read_chunks(path, b"mode=handle")
        bytes_read = sum(map(len, chunks))
        totals = group_dump_by_handle(chunks)
        if any(handle not in self.stacks_by_handle for handle in totals):
            learnt = self.read_chunks(path, b"mode=stack_handle")
            bytes_read += sum(map(len, learnt))
            self.stacks_by_handle.update(_handle_stacks(learnt))
        samples = tuple(
            StackSample(self.stacks_by_handle.get(handle, (f" <handle {handle}: no stack>",)),
                        pages, handle)
            for handle, pages in totals.items()
        )  # fmt: skip
        return Reading(samples, bytes_read)


def _has_print_modes(version: str) -> bool:
    """Tell whether a major.minor version has 7.3's per-descriptor print modes."""
    return version_key(version) >= version_key("7.3")


_READERS: dict[SnapshotKind, type[_ShowStacksReader | _ShowHandlesReader | _PageOwnerReader]] = {
    SnapshotKind.SHOW_HANDLES: _ShowHandlesReader,
    SnapshotKind.SHOW_STACKS: _ShowStacksReader,
    SnapshotKind.PAGE_OWNER: _PageOwnerReader,
}


def make_reader(
    kind: SnapshotKind,
    host: Host,
    opener: Callable[[str], RawFile] = open_raw,
    read_size: int = READ_SIZE,
    filter_opener: Callable[[str], FilterFile] = open_raw_rw,
) -> Callable[[], Reading]:
    """Return a function taking one snapshot from the given source."""
    return _READERS[kind](host, opener, read_size, filter_opener).read


def watch(
    store_path: str,
    *,
    host: Host | None = None,
    interval: float = 10.0,
    count: int | None = None,
    source: SnapshotKind | None = None,
    clock: Clock | None = None,
    opener: Callable[[str], RawFile] = open_raw,
    read_size: int = READ_SIZE,
    on_snapshot: Callable[[SnapshotCost], None] | None = None,
    filter_opener: Callable[[str], FilterFile] = open_raw_rw,
    textfile: str | None = None,
    textfile_top: int = 10,
) -> WatchResult:
    """Take `count` snapshots (or until Ctrl-C) `interval` seconds apart into a store.

    Snapshots are spaced from the first one's start, so reading time does not drift the
    series. Ctrl-C ends the watch cleanly: every snapshot already taken is in the store.
    With `textfile`, each snapshot also replaces that Prometheus textfile (top stacks).
    """
    host = host or Host()
    clock = clock or SystemClock()
    if interval < 0:
        raise SpecError("the interval cannot be negative")
    if count is not None and count < 1:
        raise SpecError("--count must be at least 1")
    kind = source or choose_source(host)
    read = make_reader(kind, host, opener, read_size, filter_opener)
    costs: list[SnapshotCost] = []
    interrupted = False
    store = Store.open(store_path, create=True)
    try:
        _check_same_source(store, kind)
        store.set_meta(_machine_facts(host, kind))
        first = clock.monotonic()
        while count is None or len(costs) < count:
            if costs:
                clock.sleep(max(0.0, first + len(costs) * interval - clock.monotonic()))
            taken_at = clock.time()
            # The machine's own clock too: trend prefers it (NTP steps and a simulated
            # machine's time do not move the watch's clock alike).
            uptime, boot_id = host.uptime(), host.boot_id()
            start = clock.monotonic()
            reading = read()
            store.add_snapshot(taken_at, kind.value, reading.samples,
                               bytes_read=reading.bytes_read,
                               read_seconds=clock.monotonic() - start,
                               uptime=uptime, boot_id=boot_id)  # fmt: skip
            cost = SnapshotCost(
                index=len(costs) + 1,
                taken_at=taken_at,
                source=kind.value,
                bytes_read=reading.bytes_read,
                seconds=clock.monotonic() - start,
                nr_stacks=len({s.frames for s in reading.samples}),
                nr_base_pages=sum(s.nr_base_pages for s in reading.samples),
            )
            costs.append(cost)
            if textfile is not None:
                write_textfile(textfile, TextfileSnapshot(
                    kind.value, taken_at, reading.bytes_read, cost.seconds, reading.samples,
                ), textfile_top)  # fmt: skip
            if on_snapshot is not None:
                on_snapshot(cost)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        store.close()
    return WatchResult(store_path, kind.value, tuple(costs), interrupted)


def _check_same_source(store: Store, kind: SnapshotKind) -> None:
    """Refuse to mix sources in one series: their counts differ (early pages, migration)."""
    recorded = store.meta().get("source")
    if recorded is not None and recorded != kind.value and store.count_snapshots():
        raise StateError(
            f"{store.path}: holds {recorded} snapshots, and this watch would read "
            f"{kind.value}; their counts are not comparable (page_owner also counts early "
            f"allocations): use another store, or --source {recorded}"
        )


def _machine_facts(host: Host, kind: SnapshotKind) -> dict[str, str]:
    """Say what is being watched, for the store's meta table."""
    return {
        "kernel_release": host.release(),
        "hostname": host.hostname(),
        "debugfs": host.paths.debugfs,
        "source": kind.value,
        "page_size": str(host.page_size()),
    }
