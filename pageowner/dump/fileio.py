"""Opening inputs and writing outputs safely.

Inputs: a path or `-` for stdin; regular files expose their descriptor and size (so big
files can be split across cores), pipes and FIFOs stream, and `.xz`/`.gz` files are
decompressed on the fly (recognised by their magic bytes). Outputs: written to a temporary
file beside the target and renamed over it only when complete, so a failure, a full disk
or a Ctrl-C never leaves a half-written file, and an output that is the input is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
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

__all__ = [
    "CrLfReader",
    "InputSource",
    "ReplayReader",
    "atomic_output",
    "check_output_path",
    "iter_lines",
    "line_body",
    "open_input",
    "same_file",
]

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
        return iter(self.buffered())

    def buffered(self, read: Callable[[int], bytes] | None = None) -> io.BufferedReader:
        """Return a buffered reader over the input, or over `read` (a wrapper of its read)."""
        return io.BufferedReader(_ReadAdapter(read or self.read), buffer_size=1 << 20)

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


# Line ends, the same for every reader (README "Robustness"): a line ends at LF; a CR right
# before that LF belongs to the line end (CR-LF files read as LF); any other CR, a lone CR,
# is an ordinary byte of the line. The kernel never prints a CR, and page_owner_sort (fgets)
# splits on LF only, so a lone CR is data there too; bytes.splitlines() would split on it.


def line_body(raw: bytes) -> bytes:
    """Return a line without its line end (LF or CR-LF); a lone CR stays.

    >>> line_body(b"a\\r\\n"), line_body(b"a\\r"), line_body(b"a\\r\\r\\n")
    (b'a', b'a\\r', b'a\\r')
    """
    if raw.endswith(b"\n"):
        return raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
    return raw


def iter_lines(data: bytes) -> Iterator[bytes]:
    """Split bytes into lines that keep their LF; unlike splitlines, a lone CR splits nothing.

    >>> list(iter_lines(b"a\\rb\\nc"))
    [b'a\\rb\\n', b'c']
    """
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            if start < len(data):
                yield data[start:]
            return
        yield data[start : end + 1]
        start = end + 1


class ReplayReader:
    """A `read(n)` stream that returns bytes already read (by sniffing) before the rest."""

    def __init__(self, head: bytes, read: Callable[[int], bytes]) -> None:
        self._head = head
        self._read = read

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes."""
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
            return data
        return self._read(size)


