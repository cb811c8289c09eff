"""`pageowner capture`: copy debugfs/page_owner (and page_owner_stacks/*) byte for byte.

The kernel returns one record per read() and fails with ENOMEM when the record does not
fit the caller's buffer. The file offset is the PFN the next scan starts from, and the VFS
stores a new offset only when a read succeeds (`ksys_read()`, fs/read_write.c; measured on
7.3, kernel-7.3.md 6), so a failed read leaves it where it was and a retry returns the same
record. We read with 1 MiB buffers on a raw descriptor, which the kernel clamps to one page
(`count = min(count, PAGE_SIZE)`, from 5.0 on), so ENOMEM means a record longer than a
page, which no read will ever return: we step the offset one PFN at a time
(`lseek(fd, 1, SEEK_CUR)`) until a read succeeds, which skips that record only, and count it
lost. Before 5.0 the kernel kmalloc()s the whole read size for each record, so page_owner
is read 16 KiB at a time there (more than any record of 16 frames).

On 7.3, `--mode`/`--nid` open page_owner read-write and write the filter (`mode=... nid=...`)
in one write() before reading (kernel-7.3.md 1).
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from pageowner.dump.era import (
    SIDECAR_SUFFIX,
    sniff_dump_format,
    version_from_release,
    versions_printing,
)
from pageowner.dump.fileio import atomic_output
from pageowner.dump.handles import SIDECAR_STACKS_KEY
from pageowner.errors import CaptureError, SpecError
from pageowner.kernel.kernels import KernelVersion
from pageowner.kernel.tables import FLAGS_LAYOUTS, flags_layout_for_config
from pageowner.live.clock import Clock, SystemClock
from pageowner.live.diagnose import (
    PartialReadError,
    diagnose_filter_error,
    diagnose_open_error,
)
from pageowner.live.host import STACKS_FILES, Host, parse_count_threshold
from pageowner.model import DumpFormat, PrintMode

__all__ = [
    "READ_SIZE",
    "UNCLAMPED_READ_SIZE",
    "SIDECAR_VERSION",
    "CaptureResult",
    "CapturedFile",
    "FILTER_MAX_BYTES",
    "FilterFile",
    "RawFile",
    "ReadStats",
    "capture",
    "copy_records",
    "filter_command",
    "open_filtered",
    "open_raw",
    "open_raw_rw",
    "stacks_output_path",
]

READ_SIZE = 1 << 20
# Reads of page_owner on kernels before the PAGE_SIZE clamp (5.0): an order-2 kmalloc per
# record rather than an order-8 one, still far above a record's size.
UNCLAMPED_READ_SIZE = 16 << 10
SIDECAR_VERSION = 1
_HEAD_BYTES = 1 << 16
# 7.3 refuses a filter write longer than 32 + 6 * MAX_NUMNODES bytes (64 nodes on x86_64).
FILTER_MAX_BYTES = 32 + 6 * 64

ProgressCallback = Callable[[int, int], None]


class RawFile(Protocol):
    """A file read with plain read() calls, as debugfs wants."""

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes; b"" at the end."""

    def skip(self) -> None:
        """Move the offset one step on (lseek(fd, 1, SEEK_CUR)); raise OSError if it can't."""

    def close(self) -> None:
        """Release the descriptor."""


class FilterFile(RawFile, Protocol):
    """A page_owner descriptor opened read-write, to which a 7.3 filter is written."""

    def write(self, data: bytes) -> int:
        """Write once; return the byte count or raise OSError with the kernel's errno."""


class _FdFile:
    """A raw descriptor: every read() is one system call with the full buffer."""

    def __init__(self, path: str, writable: bool = False) -> None:
        flags = os.O_RDWR if writable else os.O_RDONLY
        self.fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))

    def read(self, size: int) -> bytes:
        """Return what one read() system call gives."""
        return os.read(self.fd, size)

    def skip(self) -> None:
        """Step the offset (a PFN for page_owner) by one."""
        os.lseek(self.fd, 1, os.SEEK_CUR)

    def write(self, data: bytes) -> int:
        """Return what one write() system call gives."""
        return os.write(self.fd, data)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)


def open_raw(path: str) -> RawFile:
    """Open a debugfs file for unbuffered reading; raise OSError as open() does."""
    return _FdFile(path)


