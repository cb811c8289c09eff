"""A byte scanner for page_owner dumps: records as views, fields parsed from bytes on demand.

`scan_records` cuts blocks out of big reads as `iter_blocks_read` does. The first record of
a kind is read the "slow" way: its header before `ts` is parsed once per distinct text,
the digits after `ts` are checked by their shape, the PFN line by one regex, and the frames
and trailing lines once per distinct text. It becomes the template (`_Template`): the
records after it that are its text but for their ts digits and the two numbers of their
PFN line (each checked against the class the typed reader reads it with) are known to
parse to its fields but those three, with two byte compares (the text before the ts
digits, the text after the pageblock number) and one match of a pattern shared by every
template of the era, whose two groups must be the template's text between. Each record
is a `ScanRecord` view of its bytes; the fields it shares with its template are parsed
once per template. A block the checks do not take goes to the typed reader
(`parse_block`), so what is skipped, the warnings and the line numbers are exactly those
of `DumpReader`, and odd but valid records come back as typed `PageRecord`s. The checks
accept a subset of what `parse_block` accepts and agree with it on every field
(tests/test_scan.py checks both over generated dumps of every era).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pageowner.dump.dumpfile import (
    HEADER_PREFIX,
    MAX_RECORD_ORDER,
    _FrameCache,
    _parse_flags,
    _parse_tail,
    decode,
    parse_block,
)
from pageowner.dump.fileio import CrLfReader
from pageowner.errors import ParseError
from pageowner.kernel.frames import StackInfo, StackInterner
from pageowner.kernel.tables import LETTER_FLAGS, MIGRATETYPE_NUMBERS_3_19
from pageowner.model import (
    DumpFormat,
    Frame,
    FrameStyle,
    HeaderStyle,
    MemcgCharge,
    MigrateType,
    PageFlags,
    PageRecord,
    PfnStyle,
)

__all__ = [
    "AnyRecord",
    "ScanRecord",
    "ScanTail",
    "handle_of",
    "scan_records",
    "stack_frames",
]

WarningHandler = Callable[[str], None]

_DEC = rb"[0-9]{1,64}"
# The header (dumpfile._HEADER_RE) in two parts: before ", ts " (pid, tgid, comm: the same
# for many records, so parsed once per distinct text) and the ts digits after it. A header
# without ts (before 5.11) is parsed whole, once per distinct text. Classes exclude the
# newline, which a one-line regex in parse_block never sees.
_PREFIX_RE = re.compile(
    rb"Page allocated via order (?P<order>" + _DEC + rb"), mask (?P<mask>0x[0-9a-f]+)"
    rb"\((?P<names>[^()\n]*)\), pid (?P<pid>-?" + _DEC + rb")"
    rb"(?:, tgid (?P<tgid>-?" + _DEC + rb") \((?P<comm>.*)\))?"
)
_NO_TS_RE = re.compile(
    rb"Page allocated via order (?P<order>" + _DEC + rb"), mask (?P<mask>0x[0-9a-f]+)"
    rb"(?:\((?P<names>[^()\n]*)\))?"
)
# What follows ", ts ": the ts digits, " ns", and free_ts in 5.14-6.6; checked on its shape
# (every digit read as 0), which keeps lengths, so the {1,64} bounds still hold.
_TS_SHAPE_RE = re.compile(rb"0{1,64} ns(?:, free_ts 0{1,64} ns)?")
_TS_RE = re.compile(rb"(?P<ts>[0-9]{1,64}) ns(?:, free_ts (?P<free_ts>[0-9]{1,64}) ns)?")
_ZEROS = bytes.maketrans(b"0123456789", b"0000000000")
# parse_block reads a decimal PFN with int(text, 0), which refuses leading zeros.
_PFN_DEC = rb"0|[1-9][0-9]{0,63}"
_MIGRATETYPE = b"|".join(re.escape(mt.value.encode()) for mt in MigrateType)
_LETTERS = b"".join(b"[" + letter.encode() + b" ]" for letter, _ in LETTER_FLAGS)
# The PFN line of any era (dumpfile._PFN_RE and _PFN_LETTERS_RE), only known migratetypes.
_PFN_RE = re.compile(
    rb"PFN (?:"
    rb"(?P<pfn>0x[0-9a-f]+|" + _PFN_DEC + rb") type (?P<page_mt>" + _MIGRATETYPE + rb")"
    rb" Block (?P<block>" + _DEC + rb") type (?P<block_mt>" + _MIGRATETYPE + rb")"
    rb" Flags (?P<value>0x[0-9a-f]+)\((?P<flags>[^()\n]*)\)"
    rb"|(?P<lpfn>" + _DEC + rb") Block (?P<lblock>" + _DEC + rb")"
    rb" type (?P<lblock_mt>[0-" + str(len(MIGRATETYPE_NUMBERS_3_19) - 1).encode() + rb"])"
    rb" (?P<fallback>Fallback|        ) Flags (?P<letters>" + _LETTERS + rb")"
    rb")"
)
_HEADER = HEADER_PREFIX.encode()
_HANDLE_RE = re.compile(r"handle: (?P<handle>[0-9]{1,20})")
_MIGRATETYPES = {mt.value.encode(): mt for mt in MigrateType}


def handle_of(extra: tuple[str, ...]) -> int | None:
    """Return the stack depot handle of a 7.3 `handle` or `stack_handle` record, if any.

    >>> handle_of(("handle: 1048577",))
    1048577
    """
    for line in extra:
        match = _HANDLE_RE.fullmatch(line)
        if match:
            return int(match["handle"])
    return None


_HANDLE_FRAMES: dict[int, tuple[Frame, ...]] = {}


def stack_frames(frames: tuple[Frame, ...], handle: int | None) -> tuple[Frame, ...]:
    """Return the frames a record is grouped by: `handle N` for a 7.3 record without frames.

    7.3's handle mode prints the stack depot handle instead of the frames; until the
    handle is joined to show_stacks_handles, the handle is the best name of the stack.
    """
    if frames or handle is None:
        return frames
    stand_in = _HANDLE_FRAMES.get(handle)
    if stand_in is None:
        if len(_HANDLE_FRAMES) > 100_000:
            _HANDLE_FRAMES.clear()
        stand_in = _HANDLE_FRAMES[handle] = (Frame(None, raw=f"handle {handle}"),)
    return stand_in


@dataclass(frozen=True, slots=True)
class ScanTail:
    """What follows the PFN line of a record, parsed once per distinct text."""

    frames: tuple[Frame, ...]
    info: StackInfo  # the interned stack the record is grouped by
    migrate_reason: str | None
    slab_cache: bool
    memcg: MemcgCharge | None
    extra: tuple[str, ...]
    frame_style: FrameStyle
    handle: int | None


_FLAGS: dict[tuple[bytes, bytes], tuple[PageFlags, bool]] = {}


def _flags(value: bytes, text: bytes) -> tuple[PageFlags, bool]:
    """Return parsed %pGp contents, memoized (a dump has few distinct flag words)."""
    key = (value, text)
    flags = _FLAGS.get(key)
    if flags is None:
        if len(_FLAGS) > 50_000:
            _FLAGS.clear()
        flags = _FLAGS[key] = _parse_flags(decode(value), decode(text))
    return flags


def _opt_int(data: bytes | None) -> int | None:
    """Convert an optional decimal group."""
    return None if data is None else int(data)


@dataclass(frozen=True, slots=True)
class _Head:
    """The fields of a header before its ts, parsed once per distinct text."""

    order: int
    nr_pages: int
    gfp_mask: int
    gfp_names: str | None
    pid: int | None
    tgid: int | None
    comm: str | None


def _parse_head(text: bytes, with_ts: bool) -> _Head | None:
    """Parse the part of a header before ", ts " (or a whole header without ts)."""
    match = (_PREFIX_RE if with_ts else _NO_TS_RE).fullmatch(text)
    if match is None:
        return None
    order = int(match["order"])
    if order > MAX_RECORD_ORDER:
        return None
    names, comm = match["names"], match.groupdict().get("comm")
    return _Head(order, 1 << order, int(match["mask"], 16),
                 None if names is None else decode(names),
                 _opt_int(match.groupdict().get("pid")),
                 _opt_int(match.groupdict().get("tgid")),
                 None if comm is None else decode(comm))  # fmt: skip



class _Tails:
    """Parse and intern the text after the PFN line, once per distinct text."""

    _LIMIT = 50_000

    def __init__(self, interner: StackInterner) -> None:
        self.interner = interner
        self.tails: dict[bytes, ScanTail | None] = {}
        self.frames = _FrameCache()

    def get(self, text: bytes) -> ScanTail | None:
        """Return the parsed tail, or None when parse_block must judge the record."""
        try:
            return self.tails[text]
        except KeyError:
            pass
        if len(self.tails) >= self._LIMIT:
            self.tails.clear()
        lines = tuple(decode(text[:-1]).split("\n")) if text else ()
        try:
            parsed = _parse_tail(lines, "<dump>", 1, self.frames)
        except ParseError:
            tail = None  # parse_block gives the error its path and line
        else:
            handle = parsed.handle
            frames = parsed.stack
            info = self.interner.intern(stack_frames(frames, handle))
            tail = ScanTail(frames, info, parsed.migrate_reason, parsed.slab_cache,
                            parsed.memcg, parsed.extra, parsed.frame_style, handle)
        self.tails[text] = tail
        return tail

    def typed(self, record: PageRecord) -> StackInfo:
        """Intern the stack a typed record is grouped by."""
        return self.interner.intern(stack_frames(record.stack, record.handle))


def scan_records(
    read: Callable[[int], bytes],
    path: str,
    interner: StackInterner,
    *,
    on_warning: WarningHandler | None = None,
    first_lineno: int = 1,
    collapse: bool = False,
    blocks: bool = False,
    chunk_size: int = 1 << 20,
) -> Iterator[_Scanned]:
    """Yield each record of a dump read through `read(n)`, its interned stack and a count.

    Lenient as `DumpReader` is: a block that is not a record is skipped with the same
    warning, and a last block cut off by the end of the input is reported the same way.
    With `collapse`, a run of records equal but for their ts, PFN and pageblock numbers
    comes out as its first record and the run's length (for consumers that read no ts,
    pfn or block); otherwise every count is 1. With `blocks` too, each run also carries the
    pageblock digits of its records, in order (None for records without a PFN line).
    """
    scanner = _Scanner(path, interner, on_warning, collapse, collapse and blocks)
    return scanner.run(read, first_lineno, chunk_size)


# A record (the first of its run), its interned stack, the run's length and, when asked,
# the pageblock digits of the run's records.
_Scanned = tuple["AnyRecord", StackInfo, int, "list[bytes] | None"]


class _Template:
    """The bytes of a record read the slow way, to recognise the records like it.

    A record matches when it is the template's text but for its ts digits and the two
    numbers of its PFN line (each checked against the class parse_block reads it with):
    it is then known to parse, to the template's fields but those three. The fields the
    matching records share are parsed from the template's text once, on first use.
    """

    __slots__ = ("_fmt", "_pfn", "_ts", "end", "first", "head", "lines", "mid", "num", "prefix",
                 "rest", "suffix", "tail", "tail_text", "var", "want")  # fmt: skip

    def __init__(self, block: bytes, head: _Head, ts_at: int, pfn: re.Match[bytes] | None,
                 tail_start: int, tail: ScanTail) -> None:  # fmt: skip
        nl = block.find(b"\n")
        self.first = block
        self.head = head
        if ts_at >= 0:
            digits_end = block.find(b" ", ts_at + 5)
            self.prefix = block[: ts_at + 5]
            self.suffix: bytes | None = block[digits_end : nl + 1]
            self._ts = _TS_RE.fullmatch(block, ts_at + 5, nl)
        else:
            self.prefix = block[: nl + 1]
            self.suffix = None
            self._ts = None
        self.mid = self.end = b""
        self.num: re.Pattern[bytes] | None = None
        self._pfn = pfn
        self._fmt: DumpFormat | None = None
        if pfn is not None:
            modern = pfn["pfn"] is not None
            number, blockno = ("pfn", "block") if modern else ("lpfn", "lblock")
            self.mid = block[pfn.end(number) : pfn.start(blockno)]
            self.end = block[pfn.end(blockno) : pfn.end() + 1]
            self.num = _PFN_NUMBER_RE if modern else _DIGITS_RE
        self.tail_text = block[tail_start:]
        self.tail = tail
        self.lines = block.count(b"\n")
        # What `_Scanner.run` checks a record against: after the prefix, `var` (one of the
        # _VAR_* patterns, None where nothing varies) whose groups 1 and 2 must be `want`,
        # then `rest`: the text after the last number and the blank line's newline.
        self.var = _VAR_PATTERNS[(ts_at >= 0, None if pfn is None else pfn["pfn"] is not None)]
        self.want = (self.suffix or b"", self.mid)
        self.rest = self.end + self.tail_text + b"\n"

    @property
    def free_ts_nsec(self) -> int | None:
        """Return free_ts (5.14-6.6): part of the text every matching record shares."""
        return None if self._ts is None else _opt_int(self._ts["free_ts"])

    @property
    def flags(self) -> PageFlags | None:
        """Return the page flags every matching record shares."""
        m = self._pfn
        if m is None:
            return None
        value = m["value"]
        if value is not None:
            return _flags(value, m["flags"])[0]
        letters = decode(m["letters"])
        return PageFlags(None, tuple(name for column, (letter, name)
                                     in zip(letters, LETTER_FLAGS, strict=True)
                                     if column == letter))  # fmt: skip

    @property
    def block_mt(self) -> MigrateType | None:
        """Return the pageblock migratetype every matching record shares."""
        m = self._pfn
        if m is None:
            return None
        block_mt = m["block_mt"]
        if block_mt is not None:
            return _MIGRATETYPES[block_mt]
        return MIGRATETYPE_NUMBERS_3_19[int(m["lblock_mt"])]

    @property
    def page_mt(self) -> MigrateType | None:
        """Return the page migratetype (None where 3.19 printed `Fallback`)."""
        m = self._pfn
        if m is None:
            return None
        page_mt = m["page_mt"]
        if page_mt is not None:
            return _MIGRATETYPES[page_mt]
        return None if m["fallback"] == b"Fallback" else self.block_mt

    @property
    def fmt(self) -> DumpFormat:
        """Return the era of the lines every matching record shares."""
        if self._fmt is None:
            self._fmt = self._era()
        return self._fmt

    def _era(self) -> DumpFormat:
        """Name the era of the template's lines."""
        head = self.head
        if head.pid is None:
            header = HeaderStyle.MASK if head.gfp_names is None else HeaderStyle.MASK_NAMES
        else:
            free = self.free_ts_nsec is not None
            if head.tgid is None:
                header = HeaderStyle.PID_TS_FREE if free else HeaderStyle.PID_TS
            else:
                header = HeaderStyle.TGID_TS_FREE if free else HeaderStyle.TGID_TS
        m = self._pfn
        if m is None:
            pfn_style = PfnStyle.HEX
        elif m["lpfn"] is not None:
            pfn_style = PfnStyle.LETTERS
        elif m["pfn"].startswith(b"0x"):
            pfn_style = PfnStyle.HEX
        else:
            has_fields = _flags(m["value"], m["flags"])[1]
            pfn_style = PfnStyle.DEC if has_fields else PfnStyle.DEC_RAW_FLAGS
        return DumpFormat(header, pfn_style, self.tail.frame_style)


