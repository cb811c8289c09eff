"""`pageowner diff`: which groups grew or shrank between two dumps, ranked by growth in pages.

Both inputs are grouped by the same key (the stack by default). Timestamps and PFNs play
no part, and stacks are compared by function names and modules rather than offsets (unless
`exact`), so dumps from different boots, builds and kernel eras compare. Either input may
be a page_owner dump or a show_stacks file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from pageowner.analyze.analysis import (
    Group,
    GroupTable,
    InputKind,
    ProgressHandler,
    SampleStream,
    WarningHandler,
    aggregate_file,
    get_group_key,
)
from pageowner.errors import SpecError, ThresholdExceeded
from pageowner.kernel.frames import StackInterner
from pageowner.kernel.tables import FlagsLayout

__all__ = [
    "Change",
    "DiffEntry",
    "DiffOptions",
    "DiffResult",
    "check_growth",
    "compare_groups",
    "diff_files",
    "diff_tables",
]


class Change(enum.Enum):
    """How a group differs between the two inputs."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class DiffOptions:
    """What `diff` compares and what it leaves out."""

    by: str = "stack"
    exact: bool = False
    min_delta: int = 1  # leave out groups whose pages changed by less
    top: int = 0  # 0: every group
    strict: bool = False
    jobs: int = 2  # processes for each big regular file (1 or 2)
    # show_stacks_handles or stack_handle dump naming 7.3 handle-only records' frames
    stacks_from: str | None = None
    # Where node and zone sit in pre-5.14 flags words; None: the sidecar's, else x86_64 NUMA.
    flags_layout: FlagsLayout | None = None


@dataclass(frozen=True)
class DiffEntry:
    """One group that changed."""

    rank: int
    change: Change
    label: str
    caller: str
    before_pages: int
    after_pages: int
    before_times: int
    after_times: int
    stack: tuple[str, ...]  # for --by stack, leaf first

    @property
    def delta(self) -> int:
        """Return the growth in pages (negative when the group shrank)."""
        return self.after_pages - self.before_pages

    @property
    def percent(self) -> float | None:
        """Return the growth relative to BEFORE, or None for an added group."""
        if self.before_pages == 0:
            return None
        return 100.0 * self.delta / self.before_pages


@dataclass(frozen=True)
class DiffResult:
    """The changed groups, most growth first, and both inputs' totals."""

    before: str
    after: str
    before_kind: InputKind
    after_kind: InputKind
    by: str
    entries: tuple[DiffEntry, ...]
    before_pages: int
    after_pages: int
    before_groups: int
    after_groups: int
    unchanged: int  # groups with the same pages on both sides
    hidden: int  # changed groups left out by min_delta or top
    # The growth of every changed group, shown or not, largest first, with its label.
    growth: tuple[tuple[int, str], ...] = ()

    @property
    def delta(self) -> int:
        """Return the growth of the whole input in pages."""
        return self.after_pages - self.before_pages


def _entry(before: Group | None, after: Group | None, by: str) -> DiffEntry:
    """Compare one key's groups; at least one side exists."""
    shown = after if after is not None else before
    assert shown is not None
    if before is None:
        change = Change.ADDED
    elif after is None:
        change = Change.REMOVED
    else:
        change = Change.CHANGED
    return DiffEntry(
        rank=0,
        change=change,
        label=shown.label,
        caller=shown.main_caller,
        before_pages=before.pages if before else 0,
        after_pages=after.pages if after else 0,
        before_times=before.times if before else 0,
        after_times=after.times if after else 0,
        stack=shown.stack.labels() if by == "stack" else (),
    )


@dataclass(frozen=True)
class _Compared:
    """What `diff_tables` found."""

    shown: list[DiffEntry]
    unchanged: int
    hidden: int
    growth: tuple[tuple[int, str], ...]


