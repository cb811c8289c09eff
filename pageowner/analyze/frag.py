"""`pageowner frag`: mixed pageblocks per zone, and the stacks that mixed them.

A pageblock is mixed when it holds an allocated page whose migratetype (derived from its GFP
mask) is not the block's. With page_owner on, the kernel counts these per zone and block
type in /proc/pagetypeinfo (`pagetypeinfo_showmixedcount_print`, mm/page_owner.c): reserved
pages do not count, and a mixed CMA block is counted as Movable. This module counts the same
thing from a dump: every record is an allocated head page, with its block number and both
migratetypes on the PFN line.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pageowner.analyze.analysis import (
    ProgressHandler,
    Sample,
    SampleStream,
    WarningHandler,
    aggregate_file,
    frames_from_json,
    frames_to_json,
    node_of,
    shape_of,
    zone_label,
    zone_of,
)
from pageowner.analyze.fields import zone_derived
from pageowner.dump.scan import AnyRecord
from pageowner.kernel.frames import StackInfo, StackInterner
from pageowner.kernel.tables import MIGRATETYPE_NUMBERS, FlagsLayout
from pageowner.model import MigrateType

__all__ = ["Culprit", "FragOptions", "FragResult", "ZoneFrag", "frag_file"]


@dataclass(frozen=True)
class FragOptions:
    """How many culprit stacks to list, and the reader's error policy."""

    top: int = 10
    exact: bool = False
    strict: bool = False
    jobs: int = 2  # processes for a big regular file (1 or 2)
    # show_stacks_handles or stack_handle dump naming 7.3 handle-only records' frames
    stacks_from: str | None = None
    # Where node and zone sit in pre-5.14 flags words; None: the sidecar's, else x86_64 NUMA.
    flags_layout: FlagsLayout | None = None


@dataclass(frozen=True)
class ZoneFrag:
    """One zone: pageblocks seen and mixed blocks, per pageblock migratetype."""

    node: int | None
    zone: str
    blocks: tuple[tuple[MigrateType, int], ...]  # blocks holding any allocation
    mixed: tuple[tuple[MigrateType, int], ...]  # as /proc/pagetypeinfo counts them

    @property
    def mixed_total(self) -> int:
        """Return the mixed blocks of every type."""
        return sum(count for _, count in self.mixed)

    @property
    def blocks_total(self) -> int:
        """Return the blocks seen of every type."""
        return sum(count for _, count in self.blocks)


@dataclass(frozen=True)
class Culprit:
    """A stack with pages in pageblocks of another migratetype."""

    rank: int
    caller: str
    blocks: int  # mixed pageblocks it has pages in
    pages: int  # its pages that do not match their block
    records: int
    migratetypes: str  # e.g. "Unmovable in Movable"
    stack: tuple[str, ...]


@dataclass(frozen=True)
class FragResult:
    """Mixed blocks per zone, the stacks behind them, and what could not be placed."""

    source: str
    migratetypes: tuple[MigrateType, ...]  # the columns
    zones: tuple[ZoneFrag, ...]
    culprits: tuple[Culprit, ...]
    records: int
    mismatched_records: int
    without_pfn: int  # records without a PFN line (`grep -v ^PFN` dumps)
    reserved: int  # reserved pages, which the kernel skips too
    # The flags layout node and zone were derived with (pre-5.14 dumps), else None.
    derived_with: FlagsLayout | None = None


@dataclass
class _Block:
    """What is known about one pageblock."""

    migratetype: MigrateType
    mixed: bool = False


@dataclass
class _Suspect:
    """Mismatched pages of one stack."""

    stack: StackInfo
    pages: int = 0
    records: int = 0
    blocks: set[tuple[tuple[int, int], int]] = field(default_factory=set)  # (node, zone), block
    kinds: dict[str, int] = field(default_factory=dict)


def _counted_as(block_mt: MigrateType) -> MigrateType:
    """Return the column a mixed block is counted in: CMA blocks count as Movable."""
    return MigrateType.MOVABLE if block_mt is MigrateType.CMA else block_mt