class ScanRecord:
    """One dump record as its bytes, with `PageRecord`'s fields read from them on demand.

    `text` is the block exactly as read, every line newline-ended (what `grep` prints);
    `info` the interned stack the record is grouped by; `handle` the 7.3 stack depot
    handle. `shape` is shared by records whose fields are all equal but ts_nsec, pfn and
    block (a key to memoize anything else on). `to_record()` gives the typed record.
    """

    __slots__ = ("lineno", "shape", "text")

    def __init__(self, text: bytes, shape: _Template, lineno: int) -> None:
        self.text = text
        self.shape = shape
        self.lineno = lineno

    @property
    def raw(self) -> str:
        """Return the block as text, as `PageRecord.raw` keeps it."""
        return decode(self.text)

    @property
    def tail(self) -> ScanTail:
        """Return what follows the PFN line, parsed."""
        return self.shape.tail

    @property
    def info(self) -> StackInfo:
        """Return the interned stack the record is grouped by."""
        return self.shape.tail.info

    @property
    def nr_pages(self) -> int:
        """Return the number of base pages (2^order)."""
        return self.shape.head.nr_pages

    @property
    def order(self) -> int:
        """Return the allocation order."""
        return self.shape.head.order

    @property
    def gfp_mask(self) -> int:
        """Return the GFP mask."""
        return self.shape.head.gfp_mask

    @property
    def gfp_names(self) -> str | None:
        """Return what %pGg printed after the mask."""
        return self.shape.head.gfp_names

    @property
    def pid(self) -> int | None:
        """Return the pid (5.11+)."""
        return self.shape.head.pid

    @property
    def tgid(self) -> int | None:
        """Return the tgid (5.18+)."""
        return self.shape.head.tgid

    @property
    def comm(self) -> str | None:
        """Return the command name (5.18+)."""
        return self.shape.head.comm

    @property
    def ts_nsec(self) -> int | None:
        """Return the allocation time (5.11+)."""
        shape = self.shape
        if shape.suffix is None:
            return None
        text = self.text
        start = len(shape.prefix)
        return int(text[start : text.find(b" ", start)])

    @property
    def free_ts_nsec(self) -> int | None:
        """Return the free time (5.14-6.6)."""
        return self.shape.free_ts_nsec

    def numbers(self) -> tuple[bytes, bytes] | None:
        """Return the PFN and pageblock digits of the PFN line, None without one."""
        shape = self.shape
        if shape.num is None:
            return None
        text = self.text
        start = text.find(b"\n") + 5  # after "PFN "
        mid = text.find(shape.mid, start)
        end = len(text) - len(shape.tail_text) - len(shape.end)
        return text[start:mid], text[mid + len(shape.mid) : end]

    @property
    def pfn(self) -> int | None:
        """Return the page frame number, None without a PFN line."""
        numbers = self.numbers()
        if numbers is None:
            return None
        pfn = numbers[0]
        return int(pfn, 16) if pfn.startswith(b"0x") else int(pfn)

    @property
    def has_pfn_line(self) -> bool:
        """Tell whether the record carried its PFN line."""
        return self.shape.num is not None

    @property
    def block(self) -> int | None:
        """Return the pageblock number."""
        numbers = self.numbers()
        return None if numbers is None else int(numbers[1])

    @property
    def page_mt(self) -> MigrateType | None:
        """Return the page's migratetype (None where 3.19 printed `Fallback`)."""
        return self.shape.page_mt

    @property
    def block_mt(self) -> MigrateType | None:
        """Return the pageblock's migratetype."""
        return self.shape.block_mt

    @property
    def flags(self) -> PageFlags | None:
        """Return the page flags."""
        return self.shape.flags

    @property
    def stack(self) -> tuple[Frame, ...]:
        """Return the frames as printed (`info.frames` may name a 7.3 handle instead)."""
        return self.shape.tail.frames

    @property
    def migrate_reason(self) -> str | None:
        """Return the last migrate reason (4.6+)."""
        return self.shape.tail.migrate_reason

    @property
    def slab_cache(self) -> bool:
        """Tell whether the record says `Slab cache page`."""
        return self.shape.tail.slab_cache

    @property
    def memcg(self) -> MemcgCharge | None:
        """Return the memcg the page is charged to (5.18+)."""
        return self.shape.tail.memcg

    @property
    def extra(self) -> tuple[str, ...]:
        """Return the trailing lines the reader does not know."""
        return self.shape.tail.extra

    @property
    def handle(self) -> int | None:
        """Return the stack depot handle (7.3 handle modes)."""
        return self.shape.tail.handle

    @property
    def fmt(self) -> DumpFormat:
        """Return the era of the record's lines."""
        return self.shape.fmt

    def to_record(self, path: str = "<dump>") -> PageRecord:
        """Parse the record into a typed `PageRecord`."""
        text = self.raw[:-1]
        return parse_block(tuple(text.split("\n")), path, self.lineno, text=text)