class PagesDelta(Protocol):
    """An entry for one changed group: its pages on either side and the growth."""

    @property
    def before_pages(self) -> int: ...
    @property
    def after_pages(self) -> int: ...
    @property
    def delta(self) -> int: ...


_G = TypeVar("_G", bound=Group)
_E = TypeVar("_E", bound=PagesDelta)


def compare_groups(
    before: Mapping[Hashable, _G],
    after: Mapping[Hashable, _G],
    entry: Callable[[_G | None, _G | None], _E],
    *,
    min_delta: int,
    top: int,
) -> tuple[list[_E], list[_E], int]:
    """Return every changed group's entry most growth first, those shown, and the unchanged count.

    `entry` makes one key's entry from its BEFORE and AFTER groups (at least one exists).
    """
    keys: dict[Hashable, None] = dict.fromkeys(after)
    keys.update(dict.fromkeys(before))
    entries = []
    unchanged = 0
    for key in keys:
        old, new = before.get(key), after.get(key)
        if old is not None and new is not None and old.pages == new.pages:
            unchanged += 1
            continue
        entries.append(entry(old, new))
    # Most growth first; among equal deltas, the bigger group, then AFTER's order.
    entries.sort(key=lambda e: (-e.delta, -max(e.after_pages, e.before_pages)))
    shown = [e for e in entries if abs(e.delta) >= min_delta]
    if top:
        shown = shown[:top]
    return entries, shown, unchanged


def diff_tables(before: GroupTable, after: GroupTable, options: DiffOptions) -> _Compared:
    """Compare two group tables: the entries shown, and what was left out."""
    by = before.by.name
    entries, shown, unchanged = compare_groups(
        before.groups, after.groups, lambda old, new: _entry(old, new, by),
        min_delta=options.min_delta, top=options.top)  # fmt: skip
    ranked = [replace(e, rank=rank) for rank, e in enumerate(shown, start=1)]
    growth = tuple((e.delta, e.label) for e in entries if e.delta > 0)
    return _Compared(ranked, unchanged, len(entries) - len(shown), growth)


def diff_files(
    before_path: str,
    after_path: str,
    options: DiffOptions,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> DiffResult:
    """Read two inputs, group both by the same key and rank what changed."""
    if before_path == "-" and after_path == "-":
        raise SpecError("only one of BEFORE and AFTER can be standard input")
    key = get_group_key(options.by, exact=options.exact)
    interner = StackInterner()

    def check(stream: SampleStream) -> None:
        if key.needs_record:
            stream.require_records(f"--by {key.name}")

    tables = []
    sides = []
    for path in (before_path, after_path):
        stream, table = aggregate_file(
            path, lambda: GroupTable(key), strict=options.strict, on_warning=on_warning,
            on_progress=on_progress, interner=interner, jobs=options.jobs, check=check,
            stacks_from=options.stacks_from,
            layout=options.flags_layout,
        )  # fmt: skip
        tables.append(table)
        sides.append(stream)
    compared = diff_tables(tables[0], tables[1], options)
    return DiffResult(
        before=sides[0].name,
        after=sides[1].name,
        before_kind=sides[0].kind,
        after_kind=sides[1].kind,
        by=key.name,
        entries=tuple(compared.shown),
        before_pages=tables[0].total_pages,
        after_pages=tables[1].total_pages,
        before_groups=len(tables[0].groups),
        after_groups=len(tables[1].groups),
        unchanged=compared.unchanged,
        hidden=compared.hidden,
        growth=compared.growth,
    )


def check_growth(result: DiffResult, limit: int | None) -> None:
    """Raise ThresholdExceeded when a group grew by more than `limit` pages.

    Every changed group counts, including those the report left out.
    """
    if limit is None:
        return
    grown = [(delta, label) for delta, label in result.growth if delta > limit]
    if grown:
        delta, label = grown[0]
        raise ThresholdExceeded(
            f"{len(grown)} group(s) grew by more than {limit} pages; the most: "
            f"+{delta} pages ({label})"
        )
