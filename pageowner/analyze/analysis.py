"""Reading dumps and page_owner_stacks files as weighted stacks, and grouping them by a key.

Every analysis command (top, diff, stats, frag, flame, grep) reads its input here: a
/sys/kernel/debug/page_owner dump through the byte scanner `pageowner.dump.scan` (lenient:
non-record blocks are skipped with a warning; fields parsed only when a command asks), or
through `DumpReader` under --strict, or a `show_stacks` file through
`pageowner.dump.stacksfile`, sniffed from the first block. Each record or stack block
becomes a `Sample`; `GROUP_KEYS` is the registry of `--by` keys, each a pair of functions
(key and label) read by `group_samples`.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import os
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar, cast

from pageowner.analyze.fields import (
    FLAGS_LAYOUT_X86_64,
    allocator_bits,
    allocator_label,
    node_of,
    parse_flags_layout,
    resolve_flags_layout,
    shape_of,
    zone_label,
    zone_of,
)
from pageowner.dump import parallel
from pageowner.dump.classify import classify_block
from pageowner.dump.dumpfile import (
    HEADER_PREFIX,
    DumpReader,
    decode,
    encode,
    format_frame,
    iter_blocks,
)
from pageowner.dump.fileio import InputSource, ReplayReader, line_body, open_input
from pageowner.dump.handles import HandleJoin, load_handle_stacks, sidecar_stacks_file
from pageowner.dump.repair import Tolerance, tolerate
from pageowner.dump.scan import AnyRecord, ScanRecord, scan_records
from pageowner.dump.stacksfile import parse_stack_block, sniff_kind
from pageowner.errors import InputError, ParseError, SpecError
from pageowner.kernel.frames import StackInfo, StackInterner
from pageowner.kernel.tables import DEFAULT_FLAGS_LAYOUT, FlagsLayout
from pageowner.model import Frame, StackCount, StacksFileKind

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "FLAGS_LAYOUT_X86_64",
    "GROUP_KEYS",
    "FlagsLayout",
    "Group",
    "GroupKey",
    "GroupTable",
    "InputKind",
    "Partial",
    "Sample",
    "SampleStream",
    "aggregate_file",
    "aggregate_range",
    "allocator_bits",
    "allocator_label",
    "sample_allocator_bits",
    "get_group_key",
    "frames_from_json",
    "frames_to_json",
    "group_samples",
    "key_from_json",
    "make_join",
    "node_of",
    "open_samples",
    "parse_flags_layout",
    "parse_page_size",
    "resolve_flags_layout",
    "shape_of",
    "zone_label",
    "zone_of",
]

DEFAULT_PAGE_SIZE = 4096

ProgressHandler = Callable[[int, "int | None"], None]
WarningHandler = Callable[[str], None]


class InputKind(enum.Enum):
    """What an analysis input holds."""

    DUMP = "page_owner dump"
    SHOW_STACKS = "show_stacks file"


@dataclass(frozen=True, slots=True)
class Sample:
    """A weighted stack: one dump record, or one block of a show_stacks file."""

    stack: StackInfo
    pages: int
    times: int
    record: AnyRecord | None = None
    entry: StackCount | None = None  # the show_stacks block, for show_stacks input
    # How to read node and zone from the flags word when the kernel printed no fields.
    layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT
    # For a run of `times` scanned records (see `_collapsible`), each one's pageblock
    # number when the partial asked for them; None otherwise.
    blocks: tuple[int, ...] | None = None

    @property
    def zone(self) -> int | None:
        """Return the record's zone, printed or derived with the sample's layout."""
        return zone_of(self.record, self.layout) if self.record is not None else None

    @property
    def node(self) -> int | None:
        """Return the record's NUMA node, printed or derived with the sample's layout."""
        return node_of(self.record, self.layout) if self.record is not None else None


@dataclass
class SampleStream:
    """An opened input: its kind and its samples, read lazily."""

    name: str
    kind: InputKind
    samples: Iterator[Sample]
    reader: DumpReader | None = None
    join: HandleJoin | None = None  # how 7.3 handle-only records got their frames
    layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT

    def handle_note(self) -> str | None:
        """Say which handle-only records stayed `handle N` groups (after reading), or None."""
        return self.join.warning() if self.join is not None else None

    def require_records(self, what: str) -> None:
        """Refuse a show_stacks input for something only a dump carries."""
        if self.kind is not InputKind.DUMP:
            raise InputError(
                f"{self.name}: a {self.kind.value} has stacks and page counts only; "
                f"{what} needs a page_owner dump"
            )


_SNIFF_LINES = 256


def _sniff(name: str, lines: Iterator[bytes]) -> tuple[InputKind, list[bytes]]:
    """Look at the first block to tell a dump from a page_owner_stacks file.

    Returns the kind and the lines read to tell it (the caller reads them again).
    """
    head: list[bytes] = []
    first: tuple[int, str] | None = None
    for line in lines:
        head.append(line)
        text = line_body(line)
        if first is None and text:
            first = (len(head), decode(text))
        elif first is not None and not text:
            break
        if len(head) >= _SNIFF_LINES:
            break
    if first is None or first[1].startswith(HEADER_PREFIX):
        return InputKind.DUMP, head
    kind = sniff_kind(b"".join(head).replace(b"\r\n", b"\n").lstrip(b"\n"))
    if kind is StacksFileKind.SHOW_STACKS:
        return InputKind.SHOW_STACKS, head
    if kind is StacksFileKind.SHOW_HANDLES:
        raise InputError(f"{name}: a show_handles file has no stacks to analyse")
    if kind is StacksFileKind.SHOW_STACKS_HANDLES:
        raise InputError(f"{name}: a show_stacks_handles file has no page counts to analyse")
    lineno, first_line = first
    raise ParseError(name, lineno, first_line, "neither a page_owner dump nor a show_stacks file")


def _counting(
    read: Callable[[int], bytes], on_progress: ProgressHandler, total: int | None
) -> Callable[[int], bytes]:
    """Wrap a read function to report the bytes read about every megabyte, and at the end."""
    done = 0
    next_report = 1 << 20

    def counting_read(size: int) -> bytes:
        nonlocal done, next_report
        data = read(size)
        done += len(data)
        if done >= next_report or not data:
            on_progress(done, total)
            next_report = done + (1 << 20)
        return data

    return counting_read


class _SkipWatch:
    """Pass warnings on, remembering the first skipped block's, to explain empty results."""

    def __init__(self, on_warning: WarningHandler | None) -> None:
        self.on_warning = on_warning
        self.first_skip: str | None = None
        self.samples = 0  # samples read, counted by the sample generators

    def __call__(self, message: str) -> None:
        if self.first_skip is None and message.endswith(_SKIPPED):
            self.first_skip = message.removesuffix(_SKIPPED)
        elif self.first_skip is None and _DROPPED in message:
            self.first_skip = message
        if self.on_warning is not None:
            self.on_warning(message)

    def check(self, samples: int) -> None:
        """Fail when blocks were skipped and nothing at all could be read."""
        if samples == 0 and self.first_skip is not None:
            raise InputError(f"{self.first_skip} (and no other block could be read)")