_DIGITS_RE = re.compile(rb"[0-9]{1,64}")
_PFN_NUMBER_RE = re.compile(rb"0x[0-9a-f]+|" + _PFN_DEC)
# The numbers a record may differ in from its template, by (has ts, PFN line: modern,
# 3.19 letters or none). Group 1 is the text after the ts digits (the template's `suffix`),
# group 2 the text between the PFN and the pageblock number (its `mid`), group 3 the
# pageblock digits: one match and one compare per record instead of a call per part. The
# bounds are parse_block's; a 65th digit fails the text that must follow.
_VAR_TS = rb"[0-9]{1,64}( [^\n]*\n)"
_VAR_PFN = rb"PFN (?:%s)( [^\n]*? Block )([0-9]{1,64})"
_VAR_PATTERNS: dict[tuple[bool, bool | None], re.Pattern[bytes] | None] = {
    (True, None): re.compile(_VAR_TS + rb"()"),
    (False, None): None,
    **{(True, modern): re.compile(_VAR_TS + _VAR_PFN % number.pattern)
       for modern, number in ((True, _PFN_NUMBER_RE), (False, _DIGITS_RE))},
    **{(False, modern): re.compile(rb"()" + _VAR_PFN % number.pattern)
       for modern, number in ((True, _PFN_NUMBER_RE), (False, _DIGITS_RE))},
}  # fmt: skip


