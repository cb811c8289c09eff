"""Stack frames as analysis sees them: names without offsets, and who called the allocator.

page_owner stacks start inside the page allocator (and, for slab and vmalloc pages, inside
those allocators too). What a reader wants is the first frame *outside* them: the code that
asked for memory. `ALLOCATOR_FRAMES` lists the allocator-internal functions as data (shell
patterns, one layer each) and `first_caller` reads it. `StackInterner` computes everything
derived from a stack once per distinct stack, since a dump repeats a few thousand stacks
hundreds of thousands of times.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from pageowner.model import Frame

__all__ = [
    "ALLOCATOR_FRAMES",
    "EARLY_FRAMES",
    "FRAME_SUFFIXES",
    "StackInfo",
    "StackInterner",
    "allocator_layer",
    "first_caller",
    "frame_label",
    "normalize_function",
]

# Functions that belong to an allocator rather than to the code asking for memory, as
# (shell pattern, layer). Patterns match the function name after `normalize_function`, so
# `alloc_pages*` covers alloc_pages_vma (4.x), alloc_pages_current (5.x), alloc_pages_mpol
# (6.7) and every `_noprof` variant (6.10). Decisions, per layer:
# - page: mm/page_alloc.c and the mempolicy entry points above it, down to the first
#   caller outside them. post_alloc_hook (6.x) and prep_new_page (5.x) are the top frames
#   page_owner records from.
# - slab: refilling a slab cache (allocate_slab/new_slab/___slab_alloc in SLUB,
#   cache_grow/kmem_getpages in SLAB) and the kmalloc/kmem_cache_alloc entry points, plus
#   the memcg object-cgroup vectors the slab hooks allocate for each slab (5.9+): the
#   caller of kmem_cache_alloc is who the page is for.
# - vmalloc: the vmalloc family; VMALLOC pages are named after their vmalloc() caller.
# - profiling: since 6.10 memory allocation profiling renames every allocation API to
#   `*_noprof` and wraps it in a macro; such a frame is always an allocator entry point.
# Not listed on purpose: page cache (filemap_alloc_folio), page tables (pte_alloc_one),
# mempools and skb helpers: they are subsystems asking for memory, worth naming.
ALLOCATOR_FRAMES: tuple[tuple[str, str], ...] = (
    ("post_alloc_hook", "page"),
    ("prep_new_page", "page"),
    ("get_page_from_freelist", "page"),
    ("rmqueue*", "page"),
    ("__rmqueue*", "page"),
    ("__alloc_pages*", "page"),  # __alloc_pages_nodemask (4.x-5.12), _slowpath, _bulk
    ("alloc_pages*", "page"),  # alloc_pages_vma, _current, _mpol, _exact, _bulk_*
    ("alloc_page_interleave", "page"),
    ("alloc_page_vma*", "page"),
    ("__folio_alloc*", "page"),
    ("folio_alloc*", "page"),
    ("vma_alloc_folio*", "page"),
    ("__get_free_pages*", "page"),
    ("get_zeroed_page*", "page"),
    ("allocate_slab", "slab"),
    ("new_slab", "slab"),
    ("alloc_slab_page", "slab"),
    ("___slab_alloc", "slab"),
    ("__slab_alloc*", "slab"),
    ("slab_alloc*", "slab"),
    ("kmem_getpages", "slab"),
    ("cache_grow*", "slab"),
    ("cache_alloc_refill", "slab"),
    ("____cache_alloc*", "slab"),
    ("fallback_alloc", "slab"),
    ("kmem_cache_alloc*", "slab"),
    ("__kmem_cache_alloc*", "slab"),
    ("kmalloc*", "slab"),  # kmalloc_trace, kmalloc_large, kmalloc_order, kmalloc_node_trace
    ("__kmalloc*", "slab"),  # __kmalloc_node, __kmalloc_cache_noprof, _track_caller
    ("___kmalloc_large_node", "slab"),
    ("__do_kmalloc_node", "slab"),
    ("krealloc*", "slab"),
    ("__krealloc*", "slab"),
    ("kvmalloc*", "slab"),
    ("__kvmalloc*", "slab"),
    ("memcg_alloc_slab_cgroups", "slab"),
    ("memcg_alloc_page_obj_cgroups", "slab"),
    ("memcg_slab_post_alloc_hook", "slab"),
    ("__memcg_slab_post_alloc_hook", "slab"),
    ("alloc_slab_obj_exts", "slab"),
    ("__vmalloc*", "vmalloc"),  # __vmalloc_node_range (the VMALLOC marker), __vmalloc_area_node
    ("vmalloc*", "vmalloc"),
    ("vzalloc*", "vmalloc"),
    ("vm_area_alloc_pages", "vmalloc"),
    ("*_noprof", "profiling"),
)

# Stacks of the page_owner placeholders (mm/page_owner.c): pages found allocated at init,
# and the stacks recorded when page_owner recursed or stackdepot failed.
EARLY_FRAMES: tuple[tuple[str, str], ...] = (
    ("register_early_stack", "early"),
    ("register_dummy_stack", "dummy"),
    ("register_failure_stack", "failure"),
)

# Parts of a function name that change from build to build without changing the code:
# GCC clone suffixes (.constprop.0, .isra.0, .part.0, .cold) and the `_noprof` rename of
# 6.10. They are cut off when stacks are compared by name.
FRAME_SUFFIXES: tuple[str, ...] = (
    r"(?:\.(?:constprop|isra|part|cold|lto_priv|llvm)(?:\.\d+)*)+$",
    r"_noprof$",
)

_SUFFIX_RES = tuple(re.compile(pattern) for pattern in FRAME_SUFFIXES)


def _compile(table: Sequence[tuple[str, str]]) -> list[tuple[re.Pattern[str], str]]:
    """Compile a (pattern, label) table to regexes, keeping its order."""
    return [(re.compile(fnmatch.translate(pattern)), label) for pattern, label in table]


_ALLOCATOR_RES = _compile(ALLOCATOR_FRAMES)


def normalize_function(name: str) -> str:
    """Strip build-dependent suffixes from a function name.

    >>> normalize_function("do_execveat_common.isra.0")
    'do_execveat_common'
    >>> normalize_function("__alloc_pages_noprof")
    '__alloc_pages'
    """
    for pattern in _SUFFIX_RES:
        name = pattern.sub("", name)
    return name


def allocator_layer(frame: Frame) -> str | None:
    """Return the allocator layer a frame belongs to, or None for a caller.

    >>> allocator_layer(Frame("___slab_alloc", 0x52c, 0x9f0))
    'slab'
    >>> allocator_layer(Frame("alloc_inode", 0x58, 0xc0)) is None
    True
    """
    if frame.symbol is None:
        return None
    name = frame.symbol
    for pattern, layer in _ALLOCATOR_RES:
        if pattern.match(name):
            return layer
    normalized = normalize_function(name)
    if normalized != name:
        for pattern, layer in _ALLOCATOR_RES:
            if pattern.match(normalized):
                return layer
    return None


def first_caller(stack: Sequence[Frame]) -> int | None:
    """Return the index of the first frame outside the allocators, or None if none is.

    >>> first_caller([Frame("get_page_from_freelist"), Frame("new_slab"), Frame("d_alloc")])
    2
    """
    for index, frame in enumerate(stack):
        if allocator_layer(frame) is None:
            return index
    return None


def frame_label(frame: Frame) -> str:
    """Name a frame without its offsets: `function` or `function [module]`.

    >>> frame_label(Frame("xfs_buf_read_map", 0x54, 0x280, module="xfs"))
    'xfs_buf_read_map [xfs]'
    """
    if frame.module is not None:
        return f"{frame.function} [{frame.module}]"
    return frame.function


@dataclass(frozen=True, slots=True, eq=False)
class StackInfo:
    """What analysis needs to know about one distinct stack, computed once.

    Interned: equality and hashing are by identity, so caches can key on it cheaply.
    """

    frames: tuple[Frame, ...]
    # The stack compared by function name and module (offsets and build suffixes cut off).
    key: tuple[str, ...]
    # The stack compared exactly as printed.
    exact_key: tuple[str, ...]
    # Index of the first frame outside the allocators, or None.
    caller_index: int | None
    # The module of the frame nearest the leaf that has one, or None for kernel text.
    module: str | None
    # "early", "dummy" or "failure" for page_owner's placeholder stacks, else None.
    placeholder: str | None

    @property
    def caller(self) -> Frame | None:
        """Return the first frame outside the allocators."""
        return None if self.caller_index is None else self.frames[self.caller_index]

    @property
    def caller_label(self) -> str:
        """Name the first frame outside the allocators, e.g. 'shmem_alloc_folio'."""
        caller = self.caller
        if caller is not None:
            return frame_label(caller)
        return "(no stack)" if not self.frames else "(allocator only)"

    def chain(self, depth: int) -> str:
        """Name the caller and the frames above it, `depth` frames at most (0: all)."""
        start = self.caller_index
        if start is None:
            return self.caller_label
        frames = self.frames[start:] if depth <= 0 else self.frames[start : start + depth]
        return " < ".join(frame_label(frame) for frame in frames)

    def labels(self) -> tuple[str, ...]:
        """Name every frame, leaf first."""
        return tuple(frame_label(frame) for frame in self.frames)


def _placeholder(frames: Sequence[Frame]) -> str | None:
    """Tell which page_owner placeholder stack this is, if any."""
    for frame in frames[:2]:
        for name, kind in EARLY_FRAMES:
            if frame.symbol == name:
                return kind
    return None


def _stack_key(frames: Sequence[Frame]) -> tuple[str, ...]:
    """Key a stack by normalized function names and modules."""
    parts = []
    for frame in frames:
        name = normalize_function(frame.function) if frame.symbol is not None else frame.function
        parts.append(name if frame.module is None else f"{name} [{frame.module}]")
    return tuple(parts)


class StackInterner:
    """Give each distinct stack one `StackInfo`, computed the first time it is seen.

    Frames from one `DumpReader` are shared objects, so a stack is recognised by the
    identities of its frames; the interner keeps the frames alive, so identities are not
    reused while it lives.
    """

    def __init__(self) -> None:
        self._by_ids: dict[tuple[int, ...], StackInfo] = {}
        self._by_exact: dict[tuple[str, ...], StackInfo] = {}

    def __len__(self) -> int:
        return len(self._by_exact)

    def intern(self, frames: tuple[Frame, ...]) -> StackInfo:
        """Return the StackInfo of a stack."""
        ids = tuple(map(id, frames))
        info = self._by_ids.get(ids)
        if info is not None:
            return info
        exact = tuple(frame.symbolic() for frame in frames)
        info = self._by_exact.get(exact)
        if info is None:
            info = self._by_exact[exact] = self._make(frames, exact)
        # Keep `frames` alive through the info's own reference when they are the same
        # objects; otherwise remember this tuple too so its ids stay valid.
        if info.frames is not frames and tuple(map(id, info.frames)) != ids:
            self._by_ids[ids] = StackInfo(
                frames, info.key, info.exact_key, info.caller_index, info.module,
                info.placeholder,
            )  # fmt: skip
        else:
            self._by_ids[ids] = info
        return info

    @staticmethod
    def _make(frames: tuple[Frame, ...], exact: tuple[str, ...]) -> StackInfo:
        """Compute the derived facts of a new stack."""
        module = next((frame.module for frame in frames if frame.module is not None), None)
        return StackInfo(
            frames=frames,
            key=_stack_key(frames),
            exact_key=exact,
            caller_index=first_caller(frames),
            module=module,
            placeholder=_placeholder(frames),
        )
