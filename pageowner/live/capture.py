"""`pageowner capture`: copy debugfs/page_owner (and page_owner_stacks/*) byte for byte.

The kernel returns one record per read() and fails with ENOMEM when the record does not
fit the caller's buffer (kernel.md A.1): it has already moved its offset past that record
then, so the record is lost, not retried. We read with 1 MiB buffers on a raw descriptor,
which the kernel clamps to one page, the most it will ever print.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
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
from pageowner.errors import SpecError
from pageowner.live.clock import Clock, SystemClock
from pageowner.live.diagnose import PartialReadError, diagnose_open_error
from pageowner.live.host import STACKS_FILES, Host
from pageowner.model import DumpFormat

__all__ = [
    "READ_SIZE",
    "SIDECAR_VERSION",
    "CaptureResult",
    "CapturedFile",
    "RawFile",
    "ReadStats",
    "capture",
    "copy_records",
    "open_raw",
    "stacks_output_path",
]

READ_SIZE = 1 << 20
SIDECAR_VERSION = 1
# The kernel moves on after each ENOMEM, so failures end at the end of the file; this bound
# only stops a reader that fails without moving on (a long run of huge records is shorter).
_MAX_FAILURES_IN_A_ROW = 100_000
_HEAD_BYTES = 1 << 16

ProgressCallback = Callable[[int, int], None]


class RawFile(Protocol):
    """A file read with plain read() calls, as debugfs wants."""

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes; b"" at the end."""

    def close(self) -> None:
        """Release the descriptor."""


class _FdFile:
    """A raw descriptor: every read() is one system call with the full buffer."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))

    def read(self, size: int) -> bytes:
        """Return what one read() system call gives."""
        return os.read(self.fd, size)

    def close(self) -> None:
        """Close the descriptor."""
        os.close(self.fd)


def open_raw(path: str) -> RawFile:
    """Open a debugfs file for unbuffered reading; raise OSError as open() does."""
    return _FdFile(path)


@dataclass
class ReadStats:
    """What reading one file gave: bytes, records (blank-line ended blocks), failures."""

    bytes_read: int = 0
    records: int = 0
    lost_records: int = 0  # reads that failed with ENOMEM; the kernel skipped their record
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
    failures = 0
    while True:
        try:
            chunk = source.read(read_size)
        except OSError as exc:
            if exc.errno == errno.ENOMEM and failures < _MAX_FAILURES_IN_A_ROW:
                # read_page_owner() stores the next PFN before printing, so the record
                # that did not fit is gone from this pass (mm/page_owner.c, all eras).
                failures += 1
                stats.lost_records += 1
                continue
            stats.error = exc
            break
        failures = 0
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


def _read_file(
    host: Host,
    source: str,
    output: str,
    opener: Callable[[str], RawFile],
    read_size: int,
    on_progress: ProgressCallback | None = None,
) -> ReadStats:
    """Copy one debugfs file to `output` atomically; raise the diagnosed error if it won't open."""
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
) -> CaptureResult:
    """Capture page_owner (and with `stacks`, page_owner_stacks/*) into `output` and a sidecar.

    A read error partway keeps what was read, writes the sidecar marked incomplete and
    raises PartialReadError; any other failure raises the CaptureError naming its cause.
    """
    host = host or Host()
    clock = clock or SystemClock()
    if stacks and output == "-":
        raise SpecError("--page-owner-stacks needs -o FILE: the stacks files are written "
                        "beside it")
    started = clock.time()
    start = clock.monotonic()
    paths = host.paths
    stats = _read_file(host, paths.page_owner, output, opener, read_size, on_progress)
    files = [CapturedFile("page_owner", output, stats.bytes_read, stats.records)]
    notes: list[str] = []
    if stacks and stats.error is None:
        if not os.path.isdir(paths.stacks_dir):
            notes.append(f"{paths.stacks_dir} does not exist (kernels before 6.9 have none); "
                         "only page_owner was captured")
        for name in STACKS_FILES:
            source = paths.stacks_file(name)
            if not os.path.exists(source):
                continue
            target = stacks_output_path(output, name)
            taken = _read_file(host, source, target, opener, read_size)
            files.append(CapturedFile(f"page_owner_stacks/{name}", target,
                                      taken.bytes_read, taken.records))
    seconds = clock.monotonic() - start
    meta = _sidecar(host, stats, files, started, seconds)
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
        "complete": stats.error is None and stats.lost_records == 0,
        "lost_records": stats.lost_records,
        "error": None if stats.error is None else (stats.error.strerror or str(stats.error)),
        "files": [taken.to_json() for taken in files],
    }


def _format_era(fmt: DumpFormat | None) -> str | None:
    """Name the kernels (in the registry) printing records of this shape.

    >>> from pageowner.kernel.kernels import dump_format_for
    >>> _format_era(dump_format_for("6.1"))
    'as kernels 5.18 to 6.1 print it (header 5.18, pfn 5.14, frames 5.2)'
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
            f"than the read buffer or one page, or the kernel was short of memory); the "
            f"other {stats.records} records are in {kept}",
            "the kernel moves past a record it cannot print, so those records are missing "
            "from this dump only; a new capture may get them",
            bytes_read=stats.bytes_read,
            records=stats.records,
        )
