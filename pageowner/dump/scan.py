"""A byte scanner for page_owner dumps: records as views, fields parsed from bytes on demand.

`scan_records` cuts blocks out of big reads as `iter_blocks_read` does and checks each one
with a single bytes regex over its header and PFN line; a block the regex takes is a
`ScanRecord`, whose fields are read from its bytes only when asked for, and whose frames
and trailing lines are parsed once per distinct text (a dump repeats a few thousand
stacks over millions of records). A block the regex does not take goes to the typed
reader (`parse_block`), so what is skipped, the warnings and the line numbers are exactly
those of `DumpReader`, and odd but valid records come back as typed `PageRecord`s.
The regexes accept a subset of what `parse_block` accepts, and agree with it on every
field (tests/test_scan.py checks both over generated dumps of every era).
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
# Orders 0-63 without leading zeros; anything else (leading zeros, an order out of range)
# is left to parse_block, which reads or refuses it.
_ORDER = rb"[0-9]|[1-5][0-9]|6[0-3]"
_MIGRATETYPE = b"|".join(re.escape(mt.value.encode()) for mt in MigrateType)
_LETTERS = b"".join(b"[" + letter.encode() + b" ]" for letter, _ in LETTER_FLAGS)
# The header (dumpfile._HEADER_RE) and the PFN line of any era, both whole lines. pid and
# ts only after the mask's names: the other order is no kernel's and parse_block refuses it.
# Classes exclude the newline, which a one-line regex in parse_block never sees.
_HEAD_RE = re.compile(
    rb"Page allocated via order (?P<order>" + _ORDER + rb"), mask (?P<mask>0x[0-9a-f]+)"
    rb"(?:\((?P<names>[^()\n]*)\)"
    rb"(?:, pid (?P<pid>-?" + _DEC + rb")(?:, tgid (?P<tgid>-?" + _DEC + rb") \((?P<comm>.*)\))?"
    rb", ts (?P<ts>" + _DEC + rb") ns(?:, free_ts (?P<free_ts>" + _DEC + rb") ns)?)?)?\n"
    rb"(?:PFN (?:"
    rb"(?P<pfn>0x[0-9a-f]+|" + _DEC + rb") type (?P<page_mt>" + _MIGRATETYPE + rb")"
    rb" Block (?P<block>" + _DEC + rb") type (?P<block_mt>" + _MIGRATETYPE + rb")"
    rb" Flags (?P<value>0x[0-9a-f]+)\((?P<flags>[^()\n]*)\)"
    rb"|(?P<lpfn>" + _DEC + rb") Block (?P<lblock>" + _DEC + rb")"
    rb" type (?P<lblock_mt>[0-" + str(len(MIGRATETYPE_NUMBERS_3_19) - 1).encode() + rb"])"
    rb" (?P<fallback>Fallback|        ) Flags (?P<letters>" + _LETTERS + rb")"
    rb")\n)?"
)
_HEADER = HEADER_PREFIX.encode()
_HANDLE_RE = re.compile(r"handle: (?P<handle>[0-9]{1,20})")
_MIGRATETYPES = {mt.value.encode(): mt for mt in MigrateType}
_PAGES = {str(order).encode(): 1 << order for order in range(MAX_RECORD_ORDER + 1)}


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


class ScanRecord:
    """One dump record as its bytes, with `PageRecord`'s fields read from them on demand.

    `text` is the block exactly as read, every line newline-ended (what `grep` prints).
    `info` is the interned stack the record is grouped by; `handle` the 7.3 stack depot
    handle. `to_record()` gives the typed record.
    """

    __slots__ = ("_m", "lineno", "nr_pages", "tail")

    def __init__(self, match: re.Match[bytes], tail: ScanTail, nr_pages: int, lineno: int
                 ) -> None:  # fmt: skip
        self._m = match
        self.tail = tail
        self.nr_pages = nr_pages
        self.lineno = lineno

    @property
    def text(self) -> bytes:
        """Return the block's bytes, every line newline-ended, no blank line."""
        return self._m.string

    @property
    def raw(self) -> str:
        """Return the block as text, as `PageRecord.raw` keeps it."""
        return decode(self._m.string)

    @property
    def info(self) -> StackInfo:
        """Return the interned stack the record is grouped by."""
        return self.tail.info

    @property
    def order(self) -> int:
        """Return the allocation order."""
        return int(self._m["order"])

    @property
    def gfp_mask(self) -> int:
        """Return the GFP mask."""
        return int(self._m["mask"], 16)

    @property
    def gfp_names(self) -> str | None:
        """Return what %pGg printed after the mask."""
        names = self._m["names"]
        return None if names is None else decode(names)

    @property
    def pid(self) -> int | None:
        """Return the pid (5.11+)."""
        return _opt_int(self._m["pid"])

    @property
    def tgid(self) -> int | None:
        """Return the tgid (5.18+)."""
        return _opt_int(self._m["tgid"])

    @property
    def comm(self) -> str | None:
        """Return the command name (5.18+)."""
        comm = self._m["comm"]
        return None if comm is None else decode(comm)

    @property
    def ts_nsec(self) -> int | None:
        """Return the allocation time (5.11+)."""
        return _opt_int(self._m["ts"])

    @property
    def free_ts_nsec(self) -> int | None:
        """Return the free time (5.14-6.6)."""
        return _opt_int(self._m["free_ts"])

    @property
    def pfn(self) -> int | None:
        """Return the page frame number, None without a PFN line."""
        m = self._m
        pfn = m["pfn"]
        if pfn is not None:
            return int(pfn, 16) if pfn.startswith(b"0x") else int(pfn)
        return _opt_int(m["lpfn"])

    @property
    def has_pfn_line(self) -> bool:
        """Tell whether the record carried its PFN line."""
        return self._m["pfn"] is not None or self._m["lpfn"] is not None

    @property
    def block(self) -> int | None:
        """Return the pageblock number."""
        m = self._m
        block = m["block"]
        return int(block) if block is not None else _opt_int(m["lblock"])

    @property
    def page_mt(self) -> MigrateType | None:
        """Return the page's migratetype (None where 3.19 printed `Fallback`)."""
        m = self._m
        page_mt = m["page_mt"]
        if page_mt is not None:
            return _MIGRATETYPES[page_mt]
        if m["lpfn"] is None or m["fallback"] == b"Fallback":
            return None
        return self.block_mt

    @property
    def block_mt(self) -> MigrateType | None:
        """Return the pageblock's migratetype."""
        m = self._m
        block_mt = m["block_mt"]
        if block_mt is not None:
            return _MIGRATETYPES[block_mt]
        number = m["lblock_mt"]
        return None if number is None else MIGRATETYPE_NUMBERS_3_19[int(number)]

    @property
    def flags(self) -> PageFlags | None:
        """Return the page flags."""
        m = self._m
        value = m["value"]
        if value is not None:
            return _flags(value, m["flags"])[0]
        letters = m["letters"]
        if letters is None:
            return None
        names = tuple(name for column, (letter, name) in zip(decode(letters), LETTER_FLAGS,
                                                             strict=True) if column == letter)
        return PageFlags(None, names)

    @property
    def stack(self) -> tuple[Frame, ...]:
        """Return the frames as printed (`info.frames` may name a 7.3 handle instead)."""
        return self.tail.frames

    @property
    def migrate_reason(self) -> str | None:
        """Return the last migrate reason (4.6+)."""
        return self.tail.migrate_reason

    @property
    def slab_cache(self) -> bool:
        """Tell whether the record says `Slab cache page`."""
        return self.tail.slab_cache

    @property
    def memcg(self) -> MemcgCharge | None:
        """Return the memcg the page is charged to (5.18+)."""
        return self.tail.memcg

    @property
    def extra(self) -> tuple[str, ...]:
        """Return the trailing lines the reader does not know."""
        return self.tail.extra

    @property
    def handle(self) -> int | None:
        """Return the stack depot handle (7.3 handle modes)."""
        return self.tail.handle

    @property
    def fmt(self) -> DumpFormat:
        """Return the era of the record's lines."""
        m = self._m
        if m["pid"] is None:
            header = HeaderStyle.MASK if m["names"] is None else HeaderStyle.MASK_NAMES
        elif m["tgid"] is None:
            header = HeaderStyle.PID_TS if m["free_ts"] is None else HeaderStyle.PID_TS_FREE
        else:
            header = HeaderStyle.TGID_TS if m["free_ts"] is None else HeaderStyle.TGID_TS_FREE
        pfn = m["pfn"]
        if pfn is not None:
            if pfn.startswith(b"0x"):
                pfn_style = PfnStyle.HEX
            else:
                has_fields = _flags(m["value"], m["flags"])[1]
                pfn_style = PfnStyle.DEC if has_fields else PfnStyle.DEC_RAW_FLAGS
        elif m["lpfn"] is not None:
            pfn_style = PfnStyle.LETTERS
        else:
            pfn_style = PfnStyle.HEX
        return DumpFormat(header, pfn_style, self.tail.frame_style)

    def to_record(self, path: str = "<dump>") -> PageRecord:
        """Parse the record into a typed `PageRecord`."""
        text = self.raw[:-1]
        return parse_block(tuple(text.split("\n")), path, self.lineno, text=text)


