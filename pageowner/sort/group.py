"""Grouping: records that compare equal under --cull become one group of the report.

`Grouper` holds the groups and the counters; it takes one block at a time, selects it
(--pid, --tgid, --name, -f), cuts the ts digits where 6.7+ does, and adds it to its
group. The fast scanner of whole streams (`pageowner.sort.scan.SortEngine`) builds on it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pageowner.dump.classify import block_allocator
from pageowner.dump.fileio import iter_lines
from pageowner.errors import ParseError
from pageowner.sort.fields import (
    FREE_TS_RE,
    HEADER,
    PID_RE,
    TGID_RE,
    TS_RE,
    TS_RE_LEGACY,
    U64_MAX,
    comm_of,
    pages_of,
    pid_value,
    ts_value,
)
from pageowner.sort.options import SortOptions

__all__ = ["Group", "Grouper", "WarningHandler", "cull_tuple", "group_key"]

WarningHandler = Callable[[str], None]


@dataclass(slots=True)
class Group:
    """One line (or block) of the report: records that compare equal under --cull.

    The group's text is `head` (its first line, ts digits cut when they are) and `body`
    (the rest: the `st` key). Heads end with their only newline, so comparing
    (head, body) pairs orders groups exactly as strcmp orders the joined text.
    """

    times: int
    pages: int
    head: bytes
    body: bytes
    pid: int = -1
    tgid: int = -1
    comm: bytes = b""
    ts_nsec: int = U64_MAX
    free_ts_nsec: int = U64_MAX
    allocator: int = 0
    first: int = 0  # ordinal of the first record, to merge partial tables in file order

    @property
    def txt(self) -> bytes:
        """Return the group's text as page_owner_sort prints it."""
        return self.head + self.body

    @property
    def stacktrace(self) -> bytes:
        """Return the text after the header line, as the `st` key compares it."""
        return self.body


def cull_tuple(
    cull: frozenset[str],
    stacktrace: Callable[[], bytes],
    pid: Callable[[], int],
    tgid: Callable[[], int],
    comm: Callable[[], bytes],
    free_ts: Callable[[], int],
    allocator: Callable[[], int],
) -> tuple[object, ...]:
    """Build the cull comparator's key in its fixed priority, computing only what is used."""
    parts: list[object] = []
    if "stacktrace" in cull:
        parts.append(stacktrace())
    if "pid" in cull:
        parts.append(pid())
    if "tgid" in cull:
        parts.append(tgid())
    if "name" in cull:
        parts.append(comm())
    if "free" in cull:
        parts.append(free_ts() != 0)
    if "allocator" in cull:
        parts.append(allocator())
    return tuple(parts)


def group_key(group: Group, cull: frozenset[str]) -> object:
    """Return the key the cull comparator compares for a group (its first record's)."""
    if not cull:
        return (group.head, group.body)
    return cull_tuple(
        cull,
        lambda: group.body,
        lambda: group.pid,
        lambda: group.tgid,
        lambda: group.comm,
        lambda: group.free_ts_nsec,
        lambda: group.allocator,
    )