class _FragPartial:
    """Pageblocks per zone and mismatched stacks over some samples (a mergeable `Partial`).

    A block keeps the migratetype of the first record seen in it and is mixed if any record
    mixed it; a suspect keeps the first stack seen under its key. Merging a later part keeps
    ours where both have one, so the result is that of one reading in file order.
    """

    # Runs of records come as one sample with each record's pageblock (Sample.blocks).
    collapsible = "blocks"

    def __init__(self, exact: bool) -> None:
        self.exact = exact
        # (node, zone) with -1 for unknown -> pageblock number -> block, in first-seen order
        self.zones: dict[tuple[int, int], dict[int, _Block]] = {}
        self.suspects: dict[tuple[str, ...], _Suspect] = {}
        self.records = self.mismatched = self.without_pfn = self.reserved = 0
        self.derived = False  # a zone or node came from the flags word, not the text

    def feed(self, samples: Iterable[Sample]) -> None:
        """Place each record's pageblock and note the stacks of mismatched pages."""
        zones = self.zones
        suspects = self.suspects
        exact = self.exact
        # What a record says but for its pageblock number, memoized per scanned shape.
        memo: dict[Hashable, _Facts | None] = {}
        for sample in samples:
            record = sample.record
            assert record is not None
            times = sample.times
            self.records += times
            shape = shape_of(record)
            if shape is None:
                facts = _facts(record, sample.layout)
            else:
                try:
                    facts = memo[shape]
                except KeyError:
                    if len(memo) >= 10_000:
                        memo.clear()
                    facts = memo[shape] = _facts(record, sample.layout)
            if facts is None:
                self.without_pfn += times
                continue
            where, block_mt, reserved, kind, derived = facts
            self.derived = self.derived or derived
            numbers = sample.blocks
            if numbers is None:
                number = record.block
                assert number is not None and times == 1
                numbers = (number,)
            blocks = zones.get(where)
            if blocks is None:
                blocks = zones[where] = {}
            for number in numbers:
                if number not in blocks:
                    blocks[number] = _Block(block_mt)
            if reserved:
                self.reserved += times
                continue
            if kind is None:
                continue
            self.mismatched += times
            for number in numbers:
                blocks[number].mixed = True
            key = sample.stack.exact_key if exact else sample.stack.key
            suspect = suspects.get(key)
            if suspect is None:
                suspect = suspects[key] = _Suspect(sample.stack)
            suspect.pages += sample.pages
            suspect.records += times
            suspect.blocks.update((where, number) for number in numbers)
            suspect.kinds[kind] = suspect.kinds.get(kind, 0) + sample.pages

    def to_json(self) -> object:
        """Encode zones, blocks and suspects in first-seen order (suspects with their frames)."""
        zones = [[list(where), [[number, block.migratetype.value, block.mixed]
                                for number, block in blocks.items()]]
                 for where, blocks in self.zones.items()]  # fmt: skip
        suspects = [[frames_to_json(s.stack), s.pages, s.records,
                     [[list(where), number] for where, number in s.blocks],
                     list(s.kinds.items())] for s in self.suspects.values()]  # fmt: skip
        counts = [self.records, self.mismatched, self.without_pfn, self.reserved,
                  self.derived]
        return {"counts": counts, "zones": zones, "suspects": suspects}

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part: our blocks keep their migratetype, new ones go after ours."""
        records, mismatched, without_pfn, reserved, derived = data["counts"]
        self.derived = self.derived or derived
        self.records += records
        self.mismatched += mismatched
        self.without_pfn += without_pfn
        self.reserved += reserved
        for where_data, rows in data["zones"]:
            blocks = self.zones.setdefault((where_data[0], where_data[1]), {})
            for number, migratetype, mixed in rows:
                block = blocks.get(number)
                if block is None:
                    block = blocks[number] = _Block(MigrateType(migratetype))
                block.mixed = block.mixed or mixed
        for frames, pages, records, blocks_data, kinds in data["suspects"]:
            stack = frames_from_json(frames, interner)
            key = stack.exact_key if self.exact else stack.key
            suspect = self.suspects.get(key)
            if suspect is None:
                suspect = self.suspects[key] = _Suspect(stack)
            suspect.pages += pages
            suspect.records += records
            suspect.blocks.update(((w[0], w[1]), number) for w, number in blocks_data)
            for kind, kind_pages in kinds:
                suspect.kinds[kind] = suspect.kinds.get(kind, 0) + kind_pages


# Where a record's pageblock is ((node, zone), -1 for unknown), the block's migratetype,
# whether the page is reserved, and "X in Y" when the page's migratetype is not the block's.
_Facts = tuple[tuple[int, int], MigrateType, bool, str | None, bool]


def _facts(record: AnyRecord, layout: FlagsLayout) -> _Facts | None:
    """Return what frag reads off a record but its pageblock number; None without a block."""
    if record.block is None or record.block_mt is None:
        return None
    zone = zone_of(record, layout)
    node = node_of(record, layout)
    where = (-1 if node is None else node, -1 if zone is None else zone)
    reserved = record.flags is not None and "reserved" in record.flags.names
    # 3.19 prints no page migratetype, only "Fallback" when it differs (page_mt None).
    kind = None
    if record.page_mt is not record.block_mt:
        page_mt = record.page_mt.value if record.page_mt is not None else "other"
        kind = f"{page_mt} in {record.block_mt.value}"
    return where, record.block_mt, reserved, kind, zone_derived(record)


def frag_file(
    path: str,
    options: FragOptions | None = None,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> FragResult:
    """Read a dump and count mixed pageblocks per zone, with the stacks that mixed them."""
    options = options or FragOptions()
    exact = options.exact

    def check(stream: SampleStream) -> None:
        stream.require_records("frag")

    stream, partial = aggregate_file(
        path, lambda: _FragPartial(exact), strict=options.strict, on_warning=on_warning,
        on_progress=on_progress, jobs=options.jobs, check=check,
        stacks_from=options.stacks_from,
        layout=options.flags_layout,
    )  # fmt: skip
    zones, suspects = partial.zones, partial.suspects
    columns = list(MIGRATETYPE_NUMBERS)
    for blocks in zones.values():
        for block in blocks.values():
            if block.migratetype not in columns:
                columns.append(block.migratetype)
    zone_rows = []
    for (node, zone), blocks in sorted(zones.items()):
        seen = {mt: 0 for mt in columns}
        mixed = {mt: 0 for mt in columns}
        for block in blocks.values():
            seen[block.migratetype] += 1
            if block.mixed:
                mixed[_counted_as(block.migratetype)] += 1
        zone_rows.append(
            ZoneFrag(
                node=None if node < 0 else node,
                zone=zone_label(None if zone < 0 else zone),
                blocks=tuple(seen.items()),
                mixed=tuple(mixed.items()),
            )
        )
    ranked = sorted(suspects.values(), key=lambda s: (-len(s.blocks), -s.pages))
    if options.top:
        ranked = ranked[: options.top]
    culprits = tuple(
        Culprit(
            rank=rank,
            caller=suspect.stack.caller_label,
            blocks=len(suspect.blocks),
            pages=suspect.pages,
            records=suspect.records,
            migratetypes=", ".join(
                kind for kind, _ in sorted(suspect.kinds.items(), key=lambda kv: -kv[1])
            ),
            stack=suspect.stack.labels(),
        )
        for rank, suspect in enumerate(ranked, start=1)
    )
    return FragResult(
        source=stream.name,
        migratetypes=tuple(columns),
        zones=tuple(zone_rows),
        culprits=culprits,
        records=partial.records,
        mismatched_records=partial.mismatched,
        without_pfn=partial.without_pfn,
        reserved=partial.reserved,
        derived_with=stream.layout if partial.derived else None,
    )
