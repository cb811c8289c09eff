"""Opening inputs and writing outputs safely.

Inputs: a path or `-` for stdin; regular files expose their descriptor and size (so big
files can be split across cores), pipes and FIFOs stream, and `.xz`/`.gz` files are
decompressed on the fly (recognised by their magic bytes). Outputs: written to a temporary
file beside the target and renamed over it only when complete, so a failure, a full disk
or a Ctrl-C never leaves a half-written file, and an output that is the input is refused.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import io
import lzma
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, BinaryIO

from pageowner.errors import InputError, OutputError

__all__ = ["InputSource", "atomic_output", "check_output_path", "open_input", "same_file"]

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZ_MAGIC = b"\x1f\x8b"


def _reason(exc: OSError) -> str:
    """Return the strerror of an OSError, without Python's decoration."""
    return exc.strerror or str(exc)


@dataclass
class InputSource:
    """An opened input: a `read(n)` function, and a descriptor and size when seekable."""

    name: str
    read: Callable[[int], bytes]
    fd: int | None = None  # set for plain regular files only
    size: int | None = None
    _closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def is_regular(self) -> bool:
        """Tell whether this is an uncompressed regular file (splittable, re-readable)."""
        return self.fd is not None

    def lines(self) -> Iterator[bytes]:
        """Iterate the input as binary lines."""
        buffer = io.BufferedReader(_ReadAdapter(self.read), buffer_size=1 << 20)
        return iter(buffer)

    def close(self) -> None:
        """Release the underlying file."""
        while self._closers:
            self._closers.pop()()


class _ReadAdapter(io.RawIOBase):
    """Expose a `read(n)` function as a raw stream for io.BufferedReader."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _guarded(name: str, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
    """Turn read errors into InputError naming the file."""

    def guarded_read(size: int) -> bytes:
        try:
            return read(size)
        except OSError as exc:
            raise InputError(f"{name}: read error: {_reason(exc)}") from None
        except (lzma.LZMAError, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"{name}: corrupt compressed data: {exc}") from None

    return guarded_read


@contextlib.contextmanager
def open_input(path: str) -> Iterator[InputSource]:
    """Open a dump for reading: a path, or `-` for standard input."""
    if path == "-":
        stdin = sys.stdin.buffer
        yield _maybe_decompress(InputSource("<stdin>", _guarded("<stdin>", stdin.read)))
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{path}: {_reason(exc)}") from None
    source: InputSource | None = None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(f"{path}: Is a directory")
        regular = stat.S_ISREG(info.st_mode)
        source = InputSource(path, _guarded(path, lambda n: os.read(fd, n)))
        if regular:
            source.fd = fd
            source.size = info.st_size
        source = _maybe_decompress(source)
        yield source
    finally:
        if source is not None:
            source.close()
        os.close(fd)


def _maybe_decompress(source: InputSource) -> InputSource:
    """Wrap the source in a decompressor when it starts with xz or gzip magic."""
    head = source.read(6)
    if head.startswith(_XZ_MAGIC) or head.startswith(_GZ_MAGIC):
        raw = _Prefixed(head, source.read)
        stream: IO[bytes]
        if head.startswith(_XZ_MAGIC):
            stream = lzma.LZMAFile(raw)  # type: ignore[arg-type]  # noqa: SIM115
        else:
            stream = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[call-overload]  # noqa: SIM115
        wrapped = InputSource(source.name, _guarded(source.name, stream.read))
        wrapped._closers.append(stream.close)
        return wrapped
    if source.fd is not None:
        os.lseek(source.fd, 0, os.SEEK_SET)
        return source
    replay = _Prefixed(head, source.read)
    return InputSource(source.name, replay.read, _closers=source._closers)


class _Prefixed:
    """A reader that first returns bytes already consumed by sniffing."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size < 0:
                data, self._head = self._head + self._read_all(), b""
                return data
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._read(size - len(data))
            return data
        return self._read_all() if size < 0 else self._read(size)

    def _read_all(self) -> bytes:
        chunks = []
        while chunk := self._read(1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)

    def readable(self) -> bool:
        return True


def same_file(a: str, b: str) -> bool:
    """Tell whether two paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output_path(path: str, inputs: tuple[str, ...] = ()) -> None:
    """Refuse an output path that is an input, a directory, or in a missing folder."""
    if path == "-":
        return
    for source in inputs:
        if source == "-":
            continue
        if same_file(path, source) or os.path.abspath(path) == os.path.abspath(source):
            raise OutputError(f"{path}: refusing to overwrite the input file")
    if os.path.isdir(path):
        raise OutputError(f"{path}: Is a directory")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OutputError(f"{path}: cannot create output: No such file or directory")


@contextlib.contextmanager
def atomic_output(path: str, *, inputs: tuple[str, ...] = ()) -> Iterator[BinaryIO]:
    """Write `path` all at once: a temporary file beside it, renamed into place on success.

    `-` writes to standard output. A path that is one of `inputs` is refused, so a report
    can never replace the dump it is made from.
    """
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    check_output_path(path, inputs)
    try:
        info = os.stat(path)
    except OSError:
        info = None
    if info is not None and not stat.S_ISREG(info.st_mode):
        # A device, FIFO or socket (/dev/full, /dev/stdout, a pipe): renaming over it
        # would replace the node itself, so write to it in place.
        yield from _write_in_place(path)
        return
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output: {_reason(exc)}") from None
    out = os.fdopen(fd, "wb", buffering=1 << 20)
    done = False
    try:
        yield out
        out.flush()
        os.fsync(out.fileno())
        out.close()
        # mkstemp creates 0600; give the report the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        done = True
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:
            raise OutputError(f"{path}: write failed: {_reason(exc)}") from None
        raise
    finally:
        if not done:
            with contextlib.suppress(OSError):
                out.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _write_in_place(path: str) -> Iterator[BinaryIO]:
    """Write to an existing non-regular file directly, naming write errors."""
    try:
        out = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(f"{path}: cannot open output: {_reason(exc)}") from None
    try:
        yield out
        out.flush()
    except OSError as exc:
        raise OutputError(f"{path}: write failed: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            out.close()


_WRITE_ERRORS = {
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG, errno.EROFS, errno.EPERM, errno.EACCES,
}  # fmt: skip
