"""Use the second core on big dump files: split at block boundaries, fork, merge.

A dump's records are independent, so a file can be cut at any blank line and each half
counted on its own core. The child sends its result back through a pipe as plain bytes in a
format its caller defines (no pickle: nothing a file holds is ever turned into code).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass

from pageowner.errors import PageOwnerError

__all__ = [
    "MIN_PARALLEL_BYTES",
    "ForkedCall",
    "WorkerError",
    "find_block_boundary",
    "last_line_starting_with",
    "parallel_available",
]

# Below this size a second process costs more than it saves.
MIN_PARALLEL_BYTES = 16 << 20
_WINDOW = 1 << 20


class WorkerError(PageOwnerError):
    """A forked worker failed without a structured error of its own."""


def parallel_available() -> bool:
    """Tell whether this platform can fork and has more than one CPU to use."""
    if not hasattr(os, "fork"):
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return cpus > 1


def find_block_boundary(fd: int, offset: int, size: int) -> int | None:
    """Return the offset just after the first blank line at or after `offset`, or None."""
    carry = b""
    position = offset
    while position < size:
        window = os.pread(fd, _WINDOW, position)
        if not window:
            break
        data = carry + window
        found = data.find(b"\n\n")
        if found >= 0:
            return position - len(carry) + found + 2
        carry = data[-1:]
        position += len(window)
    return None


def last_line_starting_with(fd: int, prefix: bytes, before: int) -> bytes:
    """Return the last line (without newline) starting with `prefix` that ends before `before`."""
    end = before
    carry = b""
    while end > 0:
        start = max(0, end - _WINDOW)
        data = os.pread(fd, end - start, start) + carry
        at = data.rfind(b"\n" + prefix)
        while at >= 0:
            line_end = data.find(b"\n", at + 1)
            if line_end >= 0:
                return data[at + 1 : line_end]
            at = data.rfind(b"\n" + prefix, 0, at)
        if start == 0 and data.startswith(prefix):
            line_end = data.find(b"\n")
            if line_end >= 0:
                return data[:line_end]
        # Keep the partial first line so a match across windows is still seen whole.
        first_newline = data.find(b"\n")
        carry = data[: first_newline + 1] if first_newline >= 0 else data
        end = start
    return b""


@dataclass
class ForkedCall:
    """A function running in a forked child; `result()` waits for its bytes."""

    pid: int
    read_fd: int

    @classmethod
    def start(cls, work: Callable[[], bytes]) -> ForkedCall:
        """Fork and run `work` in the child; its return value travels back as bytes."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never return into the caller's stack
            status = 0
            try:
                os.close(read_fd)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                payload = b"ok\n" + work()
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                payload = b"fail\n" + f"{type(exc).__name__}: {exc}".encode(
                    "utf-8", "replace"
                )
                status = 1
            try:
                view = memoryview(payload)
                while view:
                    written = os.write(write_fd, view)
                    view = view[written:]
            finally:
                os._exit(status)
        os.close(write_fd)
        return cls(pid, read_fd)

    def result(self) -> bytes:
        """Wait for the child and return what `work` returned, or raise WorkerError."""
        chunks = []
        try:
            while True:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.read_fd)
            os.waitpid(self.pid, 0)
        payload = b"".join(chunks)
        status, _, body = payload.partition(b"\n")
        if status != b"ok":
            message = body.decode("utf-8", "replace") or "the worker process died"
            raise WorkerError(f"parallel worker failed: {message}")
        return body

    def cancel(self) -> None:
        """Stop the child and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self.read_fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
