"""Rendering: each group printed exactly as page_owner_sort prints it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pageowner.dump.classify import ALLOCATOR_LABELS
from pageowner.sort.group import Group
from pageowner.sort.options import SortOptions

__all__ = ["allocator_label", "format_group", "render_groups"]


def allocator_label(allocator: int) -> str:
    """Render an allocator set the way print_allocator does (each name then a space).

    >>> allocator_label(0b1100)  # SLAB | VMALLOC
    'allocated by SLAB VMALLOC '
    """
    names = "".join(f"{name} " for bit, name in ALLOCATOR_LABELS if allocator & bit)
    return f"allocated by {names}"


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
