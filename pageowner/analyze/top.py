"""`pageowner top`: the groups holding most pages (or seen most times), with their callers."""

from __future__ import annotations

from dataclasses import dataclass

from pageowner.analyze.analysis import (
    GroupKey,
    GroupTable,
    InputKind,
    ProgressHandler,
    SampleStream,
    WarningHandler,
    aggregate_file,
    get_group_key,
)
from pageowner.kernel.tables import FlagsLayout

__all__ = ["TopEntry", "TopOptions", "TopResult", "top_file"]


@dataclass(frozen=True)
class TopOptions:
    """What `top` shows: grouped by which key, ranked how, and how many."""

    by: str = "stack"
    top: int = 20  # 0: every group
    threshold: int = 0  # leave out groups with fewer pages
    by_times: bool = False
    exact: bool = False
    strict: bool = False
    jobs: int = 2  # processes for a big regular file (1 or 2)
    # show_stacks_handles or stack_handle dump naming 7.3 handle-only records' frames
    stacks_from: str | None = None
    # Where node and zone sit in pre-5.14 flags words; None: the sidecar's, else x86_64 NUMA.
    flags_layout: FlagsLayout | None = None


@dataclass(frozen=True)
class TopEntry:
    """One ranked group."""

    rank: int
    label: str
    pages: int
    times: int
    percent: float  # of all pages
    caller: str
    # For --by stack: every frame of the stack, leaf first, named without offsets.
    stack: tuple[str, ...]


@dataclass(frozen=True)
class TopResult:
    """The ranked groups of one input and the totals they are measured against."""

    source: str
    kind: InputKind
    by: str
    by_times: bool
    entries: tuple[TopEntry, ...]
    total_pages: int
    total_times: int
    groups: int  # before --top and --threshold
    threshold: int
    # 7.3 handle-only records left as `handle N` groups, and why (None: none were).
    handle_note: str | None = None


def _percent(part: int, whole: int) -> float:
    """Return part/whole in percent, 0 for an empty whole."""
    return 100.0 * part / whole if whole else 0.0


def top_file(
    path: str,
    options: TopOptions,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> TopResult:
    """Read a dump or show_stacks file and rank its groups."""
    key: GroupKey = get_group_key(options.by, exact=options.exact)

    def check(stream: SampleStream) -> None:
        if key.needs_record:
            stream.require_records(f"--by {key.name}")
        if options.by_times:
            stream.require_records("ranking by times")

    stream, table = aggregate_file(
        path, lambda: GroupTable(key), strict=options.strict, on_warning=on_warning,
        on_progress=on_progress, jobs=options.jobs, check=check,
        stacks_from=options.stacks_from,
        layout=options.flags_layout,
    )  # fmt: skip
    entries: list[TopEntry] = []
    for group in table.ranked(options.by_times):
        if group.pages < options.threshold:
            continue
        if options.top and len(entries) >= options.top:
            break
        entries.append(
            TopEntry(
                rank=len(entries) + 1,
                label=group.label,
                pages=group.pages,
                times=group.times,
                percent=_percent(group.pages, table.total_pages),
                caller=group.main_caller,
                stack=group.stack.labels() if key.name == "stack" else (),
            )
        )
    return TopResult(
        source=stream.name,
        kind=stream.kind,
        by=key.name,
        by_times=options.by_times,
        entries=tuple(entries),
        total_pages=table.total_pages,
        total_times=table.total_times,
        groups=len(table.groups),
        threshold=options.threshold,
        handle_note=stream.handle_note(),
    )
