"""The files of /sys/kernel/debug/page_owner_stacks/ (v6.9+): a reader and a writer.

`show_stacks` prints each stack's frames and `nr_base_pages: N` (`stack_count: N` in the
pre-release 6.9 code); `show_handles` (6.19) prints `handle: H` and the count;
`show_stacks_handles` (6.19) prints the frames and `handle: H`. Blocks end with a blank line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from pageowner.dump.dumpfile import decode, encode, format_frame, iter_blocks, parse_frame
from pageowner.errors import ParseError
from pageowner.model import StackCount, StacksFileKind

__all__ = [
    "format_stack_count",
    "iter_stack_counts",
    "parse_stack_block",
    "sniff_kind",
    "write_stack_counts",
]

# ASCII digits, at most 20 (the kernel prints 32-bit handles and counts; Python would
# refuse to convert more than 4300 digits).
_COUNT_RE = re.compile(r"(?P<label>nr_base_pages|stack_count): (?P<count>-?[0-9]{1,20})")
_HANDLE_RE = re.compile(r"handle: (?P<handle>-?[0-9]{1,20})")


def parse_stack_block(
    lines: tuple[str, ...] | list[str], path: str = "<stacks>", lineno: int = 1
) -> StackCount:
    """Parse one block of any page_owner_stacks file."""
    frames = []
    handle = None
    count = None
    label = "nr_base_pages"
    for offset, line in enumerate(lines):
        if line.startswith(" ") and handle is None and count is None:
            frames.append(parse_frame(line))
            continue
        if (match := _HANDLE_RE.fullmatch(line)) and handle is None and count is None:
            handle = int(match["handle"])
            continue
        if (match := _COUNT_RE.fullmatch(line)) and count is None:
            count = int(match["count"])
            label = match["label"]
            continue
        raise ParseError(path, lineno + offset, line, "not a page_owner_stacks line")
    if handle is None and count is None:
        raise ParseError(path, lineno, lines[0] if lines else "", "block without a count or handle")
    return StackCount(tuple(frames), handle, count, label, lineno=lineno)


def iter_stack_counts(stream: Iterable[bytes], path: str = "<stacks>") -> Iterator[StackCount]:
    """Yield the blocks of a show_stacks, show_handles or show_stacks_handles file."""
    for block in iter_blocks(stream):
        yield parse_stack_block(block.lines, path, block.lineno)


def format_stack_count(entry: StackCount) -> str:
    """Print one block as the kernel does, closing blank line included."""
    lines = [format_frame(frame) for frame in entry.stack]
    if entry.handle is not None:
        lines.append(f"handle: {entry.handle}")
    if entry.nr_base_pages is not None:
        lines.append(f"{entry.count_label}: {entry.nr_base_pages}")
    return "".join(line + "\n" for line in lines) + "\n"


def write_stack_counts(entries: Iterable[StackCount], out: BinaryIO) -> int:
    """Write blocks to a binary stream; return how many."""
    count = 0
    for entry in entries:
        out.write(encode(format_stack_count(entry)))
        count += 1
    return count


def sniff_kind(head: bytes) -> StacksFileKind | None:
    """Tell which page_owner_stacks file some leading bytes come from, if any.

    >>> sniff_kind(b"handle: 42\\nnr_base_pages: 20824\\n").value
    'show_handles'
    """
    lines = decode(head).split("\n")
    first_block = []
    for line in lines:
        if not line:
            break
        first_block.append(line)
    if not first_block:
        return None
    if first_block[0].startswith("handle: "):
        return StacksFileKind.SHOW_HANDLES
    if not first_block[0].startswith(" "):
        return None
    for line in first_block[1:]:
        if line.startswith("handle: "):
            return StacksFileKind.SHOW_STACKS_HANDLES
        if _COUNT_RE.fullmatch(line):
            return StacksFileKind.SHOW_STACKS
    return None