_SKIPPED = " (block skipped)"
_DROPPED = ": the dump ends inside a record"


class _Collapse(enum.Enum):
    """Whether a partial takes a run of records that differ in ts, pfn, block as one sample."""

    NO = "no"
    YES = "yes"  # it reads no ts, pfn or block
    BLOCKS = "blocks"  # it reads the block, which comes in `Sample.blocks`


def _record_samples(
    reader: DumpReader, interner: StackInterner, watch: _SkipWatch, *, check: bool = True,
    join: HandleJoin | None = None,
    layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT,
) -> Iterator[Sample]:  # fmt: skip
    """Turn dump records into samples (`check`: fail at the end if none could be read).

    `join` gives 7.3 handle-only records their frames (or a `handle N` stand-in).
    """
    intern = interner.intern
    join = join if join is not None else HandleJoin(reader.path)
    frames = join.frames
    count = 0
    for record in reader:
        count += 1
        yield Sample(intern(frames(record)), record.nr_pages, 1, record, layout=layout)
    watch.samples += count
    if check:
        watch.check(watch.samples)
        _warn_join(join, watch)


def _scan_samples(
    read: Callable[[int], bytes], name: str, interner: StackInterner, watch: _SkipWatch,
    *, check: bool = True, first_lineno: int = 1, collapse: _Collapse = _Collapse.NO,
    join: HandleJoin | None = None, layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT,
) -> Iterator[Sample]:  # fmt: skip
    """Turn scanned dump records into samples (`check`: fail at the end if none was read).

    With `collapse`, a sample may stand for a run of records that differ only in ts, pfn
    and block: its times is the run's length and its pages theirs (see scan_records).
    `join` gives 7.3 handle-only records their frames (else they stay `handle N`).
    """
    join = join if join is not None else HandleJoin(name)
    count = 0
    for record, stack, times, blocks in scan_records(
            read, name, interner, on_warning=watch, first_lineno=first_lineno,
            collapse=collapse is not _Collapse.NO, blocks=collapse is _Collapse.BLOCKS):
        count += times
        handle = record.handle
        if handle is not None and not record.stack:
            stack = _joined(join, handle, times, stack, interner)
        yield Sample(stack, record.nr_pages * times, times, record,
                     blocks=None if blocks is None else tuple(map(int, blocks)),
                     layout=layout)
    watch.samples += count
    if check:
        watch.check(watch.samples)
        _warn_join(join, watch)


