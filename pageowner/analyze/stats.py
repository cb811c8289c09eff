"""`pageowner stats`: totals of a dump by order, GFP flag, zone, node, migratetype, allocator
and module, plus early-allocated pages, migrated pages and pages per memcg.

Each breakdown is a `Breakdown` in the `BREAKDOWNS` registry: a function giving the labels a
record counts under (a record counts under every GFP flag its mask prints) and how rows are
ordered. A show_stacks file has stacks only, so only the stack-based breakdowns apply.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from pageowner.analyze.analysis import (
    InputKind,
    ProgressHandler,
    Sample,
    WarningHandler,
    aggregate_file,
    allocator_bits,
    allocator_label,
    sample_allocator_bits,
    zone_label,
)
from pageowner.analyze.fields import zone_derived
from pageowner.dump.scan import AnyRecord
from pageowner.kernel.frames import StackInterner
from pageowner.kernel.tables import FlagsLayout
from pageowner.model import HeaderStyle

__all__ = ["BREAKDOWNS", "Breakdown", "StatsResult", "StatsRow", "StatsSection", "stats_file"]


@dataclass(frozen=True)
class StatsRow:
    """One line of a breakdown."""

    label: str
    pages: int
    records: int
    percent: float  # of all pages


@dataclass(frozen=True)
class StatsSection:
    """One breakdown: its rows, and whether rows overlap (then percents do not add up)."""

    name: str
    title: str
    rows: tuple[StatsRow, ...]
    overlapping: bool = False


@dataclass(frozen=True)
class StatsResult:
    """Every breakdown of one input."""

    source: str
    kind: InputKind
    records: int
    pages: int
    sections: tuple[StatsSection, ...]
    notes: tuple[str, ...]


@dataclass
class _Tally:
    """Pages and records counted under one label so far."""

    label: str
    pages: int = 0
    records: int = 0


@dataclass(frozen=True)
class Breakdown:
    """A registry entry: what a sample counts under, and how rows are ordered."""

    name: str
    title: str
    # (key, label) pairs a sample counts under; the key orders rows when `by_key`.
    keys: Callable[[Sample], Iterable[tuple[Hashable, str]]]
    needs_record: bool = True
    by_key: bool = False  # order rows by key (order, zone, node) instead of pages
    overlapping: bool = False


def _rec(sample: Sample) -> AnyRecord:
    """Return the sample's record (breakdowns that need one never see stack samples)."""
    assert sample.record is not None
    return sample.record


_GFP_TOKENS: dict[tuple[int, str | None], tuple[tuple[str, str], ...]] = {}


def _gfp_flags(sample: Sample) -> tuple[tuple[str, str], ...]:
    """Return the GFP names the kernel printed for the mask (or the bare mask before 4.6)."""
    record = _rec(sample)
    cache_key = (record.gfp_mask, record.gfp_names)
    tokens = _GFP_TOKENS.get(cache_key)
    if tokens is None:
        if record.gfp_names is None:
            names = [f"{record.gfp_mask:#x}"]
        else:
            names = [name for name in record.gfp_names.split("|") if name] or ["(none)"]
        tokens = _GFP_TOKENS[cache_key] = tuple((name, name) for name in names)
    return tokens


def _one(key: Hashable, label: str) -> tuple[tuple[Hashable, str]]:
    """Count a sample under one label."""
    return ((key, label),)


def _zone(sample: Sample) -> tuple[tuple[Hashable, str]]:
    zone = sample.zone
    return _one(-1 if zone is None else zone, zone_label(zone))


def _node(sample: Sample) -> tuple[tuple[Hashable, str]]:
    node = sample.node
    return _one(-1 if node is None else node, "unknown" if node is None else str(node))


def _mt(value: object) -> str:
    """Name an optional migratetype."""
    return "unknown" if value is None else str(getattr(value, "value", value))