AnyRecord = PageRecord | ScanRecord


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
            handle = handle_of(parsed.extra)
            frames = parsed.stack
            info = self.interner.intern(stack_frames(frames, handle))
            tail = ScanTail(frames, info, parsed.migrate_reason, parsed.slab_cache,
                            parsed.memcg, parsed.extra, parsed.frame_style, handle)
        self.tails[text] = tail
        return tail

    def typed(self, record: PageRecord) -> StackInfo:
        """Intern the stack a typed record is grouped by."""
        return self.interner.intern(stack_frames(record.stack, handle_of(record.extra)))


def scan_records(
    read: Callable[[int], bytes],
    path: str,
    interner: StackInterner,
    *,
    on_warning: WarningHandler | None = None,
    first_lineno: int = 1,
    chunk_size: int = 1 << 20,
) -> Iterator[tuple[AnyRecord, StackInfo]]:
    """Yield each record of a dump read through `read(n)` with its interned stack.

    Lenient as `DumpReader` is: a block that is not a record is skipped with the same
    warning, and a last block cut off by the end of the input is reported the same way.
    """
    tails = _Tails(interner)
    get_tail = tails.get
    match_head = _HEAD_RE.match
    pages_of = _PAGES
    prev_text = b""
    prev_tail = get_tail(prev_text)
    rest = b""
    lineno = first_lineno  # line number of the first line of `rest`
    read = CrLfReader(read).read
    while True:
        chunk = read(chunk_size)
        if not chunk:
            break
        data = rest + chunk if rest else chunk
        pos = 0
        size = len(data)
        while True:
            while pos < size and data[pos] == 10:
                pos += 1
                lineno += 1
            end = data.find(b"\n\n", pos)
            if end < 0:
                break
            block = data[pos : end + 1]
            lines = block.count(b"\n")
            m = match_head(block)
            if m is not None:
                start = m.end()
                if m["pfn"] is None and m["lpfn"] is None and block.startswith(b"PFN", start):
                    m = None  # a PFN line of no known shape: parse_block words the error
                else:
                    tail_size = len(block) - start
                    if tail_size == len(prev_text) and block.endswith(prev_text):
                        tail = prev_tail
                    else:
                        prev_text = block[start:]
                        tail = prev_tail = get_tail(prev_text)
                    if tail is not None:
                        yield (ScanRecord(m, tail, pages_of[m["order"]], lineno), tail.info)
                    else:
                        m = None
            if m is None:
                typed = _typed(block, path, lineno, True, on_warning)
                if typed is not None:
                    yield typed, tails.typed(typed)
            lineno += lines + 1
            pos = end + 2
        rest = data[pos:]
    last = rest.rstrip(b"\n")
    if last:
        typed = _typed(last + b"\n", path, lineno, False, on_warning)
        if typed is not None:
            yield typed, tails.typed(typed)


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
