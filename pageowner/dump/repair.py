"""Tolerance: rewrite page_owner text a person pasted, logged or sorted into a canonical dump.

`tolerate` sniffs an opened input (its first and, for a regular file, its last 32 KiB). A
clean dump or show_stacks file is handed back untouched, so both readers keep their full
speed and their byte-exact behaviour. Anything else (damage from pasting, mail or a log,
headers of odd shapes, page_owner_sort reports, `__dump_page_owner()` output in a kernel
log, show_* text with elisions) is streamed through `Normaliser`, which writes canonical
`/sys/kernel/debug/page_owner` text (or show_stacks text) that every reader reads unchanged.
Each kind of repair is reported once, with the input line of its first occurrence and a
count; with `strict` the first repair is refused instead. The rules are in docs/reader.md.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pageowner.dump.dumpfile import (
    _HEADER_RE,
    _PFN_LETTERS_RE,
    _PFN_RE,
    decode,
)
from pageowner.dump.fileio import InputSource, ReplayReader, iter_lines
from pageowner.dump.normalise import (
    DIFF_HINT_RE,
    POINTER_RE,
    QP_HINT_RE,
    Normaliser,
    Repeat,
    normalise_text,
)
from pageowner.errors import InputError

__all__ = [
    "Normaliser",
    "Tolerance",
    "normalise_text",
    "reading_free_stacks",
    "set_free_stacks",
    "tolerate",
]

WarningHandler = Callable[[str], None]

# How much of an input's start (and a regular file's end) the sniff reads: pasting damage
# is the same all through a text, and a clean dump must not pay for more.
SNIFF_BYTES = 32 << 10

_FREE_STACKS: contextvars.ContextVar[bool] = contextvars.ContextVar("free_stacks", default=False)


def set_free_stacks(free: bool) -> None:
    """Read `__dump_page_owner()` records with their free stack from now on (`--free`)."""
    _FREE_STACKS.set(free)


@contextlib.contextmanager
def reading_free_stacks(free: bool) -> Iterator[None]:
    """Read `__dump_page_owner()` records with their free stack (the CLI's `--free`)."""
    token = _FREE_STACKS.set(free)
    try:
        yield
    finally:
        _FREE_STACKS.reset(token)


@dataclass(frozen=True)
class Tolerance:
    """How an input is tolerated: refuse repairs (`strict`), and where warnings go."""

    strict: bool = False
    on_warning: WarningHandler | None = None


# -- the hook ------------------------------------------------------------------------------


# A line a kernel may print (kernel.md A.2-A.5, D): anything else sends the sniff down
# the slow path, which runs the normaliser itself.
_USUAL_LINE = (
    rb"(?:|Page allocated via order \d.*|PFN .*|Page has been migrated, .*|Slab cache page"
    rb"|Charged .*|(?:handle|nr_base_pages|stack_count): -?\d+"
    rb"| (?:\[<[0-9a-f]+>\] )?[A-Za-z_$][\w.$]*\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[^\[\]\s]+\])?"
    rb"(?: \([^()\n]*\))?)\r?$"
)
_UNUSUAL_RE = re.compile(rb"^(?!" + _USUAL_LINE + rb")", re.MULTILINE)
# A header right below a non-empty line, or a line right below a show_* count (records
# that lost the blank line between them), or a show_handles block.
_RUN_ON_RE = re.compile(
    rb"[^\r\n]\r?\nPage allocated via order |(?:nr_base_pages|stack_count): -?\d+\r?\n[^\r\n]"
    # and show_handles, whose blocks are read with their handle as their stack
    rb"|(?:^|\n)handle: -?\d+\r?\nnr_base_pages: "
)
_HEADER_LINE_RE = re.compile(rb"^Page allocated via order .*?(?=\r?$)", re.MULTILINE)
_PFN_LINE_RE = re.compile(rb"^PFN .*?(?=\r?$)", re.MULTILINE)


def _looks_canonical(head: bytes) -> bool:
    """Tell quickly whether every line is one a kernel prints (no repair can apply)."""
    if _UNUSUAL_RE.search(head) or QP_HINT_RE.search(head) or _RUN_ON_RE.search(head):
        return False
    for match in _HEADER_LINE_RE.finditer(head):
        header = _HEADER_RE.fullmatch(decode(match[0]))
        if header is None or (header["names"] and POINTER_RE.fullmatch(header["names"])):
            return False
    # The shape only: the typed reader's own checks (migratetype names) are not repairs.
    return all(_PFN_RE.fullmatch(line) or _PFN_LETTERS_RE.fullmatch(line)
               for line in map(decode, _PFN_LINE_RE.findall(head)))  # fmt: skip


def _sniff(head: bytes, name: str) -> tuple[bool, bool]:
    """Tell whether a piece of text reads as it is, and whether any page_owner data is in it.

    Text with no page_owner data at all is left as it is too, so that the readers name
    its first bad line (and, for a big file, keep reading it on two cores).
    """
    cut = head.rfind(b"\n")
    head = head[: cut + 1] if cut >= 0 else head
    if _looks_canonical(head):
        return True, bool(_DATA_RE.search(head))
    normaliser = Normaliser(name, qp=bool(QP_HINT_RE.search(head)),
                            diff=bool(DIFF_HINT_RE.search(head)))
    for line in iter_lines(head):
        normaliser.feed(line)
    normaliser.finish()
    return not normaliser.repaired() and not normaliser.qp, normaliser.records > 0


_DATA_RE = re.compile(rb"^(?:Page allocated via order \d|nr_base_pages: |stack_count: )", re.M)
# What marks page_owner data in a text that does not start with it (a long kernel log, a
# mail): __dump_page_owner() output, a report group, a header anywhere in a line.
_MARKER_RE = re.compile(rb"page (?:last )?allocated via order \d|(?:^|\n)\d+ times[,:]"
                        rb"|[^\r\n]Page allocated via order \d")  # fmt: skip


def _has_marker(fd: int, start: int, end: int) -> bool:
    """Tell whether page_owner data starts anywhere in a file's bytes from start to end."""
    overlap = 64
    while start < end:
        chunk = os.pread(fd, min(1 << 20, end - start) + overlap, start)
        if _MARKER_RE.search(chunk):
            return True
        if len(chunk) <= overlap:
            return False
        start += len(chunk) - overlap
    return False


def tolerate(source: InputSource, tolerance: Tolerance) -> InputSource:
    """Return `source` itself when it reads as it is, else a source of repaired text.

    Raises InputError when the input is empty; a repaired input from which nothing could
    be read raises InputError naming the file when it is read to its end.
    """
    pieces = []
    size = 0
    while size < SNIFF_BYTES and (piece := source.read(SNIFF_BYTES - size)):
        pieces.append(piece)
        size += len(piece)
    head = b"".join(pieces)
    if not head:
        raise InputError(f"{source.name}: empty input: no page_owner data")
    clean, found = _sniff(head, source.name)
    regular = source.fd is not None and source.size is not None
    if clean and regular and source.size is not None and source.size > 2 * SNIFF_BYTES:
        assert source.fd is not None
        tail = os.pread(source.fd, SNIFF_BYTES, source.size - SNIFF_BYTES)
        start = tail.find(b"\n\n")
        if start >= 0:
            clean, found_late = _sniff(tail[start + 2 :], source.name)
            found = found or found_late
    if clean and not found and regular and source.fd is not None and source.size is not None:
        # Nothing at either end: a long log or mail may still hold page_owner data inside.
        clean = not _has_marker(source.fd, len(head), source.size)
    if clean:
        if source.fd is not None:
            os.lseek(source.fd, 0, os.SEEK_SET)
            return source
        replay = ReplayReader(head, source.read)
        return InputSource(source.name, replay.read, _closers=source._closers)
    normaliser = Normaliser(source.name, strict=tolerance.strict, free=_FREE_STACKS.get(),
                            qp=bool(QP_HINT_RE.search(head)),
                            diff=bool(DIFF_HINT_RE.search(head)))
    reader = _RepairedReader(ReplayReader(head, source.read).read, normaliser, tolerance)
    return InputSource(source.name, reader.read, _closers=source._closers)


class _RepairedReader:
    """A `read(n)` function over the normalised text of another one."""

    def __init__(self, read: Callable[[int], bytes], normaliser: Normaliser,
                 tolerance: Tolerance) -> None:  # fmt: skip
        self._read = read
        self._normaliser = normaliser
        self._tolerance = tolerance
        self._carry = b""
        self._out = bytearray()
        self._pending: collections.deque[bytes | Repeat] = collections.deque()
        self._done = False

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes of repaired text; b"" at the end only."""
        out, pending = self._out, self._pending
        while len(out) < size:
            if pending:
                piece = pending[0]
                if isinstance(piece, Repeat):
                    # Only as many copies as this read needs: memory stays one read's worth.
                    copies = min(piece.count, (size - len(out)) // len(piece.block) + 1)
                    out += piece.block * copies
                    if copies == piece.count:
                        pending.popleft()
                    else:
                        pending[0] = Repeat(piece.block, piece.count - copies)
                else:
                    out += piece
                    pending.popleft()
                continue
            if self._done:
                break
            self._fill()
        data = bytes(out[:size])
        del out[:size]
        return data

    def _fill(self) -> None:
        """Read and normalise the next chunk of input."""
        chunk = self._read(1 << 20)
        feed = self._normaliser.feed
        if not chunk:
            self._done = True
            if self._carry:
                self._pending.extend(feed(self._carry))
            self._pending.extend(self._normaliser.finish())
            self._end()
            return
        lines = (self._carry + chunk).split(b"\n")
        self._carry = lines.pop()
        for line in lines:
            self._pending.extend(feed(line + b"\n"))

    def _end(self) -> None:
        """Report the repairs; fail when nothing at all could be read."""
        normaliser = self._normaliser
        if self._tolerance.on_warning is not None:
            for message in normaliser.warnings():
                self._tolerance.on_warning(message)
        if normaliser.records == 0:
            raise InputError(f"{normaliser.path}: no page_owner data could be read from it "
                             f"(neither a dump, a report, a kernel log nor a show_stacks file)")
