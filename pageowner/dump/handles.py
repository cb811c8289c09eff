"""Joining 7.3 handle-mode records to their stacks: `--stacks-from` and the capture sidecar.

A `mode=handle` dump prints `handle: %u` instead of the frames (kernel-7.3.md 2). The
frames of a handle come from `show_stacks_handles` of the same boot (which prints the
handle with `%d`) or from a `mode=stack_handle` dump of it; handles are compared as
unsigned 32-bit values. Not every handle is in show_stacks_handles (the early-allocation
handle and stacks first allocated without a reclaim flag never are, kernel-7.3.md 6), so
records whose handle is unknown are grouped as `handle N` and counted in one warning.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pageowner.dump.dumpfile import (
    HEADER_PREFIX,
    DumpReader,
    decode,
    encode,
    format_frame,
    iter_blocks,
)
from pageowner.dump.era import load_sidecar
from pageowner.dump.fileio import open_input
from pageowner.dump.stacksfile import parse_stack_block, sniff_kind
from pageowner.errors import InputError, ParseError
from pageowner.model import Frame, PageRecord, StacksFileKind

__all__ = [
    "SIDECAR_STACKS_KEY",
    "HandleJoin",
    "HandleStacks",
    "handle_frame",
    "insert_frames",
    "load_handle_stacks",
    "sidecar_stacks_file",
    "unsigned_handle",
]

# The capture sidecar's key naming the show_stacks_handles file saved with a handle dump.
SIDECAR_STACKS_KEY = "stacks_file"
_U32 = (1 << 32) - 1
_SNIFF_BYTES = 1 << 16


def unsigned_handle(handle: int) -> int:
    """Return a handle as the dump prints it (%u) from what show_* print (%d).

    >>> unsigned_handle(-1), unsigned_handle(44564486)
    (4294967295, 44564486)
    """
    return handle & _U32


def handle_frame(handle: int) -> Frame:
    """Return the one-frame stack that stands for a handle whose frames are unknown.

    >>> handle_frame(1048577).function
    'handle 1048577'
    """
    return Frame(None, raw=f"handle {handle}")


@dataclass(frozen=True)
class HandleStacks:
    """The frames of each handle of one boot, and the file they were read from."""

    source: str
    stacks: Mapping[int, tuple[Frame, ...]]


def load_handle_stacks(path: str) -> HandleStacks:
    """Read a show_stacks_handles file or a stack_handle dump into handle -> frames."""
    stacks: dict[int, tuple[Frame, ...]] = {}
    with open_input(path) as source:
        buffer = source.buffered()
        head = buffer.peek(_SNIFF_BYTES)[:_SNIFF_BYTES].lstrip(b"\r\n")
        if head.startswith(HEADER_PREFIX.encode()):
            for record in DumpReader(buffer, path):
                if record.handle is not None and record.stack:
                    stacks.setdefault(record.handle, record.stack)
            if not stacks:
                raise InputError(
                    f"{path}: no record has both frames and a handle; --stacks-from needs "
                    "a mode=stack_handle dump or a show_stacks_handles file"
                )
            return HandleStacks(path, stacks)
        if sniff_kind(head) is not StacksFileKind.SHOW_STACKS_HANDLES:
            first = decode(head.split(b"\n", 1)[0])
            raise ParseError(path, 1, first, "--stacks-from needs a show_stacks_handles "
                             "file or a mode=stack_handle dump")
        for block in iter_blocks(buffer):
            entry = parse_stack_block(block.lines, path, block.lineno)
            if entry.handle is not None and entry.stack:
                stacks.setdefault(unsigned_handle(entry.handle), entry.stack)
    return HandleStacks(path, stacks)


def sidecar_stacks_file(path: str) -> str | None:
    """Return the stacks file a capture sidecar ties to a handle dump, if any."""
    if path == "-":
        return None
    try:
        data = load_sidecar(path, "not JSON")
    except InputError:
        return None  # era detection reports an unreadable sidecar
    name = data.get(SIDECAR_STACKS_KEY) if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        return None
    return os.path.join(os.path.dirname(path), name)


@dataclass
class HandleJoin:
    """Give each record its frames, resolving handle-only ones; count what stays a handle."""

    name: str
    stacks: HandleStacks | None = None
    resolved: int = 0
    # Handle-only records left as `handle N`: records per handle, first seen first.
    unresolved: dict[int, int] = field(default_factory=dict)
    _frames: dict[int, tuple[Frame, ...]] = field(default_factory=dict, repr=False)

    def frames(self, record: PageRecord) -> tuple[Frame, ...]:
        """Return the frames a record stands for."""
        handle = record.handle
        if handle is None or record.stack:
            return record.stack
        found = self.lookup(handle)
        if found:
            return found
        frames = self._frames.get(handle)
        if frames is None:
            frames = self._frames[handle] = (handle_frame(handle),)
        return frames

    def lookup(self, handle: int) -> tuple[Frame, ...]:
        """Return the frames of a handle, () when unknown (counted as unresolved)."""
        found = self.stacks.stacks.get(handle) if self.stacks is not None else None
        if found is None:
            self.unresolved[handle] = self.unresolved.get(handle, 0) + 1
            return ()
        self.resolved += 1
        return found

    def to_json(self) -> object:
        """Encode the counts (for the parallel reader's child)."""
        return {"resolved": self.resolved, "unresolved": list(self.unresolved.items())}

    def merge_json(self, data: Any) -> None:
        """Add a later part's counts."""
        self.resolved += data["resolved"]
        for handle, count in data["unresolved"]:
            self.unresolved[handle] = self.unresolved.get(handle, 0) + count

    def warning(self, outcome: str = "grouped as `handle N`") -> str | None:
        """Say, in one line, which records stay a bare handle (and what became of them)."""
        if not self.unresolved:
            return None
        records = sum(self.unresolved.values())
        handles = len(self.unresolved)
        if self.stacks is None:
            return (f"{self.name}: {records} handle-only records (mode=handle, {handles} "
                    f"handles) have no frames: {outcome}; pass --stacks-from "
                    "show_stacks_handles (or a stack_handle dump of the same boot)")
        return (f"{self.name}: {records} records of {handles} handles not in "
                f"{self.stacks.source}: {outcome} ({self.resolved} resolved; "
                "show_stacks_handles never lists the early and no-reclaim stacks)")


def insert_frames(lines: Iterable[bytes], join: HandleJoin) -> Iterator[bytes]:
    """Copy dump lines, putting the joined frames before each frameless `handle: N` line.

    A handle-only record becomes the stack_handle record of the same page; handles the
    join does not know are left as they are (and counted by `join`).
    """
    previous = b""
    for raw in lines:
        if raw.startswith(b"handle: ") and (
            previous.startswith(b"PFN ") or previous.startswith(HEADER_PREFIX.encode())
        ):
            body = raw.rstrip(b"\r\n")
            ending = raw[len(body) :] or b"\n"
            text = decode(body)
            try:
                handle = int(text.removeprefix("handle: "))
            except ValueError:
                handle = -1
            if 0 <= handle <= _U32:
                frames = join.lookup(handle)
                for frame in frames:
                    yield encode(format_frame(frame)) + ending
        previous = raw
        yield raw