def _allocator(sample: Sample) -> tuple[tuple[Hashable, str]]:
    label = allocator_label(sample_allocator_bits(sample))
    return _one(label, label)


def _origin(sample: Sample) -> tuple[tuple[Hashable, str]]:
    """Tell early-allocated pages (page_owner's init stack) from the rest."""
    kind = sample.stack.placeholder
    labels = {
        None: "allocated after page_owner init",
        "early": "early-allocated (before page_owner init)",
        "dummy": "dummy stack (page_owner recursion)",
        "failure": "failure stack (stackdepot full)",
    }
    return _one(kind or "", labels[kind])


def _migrated(sample: Sample) -> tuple[tuple[Hashable, str]]:
    reason = _rec(sample).migrate_reason
    if reason is None:
        return _one("", "not migrated")
    return _one(reason, f"migrated: {reason}")


def _memcg(sample: Sample) -> tuple[tuple[Hashable, str]]:
    record = _rec(sample)
    if record.memcg is not None:
        name = record.memcg.name + (" (offline)" if record.memcg.offline else "")
        return _one(name, name)
    if record.slab_cache:
        return _one(" slab", "slab cache page, not charged")
    return _one("", "not charged")


BREAKDOWNS: tuple[Breakdown, ...] = (
    Breakdown("order", "by order", lambda s: _one(_rec(s).order, str(_rec(s).order)),
              by_key=True),
    Breakdown("gfp", "by GFP flag (a record counts under each flag it has)", _gfp_flags,
              overlapping=True),
    Breakdown("zone", "by zone", _zone, by_key=True),
    Breakdown("node", "by node", _node, by_key=True),
    Breakdown("migratetype", "by migratetype (of the page, from its GFP mask)",
              lambda s: _one(_mt(_rec(s).page_mt), _mt(_rec(s).page_mt))),
    Breakdown("block_migratetype", "by pageblock migratetype",
              lambda s: _one(_mt(_rec(s).block_mt), _mt(_rec(s).block_mt))),
    Breakdown("allocator", "by allocator (as page_owner_sort classifies)", _allocator),
    Breakdown("module", "by module (nearest the leaf of the stack)",
              lambda s: _one(s.stack.module or "", s.stack.module or "vmlinux"),
              needs_record=False),
    Breakdown("origin", "early-allocated pages", _origin, needs_record=False),
    Breakdown("migrated", "migrated pages (4.6+)", _migrated),
    Breakdown("memcg", "pages per memcg (5.18+)", _memcg),
)  # fmt: skip


def _percent(part: int, whole: int) -> float:
    return 100.0 * part / whole if whole else 0.0


class _StatsPartial:
    """The tallies of every breakdown over some samples (a mergeable `Partial`)."""

    collapsible = True  # reads no ts, pfn or block; sums pages and times

    def __init__(self) -> None:
        self.counts: list[dict[Hashable, _Tally]] = [{} for _ in BREAKDOWNS]
        self.records = 0
        self.pages = 0
        self.derived = False
        self.memcg_era = False

    def feed(self, samples: Iterable[Sample]) -> None:
        """Tally samples under every breakdown that applies to them."""
        # Records that agree on every field a breakdown reads count the same way: collapse
        # them first, so the breakdowns run once per distinct signature.
        distinct: dict[Hashable, list[Any]] = {}
        for sample in samples:
            signature = _signature(sample)
            entry = distinct.get(signature)
            if entry is None:
                distinct[signature] = [sample, sample.pages, sample.times]
            else:
                entry[1] += sample.pages
                entry[2] += sample.times
        for sample, sample_pages, sample_times in distinct.values():
            self.records += sample_times
            self.pages += sample_pages
            record = sample.record
            if record is not None:
                self.derived = self.derived or zone_derived(record)
                self.memcg_era = self.memcg_era or record.fmt.header in _MEMCG_HEADERS
            for breakdown, table in zip(BREAKDOWNS, self.counts, strict=True):
                if record is None and breakdown.needs_record:
                    continue
                for key, label in breakdown.keys(sample):
                    tally = table.get(key)
                    if tally is None:
                        tally = table[key] = _Tally(label)
                    tally.pages += sample_pages
                    tally.records += sample_times

    def to_json(self) -> object:
        """Encode the tallies, each table in first-seen order."""
        tables = [[[key, t.label, t.pages, t.records] for key, t in table.items()]
                  for table in self.counts]  # fmt: skip
        return {"records": self.records, "pages": self.pages, "derived": self.derived,
                "memcg_era": self.memcg_era, "tables": tables}  # fmt: skip

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's tallies; its new labels go after ours."""
        self.records += data["records"]
        self.pages += data["pages"]
        self.derived = self.derived or data["derived"]
        self.memcg_era = self.memcg_era or data["memcg_era"]
        for table, rows in zip(self.counts, data["tables"], strict=True):
            for key, label, pages, records in rows:
                tally = table.get(key)
                if tally is None:
                    tally = table[key] = _Tally(label)
                tally.pages += pages
                tally.records += records