def open_raw_rw(path: str) -> FilterFile:
    """Open page_owner read-write, as a 7.3 filter write needs (kernel-7.3.md 1).

    A regular file holding data is a copied or simulated tree, not debugfs (whose files
    have size 0): writing the filter would overwrite its first bytes, so it is refused.
    """
    raw = _FdFile(path, writable=True)
    info = os.fstat(raw.fd)
    if stat.S_ISREG(info.st_mode) and info.st_size > 0:
        raw.close()
        raise CaptureError(
            f"{path} is a file holding {info.st_size} bytes, not debugfs: a page_owner filter "
            "(--mode, --nid) needs a live 7.3 kernel, and writing it would overwrite the file"
        )
    return raw


@dataclass
class ReadStats:
    """What reading one file gave: bytes, records (blank-line ended blocks), failures."""

    bytes_read: int = 0
    records: int = 0
    # Records skipped after ENOMEM (longer than a page). A run of such records with no
    # readable one between them counts as one: the reader cannot tell where one ends.
    lost_records: int = 0
    error: OSError | None = None
    head: bytes = b""


def copy_records(
    source: RawFile,
    write: Callable[[bytes], object],
    *,
    read_size: int = READ_SIZE,
    on_progress: ProgressCallback | None = None,
) -> ReadStats:
    """Copy a file to `write` read by read; count its records; stop at the first hard error."""
    stats = ReadStats()
    head = bytearray()
    previous_newline = False
    skipping = False
    while True:
        try:
            chunk = source.read(read_size)
        except OSError as exc:
            if exc.errno != errno.ENOMEM:
                stats.error = exc
                break
            # The failed read left the offset (the PFN the scan starts from) unchanged, so
            # the same record would fail again: step one PFN on until a read succeeds.
            if not skipping:
                stats.lost_records += 1
                skipping = True
            try:
                source.skip()
            except OSError as seek_error:
                stats.error = seek_error
                break
            continue
        skipping = False
        if not chunk:
            break
        write(chunk)
        stats.bytes_read += len(chunk)
        stats.records += chunk.count(b"\n\n")
        if previous_newline and chunk.startswith(b"\n"):
            stats.records += 1
        previous_newline = chunk.endswith(b"\n")
        if len(head) < _HEAD_BYTES:
            head += chunk[: _HEAD_BYTES - len(head)]
        if on_progress is not None:
            on_progress(stats.bytes_read, stats.records)
    stats.head = bytes(head)
    return stats


@dataclass(frozen=True)
class CapturedFile:
    """One debugfs file taken: where from, where to, and how much."""

    source: str  # the path under debugfs, e.g. "page_owner_stacks/show_stacks"
    path: str
    bytes_read: int
    records: int

    def to_json(self) -> dict[str, object]:
        """Describe the file for the sidecar, by its name beside the dump."""
        return {
            "source": self.source,
            "file": os.path.basename(self.path),
            "bytes": self.bytes_read,
            "records": self.records,
        }


@dataclass(frozen=True)
class CaptureResult:
    """The outcome of a capture: the files written, the sidecar and its content."""

    output: str
    sidecar: str | None
    files: tuple[CapturedFile, ...]
    meta: dict[str, object]
    seconds: float
    notes: tuple[str, ...] = field(default=())

    @property
    def records(self) -> int:
        """Return the number of page_owner records captured."""
        return self.files[0].records

    @property
    def bytes_read(self) -> int:
        """Return the size of the page_owner dump captured."""
        return self.files[0].bytes_read


def stacks_output_path(output: str, name: str) -> str:
    """Name the copy of a page_owner_stacks file beside the dump.

    >>> stacks_output_path("/tmp/d.txt", "show_stacks")
    '/tmp/d.show_stacks.txt'
    """
    base, ext = os.path.splitext(output)
    return f"{base}.{name}{ext}" if ext else f"{output}.{name}"


def filter_command(mode: PrintMode | None, nid: str | None) -> bytes:
    """Return the one write that sets a 7.3 descriptor's filter, or raise SpecError.

    >>> filter_command(PrintMode.HANDLE, "0,2-3")
    b'mode=handle nid=0,2-3'
    """
    tokens = []
    if mode is not None:
        tokens.append(f"mode={mode.value}")
    if nid is not None:
        if not nid.strip() or any(c.isspace() for c in nid):
            raise SpecError(f"--nid {nid!r}: give a node list such as 0, 0,2 or 0-3")
        tokens.append(f"nid={nid}")
    command = " ".join(tokens).encode()
    if len(command) > FILTER_MAX_BYTES:
        raise SpecError(f"the filter {command.decode()!r} is {len(command)} bytes; the kernel "
                        f"takes at most {FILTER_MAX_BYTES} in one write")
    return command


