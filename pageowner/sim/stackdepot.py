"""The stack depot: deduplicated stacks, their handles and their page counts.

Stacks are kept as the frame lines the dump prints, indexed in the order they were first
saved; pages refer to a stack by that index. `handle()` encodes the index the way
lib/stackdepot.c packs a `depot_stack_handle_t` (pool index, offset in 16-byte units,
extra bits), with records sized to their frames as page_owner's are since v6.8, so that
the handles step as the real ones do. Since v6.9 page_owner counts
the base pages each stack currently holds and keeps the stacks on a list, newest first,
with its dummy and failure stacks at the tail (mm/page_owner.c); `iter_listed` walks it.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

from pageowner.dump.dumpfile import parse_frame
from pageowner.kernel.kernels import version_key
from pageowner.model import Frame

__all__ = ["DUMMY", "EARLY", "FAILURE", "StackDepot", "depot_handles"]

# page_owner registers these three at init, in this order (init_page_owner()).
DUMMY, FAILURE, EARLY = 0, 1, 2

_POOL_BYTES = 16384  # DEPOT_POOL_SIZE: 4 pages
_ALIGN = 16  # DEPOT_STACK_ALIGN
# v6.8+: a stack_record is a 32-byte header and its entries; the entries share a union
# with the free-list bookkeeping, so they take at least 24 bytes (3 entries). Only
# records saved with a reference (STACK_DEPOT_FLAG_GET) get the full 64 entries, and
# page_owner does not ask for one: its records are sized to their frames. Checked on
# the real 7.3 handles (fixtures/real73): consecutive handles of one pool step by
# exactly this size for every pair whose stacks both still own pages.
_RECORD_HEADER = 32
_MIN_ENTRIES = 3
_OLD_HEADER = 24  # before v6.8: hash, size, handle, entries of variable length


def record_size(depth: int, version: str) -> int:
    """Return the bytes a stack of `depth` frames takes in its depot pool.

    >>> record_size(4, "7.3"), record_size(16, "7.3"), record_size(4, "6.1")
    (64, 160, 64)
    """
    if version_key(version) >= (6, 8):
        size = _RECORD_HEADER + 8 * max(depth, _MIN_ENTRIES)
    else:
        size = _OLD_HEADER + 8 * depth
    return (size + _ALIGN - 1) // _ALIGN * _ALIGN


def depot_handles(depths: list[int], version: str) -> list[int]:
    """Return the handles of stacks saved in order, as that kernel would number them.

    v6.8+ packs `pool_index_plus_1:17, offset:10, extra:5` (offset in 16-byte units);
    older kernels packed `pool_index, offset, valid:1`. The first three are page_owner's
    dummy, failure and early stacks of 4 frames: the real 7.3 dumps print 1, 524289 and
    1048577 for them.

    >>> depot_handles([4, 4, 4], "7.3")
    [1, 524289, 1048577]
    """
    fixed = version_key(version) >= (6, 8)
    index_bits = 16 if version_key(version) >= (5, 19) else 21
    handles = []
    pool = 0
    offset = 0
    for depth in depths:
        size = record_size(depth, version)
        if offset + size > _POOL_BYTES:
            pool += 1
            offset = 0
        units = offset // _ALIGN
        if fixed:
            handles.append((pool + 1) | (units << 17))
        else:
            handles.append(pool | (units << index_bits) | (1 << (index_bits + 10)))
        offset += size
    return handles


class StackDepot:
    """Stacks by index, with per-stack page counts and the v6.9 stack list order."""

    def __init__(self) -> None:
        self.stacks: list[tuple[str, ...]] = []
        self._index: dict[tuple[str, ...], int] = {}
        self.nr_pages = array("q")
        # indices in the order of their first counted allocation (v6.9 list, reversed)
        self.listed: list[int] = []
        # stacks whose first allocation could not spin: seen, never listed (v6.18+)
        self.unlisted: list[int] = []
        self._on_list = bytearray()
        self._frames: dict[int, tuple[Frame, ...]] = {}
        self._handles: list[int] = []
        self.version = ""

    def __len__(self) -> int:
        return len(self.stacks)

    def save(self, lines: tuple[str, ...]) -> int:
        """Store a stack (its frame lines) if new; return its index."""
        index = self._index.get(lines)
        if index is None:
            index = len(self.stacks)
            self.stacks.append(lines)
            self._index[lines] = index
            self.nr_pages.append(0)
            self._on_list.append(0)
        return index

    def frames(self, index: int) -> tuple[Frame, ...]:
        """Return the parsed frames of a stack."""
        frames = self._frames.get(index)
        if frames is None:
            frames = self._frames[index] = tuple(parse_frame(line) for line in self.stacks[index])
        return frames

    def text(self, index: int) -> str:
        """Return the stack as the dump prints it, each frame line ending in a newline."""
        return "".join(line + "\n" for line in self.stacks[index])

    def handle(self, index: int) -> int:
        """Return the stack's depot handle for the depot's kernel version."""
        if len(self._handles) <= index:
            depths = [len(stack) for stack in self.stacks]
            self._handles = depot_handles(depths, self.version)
        return self._handles[index]

    def account(self, index: int, pages: int, can_spin: bool = True) -> None:
        """Add (or, negative, remove) base pages to a stack's count (v6.9 refcount).

        A stack joins the list at its first allocation only; from v6.18 not at all when
        that allocation could not spin (no reclaim bit in its gfp mask), which is why the
        real 7.3 show_stacks_handles lists 160 of the 451 handles of a boot dump.
        """
        if index == EARLY:
            return  # early-allocated pages are never counted
        self.nr_pages[index] += pages
        if pages > 0 and not self._on_list[index]:
            self._on_list[index] = 1
            if index in (DUMMY, FAILURE):
                return
            if not can_spin and version_key(self.version) >= (6, 18):
                self.unlisted.append(index)
            else:
                self.listed.append(index)

    def iter_listed(self) -> Iterator[int]:
        """Yield stack indices as show_stacks walks them: newest first, placeholders last."""
        yield from reversed(self.listed)
        yield DUMMY
        yield FAILURE

    def restore(self, stacks: list[tuple[str, ...]], nr_pages: array[int],
                listed: list[int], version: str, unlisted: list[int] | None = None) -> None:
        """Load a saved depot."""
        self.stacks = stacks
        self._index = {lines: index for index, lines in enumerate(stacks)}
        self.nr_pages = nr_pages
        self.listed = listed
        self.unlisted = unlisted or []
        self._on_list = bytearray(len(stacks))
        for index in (*listed, *self.unlisted):
            self._on_list[index] = 1
        self._on_list[DUMMY:FAILURE + 1] = b"\x01\x01"
        self._frames = {}
        self._handles = []
        self.version = version
