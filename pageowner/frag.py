"""`pageowner frag`: mixed pageblocks per zone, and the stacks that mixed them.

A pageblock is mixed when it holds an allocated page whose migratetype (derived from its GFP
mask) is not the block's. With page_owner on, the kernel counts these per zone and block
type in /proc/pagetypeinfo (`pagetypeinfo_showmixedcount_print`, mm/page_owner.c): reserved
pages do not count, and a mixed CMA block is counted as Movable. This module counts the same
thing from a dump: every record is an allocated head page, with its block number and both
migratetypes on the PFN line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pageowner.analysis import (
    ProgressHandler,
    WarningHandler,
    node_of,
    open_samples,
    zone_label,
    zone_of,
)
from pageowner.frames import StackInfo
from pageowner.model import MigrateType
from pageowner.tables import MIGRATETYPE_NUMBERS

__all__ = ["Culprit", "FragOptions", "FragResult", "ZoneFrag", "frag_file"]


@dataclass(frozen=True)
class FragOptions:
    """How many culprit stacks to list, and the reader's error policy."""

    top: int = 10
    exact: bool = False
    strict: bool = False


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
    blocks: set[tuple[object, int]] = field(default_factory=set)
    kinds: dict[str, int] = field(default_factory=dict)


def _counted_as(block_mt: MigrateType) -> MigrateType:
    """Return the column a mixed block is counted in: CMA blocks count as Movable."""
    return MigrateType.MOVABLE if block_mt is MigrateType.CMA else block_mt


def frag_file(
    path: str,
    options: FragOptions | None = None,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> FragResult:
    """Read a dump and count mixed pageblocks per zone, with the stacks that mixed them."""
    options = options or FragOptions()
    zones: dict[tuple[int, int], dict[int, _Block]] = {}
    suspects: dict[tuple[str, ...], _Suspect] = {}
    records = mismatched = without_pfn = reserved = 0
    with open_samples(path, strict=options.strict, on_warning=on_warning,
                      on_progress=on_progress) as stream:  # fmt: skip
        stream.require_records("frag")
        for sample in stream.samples:
            record = sample.record
            assert record is not None
            records += 1
            if record.block is None or record.block_mt is None:
                without_pfn += 1
                continue
            zone = zone_of(record)
            node = node_of(record)
            where = (-1 if node is None else node, -1 if zone is None else zone)
            blocks = zones.setdefault(where, {})
            block = blocks.get(record.block)
            if block is None:
                block = blocks[record.block] = _Block(record.block_mt)
            if record.flags is not None and "reserved" in record.flags.names:
                reserved += 1
                continue
            # 3.19 prints no page migratetype, only "Fallback" when it differs (page_mt None).
            if record.page_mt is record.block_mt:
                continue
            mismatched += 1
            block.mixed = True
            key = sample.stack.exact_key if options.exact else sample.stack.key
            suspect = suspects.get(key)
            if suspect is None:
                suspect = suspects[key] = _Suspect(sample.stack)
            suspect.pages += sample.pages
            suspect.records += 1
            suspect.blocks.add((where, record.block))
            page_mt = record.page_mt.value if record.page_mt is not None else "other"
            kind = f"{page_mt} in {record.block_mt.value}"
            suspect.kinds[kind] = suspect.kinds.get(kind, 0) + sample.pages
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
        records=records,
        mismatched_records=mismatched,
        without_pfn=without_pfn,
        reserved=reserved,
    )