def stats_file(
    path: str,
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    jobs: int = 2,
    stacks_from: str | None = None,
    flags_layout: FlagsLayout | None = None,
) -> StatsResult:
    """Read a dump (or show_stacks file) and total it by every breakdown that applies."""
    notes: list[str] = []
    stream, partial = aggregate_file(path, _StatsPartial, strict=strict, on_warning=on_warning,
                                     on_progress=on_progress, jobs=jobs,
                                     stacks_from=stacks_from, layout=flags_layout)  # fmt: skip
    dump = stream.kind is InputKind.DUMP
    pages = partial.pages
    sections = []
    for breakdown, table in zip(BREAKDOWNS, partial.counts, strict=True):
        if breakdown.needs_record and not dump:
            continue
        if breakdown.name == "memcg" and not partial.memcg_era:
            notes.append("memcg: this kernel prints no memcg lines (they came in 5.18)")
            continue
        if breakdown.by_key:
            tallies = [table[key] for key in sorted(table, key=_order_key)]
        else:
            tallies = sorted(table.values(), key=lambda tally: -tally.pages)
        rows = tuple(
            StatsRow(t.label, t.pages, t.records, _percent(t.pages, pages)) for t in tallies
        )
        sections.append(StatsSection(breakdown.name, breakdown.title, rows, breakdown.overlapping))
    if partial.derived:
        layout = stream.layout
        notes.append(
            f"zone, node: derived from the flags word with the {layout.name} layout "
            f"({layout.description}), as the kernel printed no node=/zone= fields before "
            "5.14; --flags-layout names another"
        )
    if not dump:
        notes.append(
            "a show_stacks file has stacks and page counts only: no order, GFP, zone, "
            "migratetype, allocator, migration or memcg breakdowns"
        )
    return StatsResult(stream.name, stream.kind, partial.records, pages, tuple(sections),
                       tuple(notes))  # fmt: skip


_MEMCG_HEADERS = (HeaderStyle.TGID_TS_FREE, HeaderStyle.TGID_TS)


def _signature(sample: Sample) -> Hashable:
    """Return every field a breakdown reads (the stack by identity: it is interned)."""
    record = sample.record
    if record is None:
        return sample.stack
    flags = record.flags
    return (
        sample.stack, record.order, record.gfp_mask, record.gfp_names,
        None if flags is None else (flags.value, flags.fields),
        record.page_mt, record.block_mt, allocator_bits(record), record.migrate_reason,
        record.memcg, record.slab_cache, record.fmt.header,
    )  # fmt: skip


def _order_key(key: Hashable) -> tuple[int, str]:
    """Order integer keys numerically (unknown, -1, first) and others by text."""
    return (key, "") if isinstance(key, int) else (0, str(key))