def _joined(join: HandleJoin, handle: int, times: int, stand_in: StackInfo,
            interner: StackInterner) -> StackInfo:
    """Return the joined stack of `times` handle-only records, counting each in the join."""
    found = join.lookup(handle)
    if times > 1:
        # lookup() counted one record; a collapsed run stands for `times` of them.
        if found:
            join.resolved += times - 1
        else:
            join.unresolved[handle] += times - 1
    return interner.intern(found) if found else stand_in


def _warn_join(join: HandleJoin, watch: _SkipWatch) -> None:
    """Report the handle-only records left as `handle N`, in one warning."""
    message = join.warning()
    if message is not None:
        watch(message)


def make_join(path: str, stacks_from: str | None = None) -> HandleJoin:
    """Prepare the handle join of a dump: --stacks-from, else its capture sidecar's file."""
    stacks_path = stacks_from if stacks_from is not None else sidecar_stacks_file(path)
    stacks = load_handle_stacks(stacks_path) if stacks_path is not None else None
    return HandleJoin(path, stacks)


def _stack_samples(
    name: str, lines: Iterator[bytes], interner: StackInterner, strict: bool,
    watch: _SkipWatch,
) -> Iterator[Sample]:  # fmt: skip
    """Turn show_stacks blocks into samples (their nr_base_pages are the weights)."""
    count = 0
    for block in iter_blocks(lines):
        try:
            entry = parse_stack_block(block.lines, name, block.lineno)
        except ParseError as exc:
            if strict:
                raise
            watch(f"{exc}{_SKIPPED}")
            continue
        if entry.nr_base_pages is None:
            raise ParseError(name, block.lineno, block.lines[0], "stack block without a count")
        count += 1
        yield Sample(interner.intern(entry.stack), entry.nr_base_pages, 1, entry=entry)
    watch.check(count)


@contextlib.contextmanager
def open_samples(
    path: str,
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    interner: StackInterner | None = None,
    stacks_from: str | None = None,
    layout: FlagsLayout | None = None,
) -> Iterator[SampleStream]:
    """Open a dump or show_stacks file (`-` for stdin) and stream its samples.

    Blocks that cannot be read are skipped with a warning (unless `strict`); an input of
    which no block at all can be read raises InputError naming the first bad line.
    `stacks_from` names the frames of 7.3 handle-only records (see `dump.handles`).
    `layout` (else the capture sidecar's, else the x86_64 default) places node and zone
    in the flags word of dumps that print no node=/zone= fields (before 5.14).
    """
    interner = interner if interner is not None else StackInterner()
    watch = _SkipWatch(on_warning)
    join = make_join(path, stacks_from)
    chosen = resolve_flags_layout(path, layout)
    with open_input(path) as opened:
        source = tolerate(opened, Tolerance(strict, watch))
        read = source.read if on_progress is None else _counting(
            source.read, on_progress, source.size)
        yield _sample_stream(source, read, strict, watch, interner, join=join, layout=chosen)