AnyRecord = PageRecord | ScanRecord


class _Scanner:
    """The state of one scan: memos of headers and tails, and the last template."""

    def __init__(self, path: str, interner: StackInterner, on_warning: WarningHandler | None,
                 collapse: bool, blocks: bool) -> None:  # fmt: skip
        self.path = path
        self.on_warning = on_warning
        self.collapse = collapse
        self.blocks = blocks
        self.tails = _Tails(interner)
        self.heads: dict[bytes, _Head | None] = {}
        self.ts_shapes: dict[bytes, bool] = {}

    def slow(self, block: bytes, lineno: int) -> tuple[ScanRecord | None, _Template | None]:
        """Read a block with the memos and the PFN regex; None if parse_block must judge."""
        if not block.startswith(_HEADER):
            return None, None
        nl = block.find(b"\n")
        ts_at = block.rfind(b", ts ", 0, nl)
        # The text before ", ts ", or a whole header without ts with its newline: the two
        # kinds of key never collide (a header "..., pid 1" is no prefix of "..., pid 1, ts").
        key = block[:ts_at] if ts_at >= 0 else block[: nl + 1]
        heads = self.heads
        try:
            head = heads[key]
        except KeyError:
            if len(heads) >= _MEMO_LIMIT:
                heads.clear()
            head = heads[key] = _parse_head(key if ts_at >= 0 else key[:-1], ts_at >= 0)
        if head is None:
            return None, None
        if ts_at >= 0:
            shape = block[ts_at + 5 : nl].translate(_ZEROS)
            ok = self.ts_shapes.get(shape)
            if ok is None:
                if len(self.ts_shapes) >= _MEMO_LIMIT:
                    self.ts_shapes.clear()
                ok = self.ts_shapes[shape] = _TS_SHAPE_RE.fullmatch(shape) is not None
            if not ok:
                return None, None
        start = nl + 1
        pfn = None
        if block.startswith(b"PFN", start):
            start = block.find(b"\n", start) + 1
            pfn = _PFN_RE.fullmatch(block, nl + 1, start - 1)
            if pfn is None:
                return None, None  # a PFN line of no known shape: parse_block words it
        tail = self.tails.get(block[start:])
        if tail is None:
            return None, None
        template = _Template(block, head, ts_at, pfn, start, tail)
        return ScanRecord(block, template, lineno), template

    def typed(self, block: bytes, lineno: int, complete: bool
              ) -> tuple[PageRecord, StackInfo] | None:  # fmt: skip
        """Read a block as `DumpReader` does: a typed record, or a warning."""
        record = _typed(block, self.path, lineno, complete, self.on_warning)
        return None if record is None else (record, self.tails.typed(record))

    def run(self, read: Callable[[int], bytes], lineno: int, chunk_size: int
            ) -> Iterator[_Scanned]:  # fmt: skip
        """Scan a stream; `lineno` numbers its first line."""
        collapse = self.collapse
        tmpl: _Template | None = None
        # The template's parts, kept in locals: this loop runs once per record.
        prefix = rest_text = b""
        want: tuple[bytes, bytes] = (b"", b"")
        var_match: Callable[[bytes, int], re.Match[bytes] | None] | None = None
        n_prefix = n_rest = n_lines = 0
        info: StackInfo | None = None
        # The run being collapsed: its first record and its length.
        run_record: ScanRecord | None = None
        run_count = 0
        # With `blocks`, the pageblock digits of each record of the run, in order.
        with_blocks = self.blocks
        run_blocks: list[bytes] | None = [] if with_blocks else None
        with_pfn = False
        rest = b""
        read = CrLfReader(read).read
        while True:
            chunk = read(chunk_size)
            if not chunk:
                break
            data = rest + chunk if rest else chunk
            startswith = data.startswith
            pos = 0
            size = len(data)
            while True:
                while pos < size and data[pos] == 10:
                    pos += 1
                    lineno += 1
                if tmpl is not None and startswith(prefix, pos):
                    # The template's text but for the numbers? (see _Template)
                    q = pos + n_prefix
                    match = None
                    if var_match is not None:
                        match = var_match(data, q)
                        q = -1 if match is None or match.group(1, 2) != want else match.end()
                    if q >= 0 and startswith(rest_text, q):
                        if run_blocks is not None and with_pfn:
                            run_blocks.append(match.group(3))  # type: ignore[union-attr]
                        q += n_rest
                        if run_record is not None:
                            run_count += 1
                        else:
                            record = ScanRecord(data[pos : q - 1], tmpl, lineno)
                            if collapse:
                                run_record, run_count = record, 1
                            else:
                                yield record, info, 1, None  # type: ignore[misc]
                        lineno += n_lines
                        pos = q
                        continue
                end = data.find(b"\n\n", pos)
                if end < 0:
                    break
                if run_record is not None:
                    yield run_record, info, run_count, run_blocks  # type: ignore[misc]
                    run_record = None
                    run_blocks = [] if with_blocks else None
                block = data[pos : end + 1]
                first, new = self.slow(block, lineno)
                if first is not None and new is not None:
                    tmpl = new
                    prefix, rest_text, want = new.prefix, new.rest, new.want
                    var_match = None if new.var is None else new.var.match
                    with_pfn = new.num is not None
                    n_prefix, n_rest, n_lines = len(prefix), len(rest_text), new.lines + 1
                    info = new.tail.info
                    if collapse:
                        run_record, run_count = first, 1
                        numbers = first.numbers()
                        if run_blocks is not None and numbers is not None:
                            run_blocks.append(numbers[1])
                    else:
                        yield first, info, 1, None
                else:
                    typed = self.typed(block, lineno, True)
                    if typed is not None:
                        yield typed[0], typed[1], 1, None
                lineno += block.count(b"\n") + 1
                pos = end + 2
            rest = data[pos:]
        if run_record is not None:
            yield run_record, info, run_count, run_blocks  # type: ignore[misc]
        last = rest.rstrip(b"\n")
        if last:
            typed = self.typed(last + b"\n", lineno, False)
            if typed is not None:
                yield typed[0], typed[1], 1, None


_MEMO_LIMIT = 50_000


def _typed(block: bytes, path: str, lineno: int, complete: bool,
           on_warning: WarningHandler | None) -> PageRecord | None:  # fmt: skip
    """Read a block the regex did not take as `DumpReader` does: a record, or a warning."""
    text = decode(block[:-1])
    try:
        record = parse_block(tuple(text.split("\n")), path, lineno, text=text)
    except ParseError as exc:
        if on_warning is not None:
            if complete:
                on_warning(f"{exc} (block skipped)")
            else:
                on_warning(f"{path}:{lineno}: the dump ends inside a record "
                           f"({exc.reason}); that last record was dropped")
        return None
    if not complete and on_warning is not None:
        on_warning(f"{path}:{lineno}: the dump ends without a blank line; "
                   "the last record may be incomplete")
    return record