class Grouper:
    """Count page_owner blocks into groups; memory grows with the groups, not the records.

    Blocks that are not page_owner records are skipped with a warning, or raise
    `ParseError` when `strict`.
    """

    def __init__(
        self,
        options: SortOptions | None = None,
        *,
        path: str = "<dump>",
        strict: bool = False,
        on_warning: WarningHandler | None = None,
    ) -> None:
        self.options = options = options or SortOptions()
        self.path = path
        self.strict = strict
        self.on_warning = on_warning
        self.groups: dict[object, Group] = {}
        self.records = 0  # page_owner records read
        self.selected = 0  # records that passed --pid/--tgid/--name/-f
        self.skipped = 0  # blocks that were not records
        self.bytes_read = 0
        self.next_lineno = 1  # line number after the last line read
        # Warnings as (line number, message); the callback gets them formatted.
        self.warnings: list[tuple[int, str]] = []
        # The last line starting with "PFN" seen so far: page_owner_sort classifies CMA and
        # SLAB from it, and a block without one inherits the previous block's.
        self.pfn_line = b""
        # Group bodies are shared: a dump has few distinct stacks and many records.
        self._bodies: dict[bytes, bytes] = {}
        keys = {key.name for key in options.sort_keys}
        self._need = frozenset(
            name
            for name, wanted in (
                ("pid", "pid" in keys or "pid" in options.cull or options.pids is not None),
                ("tgid", "tgid" in keys or "tgid" in options.cull or options.tgids is not None),
                ("name", "name" in keys or "name" in options.cull or options.names is not None),
                ("alloc_ts", "alloc_ts" in keys),
                ("free_ts", options.legacy),
                ("allocator", "allocator" in keys or not options.cull
                 or "allocator" in options.cull),
            )
            if wanted
        )
        self._ts_re = TS_RE_LEGACY if options.legacy else TS_RE

    # -- one block at a time ------------------------------------------------------------

    def add_block(self, buf: bytes, pfn_line: bytes, lineno: int = 0) -> None:
        """Count one block (its text without PFN lines, every line newline-ended)."""
        if not buf.startswith(HEADER):
            self._reject(buf, lineno)
            return
        self.records += 1
        # (5.18-6.6 also merged a block into the one stored just before it when the texts
        # were identical; identical texts share every field, so culling gives the same.)
        if not self._is_selected(buf):
            return
        self.selected += 1
        txt = self._text(buf)
        newline = txt.find(b"\n") + 1
        head, body = txt[:newline], txt[newline:]
        self._count(buf, head, self._bodies.setdefault(body, body), pfn_line, pages_of(buf))

    def _count(self, buf: bytes, head: bytes, body: bytes, pfn_line: bytes, pages: int) -> Group:
        """Add one selected record to its group, making the group if it is new."""
        allocator = block_allocator(buf, pfn_line) if "allocator" in self._need else 0
        key = self._record_key(buf, head, body, allocator)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = self._new_group(buf, head, body, allocator)
        group.times += 1
        group.pages += pages
        return group

    def _reject(self, buf: bytes, lineno: int) -> None:
        """Skip (or, when strict, refuse) a block that is not a page_owner record."""
        first = buf.split(b"\n", 1)[0].decode("utf-8", "replace")
        if self.strict:
            raise ParseError(self.path, lineno, first, "not a page_owner record")
        self.skipped += 1
        self._warn(lineno, f"not a page_owner record, block skipped: {first[:60]!r}")

    _MAX_WARNINGS = 1000

    def _warn(self, lineno: int, message: str) -> None:
        """Record a warning and pass it, formatted, to the caller if it listens."""
        if len(self.warnings) < self._MAX_WARNINGS:
            self.warnings.append((lineno, message))
        if self.on_warning is not None:
            self.on_warning(f"{self.path}:{lineno}: {message}")

    def _is_selected(self, buf: bytes) -> bool:
        """Apply -f, --pid, --tgid and --name (is_need)."""
        options = self.options
        if options.filter_released:
            free_ts = ts_value(FREE_TS_RE, buf)
            if free_ts != 0 and ts_value(TS_RE_LEGACY, buf) < free_ts:
                return False
        if options.pids is not None and pid_value(PID_RE, buf) not in options.pids:
            return False
        if options.tgids is not None and pid_value(TGID_RE, buf) not in options.tgids:
            return False
        return options.names is None or comm_of(buf) in options.names

    def _text(self, buf: bytes) -> bytes:
        """Return the text a group is known by: the ts digits cut out since 6.7."""
        if not self.options.strip_ts:
            return buf
        match = TS_RE.search(buf)
        if match is None or match.start(1) == match.end(1):
            return buf
        return buf[: match.start(1)] + buf[match.end(1) :]

    def _record_key(self, buf: bytes, head: bytes, body: bytes, allocator: int) -> object:
        """Return what the cull comparator compares for one record."""
        cull = self.options.cull
        if not cull:
            return (head, body)
        return cull_tuple(
            cull,
            lambda: body,
            lambda: pid_value(PID_RE, buf),
            lambda: pid_value(TGID_RE, buf),
            lambda: comm_of(buf),
            lambda: ts_value(FREE_TS_RE, buf),
            lambda: allocator,
        )

    def group_key(self, group: Group) -> object:
        """Return the same key as `_record_key` gave the group's first record."""
        return group_key(group, self.options.cull)

    def _new_group(self, buf: bytes, head: bytes, body: bytes, allocator: int) -> Group:
        """Make an empty group from its first record, whose fields the report shows."""
        need = self._need
        return Group(
            times=0,
            pages=0,
            head=head,
            body=body,
            pid=pid_value(PID_RE, buf) if "pid" in need else -1,
            tgid=pid_value(TGID_RE, buf) if "tgid" in need else -1,
            comm=comm_of(buf) if "name" in need else b"",
            ts_nsec=ts_value(self._ts_re, buf) if "alloc_ts" in need else U64_MAX,
            free_ts_nsec=ts_value(FREE_TS_RE, buf) if "free_ts" in need else U64_MAX,
            allocator=allocator,
            first=self.records - 1,
        )

    def _slow_block(self, block: bytes, lineno: int) -> None:
        """Handle one block exactly as page_owner_sort does: set PFN lines aside, count it."""
        kept = []
        for line in iter_lines(block):
            if line.startswith(b"PFN"):
                self.pfn_line = line
            else:
                kept.append(line)
        self.add_block(b"".join(kept), self.pfn_line, lineno)

    # -- parts read by another process --------------------------------------------------

    def serialize(self) -> bytes:
        """Encode the counts, groups and warnings for a parent process (see `absorb`)."""
        parts = [
            b"%d %d %d %d %d %d %d\n"
            % (
                self.records, self.selected, self.skipped, self.bytes_read,
                self.next_lineno, len(self.groups), len(self.warnings),
            )
        ]  # fmt: skip
        for group in self.groups.values():
            parts.append(
                b"%d %d %d %d %d %d %d %d %d %d %d\n"
                % (
                    group.times, group.pages, group.pid, group.tgid, group.ts_nsec,
                    group.free_ts_nsec, group.allocator, group.first,
                    len(group.comm), len(group.head), len(group.body),
                )
            )  # fmt: skip
            parts += (group.comm, group.head, group.body)
        for lineno, message in self.warnings:
            encoded = message.encode("utf-8", "replace")
            parts.append(b"%d %d\n" % (lineno, len(encoded)))
            parts.append(encoded)
        return b"".join(parts)

    def absorb(self, payload: bytes, line_offset: int) -> None:
        """Merge a `serialize()` payload of the part of the file after ours."""
        later = Grouper(self.options, path=self.path)
        header, _, rest = payload.partition(b"\n")
        counts = [int(word) for word in header.split()]
        (later.records, later.selected, later.skipped, later.bytes_read,
         later.next_lineno, ngroups, nwarnings) = counts  # fmt: skip
        bodies = self._bodies
        pos = 0
        for _ in range(ngroups):
            newline = rest.index(b"\n", pos)
            values = [int(word) for word in rest[pos:newline].split()]
            comm_end = newline + 1 + values[8]
            head_end = comm_end + values[9]
            body_end = head_end + values[10]
            body = rest[head_end:body_end]
            pos = body_end
            group = Group(
                times=values[0], pages=values[1], head=rest[comm_end:head_end],
                body=bodies.setdefault(body, body), pid=values[2], tgid=values[3],
                comm=rest[newline + 1 : comm_end], ts_nsec=values[4], free_ts_nsec=values[5],
                allocator=values[6], first=values[7],
            )  # fmt: skip
            later.groups[later.group_key(group)] = group
        for _ in range(nwarnings):
            newline = rest.index(b"\n", pos)
            lineno, size = (int(word) for word in rest[pos:newline].split())
            message = rest[newline + 1 : newline + 1 + size].decode("utf-8", "replace")
            pos = newline + 1 + size
            self._warn(lineno + line_offset, message)
        self.merge(later)
        self.next_lineno = later.next_lineno + line_offset

    def merge(self, later: Grouper) -> None:
        """Fold in the groups of an engine that read the part of the file after ours."""
        offset = self.records
        for group in later.groups.values():
            key = self.group_key(group)
            mine = self.groups.get(key)
            if mine is None:
                group.first += offset
                self.groups[key] = group
            else:
                mine.times += group.times
                mine.pages += group.pages
        self.records += later.records
        self.selected += later.selected
        self.skipped += later.skipped
        self.bytes_read += later.bytes_read