def _sample_stream(
    source: InputSource, read: Callable[[int], bytes], strict: bool, watch: _SkipWatch,
    interner: StackInterner, *, check: bool = True, join: HandleJoin | None = None,
    layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT, collapse: _Collapse = _Collapse.NO,
) -> SampleStream:  # fmt: skip
    """Sniff an opened input and stream its samples through `read`."""
    buffer = source.buffered(read)
    kind, head = _sniff(source.name, iter(buffer))
    if kind is InputKind.DUMP:
        # Blocks are cut from big reads (iter_blocks_read): much faster than lines.
        stream = ReplayReader(b"".join(head), buffer.read)
        join = join if join is not None else HandleJoin(source.name)
        if not strict:
            samples = _scan_samples(stream.read, source.name, interner, watch, check=check,
                                    collapse=collapse, join=join, layout=layout)
            return SampleStream(source.name, kind, samples, None, join, layout)
        reader = DumpReader(stream, source.name, strict=strict, on_warning=watch)
        samples = _record_samples(reader, interner, watch, check=check, join=join,
                                  layout=layout)
        return SampleStream(source.name, kind, samples, reader, join, layout)
    lines = itertools.chain(head, buffer)
    return SampleStream(source.name, kind, _stack_samples(source.name, lines, interner,
                                                          strict, watch))  # fmt: skip


# -- reading on two cores ------------------------------------------------------------------


class Partial(Protocol):
    """A mergeable aggregate of samples: what each process builds over its part of a dump.

    `to_json` must keep first-seen order, and `merge_json` must add a later part's data as
    if its samples had been fed after this part's: the parallel result is then the serial one.
    """

    def feed(self, samples: Iterable[Sample]) -> None:
        """Add samples."""

    def to_json(self) -> object:
        """Encode for the parent process: JSON data (frames as text, no pickle)."""

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's `to_json` data, interning its stacks again."""


def _collapsible(partial: Partial) -> _Collapse:
    """Tell whether (and how) runs of records may come to a partial as one sample.

    A partial says so with a `collapsible` attribute, true or "blocks"; its `feed` must
    then add up a sample's `pages` and `times` rather than count samples.
    """
    wanted = getattr(partial, "collapsible", False)
    if wanted == "blocks":
        return _Collapse.BLOCKS
    return _Collapse.YES if wanted else _Collapse.NO


P = TypeVar("P", bound=Partial)


def frames_to_json(stack: StackInfo) -> list[list[object]]:
    """Encode a stack's frames field by field."""
    return [[frame.symbol, frame.offset, frame.size, frame.module, frame.address, frame.raw,
             frame.source] for frame in stack.frames]  # fmt: skip


def frames_from_json(data: list[list[Any]], interner: StackInterner) -> StackInfo:
    """Decode frames from `frames_to_json` and intern the stack."""
    return interner.intern(tuple(Frame(*fields) for fields in data))


def key_from_json(data: Any) -> Hashable:
    """Decode a group key: JSON turned its tuples (stack keys) into lists."""
    return tuple(data) if isinstance(data, list) else data


