"""Use the second core on big dump files: split at block boundaries, fork, merge.

A dump's records are independent, so a file can be cut at any blank line and each half
counted on its own core. The child sends its result back through a pipe as plain bytes in a
format its caller defines (no pickle: nothing a file holds is ever turned into code).
"""

from __future__ import annotations

import contextlib
import ctypes
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
    """A forked worker failed: its own error's message, or how it died (`died`)."""

    def __init__(self, message: str, *, died: bool = False) -> None:
        super().__init__(message)
        self.died = died


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this child when its parent dies (Linux; elsewhere nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h


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
    done: bool = False  # reaped: cancel() must not touch a pid or fd that is no longer ours

    @classmethod
    def start(cls, work: Callable[[], bytes]) -> ForkedCall:
        """Fork and run `work` in the child; its return value travels back as bytes."""
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: never return into the caller's stack
            status = 0
            try:
                os.close(read_fd)
                _die_with_parent(parent)
                # Ctrl-C stops the child with its group, unless the user made us ignore it.
                if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                    signal.signal(signal.SIGINT, signal.SIG_DFL)
                payload = b"ok\n" + work()
            except PageOwnerError as exc:  # the user sees it as one process would say it
                payload = b"error\n" + str(exc).encode("utf-8", "replace")
                status = 1
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
        wait_status = 0
        try:
            while True:
                chunk = os.read(self.read_fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(self.read_fd)
            wait_status = os.waitpid(self.pid, 0)[1]
            self.done = True
        payload = b"".join(chunks)
        status, _, body = payload.partition(b"\n")
        if status == b"ok":
            return body
        if status == b"error":
            raise WorkerError(body.decode("utf-8", "replace"))
        if status == b"fail":
            raise WorkerError(f"parallel worker failed: {body.decode('utf-8', 'replace')}")
        raise WorkerError(_death(wait_status), died=True)

    def cancel(self) -> None:
        """Stop the child and reap it (nothing to do once `result` has)."""
        if self.done:
            return
        self.done = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.close(self.read_fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _death(wait_status: int) -> str:
    """Say how a worker that sent no result ended, and what the user can do.

    >>> _death(9)
    'the second process died (killed by SIGKILL: out of memory?); run again with -j 1'
    """
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        hint = ": out of memory?" if number == signal.SIGKILL else ""
        how = f"killed by {name}{hint}"
    else:
        how = f"exit status {os.waitstatus_to_exitcode(wait_status)}"
    return f"the second process died ({how}); run again with -j 1"