def open_filtered(
    host: Host, path: str, command: bytes, opener: Callable[[str], FilterFile]
) -> RawFile:
    """Open page_owner read-write and write the filter in one write; raise a hinted error."""
    try:
        raw = opener(path)
    except OSError as exc:
        raise diagnose_open_error(host, path, exc) from None
    try:
        raw.write(command)
    except OSError as exc:
        raw.close()
        raise diagnose_filter_error(host, path, command.decode(), exc) from None
    return raw


def _read_file(
    host: Host,
    source: str,
    output: str,
    opener: Callable[[str], RawFile],
    read_size: int,
    on_progress: ProgressCallback | None = None,
    opened: RawFile | None = None,
) -> ReadStats:
    """Copy one debugfs file to `output` atomically; raise the diagnosed error if it won't open."""
    if opened is not None:
        raw = opened
    else:
        try:
            raw = opener(source)
        except OSError as exc:
            raise diagnose_open_error(host, source, exc) from None
    try:
        with atomic_output(output, inputs=(source,)) as out:
            return copy_records(raw, out.write, read_size=read_size, on_progress=on_progress)
    finally:
        raw.close()


def capture(
    output: str,
    *,
    host: Host | None = None,
    stacks: bool = False,
    clock: Clock | None = None,
    opener: Callable[[str], RawFile] = open_raw,
    read_size: int = READ_SIZE,
    on_progress: ProgressCallback | None = None,
    mode: PrintMode | None = None,
    nid: str | None = None,
    filter_opener: Callable[[str], FilterFile] = open_raw_rw,
) -> CaptureResult:
    """Capture page_owner (and with `stacks`, page_owner_stacks/*) into `output` and a sidecar.

    `mode` and `nid` set a 7.3 filter on the descriptor first; in handle mode
    show_stacks_handles is saved beside the dump and named in the sidecar, so that later
    commands join the handles to their frames. A read error partway keeps what was read,
    writes the sidecar marked incomplete and raises PartialReadError; any other failure
    raises the CaptureError naming its cause.
    """
    host = host or Host()
    clock = clock or SystemClock()
    if stacks and output == "-":
        raise SpecError("--page-owner-stacks needs -o FILE: the stacks files are written "
                        "beside it")
    if mode is PrintMode.HANDLE and output == "-":
        raise SpecError("--mode handle needs -o FILE: show_stacks_handles is saved beside it")
    filtered = mode is not None or nid is not None
    command = filter_command(mode, nid) if filtered else b""
    started = clock.time()
    start = clock.monotonic()
    paths = host.paths
    opened = open_filtered(host, paths.page_owner, command, filter_opener) if filtered else None
    release_version = version_from_release(host.release())
    dump_read_size = read_size
    if release_version is not None and not KernelVersion(release_version).read_clamped_to_page:
        dump_read_size = min(read_size, UNCLAMPED_READ_SIZE)
    stats = _read_file(host, paths.page_owner, output, opener, dump_read_size, on_progress,
                       opened)
    files = [CapturedFile("page_owner", output, stats.bytes_read, stats.records)]
    notes: list[str] = []
    stacks_file = None
    if mode is PrintMode.HANDLE and stats.error is None:
        # Read after the dump: the stack list only grows, so every handle it can list is
        # there. It never lists the early and no-reclaim stacks (kernel-7.3.md 6).
        source = paths.stacks_file("show_stacks_handles")
        if os.path.exists(source):
            stacks_file = stacks_output_path(output, "show_stacks_handles")
            taken = _read_file(host, source, stacks_file, opener, read_size)
            files.append(CapturedFile("page_owner_stacks/show_stacks_handles", stacks_file,
                                      taken.bytes_read, taken.records))
        else:
            notes.append(f"{source} does not exist: the handles of {output} cannot be joined "
                         "to their frames")
    if stacks and stats.error is None:
        if not os.path.isdir(paths.stacks_dir):
            notes.append(f"{paths.stacks_dir} does not exist (kernels before 6.9 have none); "
                         "only page_owner was captured")
        for name in STACKS_FILES:
            source = paths.stacks_file(name)
            if not os.path.exists(source) or (stacks_file and name == "show_stacks_handles"):
                continue
            target = stacks_output_path(output, name)
            taken = _read_file(host, source, target, opener, read_size)
            files.append(CapturedFile(f"page_owner_stacks/{name}", target,
                                      taken.bytes_read, taken.records))
    seconds = clock.monotonic() - start
    meta = _sidecar(host, stats, files, started, seconds)
    if filtered:
        meta["print_mode"] = (mode or PrintMode.STACK).value
        meta["nid"] = nid
    if stacks_file is not None:
        meta[SIDECAR_STACKS_KEY] = os.path.basename(stacks_file)
    threshold = _captured_threshold(files)
    if threshold is not None:
        # show_stacks and show_handles leave out stacks under it: a reader must know it.
        meta["count_threshold"] = threshold
    sidecar = None
    if output != "-":
        sidecar = output + SIDECAR_SUFFIX
        sources = (paths.page_owner, *(paths.stacks_file(name) for name in STACKS_FILES))
        with atomic_output(sidecar, inputs=sources) as out:
            out.write(json.dumps(meta, indent=2).encode() + b"\n")
    _raise_if_partial(paths.page_owner, output, stats)
    return CaptureResult(output, sidecar, tuple(files), meta, seconds, tuple(notes))


