"""The normaliser behind `pageowner.dump.repair`: any page_owner text in, canonical text out.

`Normaliser` takes the lines of pasted, mailed, logged or sorted page_owner text and
writes the `/sys/kernel/debug/page_owner` text (or show_stacks text) a kernel would have
printed, noting each kind of repair once with its first line and a count. The rules are
in docs/reader.md ("Text as people post it"); each has a test in tests/test_repair.py.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pageowner.dump.dumpfile import (
    _HEADER_RE,
    _parse_pfn_line,
    decode,
    encode,
)
from pageowner.dump.fileio import iter_lines, line_body
from pageowner.errors import InputError, ParseError

__all__ = [
    "POINTER_RE",
    "Normaliser",
    "DIFF_HINT_RE",
    "QP_HINT_RE",
    "Repeat",
    "frame_line",
    "header_from_fields",
    "normalise_text",
]

# The largest number of records one report line may expand into; a count beyond it is
# corrupt (a real group of 10**8 records is a 100 GB dump).
MAX_EXPANSION = 10**8
_FRAME_CACHE = 100_000


# -- line shapes ---------------------------------------------------------------------------

# Quoted-printable soft line breaks and escapes (RFC 2045), seen in mail saved raw.
# A line of "=" signs (KASAN's report delimiters) is no soft break: QP escapes a literal "=".
QP_HINT_RE = re.compile(rb"(?<!=)=\r?\n|=3D|=20\r?$", re.MULTILINE)
_QP_ESCAPE_RE = re.compile(rb"=([0-9A-F]{2})")
# A unified diff's hunk header: a patch (a pull request, a mail) whose hunks hold the text.
DIFF_HINT_RE = re.compile(rb"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@", re.MULTILINE)
_MARKUP_RE = re.compile(r"(?:`{3,}.*|~{3,}.*|</?(?:pre|code)>)")
_ENTITY_RE = re.compile(r"&(?:lt|gt|amp|quot|#\d+);")
_MAIL_QUOTE_RE = re.compile(r"(?:> ?)+")
# Kernel log prefixes: <4> levels, [  174.390000] times, [ T9821]/[ C1] callers,
# (1)[123:comm] of some vendor kernels, and syslog's "Mon DD HH:MM:SS host kernel: ".
# `dmesg -T` dates, `dmesg -x` facility:level columns, and ISO-dated journal lines too.
_LOG_PREFIX_RE = re.compile(
    r"(?:<\d{1,2}>|\[ *\d+\.\d+\]|\[ *[TC]\d+\]|\(\d+\)\[\d+:[^\]]*\]"
    r"|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\]"
    r"|(?:kern|user|daemon) *:(?:emerg|alert|crit|err|warn|notice|info|debug) *: "
    r"|(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT[\d:.]+(?:[+-][\d:]+|Z)?)"
    r" \S+ kernel: ?)"
)
_ELISION_RE = re.compile(r"(?:\.{2,}|\u2026|\(\.{2,}\)|\[ ?\.{2,} ?\]|<\.{2,}>|\[snip\]|<snip>)")
_FRAME_RE = re.compile(
    r"(?:\[<(?P<addr>[0-9a-fA-F]+)>\] ?|\[0x(?P<addr2>[0-9a-fA-F]+)\] ?)?"
    r"(?P<body>(?P<dot>\.)?(?P<sym>[A-Za-z_$][\w.$]*)\+(?P<off>0x[0-9a-fA-F]+|[0-9]+)"
    r"(?:/(?P<size>0x[0-9a-fA-F]+|[0-9]+))?(?P<rest>(?: \[[^\[\]]+\])?(?: \([^()]*\))?"
    # syzbot's symbolized frames: `sym+0x1f3/0x230 mm/page_alloc.c:1537`, and the inlined
    # callers it lists as `prep_new_page mm/page_alloc.c:1544 [inline]`.
    r"(?: [\w./-]+:\d+(?: \[inline\])?)?)"
    r"|[A-Za-z_][\w.]* [\w./-]+:\d+ \[inline\]|0x[0-9a-fA-F]+|\(null\))"
)
_SYZBOT_SOURCE_RE = re.compile(r" ([\w./-]+:\d+)$")
_REPORT_RE = re.compile(r"(?P<times>\d+) times(?:, (?P<pages>\d+) pages)?(?P<rest>.*)")
_REPORT_PID_RE = re.compile(r", PID (-?\d+)")
_REPORT_TGID_RE = re.compile(r", TGID (-?\d+)")
_REPORT_COMM_RE = re.compile(r", task_comm_name: (.*?)(?=, allocated by | \((?:UN)?RELEASED\)|$)")
_HEADER_START = "Page allocated via order "
_ORDER_RE = re.compile(r"Page allocated via order \d+\b")
_LOG_ALLOC_RE = re.compile(
    r"page (?:last )?allocated via order (?P<order>\d+), migratetype (?P<mt>\w+), "
    r"gfp_mask (?P<rest>0x[0-9a-f]+.*)"
)
_LOG_FREE_RE = re.compile(r"page last free (?:pid .* )?stack trace:")
_LOG_MISSING = ("page_owner allocation stack trace missing", "page_owner free stack trace missing")
# The lines around __dump_page_owner() output that say nothing the record lacks: its own
# first line (v5.4+), and dump_page()'s `page: refcount:... pfn:...` line before it. They
# are read silently, so a log (or `capture --vmcore --freed`) warns only of other lines.
_LOG_CONTEXT_RE = re.compile(r"page_owner tracks the page as (?:allocated|freed)|page: .*")
# __dump_page_owner()'s migration line, lower case where the dump prints `Page has been...`.
_LOG_MIGRATED = "page has been migrated, last migrate reason: "
_STACK_COUNT_RE = re.compile(r"(?:nr_base_pages|stack_count): (-?\d+)")
_HANDLE_RE = re.compile(r"handle: (-?\d+)")
# A.5: migration, memcg, and (pending 2026 `mode=handle`) the stack handle.
_TRAILERS = ("Page has been migrated, last migrate reason: ", "Slab cache page", "Charged ",
             "handle: ")
_FIELD_WORDS = ("mask ", "pid ", "tgid ", "ts ", "free_ts ", "type ", "Block ", "Flags ", "(")

# Lenient header fields, searched one by one in whatever is left after the order.
_H_MASK_RE = re.compile(r"(?:mask|gfp_mask) (?P<mask>0x[0-9a-fA-F]+)(?:\((?P<names>[^()]*)\))?")
_H_PID_RE = re.compile(r"\bpid (?P<pid>-?\d+)(?: \((?P<comm>[^()]*)\))?")
_H_TGID_RE = re.compile(r"\btgid (?P<tgid>-?\d+)(?: \((?P<comm>.*)\)(?=, | ?$|,))?")
_H_TS_RE = re.compile(r"(?<![\w])ts (?P<ts>\d+)(?: ?ns)?")
_H_FREE_TS_RE = re.compile(r"\bfree_ts (?P<free_ts>\d+)(?: ?ns)?")
POINTER_RE = re.compile(r"[0-9a-f]{8,16}")


@dataclass(frozen=True, slots=True)
class _Kind:
    """One kind of repair: its key and how a warning describes it."""

    key: str
    text: str
    benign: bool = False  # also normal in a clean dump (the readers skip such blocks)


_KINDS = {k.key: k for k in (
    _Kind("qp", "quoted-printable soft breaks and escapes decoded"),
    _Kind("diff", "a patch's hunks read as the text they make (their - lines dropped)"),
    _Kind("html", "HTML entities (&lt; &gt; &amp;) decoded"),
    _Kind("quote", "mail quoting ('> ') removed"),
    _Kind("logprefix", "kernel log prefixes removed"),
    _Kind("indent", "stack frames re-indented to one space"),
    _Kind("blank", "whitespace-only lines read as record separators"),
    _Kind("trailing", "trailing whitespace removed"),
    _Kind("elision", "elision lines ('...') dropped"),
    _Kind("markup", "markup lines (``` fences, <pre>) dropped"),
    _Kind("separator", "records without a blank line between them split"),
    _Kind("wrap", "wrapped header or PFN line joined"),
    _Kind("header", "header of no kernel's shape rebuilt (unknown fields left out, "
                    "-1/0 for missing ones)"),
    _Kind("pointer", "pointer printed instead of the gfp names; names left empty"),
    _Kind("pfn", "PFN line of unknown shape dropped"),
    _Kind("frame", "frame rewritten (ppc64 dot name, decimal offset or [0x..] address)"),
    _Kind("inline", "syzbot's [inline] frames folded into the source of the frame they are "
                    "inlined in"),
    _Kind("unknown", "lines of unknown shape kept with their record, after its stack"),
    _Kind("report", "page_owner_sort report read: one record per time counted"),
    _Kind("log", "__dump_page_owner() output of a kernel log read as records"),
    _Kind("handles", "show_handles block read with its handle as its stack"),
    _Kind("stacks", "show_stacks block read"),
    _Kind("extra", "lines of unknown shape after a stack kept", benign=True),
    _Kind("outside", "lines that are not page_owner data ignored", benign=True),
    _Kind("cr", "lines with a lone CR (data to the readers) ignored", benign=True),
)}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Repeat:
    """Output bytes to be written `count` times over (the records of a report group)."""

    block: bytes
    count: int


_Out = list["str | Repeat"]


@dataclass
class _Seen:
    """The first occurrence of a repair kind, and how often it happened."""

    lineno: int
    line: str
    count: int = 0


@dataclass
class _Record:
    """A record being rebuilt."""

    lineno: int
    header: str | None
    weight: tuple[int, int | None] | None = None  # times, pages (from a report)
    pfn: str | None = None
    frames: list[str] = field(default_factory=list)
    free_frames: list[str] = field(default_factory=list)
    trailers: list[str] = field(default_factory=list)
    stack_count: str | None = None  # show_stacks: its count line
    handle: str | None = None
    log: bool = False
    in_free: bool = False
    joinable: bool = True  # the header or PFN line may still be continued


class _Repairs:
    """The repairs made so far: one entry per kind, with its first line and a count."""

    def __init__(self, path: str, strict: bool) -> None:
        self.path = path
        self.strict = strict
        self.seen: dict[str, _Seen] = {}
        self._lineno = 0
        self._line_kinds: list[str] = []  # the kinds noted for the current line

    def _note(self, key: str, line: str, lineno: int | None = None) -> None:
        """Count one repair of a kind; refuse it under strict."""
        at = self._lineno if lineno is None else lineno
        seen = self.seen.get(key)
        if seen is None:
            if self.strict and not _KINDS[key].benign:
                raise ParseError(self.path, at, line, f"{_KINDS[key].text} (refused by --strict)")
            seen = self.seen[key] = _Seen(at, line)
        seen.count += 1
        self._line_kinds.append(key)

    def repaired(self) -> bool:
        """Tell whether anything other than stray lines had to be repaired."""
        return any(not _KINDS[key].benign for key in self.seen)

    def warnings(self) -> list[str]:
        """Return one warning per kind of repair, in the order they first happened."""
        out = []
        for key, seen in sorted(self.seen.items(), key=lambda item: item[1].lineno):
            times = "once" if seen.count == 1 else f"{seen.count} times"
            quoted = seen.line.strip()[:60]
            out.append(f"{self.path}:{seen.lineno}: {_KINDS[key].text} ({times}; "
                       f"first here: {quoted!r})")  # fmt: skip
        return out


def _log_line(record: _Record, content: str) -> bool:
    """Take a __dump_page_owner() line that is not a frame into a log record, if it is one."""
    if _LOG_FREE_RE.fullmatch(content):
        record.in_free = True
        return True
    if content.startswith(_LOG_MIGRATED):
        record.trailers.append("P" + content[1:])  # as the dump prints it
        record.joinable = False
        return True
    return content in _LOG_MISSING


class _Transport:
    """Undo what carried a text before its lines are read: quoted-printable, diff hunks."""

    def __init__(self, note: Callable[[str, str], None], qp: bool, diff: bool) -> None:
        self._note = note
        self.qp = qp
        self.diff = diff
        self._pending = ""  # a quoted-printable line continued by a soft break
        self._in_hunk = False

    def line(self, body: bytes) -> str | None:
        """Return the text of one input line, or None when it is no line of the text."""
        if self.qp:
            if body.endswith(b"=") and not body.endswith(b"=="):
                self._pending += decode(body[:-1])
                self._note("qp", decode(body))
                return None
            if self._pending or _QP_ESCAPE_RE.search(body):
                self._note("qp", decode(body))
            text = self._pending + decode(body)
            self._pending = ""
            text = decode(_QP_ESCAPE_RE.sub(lambda m: bytes([int(m[1], 16)]), encode(text)))
        else:
            text = decode(body)
        return self._unpatch(text) if self.diff else text

    def _unpatch(self, text: str) -> str | None:
        """Read a hunk's added and context lines without their mark; drop its - lines."""
        if DIFF_HINT_RE.match(encode(text)):
            self._in_hunk = True
            self._note("diff", text)
            return None
        if not self._in_hunk or not text or text[0] not in "+- \\":
            self._in_hunk = False  # the mail or the next file's headers: read as they are
            return text
        self._note("diff", text)
        return text[1:] if text[0] in "+ " else None

    def finish(self) -> str | None:
        """Return a last line still waiting for its continuation, if any."""
        text, self._pending = self._pending, ""
        return text or None