class _Limited:
    """A `read(n)` that stops at `limit` bytes until the limit is lifted (set to None)."""

    def __init__(self, read: Callable[[int], bytes], limit: int) -> None:
        self._read = read
        self.limit: int | None = limit
        self.done = 0

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes, none past the limit."""
        if self.limit is not None:
            size = min(size, self.limit - self.done)
            if size <= 0:
                return b""
        data = self._read(size)
        self.done += len(data)
        return data


class _PreadStream:
    """Read a file descriptor from an offset on, leaving its file position alone."""

    def __init__(self, fd: int, offset: int, name: str) -> None:
        self.fd = fd
        self.offset = offset
        self.name = name

    def read(self, size: int) -> bytes:
        """Return up to `size` bytes."""
        try:
            data = os.pread(self.fd, size, self.offset)
        except OSError as exc:
            raise InputError(f"{self.name}: read error: {exc.strerror or exc}") from None
        self.offset += len(data)
        return data


def _count_lines(fd: int, end: int) -> int:
    """Count the newlines in the first `end` bytes of a file."""
    count = offset = 0
    while offset < end:
        data = os.pread(fd, min(end - offset, 4 << 20), offset)
        if not data:
            break
        count += data.count(b"\n")
        offset += len(data)
    return count


def _read_later_part(
    fd: int, start: int, name: str, strict: bool, make: Callable[[], Partial],
    make_join: Callable[[], HandleJoin], layout: FlagsLayout,
) -> bytes:
    """Feed the samples from `start` to the end of a dump file into `make()` (the child).

    Returns JSON: the partial's data, the samples read, the warnings in file order (with
    the file's own line numbers) and a --strict parse error, if one stopped the reading.
    """
    part = _read_numbered(fd, start, None, name, strict, make, make_join, layout,
                          StackInterner())  # fmt: skip
    error = part.error
    payload = {"samples": part.samples, "warnings": part.warnings,
               "error": None if error is None else [error.path, error.lineno, error.line,
                                                    error.reason],
               "partial": None if error else part.partial.to_json(),
               "join": part.join.to_json()}  # fmt: skip
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


@dataclass(frozen=True)
class _Part:
    """What reading a byte range of a dump file gave."""

    partial: Partial
    join: HandleJoin
    samples: int
    warnings: list[str]  # in file order, with the file's own line numbers
    error: ParseError | None  # the --strict error that stopped the reading


def _read_numbered(
    fd: int, start: int, end: int | None, name: str, strict: bool,
    make: Callable[[], Partial], make_join: Callable[[], HandleJoin], layout: FlagsLayout,
    interner: StackInterner,
) -> _Part:
    """Read bytes `start` to `end` (None: the end) of a dump file into `make()`.

    Line numbers only show in warnings and errors, so the lines before `start` (66 MB to
    count in the middle of a 132 MB dump, ~15 % of reading its second half) are counted
    only when the range gave one, and the range is then read again with them.
    """
    part = _read_part(fd, start, end, name, strict, make(), make_join(), layout, interner, 1)
    if part.warnings or part.error is not None:
        part = _read_part(fd, start, end, name, strict, make(), make_join(), layout, interner,
                          _count_lines(fd, start) + 1)  # fmt: skip
    return part


def _read_part(
    fd: int, start: int, end: int | None, name: str, strict: bool, partial: Partial,
    join: HandleJoin, layout: FlagsLayout, interner: StackInterner, first_lineno: int,
) -> _Part:
    """Read a byte range into `partial`, numbering its first line `first_lineno`."""
    warnings: list[str] = []
    watch = _SkipWatch(warnings.append)
    stream: _PreadStream | _Limited = _PreadStream(fd, start, name)
    if end is not None:
        stream = _Limited(stream.read, end - start)
    if strict:
        reader = DumpReader(stream, name, strict=strict, on_warning=watch,
                            first_lineno=first_lineno)  # fmt: skip
        samples = _record_samples(reader, interner, watch, check=False, join=join,
                                  layout=layout)
    else:
        samples = _scan_samples(stream.read, name, interner, watch, check=False,
                                first_lineno=first_lineno, collapse=_collapsible(partial),
                                join=join, layout=layout)
    error = None
    try:
        partial.feed(samples)
    except ParseError as exc:
        error = exc
    return _Part(partial, join, watch.samples, warnings, error)


def _split_point(source: InputSource, jobs: int) -> int | None:
    """Return where to cut a regular file for two processes, or None to read it in one."""
    fd, size = source.fd, source.size
    if jobs < 2 or fd is None or size is None or size < parallel.MIN_PARALLEL_BYTES:
        return None
    if not parallel.parallel_available():
        return None
    split = parallel.find_block_boundary(fd, size // 2, size)
    return split if split is not None and split < size else None


def aggregate_file(
    path: str,
    make: Callable[[], P],
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    interner: StackInterner | None = None,
    jobs: int = 2,
    check: Callable[[SampleStream], None] | None = None,
    stacks_from: str | None = None,
    layout: FlagsLayout | None = None,
) -> tuple[SampleStream, P]:
    """Feed every sample of an input into `make()`; a big dump file is read on two cores.

    `check` sees the opened stream before any sample is read (to refuse an input kind).
    The first half of the file is read here, the second in a forked child whose partial
    aggregate, warnings and --strict error come back as JSON and are merged in file order:
    the result, the warnings and the errors are those of reading the file in one process.
    The returned stream's samples are consumed. `stacks_from` is as for `open_samples`.
    """
    interner = interner if interner is not None else StackInterner()
    watch = _SkipWatch(on_warning)
    join = make_join(path, stacks_from)
    partial = make()
    chosen = resolve_flags_layout(path, layout)
    with open_input(path) as opened:
        source = tolerate(opened, Tolerance(strict, watch))
        split = _split_point(source, jobs)
        if split is None:
            read = source.read if on_progress is None else _counting(
                source.read, on_progress, source.size)  # fmt: skip
            stream = _sample_stream(source, read, strict, watch, interner, join=join,
                                    layout=chosen, collapse=_collapsible(partial))
            if check is not None:
                check(stream)
            partial.feed(stream.samples)
            return stream, partial
        limited = _Limited(source.read, split)
        read = limited.read
        if on_progress is not None:
            # The first half stands for the whole file on the progress bar.
            scale = [source.size / split if source.size else 1.0]
            read = _counting(limited.read, lambda done, total: on_progress(
                int(done * scale[0]), total), source.size)  # fmt: skip
        stream = _sample_stream(source, read, strict, watch, interner, check=False, join=join,
                                layout=chosen, collapse=_collapsible(partial))
        if check is not None:
            check(stream)
        if stream.kind is not InputKind.DUMP:  # show_stacks files are small: one process
            limited.limit = None
            if on_progress is not None:
                scale[0] = 1.0
            partial.feed(stream.samples)
            return stream, partial
        fd = source.fd
        assert fd is not None
        child = parallel.ForkedCall.start(
            lambda: _read_later_part(fd, split, source.name, strict, make,
                                     lambda: HandleJoin(join.name, join.stacks), chosen)
        )  # fmt: skip
        try:
            partial.feed(stream.samples)
            payload = json.loads(child.result())
        except parallel.WorkerError as exc:
            if exc.died:
                raise parallel.WorkerError(f"{source.name}: {exc}", died=True) from None
            raise
        except BaseException:
            child.cancel()
            raise
    for message in payload["warnings"]:
        watch(message)
    if payload["error"] is not None:
        raise ParseError(*payload["error"])
    partial.merge_json(payload["partial"], interner)
    watch.check(watch.samples + payload["samples"])
    join.merge_json(payload["join"])
    _warn_join(join, watch)
    stream.join = join
    return stream, partial


def aggregate_range(
    path: str,
    make: Callable[[], P],
    start: int = 0,
    end: int | None = None,
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    interner: StackInterner | None = None,
    check: Callable[[SampleStream], None] | None = None,
) -> tuple[int, P]:
    """Feed the samples between bytes `start` and `end` of an input into `make()`.

    `start` and `end` are block boundaries (just after a blank line, or the file's ends).
    From 0 the input is opened as `aggregate_file` opens it (any kind, compressed too) and
    `check` sees the stream; a later range is a part of a regular dump file. Warnings and
    errors carry the file's own line numbers. Returns the samples read and the partial;
    a range where blocks were skipped and none read is not an error here (its file may
    have other ranges).
    """
    interner = interner if interner is not None else StackInterner()
    watch = _SkipWatch(on_warning)
    if start == 0:
        partial = make()
        with open_input(path) as source:
            read = source.read if end is None else _Limited(source.read, end).read
            stream = _sample_stream(source, read, strict, watch, interner, check=False)
            if check is not None:
                check(stream)
            counted = _Counted(stream.samples)
            partial.feed(counted)
            return counted.count, partial
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise InputError(f"{path}: cannot open: {exc.strerror or exc}") from None
    try:
        part = _read_numbered(fd, start, end, path, strict, make, lambda: HandleJoin(path),
                              DEFAULT_FLAGS_LAYOUT, interner)  # fmt: skip
    finally:
        os.close(fd)
    for message in part.warnings:
        watch(message)
    if part.error is not None:
        raise part.error
    return part.samples, cast(P, part.partial)  # make() made it


class _Counted:
    """Count the samples of an iterator as they pass."""

    def __init__(self, samples: Iterator[Sample]) -> None:
        self._samples = samples
        self.count = 0

    def __iter__(self) -> Iterator[Sample]:
        for sample in self._samples:
            self.count += 1
            yield sample


def sample_allocator_bits(sample: Sample) -> int:
    """Classify a sample's record, with the joined frames of a 7.3 handle-only record.

    page_owner_sort finds VMALLOC by a frame of the text; a handle-only record has none, so
    it is classified as the stack_handle record of the same page would be.
    """
    record = _rec(sample)
    frames = sample.stack.frames
    if record.handle is not None and not record.stack and frames and (
            frames[0].symbol is not None):  # fmt: skip
        if isinstance(record, ScanRecord):
            # Only the frames' text matters to the classifier, not where they stand.
            lines = "".join(format_frame(frame) + "\n" for frame in frames)
            return classify_block(record.text + encode(lines))
        return allocator_bits(replace(record, stack=frames, raw=None))
    return allocator_bits(record)


# -- the --by registry ---------------------------------------------------------------------


@dataclass(frozen=True)
class GroupKey:
    """One `--by` key: how to key a sample and how to name its group."""

    name: str
    help: str
    key: Callable[[Sample], Hashable]
    label: Callable[[Sample], str]
    needs_record: bool = True


def _rec(sample: Sample) -> AnyRecord:
    """Return a sample's record; keys that need one are refused on show_stacks input."""
    assert sample.record is not None
    return sample.record


def _text(value: object) -> str:
    """Name an optional field."""
    return "-" if value is None else str(value)


def _gfp_label(sample: Sample) -> str:
    """Name a GFP mask with the names its kernel printed."""
    record = _rec(sample)
    if record.gfp_names is None:
        return f"{record.gfp_mask:#x}"
    return f"{record.gfp_mask:#x}({record.gfp_names})"


def _migratetype(sample: Sample) -> str:
    """Name the page's migratetype (3.19 prints only whether it differs from its block's)."""
    page_mt = _rec(sample).page_mt
    return "unknown" if page_mt is None else page_mt.value


GROUP_KEYS: tuple[GroupKey, ...] = (
    GroupKey("stack", "the allocation stack (function names and modules; see --exact)",
             lambda s: s.stack.key, lambda s: s.stack.chain(3), needs_record=False),
    GroupKey("caller", "the first frame outside the page, slab and vmalloc allocators",
             lambda s: s.stack.caller_label, lambda s: s.stack.caller_label,
             needs_record=False),
    GroupKey("pid", "the allocating pid (5.11+)",
             lambda s: _rec(s).pid, lambda s: _text(_rec(s).pid)),
    GroupKey("tgid", "the allocating thread group (5.18+)",
             lambda s: _rec(s).tgid, lambda s: _text(_rec(s).tgid)),
    GroupKey("name", "the allocating task's command name (5.18+)",
             lambda s: _rec(s).comm, lambda s: _text(_rec(s).comm)),
    GroupKey("module", "the module nearest the leaf of the stack, or vmlinux",
             lambda s: s.stack.module, lambda s: s.stack.module or "vmlinux",
             needs_record=False),
    GroupKey("allocator", "CMA, SLAB, VMALLOC or OTHERS, as page_owner_sort classifies",
             sample_allocator_bits, lambda s: allocator_label(sample_allocator_bits(s))),
    GroupKey("gfp", "the GFP mask",
             lambda s: _rec(s).gfp_mask, _gfp_label),
    GroupKey("order", "the allocation order",
             lambda s: _rec(s).order, lambda s: str(_rec(s).order)),
    GroupKey("zone", "the zone, from the Flags field",
             lambda s: s.zone, lambda s: zone_label(s.zone)),
    GroupKey("node", "the NUMA node, from the Flags field",
             lambda s: s.node, lambda s: _text(s.node)),
    GroupKey("migratetype", "the page's migratetype (from its GFP mask)",
             _migratetype, _migratetype),
)  # fmt: skip

_EXACT_STACK = GroupKey(
    "stack", "the allocation stack exactly as printed",
    lambda s: s.stack.exact_key, lambda s: s.stack.chain(3), needs_record=False,
)  # fmt: skip


def get_group_key(name: str, *, exact: bool = False) -> GroupKey:
    """Look up a `--by` key; `exact` makes `stack` compare offsets too."""
    for key in GROUP_KEYS:
        if key.name == name:
            return _EXACT_STACK if exact and name == "stack" else key
    names = ", ".join(key.name for key in GROUP_KEYS)
    raise SpecError(f"unknown --by key {name!r} (choose from {names})")


# -- grouping --------------------------------------------------------------------------------


@dataclass
class Group:
    """The samples that share one key: their pages, times and a representative stack."""

    key: Hashable
    label: str
    stack: StackInfo
    pages: int = 0
    times: int = 0
    # Pages per first caller, to name the main caller of a group that is not a stack.
    callers: dict[str, int] = field(default_factory=dict)

    @property
    def main_caller(self) -> str:
        """Return the caller with most pages (the first seen among equals)."""
        if not self.callers:
            return self.stack.caller_label
        return max(self.callers.items(), key=lambda item: item[1])[0]


@dataclass
class GroupTable:
    """Groups in first-seen order, with the totals of everything grouped (a `Partial`)."""

    collapsible = True  # reads no ts, pfn or block; sums pages and times
    by: GroupKey
    groups: dict[Hashable, Group] = field(default_factory=dict)
    total_pages: int = 0
    total_times: int = 0

    def ranked(self, by_times: bool = False) -> list[Group]:
        """Return the groups by pages (or times) descending, first seen first among equals."""
        if by_times:
            return sorted(self.groups.values(), key=lambda g: (-g.times, -g.pages))
        return sorted(self.groups.values(), key=lambda g: (-g.pages, -g.times))

    def feed(self, samples: Iterable[Sample]) -> None:
        """Group samples by the table's key, summing pages and times."""
        by = self.by
        groups = self.groups
        key_of = by.key
        track_callers = by.name not in ("stack", "caller")
        total_pages = total_times = 0
        for sample in samples:
            key = key_of(sample)
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group(key, by.label(sample), sample.stack)
            group.pages += sample.pages
            group.times += sample.times
            total_pages += sample.pages
            total_times += sample.times
            if track_callers:
                caller = sample.stack.caller_label
                group.callers[caller] = group.callers.get(caller, 0) + sample.pages
        self.total_pages += total_pages
        self.total_times += total_times

    def to_json(self) -> object:
        """Encode the groups in first-seen order, each with its representative stack."""
        groups = [
            [group.key, group.label, frames_to_json(group.stack), group.pages, group.times,
             list(group.callers.items())]
            for group in self.groups.values()
        ]  # fmt: skip
        return {"pages": self.total_pages, "times": self.total_times, "groups": groups}

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's groups: new ones after ours, callers summed in first-seen order."""
        self.total_pages += data["pages"]
        self.total_times += data["times"]
        groups = self.groups
        for key_data, label, frames, pages, times, callers in data["groups"]:
            key = key_from_json(key_data)
            group = groups.get(key)
            if group is None:
                stack = frames_from_json(frames, interner)
                group = groups[key] = Group(key, label, stack)
            group.pages += pages
            group.times += times
            for caller, caller_pages in callers:
                group.callers[caller] = group.callers.get(caller, 0) + caller_pages


def group_samples(samples: Iterable[Sample], by: GroupKey) -> GroupTable:
    """Group samples by a key, summing pages and times."""
    table = GroupTable(by)
    table.feed(samples)
    return table


_SIZE_RE = re.compile(r"(?P<number>\d+)\s*(?P<unit>[KMG]?)(?:i?B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_page_size(text: str) -> int:
    """Parse a page size such as 4096, 4K, 16KiB or 64k; it must be a power of two.

    >>> parse_page_size("16KiB")
    16384
    """
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise SpecError(f"not a page size: {text!r} (try 4096 or 4K)")
    size = int(match["number"]) * _SIZE_UNITS[match["unit"].lower()]
    if size <= 0 or size & (size - 1):
        raise SpecError(f"a page size must be a power of two, not {size}")
    return size
