"""The fast scanner: read a dump stream in large chunks and count its blocks in place.

Most blocks have the usual layout (header, PFN line, frames) and repeat the previous
block but for their ts digits and PFN line; the scanner counts those with a few memory
compares and hands anything else to the block-at-a-time path of `Grouper`, which decides
as page_owner_sort does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pageowner.dump.classify import ALLOCATOR_OTHERS, pfn_allocator_bits, vmalloc_bit
from pageowner.dump.fileio import CrLfReader
from pageowner.sort.fields import DIGITS_RE, HEADER, TS_RE, U64_MAX, pages_of, read_decimal
from pageowner.sort.group import Group, Grouper
from pageowner.sort.order import order_groups

__all__ = ["ProgressHandler", "SortEngine"]

ProgressHandler = Callable[[int], None]

_CHUNK = 1 << 20
_REJECTED = Group(0, 0, b"", b"")  # marks "the previous block was not selected"


class SortEngine(Grouper):
    """Collect dump blocks into groups; memory grows with the groups, not the records.

    Feed it bytes with `feed_stream` (or whole blocks with `feed_blocks`), then ask for
    `sorted_groups()`. Blocks that are not page_owner records are skipped with a warning,
    or raise `ParseError` when `strict`.
    """

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
        search = TS_RE.search
        digits = DIGITS_RE.match
        find = data.find
        startswith = data.startswith
        header = HEADER
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
                                pfn_allocator_bits(data[pfn_start:pe]) | last_vmalloc
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
                                ts_nsec = U64_MAX
                                if digit_text:
                                    ts_nsec = min(read_decimal(digit_text), U64_MAX)
                                pfn_bits = pfn_allocator_bits(data[ts_end + mid_len - 3 : pe])
                                group = self.groups[key] = Group(
                                    0, 0, head, last_group.body, last_group.pid,
                                    last_group.tgid, last_group.comm, ts_nsec,
                                    last_group.free_ts_nsec,
                                    (pfn_bits | last_vmalloc) or ALLOCATOR_OTHERS,
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
                        last_pages = pages_of(buf)
                        pfn_line = data[nl + 1 : pe]
                        last_group = self._count(buf, head, body, pfn_line, last_pages)
                        last_ts = data[ts_start:ts_end]
                        last_digits = ts_end - ts_start
                        if by_allocator or near:
                            last_vmalloc = vmalloc_bit(buf)
                            last_allocator = pfn_allocator_bits(pfn_line) | last_vmalloc
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

    def feed_blocks(self, blocks: Iterable[bytes]) -> SortEngine:
        """Count whole blocks given as bytes (PFN lines included); for tests and tools."""
        for block in blocks:
            self._slow_block(block if block.endswith(b"\n") else block + b"\n", 0)
        return self

    def sorted_groups(self) -> list[Group]:
        """Return the groups in report order: cull order, then the sort keys, stably."""
        return order_groups(self.groups.values(), self.options)


def _pfn_line_of(data: bytes, block_start: int) -> bytes:
    """Return the second line of the block starting at `block_start` (its PFN line)."""
    line_start = data.find(b"\n", block_start) + 1
    line_end = data.find(b"\n", line_start)
    return data[line_start:line_end]