class Normaliser(_Repairs):
    """Turn lines of any page_owner text into canonical dump (or show_stacks) lines."""

    def __init__(self, path: str, *, strict: bool = False, free: bool = False,
                 qp: bool = False, diff: bool = False) -> None:  # fmt: skip
        super().__init__(path, strict)
        self.free = free
        self.qp = qp
        self._transport = _Transport(self._note, qp, diff)
        self.records = 0  # records (or show_stacks blocks) written
        self.mode: str | None = None  # "dump" or "stacks", fixed by the first block written
        self._record: _Record | None = None
        self._report: tuple[int, int | None, int | None, int | None, str | None] | None = None
        # Frame lines repeat: their output and the repairs they needed, by input text.
        self._frames: dict[str, tuple[str, tuple[str, ...]]] = {}

    # -- input -----------------------------------------------------------------------------

    def feed(self, raw: bytes) -> list[bytes | Repeat]:
        """Take one input line (with or without its line end); return output lines."""
        self._lineno += 1
        text = self._transport.line(line_body(raw))
        if text is None:
            return []
        out: _Out = []
        self._line(text, out)
        return [line if isinstance(line, Repeat) else encode(line) + b"\n" for line in out]

    def finish(self) -> list[bytes | Repeat]:
        """End the input; return the last output lines."""
        out: _Out = []
        text = self._transport.finish()
        if text is not None:
            self._line(text, out)
        self._flush(out)
        self._report = None
        return [line if isinstance(line, Repeat) else encode(line) + b"\n" for line in out]

    def _strip_prefixes(self, text: str) -> str:
        """Remove mail quoting and kernel log prefixes from the start of a line."""
        original = text
        match = _MAIL_QUOTE_RE.match(text)
        if match:
            self._note("quote", text)
            text = text[match.end():]
        stripped = False
        while True:
            match = _LOG_PREFIX_RE.match(text)
            if not match:
                break
            stripped = True
            text = text[match.end():]
            # printk puts one space between its prefix and the message.
            if text.startswith(" ") and not _LOG_PREFIX_RE.match(text[1:]):
                text = text[1:]
        if stripped:
            self._note("logprefix", original)
        return text

    def _line(self, text: str, out: _Out) -> None:
        """Classify one line and act on it."""
        original = text
        record = self._record
        if record is not None and (record.frames or record.free_frames):
            hit = self._frames.get(text)
            if hit is not None:
                line, kinds = hit
                for key in kinds:
                    self.seen[key].count += 1
                (record.free_frames if record.in_free else record.frames).append(line)
                return
        self._line_kinds = []
        if "\r" in text:
            # A lone CR is data (README "Robustness"); such a line is left to the readers.
            self._note("cr", original)
            return
        if "&" in text and _ENTITY_RE.search(text):
            self._note("html", original)
            text = html.unescape(text)
        text = self._strip_prefixes(text)
        content = text.strip()
        if content and text[-1:].isspace():
            self._note("trailing", original)
            text = text.rstrip()
        record = self._record
        if not content:
            if text and original.strip():
                pass  # a quoted or prefixed empty line: a plain separator
            elif text:
                self._note("blank", original)
            self._flush(out)
            return
        if record is not None and record.joinable and self._join(record, text, content):
            return
        if _ELISION_RE.fullmatch(content):
            self._note("elision", original)
            return
        if _MARKUP_RE.fullmatch(content):
            self._note("markup", original)
            self._flush(out)
            return
        if content.startswith(_HEADER_START):
            if record is not None:
                self._note("separator", original)
            self._flush(out)
            self._start_header(content, text != content, original)
            return
        report = _REPORT_RE.fullmatch(content)
        if report:
            self._start_report(report, out, original)
            return
        if _LOG_CONTEXT_RE.fullmatch(content):
            self._flush(out)
            return
        log = _LOG_ALLOC_RE.fullmatch(content)
        if log:
            self._flush(out)
            self._note("log", original)
            header = self._header_from_fields(int(log["order"]), "gfp_mask " + log["rest"],
                                              original, note=False)  # fmt: skip
            self._record = _Record(self._lineno, header, log=True, joinable=False)
            return
        frame = _FRAME_RE.fullmatch(content)
        if record is None:
            if frame is not None or _STACK_COUNT_RE.fullmatch(content) or _HANDLE_RE.fullmatch(
                    content):  # fmt: skip
                self._record = record = _Record(self._lineno, None)
            else:
                self._note("outside", original)
                return
        self._in_record(record, text, content, frame, original, out)

    def _in_record(self, record: _Record, text: str, content: str,
                   frame: re.Match[str] | None, original: str, out: _Out) -> None:  # fmt: skip
        """Place a line inside the record being built."""
        if record.log:
            if _log_line(record, content):
                return
            if frame is None:
                # The rest of the log is not page_owner's.
                self._flush(out)
                self._note("outside", original)
                return
        if content.startswith("PFN ") and record.header is not None and not record.frames:
            record.pfn = content
            record.joinable = content.count("(") > content.count(")")
            if not record.joinable:
                self._check_pfn(record, original)
            return
        if frame is None and text.startswith(" ") and not text.startswith("  ") and (
                record.header is not None and not record.trailers and not record.log):  # fmt: skip
            record.frames.append(text)  # any one-space line is a frame to the readers
            record.joinable = False
            return
        if record.header is None and (record.stack_count is not None or
                                      record.handle is not None) and (
                frame is not None or _HANDLE_RE.fullmatch(content)):  # fmt: skip
            # A show_* block ended without its blank line: this line starts the next.
            self._note("separator", original)
            self._flush(out)
            self._record = record = _Record(self._lineno, None)
        if frame is not None:
            line = self._frame(text, content, frame, original)
            if record.in_free:
                record.free_frames.append(line)
            else:
                record.frames.append(line)
            record.joinable = False
            if len(self._frames) >= _FRAME_CACHE:
                self._frames.clear()
            self._frames[original] = (line, tuple(self._line_kinds))
            return
        count = _STACK_COUNT_RE.fullmatch(content)
        if count and record.header is None:
            record.stack_count = content
            return
        handle = _HANDLE_RE.fullmatch(content)
        if handle and record.header is None:
            record.handle = handle[1]
            return
        if content.startswith(_TRAILERS) and record.header is not None:
            record.trailers.append(content)
            record.joinable = False
            return
        if record.header is None:
            self._note("outside", original)
            return
        self._note("extra" if record.frames else "unknown", original)
        record.trailers.append(content)

    # -- pieces ----------------------------------------------------------------------------

    def _join(self, record: _Record, text: str, content: str) -> bool:
        """Join a continuation of a wrapped header or PFN line; tell whether it was one."""
        if record.header is None or record.frames:
            return False
        target = record.pfn if record.pfn is not None else record.header
        backslash = target.endswith("\\")
        if not backslash:
            if _FRAME_RE.fullmatch(content) or content.startswith(("PFN ", _HEADER_START)):
                return False
            if content.startswith(_TRAILERS) or _ELISION_RE.fullmatch(content):
                return False
            if record.pfn is None and _header_complete(record.header) and not content.startswith(
                    _FIELD_WORDS + (", ",)):  # fmt: skip
                return False
        self._note("wrap", text)
        base = target[:-1].rstrip() if backslash else target
        spaced = base.endswith(",") or backslash or content.startswith(_FIELD_WORDS[:-1])
        joined = base + (" " if spaced else "") + content
        # A wrap may have eaten a space or cut a word: take whichever join reads.
        for candidate in (base + content, base + " " + content):
            if (_HEADER_RE.fullmatch(candidate) if record.pfn is None
                    else _pfn_parses(candidate)):  # fmt: skip
                joined = candidate
                break
        if record.pfn is not None:
            record.pfn = joined
            record.joinable = joined.count("(") > joined.count(")") or joined.endswith("\\")
            if not record.joinable:
                self._check_pfn(record, text)
        else:
            record.header = joined
        return True

    def _check_pfn(self, record: _Record, original: str) -> None:
        """Drop a PFN line no reader could parse."""
        if record.pfn is not None and not _pfn_parses(record.pfn):
            self._note("pfn", original)
            record.pfn = None

    def _frame(self, text: str, content: str, frame: re.Match[str], original: str) -> str:
        """Return a frame line in the kernel's shape, noting what had to change."""
        line, kinds = frame_line(text, content, frame)
        for key in kinds:
            self._note(key, original)
        return line

    def _start_header(self, content: str, indented: bool, original: str) -> None:
        """Begin a record at a page_owner header line."""
        if not _ORDER_RE.match(content):
            # No order, no record: left to the readers, which name the line.
            self._note("outside", original)
            return
        if indented:
            self._note("indent", original)
        weight = None
        if self._report is not None:
            times, pages, _, _, _ = self._report
            weight = (times, pages)
            self._report = None
        header = content
        canonical = _HEADER_RE.fullmatch(content)
        pointer = canonical is not None and bool(canonical["names"]) and bool(
            POINTER_RE.fullmatch(canonical["names"]))
        if pointer or (canonical is None and not content.endswith("\\")
                       and _header_complete(content)):  # fmt: skip
            header = self._rebuild(content, original)
        self._record = _Record(self._lineno, header, weight)

    def _rebuild(self, header: str, original: str) -> str:
        """Rebuild a complete header that is no kernel's shape."""
        match = re.match(r"Page allocated via order (\d+)", header)
        if match is None:
            return header
        return self._header_from_fields(int(match[1]), header[match.end():], original)

    def _header_from_fields(self, order: int, rest: str, original: str, *,
                            note: bool = True) -> str:  # fmt: skip
        """Write a canonical header from the fields found in `rest`, noting the repair."""
        if note:
            self._note("header", original)
        header, pointer = header_from_fields(order, rest)
        if pointer:
            self._note("pointer", original)
        return header

    def _start_report(self, report: re.Match[str], out: _Out, original: str) -> None:
        """Begin a page_owner_sort report group: `N times[, M pages][...]:`."""
        self._flush(out)
        self._note("report", original)
        times = int(report["times"])
        pages = int(report["pages"]) if report["pages"] else None
        rest = report["rest"]
        pid = _REPORT_PID_RE.search(rest)
        tgid = _REPORT_TGID_RE.search(rest)
        comm = _REPORT_COMM_RE.search(rest)
        self._report = (times, pages, int(pid[1]) if pid else None,
                        int(tgid[1]) if tgid else None, comm[1] if comm else None)  # fmt: skip
        head, colon, tail = rest.partition(": " + _HEADER_START)
        if colon:
            self._start_header(_HEADER_START + tail, False, original)
        elif not rest.rstrip().endswith(":"):
            # A --cull line without stacks: the group is the whole line.
            self._record = _Record(self._lineno, None)
            self._flush(out)

    def _flush(self, out: _Out) -> None:
        """Write the record being built, if any."""
        record, self._record = self._record, None
        if record is None:
            if self._report is not None and record is None:
                return
            return
        if record.header is None and self._report is None:
            self._flush_stacks(record, out)
            return
        report = self._report
        self._report = None
        weight = record.weight
        if report is not None:
            weight = (report[0], report[1])
        header = record.header
        if header is not None and header.endswith("\\"):
            header = header[:-1].rstrip()
        canonical = None if header is None else _HEADER_RE.fullmatch(header)
        if canonical is not None and canonical["names"] and POINTER_RE.fullmatch(
                canonical["names"]):  # fmt: skip
            canonical = None
        if canonical is None:
            order = 0
            if header is not None:
                header = self._rebuild(header, header)
                if not re.match(r"Page allocated via order \d+,", header):
                    self._note("outside", header, record.lineno)
                    return
            else:
                fields = ""
                if report is not None and (report[2] is not None or report[4] is not None):
                    pid = -1 if report[2] is None else report[2]
                    tgid = -1 if report[3] is None else report[3]
                    fields = f", pid {pid}, tgid {tgid} ({report[4] or ''}), ts 0"
                header = self._header_from_fields(order, "mask 0x0()" + fields, "", note=False)
        if header is None or not self._set_mode("dump", record):
            return
        frames = _folded(self, record.free_frames if record.log and self.free else record.frames,
                              record.lineno)  # fmt: skip
        tail = ([record.pfn] if record.pfn is not None else []) + frames + record.trailers
        if weight is None:
            out.append(header)
            out.extend(tail)
            out.append("")
            self.records += 1
            return
        times, pages = weight
        order = int(header[len(_HEADER_START):].split(",", 1)[0])
        for each_order, count in _split_pages(times, pages, order):
            line = re.sub(r"^Page allocated via order \d+", f"{_HEADER_START}{each_order}",
                          header)  # fmt: skip
            # Kept as one block and a count: a group may stand for millions of records.
            out.append(Repeat(encode("\n".join([line, *tail, ""]) + "\n"), count))
            self.records += count

    def _flush_stacks(self, record: _Record, out: _Out) -> None:
        """Write a show_stacks block (a show_handles block gets its handle as its stack)."""
        if record.stack_count is None:
            if record.handle is not None and record.frames and self._set_mode("stacks", record):
                # show_stacks_handles: no page counts, passed on for the reader to name.
                out.extend([*record.frames, f"handle: {record.handle}", ""])
                self.records += 1
                return
            self._note("outside", record.frames[0] if record.frames else "")
            return
        frames = _folded(self, record.frames, record.lineno)
        if not frames:
            if record.handle is None:
                self._note("outside", record.stack_count)
                return
            self._note("handles", f"handle: {record.handle}", record.lineno)
            frames = [f" handle:{record.handle}"]
        if not self._set_mode("stacks", record):
            return
        out.extend(frames)
        out.append(record.stack_count)
        out.append("")
        self.records += 1

    def _set_mode(self, mode: str, record: _Record) -> bool:
        """Fix the output's kind at its first block; a block of the other kind is ignored."""
        if self.mode is None:
            self.mode = mode
        if self.mode != mode:
            self._note("outside", record.header or "", record.lineno)
            return False
        return True


