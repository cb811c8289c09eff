"""The page_owner_sort engine: select, cull (group) and sort dump blocks, byte for byte.

This reproduces `tools/mm/page_owner_sort` of Linux 6.12 (and, for the options 6.7 removed,
`tools/vm/page_owner_sort` of 6.1) from their observable behaviour, written down in
../shared/reference/kernel.md section C and checked against the tools' outputs in fixtures/.
It works on the raw bytes of each block, extracting fields with the same regular expressions
the C tool uses, so that odd inputs group and sort as they do there.

Where the C tool has a bug we do what its documentation promises; docs/compat.md lists each
deviation. Unlike the C tool, the engine streams: memory grows with the number of groups,
not with the number of records.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pageowner.dump.fileio import (
    CrLfReader,
    atomic_output,
    check_output_path,
    iter_lines,
    open_input,
)
from pageowner.dump.parallel import (
    MIN_PARALLEL_BYTES,
    ForkedCall,
    WorkerError,
    find_block_boundary,
    last_line_starting_with,
    parallel_available,
)
from pageowner.dump.repair import Tolerance, tolerate
from pageowner.errors import InputError, ParseError, SpecError

__all__ = [
    "ALLOCATOR_LABELS",
    "CULL_KEYS",
    "Group",
    "SORT_KEYS",
    "SortEngine",
    "SortKey",
    "SHORT_SORT_FLAGS",
    "SortOptions",
    "build_options",
    "classify_block",
    "count_dump_file",
    "sort_dump",
    "format_group",
    "parse_cull_spec",
    "parse_int_list",
    "parse_name_list",
    "parse_sort_spec",
    "render_groups",
]

# Field regexes of page_owner_sort (POSIX ERE, REG_NEWLINE): the first match in the block.
_ORDER_RE = re.compile(rb"order\s*([0-9]*),")
_PID_RE = re.compile(rb"pid\s*([0-9]*),")
_TGID_RE = re.compile(rb"tgid\s*([0-9]*) ")
# REG_NEWLINE keeps `.` from crossing a line; Python's `.` never matches "\n" either.
_COMM_RE = re.compile(rb"tgid\s*[0-9]*\s*\((.*)\),\s*ts")
_TS_RE = re.compile(rb"ts\s*([0-9]*)\s*ns")
# tools/vm/page_owner_sort.c of 5.18-6.6 wanted the comma after "ns".
_TS_RE_LEGACY = re.compile(rb"ts\s*([0-9]*)\s*ns,")
_FREE_TS_RE = re.compile(rb"free_ts\s*([0-9]*)\s*ns")

_DIGITS_RE = re.compile(rb"[0-9]*")
_HEADER = b"Page allocated via order "
_U64_MAX = (1 << 64) - 1
_INT_MIN = -(1 << 31)
_INT_MAX = (1 << 31) - 1

# Allocator bits (5.19+), compared as integers by the `ator` key.
ALLOCATOR_CMA = 1 << 1
ALLOCATOR_SLAB = 1 << 2
ALLOCATOR_VMALLOC = 1 << 3
ALLOCATOR_OTHERS = 1 << 4
ALLOCATOR_LABELS: tuple[tuple[int, str], ...] = (
    (ALLOCATOR_CMA, "CMA"),
    (ALLOCATOR_SLAB, "SLAB"),
    (ALLOCATOR_VMALLOC, "VMALLOC"),
    (ALLOCATOR_OTHERS, "OTHERS"),
)


@dataclass(frozen=True)
class _KeyInfo:
    """One sort or cull key: its names, and whether it exists only in 5.18-6.6."""

    name: str
    aliases: tuple[str, ...]
    legacy: bool = False


# --sort keys (get_arg_type): short and long names; `times`/`pages` are ours (-t / -m).
SORT_KEYS: tuple[_KeyInfo, ...] = (
    _KeyInfo("pid", ("p", "pid")),
    _KeyInfo("tgid", ("tg", "tgid")),
    _KeyInfo("name", ("n", "name")),
    _KeyInfo("stacktrace", ("st", "stacktrace")),
    _KeyInfo("txt", ("T", "txt")),
    _KeyInfo("alloc_ts", ("at", "alloc_ts")),
    _KeyInfo("allocator", ("ator", "allocator")),
    _KeyInfo("times", ("times",)),
    _KeyInfo("pages", ("pages",)),
    _KeyInfo("free_ts", ("ft", "free_ts"), legacy=True),
)
# --cull keys, in the fixed priority the C comparator applies them, whatever the user order.
CULL_KEYS: tuple[_KeyInfo, ...] = (
    _KeyInfo("stacktrace", ("st", "stacktrace")),
    _KeyInfo("pid", ("p", "pid")),
    _KeyInfo("tgid", ("tg", "tgid")),
    _KeyInfo("name", ("n", "name")),
    _KeyInfo("free", ("f", "free"), legacy=True),
    _KeyInfo("allocator", ("ator", "allocator")),
)


def _lookup(word: str, table: Sequence[_KeyInfo]) -> _KeyInfo | None:
    """Find a key by any of its names (case-sensitive, as the C tool's strcmp)."""
    for info in table:
        if word in info.aliases:
            return info
    return None


@dataclass(frozen=True)
class SortKey:
    """One term of a sort order: a key name and its direction."""

    name: str
    descending: bool = False

    @property
    def legacy(self) -> bool:
        """Tell whether this key exists only in the 5.18-6.6 tool (free_ts)."""
        info = _lookup(self.name, SORT_KEYS)
        return bool(info and info.legacy)


def parse_sort_spec(text: str) -> tuple[SortKey, ...]:
    """Parse `[+|-]key[,[+|-]key...]` as --sort takes it.

    >>> parse_sort_spec("n,+pid,-tgid")
    (SortKey(name='name', descending=False), SortKey(name='pid', descending=False), \
SortKey(name='tgid', descending=True))
    """
    keys = []
    for word in text.split(","):
        descending = word.startswith("-")
        bare = word[1:] if word[:1] in ("+", "-") else word
        info = _lookup(bare, SORT_KEYS)
        if info is None:
            names = ", ".join(alias for key in SORT_KEYS for alias in key.aliases)
            raise SpecError(f"unknown sort key {bare!r} (choose from {names})")
        keys.append(SortKey(info.name, descending))
    return tuple(keys)


def parse_cull_spec(text: str) -> frozenset[str]:
    """Parse `key[,key...]` as --cull takes it; the order given does not matter.

    >>> sorted(parse_cull_spec("st,pid,name"))
    ['name', 'pid', 'stacktrace']
    """
    keys = set()
    for word in text.split(","):
        info = _lookup(word, CULL_KEYS)
        if info is None:
            names = ", ".join(alias for key in CULL_KEYS for alias in key.aliases)
            raise SpecError(f"unknown cull key {word!r} (choose from {names})")
        keys.add(info.name)
    return frozenset(keys)


_INT_WORD = re.compile(r"\s*[+-]?[0-9]+")


def parse_int_list(text: str) -> tuple[int, ...]:
    """Parse a comma-separated pid/tgid list the way strtol reads each element.

    >>> parse_int_list("1,412,977")
    (1, 412, 977)
    """
    values = []
    for word in text.split(","):
        if not _INT_WORD.fullmatch(word):
            raise SpecError(f"not a number: {word!r}")
        sign, digits = (-1, word.strip()[1:]) if word.strip()[0] == "-" else (1, word.strip())
        value = sign * _decimal(digits.lstrip("+").encode())
        if not _INT_MIN <= value <= _INT_MAX:
            raise SpecError(f"out of range for a pid: {word!r}")
        values.append(value)
    return tuple(values)


def parse_name_list(text: str) -> tuple[bytes, ...]:
    """Parse a comma-separated command-name list (exact names; empty ones allowed).

    >>> parse_name_list("swapper/0,dd")
    (b'swapper/0', b'dd')
    """
    return tuple(word.encode("utf-8", "surrogateescape") for word in text.split(","))


@dataclass(frozen=True)
class SortOptions:
    """Everything that decides a page_owner_sort report."""

    sort_keys: tuple[SortKey, ...] = (SortKey("times", descending=True),)
    cull: frozenset[str] = frozenset()
    pids: tuple[int, ...] | None = None
    tgids: tuple[int, ...] | None = None
    names: tuple[bytes, ...] | None = None
    filter_released: bool = False  # -f, 5.18-6.6 only
    force_legacy: bool = False

    @property
    def legacy(self) -> bool:
        """Tell whether 5.18-6.6 semantics apply: -f, -r, `ft` or `f` asks for them.

        Those options read free_ts, which 6.7 removed together with the timestamp
        stripping that lets identical allocations merge; the old tool kept the text whole.
        """
        return (
            self.force_legacy
            or self.filter_released
            or "free" in self.cull
            or any(key.legacy for key in self.sort_keys)
        )

    @property
    def strip_ts(self) -> bool:
        """Tell whether the ts digits are cut from the text before grouping (6.7+).

        page_owner_sort keeps them when the first sort key is the allocation time.
        """
        return not self.legacy and self.sort_keys[0].name != "alloc_ts"


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
    ts_nsec: int = _U64_MAX
    free_ts_nsec: int = _U64_MAX
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


def _decimal(digits: bytes) -> int:
    """Convert decimal digits; a number past 64 bits reads as 2^64 (all callers cap there).

    Python refuses to convert more than 4300 digits, and the caps make the exact value
    of a longer number irrelevant.

    >>> _decimal(b"0042"), _decimal(b"9" * 5000) == 1 << 64
    (42, True)
    """
    significant = digits.lstrip(b"0")
    if len(significant) > 20:
        return 1 << 64
    return int(significant or b"0")


def _first_int(pattern: re.Pattern[bytes], buf: bytes, missing: int) -> int:
    """Return the first capture as strtol would, or `missing` when it fails."""
    match = pattern.search(buf)
    if match is None or not match.group(1):
        return missing
    return _decimal(match.group(1))


def _pid_value(pattern: re.Pattern[bytes], buf: bytes) -> int:
    """Return a pid or tgid field, -1 when missing (the C tool's error value)."""
    value = _first_int(pattern, buf, -1)
    # strtol into a pid_t: the C tool keeps the low 32 bits; we keep the value but treat
    # anything beyond a long as an error, like errno == ERANGE there.
    return value if value <= (1 << 63) - 1 else -1


def _ts_value(pattern: re.Pattern[bytes], buf: bytes) -> int:
    """Return a timestamp field; a missing or overflowing one reads as (u64)-1."""
    value = _first_int(pattern, buf, _U64_MAX)
    return value if value <= _U64_MAX else _U64_MAX


def _pages(buf: bytes) -> int:
    """Return 2^order from the first `order N,`, or 0 when absent or over 64."""
    order = _first_int(_ORDER_RE, buf, -1)
    if order < 0 or order > 64:
        return 0
    return 1 << order


def _comm(buf: bytes) -> bytes:
    """Return the command name between `tgid N (` and `), ts`, or b"" when absent."""
    match = _COMM_RE.search(buf)
    return match.group(1) if match else b""


def _vmalloc_bit(buf: bytes) -> int:
    """Return VMALLOC when __vmalloc_node_range sits under a page allocator frame."""
    where = buf.find(b"__vmalloc_node_range")
    if where > 0:
        # The search window runs from the start of the line above up to the match itself.
        line_start = buf.rfind(b"\n", 0, where)
        above = buf.rfind(b"\n", 0, max(line_start, 0)) + 1
        hit = buf.find(b"alloc_pages", above)
        if 0 <= hit < where:
            return ALLOCATOR_VMALLOC
    return 0


def _pfn_bits(pfn_line: bytes) -> int:
    """Return CMA/SLAB as page_owner_sort reads them off a PFN line (5.19+)."""
    bits = 0
    if b"CMA" in pfn_line:
        bits |= ALLOCATOR_CMA
    if b"slab" in pfn_line:
        bits |= ALLOCATOR_SLAB
    return bits


def _allocator(buf: bytes, pfn_line: bytes) -> int:
    """Classify a block: CMA/SLAB from its PFN line, VMALLOC from its stack."""
    return (_pfn_bits(pfn_line) | _vmalloc_bit(buf)) or ALLOCATOR_OTHERS


def classify_block(block: bytes) -> int:
    """Classify one whole block, PFN line included, as page_owner_sort would.

    For analysis code that holds a record's text (`PageRecord.raw`): the PFN lines are set
    aside exactly as `_slow_block` does, so the answer is the sort engine's.

    >>> classify_block(b"Page allocated via order 0\\nPFN 1 type CMA Block 0 type CMA\\n")
    2
    """
    if b"__vmalloc_node_range" not in block:
        # Without that frame only the last PFN line can add anything (CMA, SLAB).
        start = block.rfind(b"\nPFN") + 1
        if start == 0 and not block.startswith(b"PFN"):
            return _allocator(b"", b"")
        end = block.find(b"\n", start)
        return _allocator(b"", block[start : end if end >= 0 else len(block)])
    kept = []
    pfn_line = b""
    for line in iter_lines(block):
        if line.startswith(b"PFN"):
            pfn_line = line
        else:
            kept.append(line)
    return _allocator(b"".join(kept), pfn_line)


def allocator_label(allocator: int) -> str:
    """Render an allocator set the way print_allocator does (each name then a space).

    >>> allocator_label(ALLOCATOR_SLAB | ALLOCATOR_VMALLOC)
    'allocated by SLAB VMALLOC '
    """
    names = "".join(f"{name} " for bit, name in ALLOCATOR_LABELS if allocator & bit)
    return f"allocated by {names}"


WarningHandler = Callable[[str], None]
ProgressHandler = Callable[[int], None]

_CHUNK = 1 << 20
_REJECTED = Group(0, 0, b"", b"")  # marks "the previous block was not selected"


class SortEngine:
    """Collect dump blocks into groups; memory grows with the groups, not the records.

    Feed it bytes with `feed_stream` (or whole blocks with `feed_blocks`), then ask for
    `sorted_groups()`. Blocks that are not page_owner records are skipped with a warning,
    or raise `ParseError` when `strict`.
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
        self._ts_re = _TS_RE_LEGACY if options.legacy else _TS_RE

    # -- one block at a time ------------------------------------------------------------

    def add_block(self, buf: bytes, pfn_line: bytes, lineno: int = 0) -> None:
        """Count one block (its text without PFN lines, every line newline-ended)."""
        if not buf.startswith(_HEADER):
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
        self._count(buf, head, self._bodies.setdefault(body, body), pfn_line, _pages(buf))

    def _count(self, buf: bytes, head: bytes, body: bytes, pfn_line: bytes, pages: int) -> Group:
        """Add one selected record to its group, making the group if it is new."""
        allocator = _allocator(buf, pfn_line) if "allocator" in self._need else 0
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
            free_ts = _ts_value(_FREE_TS_RE, buf)
            if free_ts != 0 and _ts_value(_TS_RE_LEGACY, buf) < free_ts:
                return False
        if options.pids is not None and _pid_value(_PID_RE, buf) not in options.pids:
            return False
        if options.tgids is not None and _pid_value(_TGID_RE, buf) not in options.tgids:
            return False
        return options.names is None or _comm(buf) in options.names

    def _text(self, buf: bytes) -> bytes:
        """Return the text a group is known by: the ts digits cut out since 6.7."""
        if not self.options.strip_ts:
            return buf
        match = _TS_RE.search(buf)
        if match is None or match.start(1) == match.end(1):
            return buf
        return buf[: match.start(1)] + buf[match.end(1) :]

    def _record_key(self, buf: bytes, head: bytes, body: bytes, allocator: int) -> object:
        """Return what the cull comparator compares for one record."""
        cull = self.options.cull
        if not cull:
            return (head, body)
        return _cull_tuple(
            cull,
            lambda: body,
            lambda: _pid_value(_PID_RE, buf),
            lambda: _pid_value(_TGID_RE, buf),
            lambda: _comm(buf),
            lambda: _ts_value(_FREE_TS_RE, buf),
            lambda: allocator,
        )

    def group_key(self, group: Group) -> object:
        """Return the same key as `_record_key` gave the group's first record."""
        cull = self.options.cull
        if not cull:
            return (group.head, group.body)
        return _cull_tuple(
            cull,
            lambda: group.body,
            lambda: group.pid,
            lambda: group.tgid,
            lambda: group.comm,
            lambda: group.free_ts_nsec,
            lambda: group.allocator,
        )

    def _new_group(self, buf: bytes, head: bytes, body: bytes, allocator: int) -> Group:
        """Make an empty group from its first record, whose fields the report shows."""
        need = self._need
        return Group(
            times=0,
            pages=0,
            head=head,
            body=body,
            pid=_pid_value(_PID_RE, buf) if "pid" in need else -1,
            tgid=_pid_value(_TGID_RE, buf) if "tgid" in need else -1,
            comm=_comm(buf) if "name" in need else b"",
            ts_nsec=_ts_value(self._ts_re, buf) if "alloc_ts" in need else _U64_MAX,
            free_ts_nsec=_ts_value(_FREE_TS_RE, buf) if "free_ts" in need else _U64_MAX,
            allocator=allocator,
            first=self.records - 1,
        )

    # -- streams ------------------------------------------------------------------------

    def feed_stream(
        self,
        read: Callable[[int], bytes],
        *,
        limit: int | None = None,
        on_progress: ProgressHandler | None = None,
        first_lineno: int = 1,
    ) -> SortEngine:
        """Read a byte stream through `read(n)` to its end, or `limit` bytes, and count it.

        A last block with no closing blank line is kept (page_owner_sort drops it) and
        reported through the warning handler.
        """
        rest = b""
        lineno = first_lineno  # line number of the first line of `rest`
        remaining = limit

        def read_raw(size: int) -> bytes:
            nonlocal remaining
            if remaining is not None:
                size = min(size, remaining)
                if size <= 0:
                    return b""
            chunk = read(size)
            if remaining is not None:
                remaining -= len(chunk)
            self.bytes_read += len(chunk)
            return chunk

        # CR-LF dumps (copied through Windows tools): page_owner_sort sees no blank line at
        # all in them and makes one block of the file; we read them as LF. A lone CR is
        # data, as it is there.
        read_lf = CrLfReader(read_raw).read
        while True:
            chunk = read_lf(_CHUNK)
            if not chunk:
                break
            data = rest + chunk if rest else chunk
            consumed = self._scan(data, lineno)
            lineno += data.count(b"\n", 0, consumed)
            rest = data[consumed:]
            if on_progress is not None:
                on_progress(self.bytes_read)
        stripped = rest.lstrip(b"\n")
        lineno += len(rest) - len(stripped)
        if stripped:
            self._warn(
                lineno,
                "the dump ends without the blank line after its last record; the record "
                "is kept (page_owner_sort would drop it)",
            )
            self._slow_block(stripped if stripped.endswith(b"\n") else stripped + b"\n", lineno)
            lineno += stripped.count(b"\n") + (0 if stripped.endswith(b"\n") else 1)
        self.next_lineno = lineno
        return self

    def _scan(self, data: bytes, lineno: int) -> int:
        """Count the complete blocks of `data`; return the offset where the rest starts.

        `lineno` is the line number of data's first line. Blocks in the usual layout
        (header, PFN line, frames) are counted in place; a block equal to the previous one
        but for its ts digits (when they are cut) and its PFN line joins the previous
        block's group with a few memory compares. Anything else goes through `_slow_block`.
        """
        options = self.options
        strip = options.strip_ts
        by_allocator = "allocator" in options.cull
        filtering = (
            options.pids is not None or options.tgids is not None or options.names is not None
            or options.filter_released
        )
        bodies = self._bodies
        # With the ts digits in the key (-a, no --cull), a block equal to the previous one
        # but for them is a new group with the previous one's other fields.
        near = not strip and not options.cull and not options.legacy
        last_ts = b""
        last_digits = 0
        last_ts_field = False  # whether the previous block's prefix ends at its ts digits
        search = _TS_RE.search
        digits = _DIGITS_RE.match
        find = data.find
        startswith = data.startswith
        header = _HEADER
        last_group: Group | None = None
        # The previous fast block, cut around its ts digits: prefix | digits | mid "\nPFN"
        # ... PFN line ... | tail "\n\n".
        last_prefix = last_mid = last_tail = b""
        prefix_len = mid_len = tail_len = 0
        last_pages = last_vmalloc = last_allocator = 0
        records = selected = 0  # counted here, added to self's counters when leaving
        last_fast = -1  # start of the latest fast block, whose PFN line is the current one
        pos = 0
        counted_pos, counted_lines = 0, lineno
        size = len(data)
        while pos < size:
            if last_group is not None and startswith(last_prefix, pos):
                ts_end = digits(data, pos + prefix_len).end()  # type: ignore[union-attr]
                # Digits are skipped only where the previous header had its ts field; a
                # header without one that gains digits is another text (found by fuzzing).
                if (last_ts_field or ts_end == pos + prefix_len) and startswith(last_mid, ts_end):
                    pe = find(b"\n", ts_end + mid_len)
                    if pe >= 0 and startswith(last_tail, pe) and startswith(b"\n\n", pe + tail_len):
                        same = True
                        if by_allocator:
                            pfn_start = ts_end + mid_len - 3
                            allocator = (
                                _pfn_bits(data[pfn_start:pe]) | last_vmalloc
                            ) or ALLOCATOR_OTHERS
                            same = allocator == last_allocator
                        if same and near and last_group is not _REJECTED and (
                            ts_end - pos - prefix_len != last_digits
                            or not startswith(last_ts, pos + prefix_len)
                        ):
                            # -a keeps the ts digits in the text: a new group, whose other
                            # fields are the previous record's.
                            records += 1
                            selected += 1
                            head = data[pos : ts_end + mid_len - 3]
                            key = (head, last_group.body)
                            group = self.groups.get(key)
                            if group is None:
                                digit_text = data[pos + prefix_len : ts_end]
                                group = self.groups[key] = Group(
                                    0, 0, head, last_group.body, last_group.pid,
                                    last_group.tgid, last_group.comm,
                                    min(_decimal(digit_text), _U64_MAX) if digit_text else _U64_MAX,
                                    last_group.free_ts_nsec,
                                    (_pfn_bits(data[ts_end + mid_len - 3 : pe]) | last_vmalloc)
                                    or ALLOCATOR_OTHERS,
                                    self.records + records - 1,
                                )  # fmt: skip
                            group.times += 1
                            group.pages += last_pages
                            last_fast = pos
                            pos = pe + tail_len + 2
                            continue
                        if same:
                            records += 1
                            if last_group is not _REJECTED:
                                selected += 1
                                last_group.times += 1
                                last_group.pages += last_pages
                            last_fast = pos
                            pos = pe + tail_len + 2
                            continue
            if data[pos] == 10:  # runs of blank lines make no empty blocks
                pos += 1
                continue
            nl = find(b"\n", pos)
            if nl < 0:
                break
            end = find(b"\n\n", pos)
            if end < 0:
                break
            if startswith(b"PFN", nl + 1) and startswith(header, pos):
                pe = find(b"\n", nl + 1, end + 1)  # == end when the PFN line is the last
                ts_start = ts_end = nl
                ts_field = False
                if strip:
                    match = search(data, pos, nl)
                    if match is not None:
                        ts_start, ts_end = match.span(1)
                        ts_field = True
                    elif search(data, nl, end) is not None:
                        ts_start = -1  # a ts pattern below the header: the slow path decides
                elif near:
                    match = search(data, pos, nl)
                    if match is not None:
                        ts_start, ts_end = match.span(1)
                        ts_field = True
                if ts_start >= 0 and find(b"\nPFN", pe, end) < 0:
                    records += 1
                    last_fast = pos
                    self.records += records
                    self.selected += selected
                    records = selected = 0
                    line = data[pos : nl + 1]
                    body = data[pe + 1 : end] + b"\n" if pe < end else b""
                    body = bodies.setdefault(body, body)
                    buf = line + body
                    if filtering and not self._is_selected(buf):
                        last_group = _REJECTED
                    else:
                        self.selected += 1
                        head = line if ts_start == ts_end or not strip else (
                            data[pos:ts_start] + data[ts_end : nl + 1]
                        )
                        last_pages = _pages(buf)
                        pfn_line = data[nl + 1 : pe]
                        last_group = self._count(buf, head, body, pfn_line, last_pages)
                        last_ts = data[ts_start:ts_end]
                        last_digits = ts_end - ts_start
                        if by_allocator or near:
                            last_vmalloc = _vmalloc_bit(buf)
                            last_allocator = _pfn_bits(pfn_line) | last_vmalloc
                            last_allocator = last_allocator or ALLOCATOR_OTHERS
                    last_prefix = data[pos:ts_start]
                    last_ts_field = ts_field
                    last_mid = data[ts_end:nl] + b"\nPFN"
                    last_tail = data[pe:end]
                    prefix_len, mid_len, tail_len = len(last_prefix), len(last_mid), len(last_tail)
                    pos = end + 2
                    continue
            if last_fast >= 0:
                self.pfn_line = _pfn_line_of(data, last_fast)
                last_fast = -1
            last_group = None
            self.records += records
            self.selected += selected
            records = selected = 0
            counted_lines += data.count(b"\n", counted_pos, pos)
            counted_pos = pos
            self._slow_block(data[pos : end + 1], counted_lines)
            pos = end + 2
        self.records += records
        self.selected += selected
        if last_fast >= 0:
            self.pfn_line = _pfn_line_of(data, last_fast)
        return pos

    def _slow_block(self, block: bytes, lineno: int) -> None:
        """Handle one block exactly as page_owner_sort does: set PFN lines aside, count it."""
        kept = []
        for line in iter_lines(block):
            if line.startswith(b"PFN"):
                self.pfn_line = line
            else:
                kept.append(line)
        self.add_block(b"".join(kept), self.pfn_line, lineno)

    def feed_blocks(self, blocks: Iterable[bytes]) -> SortEngine:
        """Count whole blocks given as bytes (PFN lines included); for tests and tools."""
        for block in blocks:
            self._slow_block(block if block.endswith(b"\n") else block + b"\n", 0)
        return self

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
        later = SortEngine(self.options, path=self.path)
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

    def merge(self, later: SortEngine) -> None:
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

    # -- the report -------------------------------------------------------------------

    def sorted_groups(self) -> list[Group]:
        """Return the groups in report order: cull order, then the sort keys, stably."""
        groups = sorted(self.groups.values(), key=self._cull_order)
        if self.options.legacy:
            return _glibc_msort(groups, self._legacy_compare)
        for key in reversed(self.options.sort_keys):
            groups.sort(key=_SORT_FIELDS[key.name], reverse=key.descending)
        return groups

    def _cull_order(self, group: Group) -> tuple[object, ...]:
        """Order groups as the C tool's cull comparator does (strcmp on bytes)."""
        key = self.group_key(group)
        return key if isinstance(key, tuple) else (key,)

    def _legacy_compare(self, left: Group, right: Group) -> int:
        """Compare as the 5.18-6.6 sort comparator: the first non-zero key decides.

        Its ts and free_ts comparators never return 0 (equal counts as greater), which
        is why this mode sorts with the same merge sort glibc's qsort uses.
        """
        for key in self.options.sort_keys:
            sign = -1 if key.descending else 1
            if key.name in ("alloc_ts", "free_ts"):
                a = left.ts_nsec if key.name == "alloc_ts" else left.free_ts_nsec
                b = right.ts_nsec if key.name == "alloc_ts" else right.free_ts_nsec
                return sign * (-1 if a < b else 1)
            field_of = _SORT_FIELDS[key.name]
            x, y = field_of(left), field_of(right)
            result = int(x > y) - int(x < y)
            if result:
                return sign * result
        return 0


_SORT_FIELDS: dict[str, Callable[[Group], Any]] = {
    "pid": lambda g: g.pid,
    "tgid": lambda g: g.tgid,
    "name": lambda g: g.comm,
    "stacktrace": lambda g: g.body,
    "txt": lambda g: (g.head, g.body),
    "alloc_ts": lambda g: g.ts_nsec,
    "free_ts": lambda g: g.free_ts_nsec,
    "allocator": lambda g: g.allocator,
    "times": lambda g: g.times,
    "pages": lambda g: g.pages,
}


def _pfn_line_of(data: bytes, block_start: int) -> bytes:
    """Return the second line of the block starting at `block_start` (its PFN line)."""
    line_start = data.find(b"\n", block_start) + 1
    line_end = data.find(b"\n", line_start)
    return data[line_start:line_end]


def _cull_tuple(
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


def _glibc_msort(items: list[Group], compare: Callable[[Group, Group], int]) -> list[Group]:
    """Sort like glibc's qsort (a top-down merge sort taking the left item on <= 0).

    Only needed where a comparator is inconsistent, as the 5.18-6.6 ts comparators are:
    there the exact merge order decides the output.
    """
    if len(items) <= 1:
        return items
    half = len(items) // 2
    left = _glibc_msort(items[:half], compare)
    right = _glibc_msort(items[half:], compare)
    merged: list[Group] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if compare(left[i], right[j]) <= 0:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged


def format_group(group: Group, options: SortOptions) -> bytes:
    """Render one group exactly as page_owner_sort prints it."""
    cull = options.cull
    if not cull:
        label = allocator_label(group.allocator).encode()
        return b"%d times, %d pages, %s:\n%s\n" % (group.times, group.pages, label, group.txt)
    out = b"%d times, %d pages" % (group.times, group.pages)
    if "pid" in cull or options.pids is not None:
        out += b", PID %d" % group.pid
    if "tgid" in cull or options.tgids is not None:
        out += b", TGID %d" % group.tgid
    if "name" in cull or options.names is not None:
        out += b", task_comm_name: %s" % group.comm
    if "allocator" in cull:
        out += b", " + allocator_label(group.allocator).encode()
    if "free" in cull:
        # The 5.18-6.6 label is inverted: a non-zero free_ts prints UNRELEASED.
        out += b" (UNRELEASED)" if group.free_ts_nsec else b" (RELEASED)"
    if "stacktrace" in cull:
        out += b":\n" + group.stacktrace
    return out + b"\n"


def render_groups(groups: Iterable[Group], options: SortOptions) -> Iterator[bytes]:
    """Yield the report, one group at a time."""
    for group in groups:
        yield format_group(group, options)


def count_dump_file(
    fd: int,
    size: int,
    options: SortOptions,
    *,
    path: str = "<dump>",
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    jobs: int = 2,
) -> SortEngine:
    """Count a regular file, on two cores when it is big enough to pay for the fork."""
    engine = SortEngine(options, path=path, strict=strict, on_warning=on_warning)
    split = None
    # Without the ts digits cut out nearly every record is a group of its own; shipping
    # them between processes costs more than the second core saves.
    if jobs > 1 and options.strip_ts and size >= MIN_PARALLEL_BYTES and parallel_available():
        split = find_block_boundary(fd, size // 2, size)
    if split is None or split >= size:
        engine.feed_stream(lambda n: os.read(fd, n), on_progress=on_progress)
        return engine
    # The child counts [split, size) and inherits the last PFN line before it, as the
    # C tool's ext_buf would have it there.
    inherited = last_line_starting_with(fd, b"PFN", split)

    def work() -> bytes:
        later = SortEngine(options, path=path, strict=strict)
        later.pfn_line = inherited
        offset = [split]

        def read_later(n: int) -> bytes:
            chunk = os.pread(fd, n, offset[0])
            offset[0] += len(chunk)
            return chunk

        try:
            later.feed_stream(read_later)
        except ParseError as exc:
            # Its line number counts from the split; the parent knows where that is.
            return _PARSE_ERROR + b"%d\n%s\n%s" % (
                exc.lineno, exc.reason.encode(), exc.line.encode("utf-8", "surrogateescape"),
            )  # fmt: skip
        return later.serialize()

    child = ForkedCall.start(work)
    try:
        scale = size / split
        progress = (
            None if on_progress is None else (lambda done: on_progress(int(done * scale)))
        )
        engine.feed_stream(lambda n: os.read(fd, n), limit=split, on_progress=progress)
        payload = child.result()
    except WorkerError as exc:
        if exc.died:
            raise WorkerError(f"{path}: {exc}", died=True) from None
        raise
    except BaseException:
        child.cancel()
        raise
    if payload.startswith(_PARSE_ERROR):
        lineno, reason, line = payload[len(_PARSE_ERROR) :].split(b"\n", 2)
        raise ParseError(path, int(lineno) + engine.next_lineno - 1, _decode_line(line),
                         reason.decode())  # fmt: skip
    engine.absorb(payload, line_offset=engine.next_lineno - 1)
    return engine


# How a worker reports a --strict parse error instead of its counts (which start with a digit).
_PARSE_ERROR = b"parse error\n"


def _decode_line(raw: bytes) -> str:
    """Decode a line for an error message, every byte kept (UTF-8, surrogateescape)."""
    return raw.decode("utf-8", "surrogateescape")


InputProgress = Callable[[int, "int | None"], None]


def sort_dump(
    input_path: str,
    output_path: str,
    options: SortOptions,
    *,
    strict: bool = False,
    jobs: int = 2,
    on_warning: WarningHandler | None = None,
    on_progress: InputProgress | None = None,
) -> SortEngine:
    """Read a dump, group and sort it, and write the page_owner_sort report atomically.

    `-` reads standard input or writes standard output. Returns the engine, whose
    counters say how many records were read, selected and skipped.
    """
    check_output_path(output_path, (input_path,))
    with open_input(input_path) as opened:
        # Damaged or non-dump text is rewritten into a dump first (docs/compat.md 13-14).
        source = tolerate(opened, Tolerance(strict, on_warning))
        size = source.size

        def progress(done: int) -> None:
            if on_progress is not None:
                on_progress(done, size)

        if source.fd is not None and size is not None:
            engine = count_dump_file(
                source.fd, size, options, path=source.name, strict=strict,
                on_warning=on_warning, on_progress=progress, jobs=jobs,
            )  # fmt: skip
        else:
            engine = SortEngine(options, path=source.name, strict=strict, on_warning=on_warning)
            engine.feed_stream(source.read, on_progress=progress)
    if engine.records == 0:
        # page_owner_sort writes an empty report here (exit 0): docs/compat.md 14.
        first = (f"{source.name}:{engine.warnings[0][0]}: {engine.warnings[0][1]}"
                 if engine.warnings else f"{source.name}: no page_owner record in it")  # fmt: skip
        raise InputError(f"{first} (and no other block could be read)")
    groups = engine.sorted_groups()
    with atomic_output(output_path, inputs=(input_path,)) as out:
        for chunk in render_groups(groups, options):
            out.write(chunk)
    return engine


# The short sort flags of page_owner_sort; -r exists only in the 5.18-6.6 tool.
SHORT_SORT_FLAGS: dict[str, SortKey] = {
    "a": SortKey("alloc_ts"),
    "m": SortKey("pages", descending=True),
    "n": SortKey("name"),
    "p": SortKey("pid"),
    "P": SortKey("tgid"),
    "s": SortKey("stacktrace"),
    "t": SortKey("times", descending=True),
    "r": SortKey("free_ts"),
}


def build_options(
    short_flags: Sequence[str] = (),
    sort_spec: tuple[SortKey, ...] | None = None,
    cull: frozenset[str] = frozenset(),
    pids: tuple[int, ...] | None = None,
    tgids: tuple[int, ...] | None = None,
    names: tuple[bytes, ...] | None = None,
    filter_released: bool = False,
) -> SortOptions:
    """Combine page_owner_sort's options as the 6.7+ tool does.

    One short sort flag at most (repeating the same one is fine); it wins over --sort.
    With neither, --sort applies, and without that, times descending.
    """
    chosen = sorted(set(short_flags))
    if len(chosen) > 1:
        flags = " ".join(f"-{flag}" for flag in chosen)
        raise SpecError(f"choose one sort flag, not {flags}")
    if chosen:
        keys: tuple[SortKey, ...] = (SHORT_SORT_FLAGS[chosen[0]],)
    elif sort_spec:
        keys = sort_spec
    else:
        keys = (SortKey("times", descending=True),)
    return SortOptions(
        sort_keys=keys, cull=cull, pids=pids, tgids=tgids, names=names,
        filter_released=filter_released,
    )  # fmt: skip