class CrLfReader:
    """Wrap a `read(n)` function so that CR-LF comes out as LF, lone CRs unchanged.

    A CR at the end of a chunk is held back until the next one shows whether an LF
    follows, so the answer does not depend on where chunks happen to split.
    """

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._carry = b""

    def read(self, size: int) -> bytes:
        """Return up to about `size` bytes, CR-LF turned to LF; b"" at the end only."""
        while True:
            chunk = self._read(size)
            if not chunk:
                carry, self._carry = self._carry, b""
                return carry
            if self._carry:
                chunk = self._carry + chunk
                self._carry = b""
            # `b"\r" in` is a memchr; most dumps have no CR at all.
            if b"\r" in chunk:
                if chunk.endswith(b"\r"):
                    self._carry = b"\r"
                    chunk = chunk[:-1]
                chunk = chunk.replace(b"\r\n", b"\n")
            if chunk:
                return chunk


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
    can never replace the dump it is made from. Where the file system allows it the
    temporary file has no name until it is complete (O_TMPFILE), so not even a SIGKILL
    leaves a stray file behind.
    """
    if path == "-":
        yield from _write_stdout()
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
        fd, tmp = _open_temporary(directory, path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot create output: {_reason(exc)}") from None
    out = os.fdopen(fd, "wb", buffering=1 << 20)
    done = False
    try:
        yield out
        out.flush()
        os.fsync(out.fileno())
        # The temporary file is 0600; give the report the permissions open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(out.fileno(), 0o666 & ~umask)
        if tmp is None:
            tmp = _link_anonymous(out.fileno(), directory, path)
        out.close()
        if tmp != path:
            os.replace(tmp, path)
        done = True
        _fsync_directory(directory)
    except OSError as exc:
        if exc.errno in _WRITE_ERRORS:
            raise OutputError(f"{path}: write failed: {_reason(exc)}") from None
        raise
    finally:
        if not done:
            with contextlib.suppress(OSError):
                out.close()
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)


def _open_temporary(directory: str, path: str) -> tuple[int, str | None]:
    """Open a file to write the output into: anonymous (O_TMPFILE) or a named temporary.

    Returns the descriptor and the temporary's name, None while it is anonymous.
    """
    anonymous = getattr(os, "O_TMPFILE", 0)
    if anonymous:
        try:
            # Read-write, so that it can still be copied if it cannot be given a name.
            return os.open(directory, anonymous | os.O_RDWR | os.O_CLOEXEC, 0o600), None
        except OSError as exc:
            # EOPNOTSUPP/EISDIR/EINVAL: the file system (or kernel) has no O_TMPFILE.
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
                raise
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)  # fmt: skip
    return fd, tmp


def _temporary_name(directory: str, path: str) -> str:
    """Return a fresh name for a temporary file beside `path`."""
    return os.path.join(
        directory, f".{os.path.basename(path)}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    )


def _link_anonymous(fd: int, directory: str, path: str) -> str:
    """Give a complete O_TMPFILE file a name; return it (`path` itself when that is free).

    Replacing an existing file needs a name to rename from, which exists for a moment
    only. Where no link can be made the data is copied to a named temporary file.
    """
    try:
        if _link_fd(fd, path):
            return path
    except FileExistsError:
        pass
    for _ in range(100):
        name = _temporary_name(directory, path)
        try:
            if _link_fd(fd, name):
                return name
            break
        except FileExistsError:
            continue
    return _copy_to_temporary(fd, directory, path)


def _link_fd(fd: int, name: str) -> bool:
    """Link an open file at `name`; False if this system allows neither way of doing it.

    Raises FileExistsError when `name` exists. linkat() through /proc/self/fd works for
    anyone where /proc is mounted; AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (root), and
    is what works when the /proc link is refused (EXDEV on some sandboxed kernels).
    """
    try:
        os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        return True
    except FileExistsError:
        raise
    except OSError:
        pass
    linkat = _libc_linkat()
    if linkat is None:
        return False
    if linkat(fd, b"", _AT_FDCWD, os.fsencode(name), _AT_EMPTY_PATH) == 0:
        return True
    if ctypes.get_errno() == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), name)
    return False


_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000


@functools.cache
def _libc_linkat() -> Callable[[int, bytes, int, bytes, int], int] | None:
    """Return libc's linkat(), or None where there is no such function."""
    try:
        function = ctypes.CDLL(None, use_errno=True).linkat
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                         ctypes.c_int)  # fmt: skip
    function.restype = ctypes.c_int
    return function


def _copy_to_temporary(fd: int, directory: str, path: str) -> str:
    """Copy an anonymous file to a named temporary beside `path`; return its name."""
    out_fd, name = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                    dir=directory)  # fmt: skip
    try:
        offset = 0
        while chunk := os.pread(fd, 1 << 20, offset):
            view = memoryview(chunk)
            while view:
                view = view[os.write(out_fd, view) :]
            offset += len(chunk)
        os.fchmod(out_fd, os.fstat(fd).st_mode & 0o777)
        os.fsync(out_fd)
    except BaseException:
        os.close(out_fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    os.close(out_fd)
    return name


def _fsync_directory(directory: str) -> None:
    """Make a rename durable; some file systems cannot sync a directory, which is fine."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _write_stdout() -> Iterator[BinaryIO]:
    """Write to standard output, naming write errors (a closed pipe is left to the caller)."""
    out = sys.stdout.buffer
    try:
        yield out
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"<stdout>: write failed: {_reason(exc)}") from None


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