# syzbot lists the functions inlined at an address before its frame, innermost first:
# ` set_page_owner include/linux/page_owner.h:32 [inline]`, then
# ` post_alloc_hook+0x1f3/0x230 (mm/page_alloc.c:1533)` (after frame_line).
_INLINE_FRAME_RE = re.compile(r" [A-Za-z_][\w.]* (?P<source>[\w./-]+:\d+) \[inline\]")
_SOURCED_FRAME_RE = re.compile(
    r"(?P<frame> (?:\[<[0-9a-f]+>\] )?[^ ()]+\+0x[0-9a-f]+/0x[0-9a-f]+(?: \[[^\[\]]+\])?)"
    r" \((?P<source>[^()]*)\)"
)


def _folded(repairs: _Repairs, frames: list[str], lineno: int) -> list[str]:
    """Return a stack with syzbot's inlined frames folded, noting each fold."""
    folded, count = fold_inline_frames(frames)
    for _ in range(count):
        repairs._note("inline", frames[0], lineno)
    return folded


def fold_inline_frames(frames: list[str]) -> tuple[list[str], int]:
    """Fold syzbot's `[inline]` lines into the source of the frame they are inlined in.

    That is the frame `pageowner symbolize` writes for the same address (the source of
    the address, then of each call site it is inlined in), so the stack is named by its
    real frames. Inline lines with no frame after them stay as they are. Returns the
    frames and the number of lines folded.

    >>> fold_inline_frames([" prep_new_page mm/page_alloc.c:1540 [inline]",
    ...                     " get_page_from_freelist+0x3129/0x3280 (mm/page_alloc.c:3311)"])
    ([' get_page_from_freelist+0x3129/0x3280 (mm/page_alloc.c:1540 mm/page_alloc.c:3311)'], 1)
    """
    if not any(line.endswith(" [inline]") for line in frames):
        return frames, 0  # the common case, checked without a regex
    out: list[str] = []
    pending: list[str] = []
    folded = 0
    for line in frames:
        if _INLINE_FRAME_RE.fullmatch(line):
            pending.append(line)
            continue
        sourced = _SOURCED_FRAME_RE.fullmatch(line) if pending else None
        if sourced is not None:
            sources = [_INLINE_FRAME_RE.fullmatch(p)["source"] for p in pending]  # type: ignore[index]
            line = f"{sourced['frame']} ({' '.join([*sources, sourced['source']])})"
            folded += len(pending)
        else:
            out.extend(pending)
        pending = []
        out.append(line)
    out.extend(pending)
    return out, folded