def _sidecar(
    host: Host, stats: ReadStats, files: list[CapturedFile], started: float, seconds: float
) -> dict[str, object]:
    """Build the sidecar: what a reader needs to know of the machine and the capture."""
    release = host.release()
    fmt = sniff_dump_format(stats.head)
    when = datetime.datetime.fromtimestamp(started, tz=datetime.timezone.utc)
    return {
        "pageowner_capture": SIDECAR_VERSION,
        "kernel_release": release,
        "kernel_version": version_from_release(release),
        "cmdline": host.cmdline(),
        "hostname": host.hostname(),
        "captured_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "captured_at_unix": round(started, 3),
        # Seconds since boot, the clock of every ts/free_ts in the dump (local_clock): with
        # it a reader can tell how long ago each page was allocated.
        "uptime": host.uptime(),
        "seconds": round(seconds, 6),
        "page_size": host.page_size(),
        "debugfs": host.paths.debugfs,
        "records": stats.records,
        "bytes": stats.bytes_read,
        # The kernel era whose records the dump's text matches, then the line shapes.
        "format": _format_era(fmt),
        # Where node and zone sit in page->flags, from the kernel's .config: what readers
        # need for dumps that print no node=/zone= fields (before 5.14).
        "flags_layout": _flags_layout(host),
        "complete": stats.error is None and stats.lost_records == 0,
        "lost_records": stats.lost_records,
        "error": None if stats.error is None else (stats.error.strerror or str(stats.error)),
        "files": [taken.to_json() for taken in files],
    }


def _flags_layout(host: Host) -> str | None:
    """Name the page->flags layout of the running kernel's config, None when unknown."""
    config = host.kernel_config()
    layout = flags_layout_for_config(config[1]) if config is not None else None
    return layout.name if layout is not None and layout.name in FLAGS_LAYOUTS else None


def _captured_threshold(files: list[CapturedFile]) -> int | None:
    """Return the count_threshold a capture copied, read in either era's form."""
    for taken in files:
        if taken.source == "page_owner_stacks/count_threshold":
            try:
                with open(taken.path, "rb") as handle:
                    text = handle.read(64).decode("ascii", "replace")
            except OSError:
                return None
            return parse_count_threshold(text)
    return None


def _format_era(fmt: DumpFormat | None) -> str | None:
    """Name the kernels (in the registry) printing records of this shape.

    >>> from pageowner.kernel.kernels import dump_format_for
    >>> _format_era(dump_format_for("6.1"))
    'as kernels 5.18 to 6.1 print it (header 5.18, pfn 5.14, frames 4.15)'
    """
    if fmt is None:
        return None
    versions = versions_printing(fmt)
    if not versions:
        return f"as no known kernel prints it ({fmt})"
    if len(versions) == 1:
        return f"as kernel {versions[0]} prints it ({fmt})"
    return f"as kernels {versions[0]} to {versions[-1]} print it ({fmt})"


def _raise_if_partial(source: str, output: str, stats: ReadStats) -> None:
    """Raise PartialReadError when the dump is not whole, saying where the rest is."""
    kept = "standard output" if output == "-" else output
    if stats.error is not None:
        raise PartialReadError(
            f"read error on {source} after {stats.bytes_read} bytes ({stats.records} records): "
            f"{stats.error.strerror or stats.error}; the part read is kept in {kept}",
            "the dump ends early but is usable (pageowner sort reads it); run the capture "
            "again for a whole one",
            bytes_read=stats.bytes_read,
            records=stats.records,
        )
    if stats.lost_records:
        raise PartialReadError(
            f"{stats.lost_records} record(s) of {source} could not be read (ENOMEM: longer "
            f"than the read buffer or one page); the other {stats.records} records are in "
            f"{kept}",
            "a record longer than a page never fits a read; the capture stepped past each "
            "one, so only those are missing",
            bytes_read=stats.bytes_read,
            records=stats.records,
        )
