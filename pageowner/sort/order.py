"""Ordering: the report order of the groups, as the 6.7+ and the 5.18-6.6 tools sort them.

Groups are first put in cull order (the C tool's cull comparator, strcmp on bytes), then
sorted stably by the sort keys. The 5.18-6.6 tool's ts comparators are inconsistent (equal
counts as greater), so in its mode the exact merge order of glibc's qsort decides, and we
sort with the same top-down merge sort (../shared/reference/kernel.md section C).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pageowner.sort.group import Group, group_key
from pageowner.sort.options import SortKey, SortOptions

__all__ = ["SORT_FIELDS", "glibc_msort", "legacy_compare", "order_groups"]

SORT_FIELDS: dict[str, Callable[[Group], Any]] = {
    "pid": lambda g: g.pid,
    "tgid": lambda g: g.tgid,
    "name": lambda g: g.comm,
    "stacktrace": lambda g: g.body,
    "txt": lambda g: (g.head, g.body),
    "alloc_ts": lambda g: g.ts_nsec,
    "free_ts": lambda g: g.free_ts_nsec,
    "allocator": lambda g: g.allocator,
    "times": lambda g: g.times,
    "pages": lambda g: g.pages,
}


def order_groups(groups: Iterable[Group], options: SortOptions) -> list[Group]:
    """Return the groups in report order: cull order, then the sort keys, stably."""
    cull = options.cull

    def cull_order(group: Group) -> tuple[object, ...]:
        key = group_key(group, cull)
        return key if isinstance(key, tuple) else (key,)

    ordered = sorted(groups, key=cull_order)
    sort_keys = options.sort_keys
    if options.legacy:
        return glibc_msort(ordered, lambda left, right: legacy_compare(left, right, sort_keys))
    for key in reversed(sort_keys):
        ordered.sort(key=SORT_FIELDS[key.name], reverse=key.descending)
    return ordered


def legacy_compare(left: Group, right: Group, sort_keys: Sequence[SortKey]) -> int:
    """Compare as the 5.18-6.6 sort comparator: the first non-zero key decides.

    Its ts and free_ts comparators never return 0 (equal counts as greater), which
    is why this mode sorts with the same merge sort glibc's qsort uses.
    """
    for key in sort_keys:
        sign = -1 if key.descending else 1
        if key.name in ("alloc_ts", "free_ts"):
            a = left.ts_nsec if key.name == "alloc_ts" else left.free_ts_nsec
            b = right.ts_nsec if key.name == "alloc_ts" else right.free_ts_nsec
            return sign * (-1 if a < b else 1)
        field_of = SORT_FIELDS[key.name]
        x, y = field_of(left), field_of(right)
        result = int(x > y) - int(x < y)
        if result:
            return sign * result
    return 0


def glibc_msort(items: list[Group], compare: Callable[[Group, Group], int]) -> list[Group]:
    """Sort like glibc's qsort (a top-down merge sort taking the left item on <= 0).

    Only needed where a comparator is inconsistent, as the 5.18-6.6 ts comparators are:
    there the exact merge order decides the output.
    """
    if len(items) <= 1:
        return items
    half = len(items) // 2
    left = glibc_msort(items[:half], compare)
    right = glibc_msort(items[half:], compare)
    merged: list[Group] = []
    i = j = 0
    while i < len(left) and j < len(right):
        if compare(left[i], right[j]) <= 0:
            merged.append(left[i])
            i += 1
        else:
            merged.append(right[j])
            j += 1
    merged.extend(left[i:])
    merged.extend(right[j:])
    return merged