def frame_line(text: str, content: str, frame: re.Match[str]) -> tuple[str, list[str]]:
    """Return a frame line in the kernel's shape (one space, then `%pS`) and the repairs."""
    kinds = [] if text[: len(text) - len(text.lstrip())] == " " else ["indent"]
    if frame["sym"] is None:
        return " " + content, kinds
    body = frame["body"]
    source = _SYZBOT_SOURCE_RE.search(body)
    if source is not None and "(" not in body:
        # syzbot's ` file:line` is symbolize's ` (file:line)`, which the readers parse.
        kinds.append("frame")
        body = body[: source.start()] + f" ({source[1]})"
    if frame["dot"] or frame["addr2"] or not frame["off"].startswith("0x") or (
            frame["size"] is not None and not frame["size"].startswith("0x")):  # fmt: skip
        kinds.append("frame")
        off = _hex(frame["off"])
        size = "" if frame["size"] is None else "/" + _hex(frame["size"])
        body = f"{frame['sym']}+{off}{size}{frame['rest']}"
    if frame["addr"]:
        return f" [<{frame['addr']}>] {body}", kinds
    return " " + body, kinds


def header_from_fields(order: int, rest: str) -> tuple[str, bool]:
    """Write a canonical header from the fields found in `rest` (-1/0 for missing ones).

    Also tells whether the gfp names were a pointer (left empty).
    """
    mask = _H_MASK_RE.search(rest)
    names = mask["names"] if mask else None
    pointer = names is not None and bool(POINTER_RE.fullmatch(names))
    if pointer:
        names = ""
    tgid = _H_TGID_RE.search(rest)
    pid = _H_PID_RE.search(rest)
    free_ts = _H_FREE_TS_RE.search(rest)
    ts = _H_TS_RE.search(rest)
    comm = None
    if tgid is not None and "), ts " in rest:
        comm = rest[tgid.end("tgid") + 2 : rest.rindex("), ts ")]
    elif tgid is not None:
        comm = tgid["comm"]
    elif pid is not None:
        comm = pid["comm"]
    header = f"{_HEADER_START}{order}, mask {mask['mask'].lower() if mask else '0x0'}"
    if pid is None and tgid is None and ts is None and free_ts is None:
        return header + ("" if names is None else f"({names})"), pointer
    header += f"({names or ''}), pid {pid['pid'] if pid else -1}"
    if tgid is not None or comm is not None:
        header += f", tgid {tgid['tgid'] if tgid else -1} ({comm or ''})"
    header += f", ts {ts['ts'] if ts else 0} ns"
    if free_ts is not None:
        header += f", free_ts {free_ts['free_ts']} ns"
    return header, pointer


