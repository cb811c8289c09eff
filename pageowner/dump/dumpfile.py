"""The text of /sys/kernel/debug/page_owner: a streaming reader and a writer for every era.

`iter_blocks` splits a byte stream on blank lines, `parse_block` turns one block into a
`PageRecord`, and `DumpReader` ties them together with the error policy (lenient: skip a
block that is not a record, with a warning; strict: raise `ParseError`). `format_record`
prints a record back in its own era and `convert_record` moves it to another one.

Text is decoded as UTF-8 with surrogateescape, so any byte a kernel or a corrupt file put in
a comm survives a read and a write unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO, Protocol

from pageowner.dump.fileio import CrLfReader, line_body
from pageowner.errors import ParseError
from pageowner.kernel.kernels import KernelVersion
from pageowner.kernel.tables import (
    DEFAULT_FLAGS_LAYOUT,
    LETTER_FLAGS,
    MIGRATETYPE_NUMBERS_3_19,
    FlagsLayout,
    decode_flags,
    gfp_migratetype,
    migrate_reason_names,
)
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
    "Block",
    "ByteReader",
    "DumpReader",
    "HANDLE_LIMIT",
    "HEADER_PREFIX",
    "convert_record",
    "decode",
    "encode",
    "format_frame",
    "format_record",
    "iter_blocks",
    "iter_blocks_read",
    "iter_records",
    "parse_block",
    "parse_frame",
    "write_dump",
]

HEADER_PREFIX = "Page allocated via order "
_PFN_PREFIX = "PFN"

WarningHandler = Callable[[str], None]


def decode(data: bytes) -> str:
    """Decode dump bytes so that every byte round-trips.

    >>> decode(b"comm\\xff")
    'comm\\udcff'
    """
    return data.decode("utf-8", "surrogateescape")


def encode(text: str) -> bytes:
    """Encode text read by `decode` back to the same bytes."""
    return text.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Block:
    """The lines of one blank-line-separated block, with where it starts in the file."""

    lineno: int
    lines: tuple[str, ...]
    # False when the input ended without the blank line that closes every kernel record.
    complete: bool = True
    text: str | None = None  # the lines joined by newlines, when the splitter had it


def iter_blocks(stream: Iterable[bytes]) -> Iterator[Block]:
    """Split a binary line stream into blocks on empty lines, CR-LF or LF ended.

    Runs of blank lines count as one separator, and a last block without its closing
    blank line is still yielded (page_owner_sort drops it, see docs/compat.md).
    """
    lines: list[str] = []
    start = 0
    lineno = 0
    for raw in stream:
        lineno += 1
        raw = line_body(raw)
        if not raw:
            if lines:
                yield Block(start, tuple(lines))
                lines = []
            continue
        if not lines:
            start = lineno
        lines.append(decode(raw))
    if lines:
        yield Block(start, tuple(lines), complete=False)


def iter_blocks_read(
    read: Callable[[int], bytes], chunk_size: int = 1 << 20, first_lineno: int = 1
) -> Iterator[Block]:
    """Split a byte stream read through `read(n)` into blocks; faster than line by line.

    Same rules as `iter_blocks`: blank-line runs are one separator, CR-LF reads as LF, and a
    last block without its closing blank line is yielded with `complete=False`.
    `first_lineno` numbers the stream's first line (a part of a file read on its own).
    """
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
            text = decode(data[pos:end])
            lines = tuple(text.split("\n"))
            yield Block(lineno, lines, True, text)
            lineno += len(lines) + 1
            pos = end + 2
        rest = data[pos:]
    last = rest.rstrip(b"\n")
    if last:
        yield Block(lineno, tuple(decode(last).split("\n")), complete=False)


# Decimal fields: ASCII digits only (\d would take other scripts' digits, which do not
# print back), at most 64 of them (Python converts no more than 4300, and no kernel prints
# more than 20); a longer number makes the line malformed.
_DEC = "[0-9]{1,64}"
_HEADER_RE = re.compile(
    rf"Page allocated via order (?P<order>{_DEC}), mask (?P<mask>0x[0-9a-f]+)"
    r"(?:\((?P<names>[^()]*)\))?"
    rf"(?:, pid (?P<pid>-?{_DEC})(?:, tgid (?P<tgid>-?{_DEC}) \((?P<comm>.*)\))?"
    rf", ts (?P<ts>{_DEC}) ns(?:, free_ts (?P<free_ts>{_DEC}) ns)?)?"
)
_PFN_RE = re.compile(
    rf"PFN (?P<pfn>0x[0-9a-f]+|{_DEC}) type (?P<page_mt>\w+) Block (?P<block>{_DEC})"
    r" type (?P<block_mt>\w+) Flags (?P<value>0x[0-9a-f]+)\((?P<flags>[^()]*)\)"
)
_PFN_LETTERS_RE = re.compile(
    rf"PFN (?P<pfn>{_DEC}) Block (?P<block>{_DEC}) type (?P<block_mt>{_DEC})"
    r" (?P<fallback>Fallback|        ) Flags (?P<letters>.{12})"
)
# The largest order whose page count fits in 64 bits; kernels use at most 18 (1 GiB).
MAX_RECORD_ORDER = 63
_ADDRESS_RE = re.compile(r" \[<(?P<address>[0-9a-f]+)>\] (?P<rest>.*)")
_SYMBOL_RE = re.compile(
    r"(?P<symbol>[^\s+\[\]]+)\+0x(?P<offset>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?: \[(?P<module>[^\[\]]+)\])?"
    # Appended by `pageowner symbolize`: " (file:line file:line ...)".
    r"(?: \((?P<source>[^()]*:[^()]*)\))?"
)
_RAW_ADDRESS_RE = re.compile(r"0x(?P<address>[0-9a-f]+)")
# 7.3 `mode=handle|stack_handle`: `handle: %u` after the frames (kernel-7.3.md 2). Only the
# digits %u prints (no sign, no leading zero, below 2^32) are a handle; else an extra line.
_HANDLE_RE = re.compile(r"handle: (?P<handle>0|[1-9][0-9]{0,9})")
HANDLE_LIMIT = 1 << 32
_MIGRATED = "Page has been migrated, last migrate reason: "
_SLAB_CACHE = "Slab cache page"
_CHARGED_RE = re.compile(
    r"Charged (?P<objcg>\(via objcg\) )?to (?P<offline>offline )?memcg (?P<name>.*)"
)

_MIGRATETYPES = {mt.value: mt for mt in MigrateType}
_LETTER_NAMES = dict(LETTER_FLAGS)


def _migratetype(name: str) -> MigrateType:
    """Look up a printed migratetype name."""
    try:
        return _MIGRATETYPES[name]
    except KeyError:
        raise ValueError(f"unknown migratetype {name!r}") from None


def parse_frame(line: str) -> Frame:
    """Parse one stack line (with its leading space) into a `Frame`.

    >>> parse_frame(" xfs_buf_read_map+0x54/0x280 [xfs]")
    Frame(symbol='xfs_buf_read_map', offset=84, size=640, module='xfs', address=None, raw=None, \
source=None)
    >>> parse_frame(" kmalloc_large+0x1f/0x90 (mm/slab_common.c:1129)").source
    'mm/slab_common.c:1129'
    """
    address = None
    rest = line[1:]
    match = _ADDRESS_RE.fullmatch(line)
    if match:
        address = int(match["address"], 16)
        rest = match["rest"]
    frame = _parse_symbolic(rest, address)
    # A frame is kept as parsed only if it prints back to the same text; an address column
    # that does not (not 16 digits, say) stays text too.
    if format_frame(frame) != line:
        frame = Frame(None, address=address, raw=rest)
        if format_frame(frame) != line:
            return Frame(None, raw=line[1:])
    return frame


def _parse_symbolic(text: str, address: int | None) -> Frame:
    """Parse the `%pS` part of a frame."""
    match = _SYMBOL_RE.fullmatch(text)
    if match:
        return Frame(
            match["symbol"],
            int(match["offset"], 16),
            int(match["size"], 16),
            match["module"],
            address,
            source=match["source"],
        )
    raw_address = _RAW_ADDRESS_RE.fullmatch(text)
    if raw_address and address is None:
        return Frame(None, address=int(raw_address["address"], 16))
    return Frame(None, address=address, raw=text)


def format_frame(frame: Frame) -> str:
    """Print a frame as the kernel does, with its leading space.

    The `[<address>]` column of the 3.19-5.1 eras is printed when the frame carries an
    address beside its symbol; `convert_record` adds or drops addresses to change era.

    >>> format_frame(Frame("post_alloc_hook", 0x177, 0x1a0))
    ' post_alloc_hook+0x177/0x1a0'
    >>> format_frame(Frame("kmalloc", 1, 2, address=0xffffffff81000000))
    ' [<ffffffff81000000>] kmalloc+0x1/0x2'
    """
    source = f" ({frame.source})" if frame.source is not None and frame.symbol is not None else ""
    if frame.address is not None and (frame.symbol is not None or frame.raw is not None):
        return f" [<{frame.address:016x}>] {frame.symbolic()}{source}"
    return f" {frame.symbolic()}{source}"


class _FrameCache:
    """Memoize parsed frame lines: a dump repeats a few thousand stack lines millions of times."""

    _LIMIT = 200_000

    def __init__(self) -> None:
        self._frames: dict[str, Frame] = {}

    def get(self, line: str) -> Frame:
        """Return the parsed frame of a line."""
        frame = self._frames.get(line)
        if frame is None:
            if len(self._frames) >= self._LIMIT:
                self._frames.clear()
            frame = self._frames[line] = parse_frame(line)
        return frame




def _header_style(match: re.Match[str]) -> HeaderStyle:
    """Name the header shape from the groups that matched."""
    if match["pid"] is None:
        return HeaderStyle.MASK if match["names"] is None else HeaderStyle.MASK_NAMES
    if match["names"] is None:
        raise ValueError("pid and ts without the mask's names is no kernel's header")
    if match["tgid"] is None:
        return HeaderStyle.PID_TS if match["free_ts"] is None else HeaderStyle.PID_TS_FREE
    return HeaderStyle.TGID_TS if match["free_ts"] is None else HeaderStyle.TGID_TS_FREE


def _parse_flags(value: str, text: str) -> tuple[PageFlags, bool]:
    """Parse `%pGp` contents; tell whether it carried the post-2021 `field=` parts."""
    names: list[str] = []
    fields: list[tuple[str, str]] = []
    for part in filter(None, text.split("|")):
        key, sep, val = part.partition("=")
        if sep:
            fields.append((key, val))
        else:
            names.append(part)
    return PageFlags(int(value, 16), tuple(names), tuple(fields)), bool(fields)


def _parse_pfn_line(line: str, cache: _Cache | None = None) -> dict[str, object]:
    """Parse a PFN line of any era into record fields."""
    match = _PFN_RE.fullmatch(line)
    if match:
        pfn_text = match["pfn"]
        if cache is not None:
            flags, has_fields = cache.parse_flags(match["value"], match["flags"])
        else:
            flags, has_fields = _parse_flags(match["value"], match["flags"])
        if pfn_text.startswith("0x"):
            style = PfnStyle.HEX
        else:
            style = PfnStyle.DEC if has_fields else PfnStyle.DEC_RAW_FLAGS
        return {
            "pfn": int(pfn_text, 0),
            "page_mt": _migratetype(match["page_mt"]),
            "block": int(match["block"]),
            "block_mt": _migratetype(match["block_mt"]),
            "flags": flags,
            "style": style,
        }
    match = _PFN_LETTERS_RE.fullmatch(line)
    if match:
        number = int(match["block_mt"])
        if number >= len(MIGRATETYPE_NUMBERS_3_19):
            raise ValueError(f"unknown 3.19 migratetype number {number}")
        block_mt = MIGRATETYPE_NUMBERS_3_19[number]
        letters = match["letters"]
        names = []
        for column, (letter, name) in zip(letters, LETTER_FLAGS, strict=True):
            if column == letter:
                names.append(name)
            elif column != " ":
                raise ValueError(f"flag column {letter!r} holds {column!r}")
        return {
            "pfn": int(match["pfn"]),
            # 3.19 prints no page migratetype, only whether it differs from the block's.
            "page_mt": None if match["fallback"] == "Fallback" else block_mt,
            "block": int(match["block"]),
            "block_mt": block_mt,
            "flags": PageFlags(None, tuple(names)),
            "style": PfnStyle.LETTERS,
        }
    raise ValueError("PFN line of no known shape")


@dataclass(frozen=True, slots=True)
class _Tail:
    """The parsed part of a block after its PFN line: frames and trailing lines."""

    stack: tuple[Frame, ...]
    handle: int | None
    migrate_reason: str | None
    slab_cache: bool
    memcg: MemcgCharge | None
    extra: tuple[str, ...]
    frame_style: FrameStyle


class _Cache:
    """Memoize parsed stack sections and flag words: a dump repeats a few thousand stacks
    and flag sets over millions of records."""

    _LIMIT = 50_000

    def __init__(self) -> None:
        self.frames = _FrameCache()
        self.tails: dict[tuple[str, ...], _Tail] = {}
        self.flags: dict[tuple[str, str], tuple[PageFlags, bool]] = {}

    def tail(self, lines: tuple[str, ...], path: str, lineno: int) -> _Tail:
        """Return the parsed frames and trailing lines (lineno is the first one's)."""
        tail = self.tails.get(lines)
        if tail is None:
            if len(self.tails) >= self._LIMIT:
                self.tails.clear()
            tail = self.tails[lines] = _parse_tail(lines, path, lineno, self.frames)
        return tail

    def parse_flags(self, value: str, text: str) -> tuple[PageFlags, bool]:
        """Return parsed %pGp contents."""
        key = (value, text)
        flags = self.flags.get(key)
        if flags is None:
            if len(self.flags) >= self._LIMIT:
                self.flags.clear()
            flags = self.flags[key] = _parse_flags(value, text)
        return flags


def _parse_tail(
    lines: tuple[str, ...], path: str, lineno: int, frame_cache: _FrameCache
) -> _Tail:
    """Parse the frames and the trailing lines that follow the PFN line."""
    index = 0
    frames: list[Frame] = []
    while index < len(lines) and lines[index].startswith(" "):
        frames.append(frame_cache.get(lines[index]))
        index += 1
    handle = None
    match = _HANDLE_RE.fullmatch(lines[index]) if index < len(lines) else None
    if match and int(match["handle"]) < HANDLE_LIMIT:
        handle = int(match["handle"])
        index += 1
    migrate_reason = None
    slab_cache = False
    memcg = None
    extra: list[str] = []
    for offset, line in enumerate(lines[index:], start=index):
        if line.startswith(" "):
            raise ParseError(path, lineno + offset, line, "stack frame after the trailing lines")
        if line.startswith(_MIGRATED) and migrate_reason is None and not extra:
            migrate_reason = line[len(_MIGRATED) :]
        elif line == _SLAB_CACHE and not slab_cache and memcg is None and not extra:
            slab_cache = True
        elif (charged := _CHARGED_RE.fullmatch(line)) and memcg is None and not extra:
            memcg = MemcgCharge(charged["name"], bool(charged["objcg"]), bool(charged["offline"]))
        else:
            extra.append(line)
    frame_style = (
        FrameStyle.ADDRESS
        if any(frame.address is not None and frame.symbol is not None for frame in frames)
        else FrameStyle.PLAIN
    )
    return _Tail(
        tuple(frames), handle, migrate_reason, slab_cache, memcg, tuple(extra), frame_style
    )


_DEFAULT_PARSE_CACHE = _Cache()


def parse_block(
    lines: tuple[str, ...] | list[str],
    path: str = "<dump>",
    lineno: int = 1,
    cache: _Cache | None = None,
    text: str | None = None,
) -> PageRecord:
    """Parse the lines of one block into a `PageRecord`, or raise ParseError.

    `text`, when given, is the lines joined by newlines (saves joining them again).
    """
    cache = cache or _DEFAULT_PARSE_CACHE
    if not lines or not lines[0].startswith(HEADER_PREFIX):
        first = lines[0] if lines else ""
        raise ParseError(path, lineno, first, "not a page_owner record")
    header = _HEADER_RE.fullmatch(lines[0])
    if header is None:
        raise ParseError(path, lineno, lines[0], "malformed page_owner header")
    try:
        header_style = _header_style(header)
    except ValueError as exc:
        raise ParseError(path, lineno, lines[0], str(exc)) from None
    order = int(header["order"])
    if order > MAX_RECORD_ORDER:
        raise ParseError(path, lineno, lines[0],
                         f"order {order} is out of range (0-{MAX_RECORD_ORDER})")
    fields: dict[str, object] = {}
    pfn_style = PfnStyle.HEX
    index = 1
    if index < len(lines) and lines[index].startswith(_PFN_PREFIX):
        try:
            fields = _parse_pfn_line(lines[index], cache)
        except ValueError as exc:
            raise ParseError(path, lineno + index, lines[index], str(exc)) from None
        pfn_style = fields.pop("style")  # type: ignore[assignment]
        index += 1
    tail = cache.tail(tuple(lines[index:]), path, lineno + index)
    return PageRecord(
        order=order,
        gfp_mask=int(header["mask"], 16),
        gfp_names=header["names"],
        pid=_opt_int(header["pid"]),
        tgid=_opt_int(header["tgid"]),
        comm=header["comm"],
        ts_nsec=_opt_int(header["ts"]),
        free_ts_nsec=_opt_int(header["free_ts"]),
        stack=tail.stack,
        handle=tail.handle,
        migrate_reason=tail.migrate_reason,
        slab_cache=tail.slab_cache,
        memcg=tail.memcg,
        extra=tail.extra,
        fmt=DumpFormat(header_style, pfn_style, tail.frame_style),
        lineno=lineno,
        raw=text + "\n" if text is not None else "".join(line + "\n" for line in lines),
        **fields,  # type: ignore[arg-type]
    )


def _opt_int(text: str | None) -> int | None:
    """Convert an optional decimal group."""
    return None if text is None else int(text)


def format_header(record: PageRecord) -> str:
    """Print the first line of a record in its own era."""
    style = record.fmt.header
    text = f"{HEADER_PREFIX}{record.order}, mask {record.gfp_mask:#x}"
    if style is HeaderStyle.MASK:
        return text
    text += f"({record.gfp_names or ''})"
    if style is HeaderStyle.MASK_NAMES:
        return text
    pid = record.pid if record.pid is not None else 0
    if style.has_tgid:
        tgid = record.tgid if record.tgid is not None else pid
        text += f", pid {pid}, tgid {tgid} ({record.comm or ''})"
    else:
        text += f", pid {pid}"
    text += f", ts {record.ts_nsec or 0} ns"
    if style.has_free_ts:
        text += f", free_ts {record.free_ts_nsec or 0} ns"
    return text


def format_pfn_line(record: PageRecord) -> str | None:
    """Print the PFN line of a record in its own era, or None if it has none."""
    if record.pfn is None:
        return None
    style = record.fmt.pfn
    flags = record.flags or PageFlags(0)
    block = record.block if record.block is not None else record.pfn >> 9
    block_mt = record.block_mt or MigrateType.UNMOVABLE
    if style is PfnStyle.LETTERS:
        number = MIGRATETYPE_NUMBERS_3_19.index(block_mt)
        fallback = "        " if record.page_mt == block_mt else "Fallback"
        letters = "".join(
            letter if name in flags.names else " " for letter, name in LETTER_FLAGS
        )
        return f"PFN {record.pfn} Block {block} type {number} {fallback} Flags {letters}"
    pfn = f"{record.pfn:#x}" if style is PfnStyle.HEX else str(record.pfn)
    page_mt = record.page_mt or block_mt
    parts = list(flags.names)
    if style is not PfnStyle.DEC_RAW_FLAGS:
        parts += [f"{key}={value}" for key, value in flags.fields]
    return (
        f"PFN {pfn} type {page_mt.value} Block {block} type {block_mt.value}"
        f" Flags {flags.value or 0:#x}({'|'.join(parts)})"
    )


def format_lines(record: PageRecord) -> list[str]:
    """Return the lines of a record as its era prints them, without newlines."""
    lines = [format_header(record)]
    pfn_line = format_pfn_line(record)
    if pfn_line is not None:
        lines.append(pfn_line)
    lines.extend(format_frame(frame) for frame in record.stack)
    if record.handle is not None:
        lines.append(f"handle: {record.handle}")
    if record.migrate_reason is not None:
        lines.append(_MIGRATED + record.migrate_reason)
    if record.slab_cache:
        lines.append(_SLAB_CACHE)
    if record.memcg is not None:
        charge = record.memcg
        via = "(via objcg) " if charge.via_objcg else ""
        offline = "offline " if charge.offline else ""
        lines.append(f"Charged {via}to {offline}memcg {charge.name}")
    lines.extend(record.extra)
    return lines


def format_record(record: PageRecord) -> str:
    """Print a record in its own era, closing blank line included."""
    return "".join(line + "\n" for line in format_lines(record)) + "\n"


def convert_record(
    record: PageRecord, kernel: KernelVersion, layout: FlagsLayout = DEFAULT_FLAGS_LAYOUT
) -> PageRecord:
    """Return the record as `kernel` would print it: fields, names and shapes of its era.

    `layout` says where node and zone sit in a pre-5.14 flags word, for printing the
    node=/zone= fields 5.14+ add (a layout without node bits gets no node= field, as %pGp
    prints none without NUMA).
    """
    fmt = kernel.fmt
    gfp_table = kernel.gfp_table
    names = decode_flags(record.gfp_mask, gfp_table) if gfp_table is not None else None
    header = fmt.header
    flags, page_mt, block_mt = _convert_pfn_fields(record, kernel, layout)
    if fmt.frames is FrameStyle.ADDRESS:
        stack = tuple(
            replace(frame, address=frame.address or 0) if frame.symbol is not None else frame
            for frame in record.stack
        )
    else:
        stack = tuple(
            replace(frame, address=None) if frame.symbol is not None else frame
            for frame in record.stack
        )
    return replace(
        record,
        gfp_names=names,
        pid=(record.pid if record.pid is not None else 0) if header.has_pid else None,
        ts_nsec=(record.ts_nsec or 0) if header.has_pid else None,
        tgid=(record.tgid if record.tgid is not None else record.pid or 0)
        if header.has_tgid
        else None,
        comm=(record.comm or "") if header.has_tgid else None,
        free_ts_nsec=(record.free_ts_nsec or 0) if header.has_free_ts else None,
        flags=flags,
        page_mt=page_mt,
        block_mt=block_mt,
        stack=stack,
        # Kernels before 7.3 print no handle; a handle-only record keeps no stack there.
        handle=record.handle if kernel.has_print_modes else None,
        migrate_reason=_convert_reason(record.migrate_reason, kernel)
        if kernel.migrate_line
        else None,
        slab_cache=record.slab_cache and kernel.memcg_lines,
        memcg=record.memcg if kernel.memcg_lines else None,
        fmt=fmt,
        raw=None,
    )


def _convert_reason(reason: str | None, kernel: KernelVersion) -> str | None:
    """Rename MR_CONTIG_RANGE's string for `kernel`: `cma` before 5.15, `contig_range` after."""
    if reason in ("cma", "contig_range"):
        return migrate_reason_names(kernel.version)[_MR_CONTIG_RANGE]
    return reason


_MR_CONTIG_RANGE = 6  # enum migrate_reason (MR_CMA until v5.1)

# The 3.19 letter columns name compound pages `compound`; later kernels say `head`.
_TO_LETTER_NAMES = {"head": "compound", "swapcache": "swapcache"}


def _convert_pfn_fields(
    record: PageRecord, kernel: KernelVersion, layout: FlagsLayout
) -> tuple[PageFlags | None, MigrateType | None, MigrateType | None]:
    """Return flags and migratetypes as `kernel` prints them on the PFN line."""
    flags = record.flags
    page_mt, block_mt = record.page_mt, record.block_mt
    if record.pfn is None or flags is None:
        return flags, page_mt, block_mt
    style = kernel.fmt.pfn
    if page_mt is None and block_mt is not None:
        page_mt = gfp_migratetype(record.gfp_mask)
    if style is PfnStyle.LETTERS:
        letter_names = {name for _, name in LETTER_FLAGS}
        names = [_TO_LETTER_NAMES.get(name, name) for name in flags.names]
        ordered = tuple(name for _, name in LETTER_FLAGS if name in names and name in letter_names)
        # MIGRATE_RESERVE held the slot HighAtomic took in v4.4.
        if block_mt is MigrateType.HIGHATOMIC:
            block_mt = MigrateType.RESERVE
        if page_mt is MigrateType.HIGHATOMIC:  # Movable|Reclaimable was 3 too: Reserve
            page_mt = MigrateType.RESERVE
        if page_mt is not block_mt:
            page_mt = None  # printed as "Fallback"
        return PageFlags(None, ordered), page_mt, block_mt
    if flags.value is not None:
        flag_names = decode_flags(flags.value & ((1 << 27) - 1), kernel.pageflag_table)
        names_tuple = tuple(filter(None, flag_names.split("|")))
    else:
        names_tuple = flags.names
    fields = flags.fields
    if style is PfnStyle.DEC_RAW_FLAGS:
        fields = ()
    elif not fields:
        # Pre-5.14 dumps print no fields: read them from the word with the layout given,
        # rather than claim a node (`node=0`) nobody printed.
        value = flags.value or 0
        derived = ((name, layout.field(value, name)) for name in ("node", "zone"))
        fields = tuple((name, str(bits)) for name, bits in derived if bits is not None)
    return PageFlags(flags.value or 0, names_tuple, fields), page_mt, block_mt


def write_dump(records: Iterable[PageRecord], out: BinaryIO) -> int:
    """Write records as a page_owner dump to a binary stream; return how many."""
    count = 0
    for record in records:
        out.write(encode(format_record(record)))
        count += 1
    return count


class ByteReader(Protocol):
    """Anything with `read(n)`: DumpReader then cuts blocks from big reads, not lines."""

    def read(self, size: int, /) -> bytes:
        """Return up to `size` bytes, b"" at the end."""
        ...


class DumpReader:
    """Iterate the records of a dump, applying the lenient or strict error policy.

    Lenient (the default, as `sort` wants): a block that is not a page_owner record is
    skipped and reported through `on_warning`. Strict: it raises `ParseError`. A last block
    cut off by the end of the file is kept when it parses and reported either way.
    """

    def __init__(
        self,
        stream: Iterable[bytes] | ByteReader,
        path: str = "<dump>",
        *,
        strict: bool = False,
        on_warning: WarningHandler | None = None,
        first_lineno: int = 1,
    ) -> None:
        self.stream = stream
        self.path = path
        # Where a byte stream starts in its file (a `read` stream only; see iter_blocks_read).
        self.first_lineno = first_lineno
        self.strict = strict
        self.on_warning = on_warning
        self.skipped = 0
        self.truncated = False
        self._cache = _Cache()

    def _warn(self, message: str) -> None:
        """Pass a warning on, if anyone listens."""
        if self.on_warning is not None:
            self.on_warning(message)

    def __iter__(self) -> Iterator[PageRecord]:
        """Yield the records in file order."""
        read = getattr(self.stream, "read", None)
        blocks = (
            iter_blocks_read(read, first_lineno=self.first_lineno) if callable(read)
            else iter_blocks(self.stream)  # type: ignore[arg-type]
        )
        for block in blocks:
            try:
                record = parse_block(
                    block.lines, self.path, block.lineno, self._cache, block.text
                )
            except ParseError as exc:
                if not block.complete:
                    self.truncated = True
                    self._warn(f"{self.path}:{block.lineno}: the dump ends inside a record "
                               f"({exc.reason}); that last record was dropped")
                    continue
                if self.strict:
                    raise
                self.skipped += 1
                self._warn(f"{exc} (block skipped)")
                continue
            if not block.complete:
                self.truncated = True
                self._warn(f"{self.path}:{block.lineno}: the dump ends without a blank line; "
                           "the last record may be incomplete")
            yield record


def iter_records(
    stream: Iterable[bytes],
    path: str = "<dump>",
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
) -> Iterator[PageRecord]:
    """Yield the records of a dump; see `DumpReader` for the error policy."""
    return iter(DumpReader(stream, path, strict=strict, on_warning=on_warning))