def _pfn_parses(line: str) -> bool:
    """Tell whether a PFN line is of a shape the typed reader knows."""
    try:
        _parse_pfn_line(line)
    except ValueError:
        return False
    return True


def _hex(number: str) -> str:
    """Return a decimal or hex offset as the kernel's `0x..`."""
    return number.lower() if number.startswith("0x") else hex(int(number))


def _header_complete(header: str) -> bool:
    """Tell whether a header line looks finished (not cut by a wrap)."""
    if header.count("(") != header.count(")"):
        return False
    return header.endswith((" ns", ")")) or bool(re.search(r"mask 0x[0-9a-f]+$", header)) or bool(
        re.search(r", (?:free_)?ts \d+$", header))  # fmt: skip


def _split_pages(times: int, pages: int | None, order: int) -> list[tuple[int, int]]:
    """Split a report group into (order, count) runs: `times` records with `pages` pages."""
    if times > MAX_EXPANSION:
        raise InputError(f"a report group of {times} times is more than {MAX_EXPANSION}")
    if pages is None or pages == times << order:
        return [(order, times)]
    if times <= 0 or pages < times or bin(pages).count("1") > times:
        return [(order, times)]
    # Start from the binary digits of `pages` and halve the largest part until there are
    # `times` parts: the pages sum stays exact.
    counts: dict[int, int] = {bit: 1 for bit in range(pages.bit_length()) if pages >> bit & 1}
    parts = sum(counts.values())
    while parts < times:
        top = max(bit for bit, count in counts.items() if count and bit > 0)
        take = min(counts[top], times - parts)
        counts[top] -= take
        counts[top - 1] = counts.get(top - 1, 0) + 2 * take
        parts += take
    return [(bit, count) for bit, count in sorted(counts.items(), reverse=True) if count]


def normalise_text(data: bytes, path: str = "<text>", *, strict: bool = False,
                   free: bool = False) -> tuple[bytes, Normaliser]:  # fmt: skip
    """Normalise a whole text at once; return the canonical bytes and the normaliser."""
    normaliser = Normaliser(path, strict=strict, free=free, qp=bool(QP_HINT_RE.search(data)),
                            diff=bool(DIFF_HINT_RE.search(data)))
    out: list[bytes | Repeat] = []
    for line in iter_lines(data):
        out.extend(normaliser.feed(line))
    out.extend(normaliser.finish())
    return b"".join(p.block * p.count if isinstance(p, Repeat) else p for p in out), normaliser
