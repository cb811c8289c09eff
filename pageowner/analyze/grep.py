"""`pageowner grep`: select records and print them as a valid dump, ready for `sort`.

Filters are data: `FILTERS` lists each one with its option, its value parser and its
predicate. Values of one filter are alternatives (`--pid 1,2 --pid 7`: any of them); filters
combine with AND. `-v` inverts `-e` alone, as in grep. On a show_stacks file only the
stack filters (`-e`, `--module`) apply, and the output is a show_stacks file.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pageowner.analyze.analysis import (
    InputKind,
    ProgressHandler,
    Sample,
    SampleStream,
    WarningHandler,
    aggregate_file,
    allocator_bits,
    open_samples,
    shape_of,
)
from pageowner.dump.classify import ALLOCATOR_LABELS
from pageowner.dump.dumpfile import encode, format_record
from pageowner.dump.fileio import atomic_output, check_output_path
from pageowner.dump.scan import AnyRecord, ScanRecord
from pageowner.dump.stacksfile import format_stack_count
from pageowner.errors import InputError, SpecError
from pageowner.kernel.frames import StackInfo, StackInterner
from pageowner.kernel.tables import (
    GFP_TABLES,
    ZONE_NAMES,
    FlagsLayout,
    FlagTable,
    decode_flags,
    encode_flags,
)
from pageowner.model import MigrateType
from pageowner.units import parse_duration_range, parse_int_list

__all__ = [
    "FILTERS",
    "Filter",
    "GrepResult",
    "Selection",
    "get_filter",
    "grep_file",
    "parse_pfn_range",
]


@dataclass(frozen=True)
class Filter:
    """One grep filter: its option, how its value parses, and its predicate.

    `test(sample, values)` gets every value given for the option (already parsed) and
    tells whether the sample matches any of them.
    """

    name: str
    option: str
    metavar: str | None  # None: a flag without a value
    help: str
    parse: Callable[[str], Any]
    test: Callable[[Sample, tuple[Any, ...]], bool]
    on_stacks: bool = False  # applies to show_stacks input too
    per_record: bool = False  # reads ts, pfn or block, which records of one shape differ in


def _record(sample: Sample) -> AnyRecord:
    """Return the sample's record; record filters are refused on show_stacks input."""
    assert sample.record is not None
    return sample.record


def _flatten(values: tuple[Any, ...]) -> set[Any]:
    """Merge the tuples of several list-valued options."""
    return {item for value in values for item in value}


def _parse_regex(text: str) -> re.Pattern[str]:
    """Compile a frame regex."""
    try:
        return re.compile(text)
    except re.error as exc:
        raise SpecError(f"bad regular expression {text!r}: {exc}") from None


_REGEX_HITS: dict[tuple[StackInfo, tuple[re.Pattern[str], ...]], bool] = {}


def _frames_match(sample: Sample, patterns: tuple[re.Pattern[str], ...]) -> bool:
    """Tell whether any frame line matches any pattern (memoized per distinct stack)."""
    key = (sample.stack, patterns)
    hit = _REGEX_HITS.get(key)
    if hit is None:
        lines = [frame.symbolic() for frame in sample.stack.frames]
        hit = any(p.search(line) for p in patterns for line in lines)
        if len(_REGEX_HITS) > 100_000:
            _REGEX_HITS.clear()
        _REGEX_HITS[key] = hit
    return hit


def _parse_names(text: str) -> tuple[str, ...]:
    """Split a comma-separated list of names (empty names allowed, like sort's --name)."""
    return tuple(text.split(","))


def _parse_migratetypes(text: str) -> tuple[MigrateType, ...]:
    """Parse migratetype names, case-insensitively."""
    by_name = {mt.value.lower(): mt for mt in MigrateType}
    types = []
    for word in text.split(","):
        mt = by_name.get(word.strip().lower())
        if mt is None:
            names = ", ".join(m.value for m in MigrateType)
            raise SpecError(f"unknown migratetype {word!r} (choose from {names})")
        types.append(mt)
    return tuple(types)


def _parse_zones(text: str) -> tuple[int, ...]:
    """Parse zone names (x86_64 numbering) or indexes."""
    by_name = {name.lower(): index for index, name in enumerate(ZONE_NAMES)}
    zones = []
    for word in text.split(","):
        word = word.strip()
        if word.isdigit():
            zones.append(int(word))
        elif word.lower() in by_name:
            zones.append(by_name[word.lower()])
        else:
            raise SpecError(f"unknown zone {word!r} (choose from {', '.join(ZONE_NAMES)})")
    return tuple(zones)


def _parse_allocators(text: str) -> tuple[int, ...]:
    """Parse allocator names into page_owner_sort's bits."""
    by_name = {name: bit for bit, name in ALLOCATOR_LABELS}
    bits = []
    for word in text.split(","):
        bit = by_name.get(word.strip().upper())
        if bit is None:
            raise SpecError(f"unknown allocator {word!r} (choose from {', '.join(by_name)})")
        bits.append(bit)
    return tuple(bits)


def _parse_gfp(text: str) -> str:
    """Check that every part of `A|B|0x10` is hex or a GFP name of some kernel era."""
    for part in text.split("|"):
        if not part:
            raise SpecError(f"empty GFP flag in {text!r}")
        if part.lower().startswith("0x"):
            try:
                int(part, 16)
            except ValueError:
                raise SpecError(f"not a hex mask: {part!r}") from None
        elif not any(part in table.names for table in GFP_TABLES.values()):
            raise SpecError(f"unknown GFP flag {part!r}")
    return text


_TABLE_OF: dict[tuple[int, str | None], FlagTable | None] = {}


def _gfp_table(record: AnyRecord) -> FlagTable | None:
    """Return the GFP table of the record's kernel: the newest that prints its mask as it was.

    Bits moved between eras (4.6-4.14 differ from 4.15+), so a name means different bits
    in different dumps. Records of 3.19-4.5 print no names; there only hex masks match.
    """
    key = (record.gfp_mask, record.gfp_names)
    if key not in _TABLE_OF:
        table = None
        if record.gfp_names is not None:
            tables = list(GFP_TABLES.values())
            printed = record.gfp_names
            table = next(
                (t for t in reversed(tables) if decode_flags(record.gfp_mask, t) == printed),
                tables[-1],
            )
        _TABLE_OF[key] = table
    return _TABLE_OF[key]


def _gfp_contains(record: AnyRecord, flag: str) -> bool:
    """Tell whether every bit of a flag (or composite, or hex) is set in the mask."""
    table = _gfp_table(record)
    value = 0
    for part in flag.split("|"):
        if part.lower().startswith("0x"):
            value |= int(part, 16)
        elif table is None:
            return False
        else:
            try:
                value |= encode_flags(part, table)
            except KeyError:
                return False
    return value != 0 and record.gfp_mask & value == value


_PFN_RANGE_RE = re.compile(r"\s*(0x[0-9a-fA-F]+|\d+)\s*-\s*(0x[0-9a-fA-F]+|\d+)\s*")


def parse_pfn_range(text: str) -> tuple[int, int]:
    """Parse an inclusive PFN range `A-B`, decimal or 0x-hex.

    >>> parse_pfn_range("0x1000-0x1fff")
    (4096, 8191)
    """
    match = _PFN_RANGE_RE.fullmatch(text)
    if match is None:
        raise SpecError(f"not a PFN range: {text!r} (write A-B, e.g. 0x1000-0x1fff)")
    start, end = int(match[1], 0), int(match[2], 0)
    if end < start:
        raise SpecError(f"empty PFN range {text!r}: the end is below the start")
    return start, end


def _in_pfn_ranges(sample: Sample, ranges: tuple[tuple[int, int], ...]) -> bool:
    """Tell whether the allocation overlaps any range (all its 2^order pages count)."""
    record = _record(sample)
    if record.pfn is None:
        return False
    last = record.pfn + record.nr_pages - 1
    return any(record.pfn <= end and last >= start for start, end in ranges)


def _in_ts_ranges(sample: Sample, ranges: tuple[tuple[int, int | None], ...]) -> bool:
    """Tell whether the page was allocated within any range of time since boot."""
    ts = _record(sample).ts_nsec
    if ts is None:  # kernels before 5.11 print no ts (grep_file refuses such dumps)
        return False
    return any(start <= ts and (end is None or ts <= end) for start, end in ranges)


def _has_module(sample: Sample, values: tuple[tuple[str, ...], ...]) -> bool:
    """Tell whether a frame comes from one of the modules (vmlinux: a stack without any)."""
    wanted = _flatten(values)
    stack = sample.stack
    if stack.module is None:
        return "vmlinux" in wanted
    return any(frame.module in wanted for frame in stack.frames)


def _memcg_name(sample: Sample) -> str | None:
    """Return the memcg a page is charged to, if the dump says."""
    memcg = _record(sample).memcg
    return None if memcg is None else memcg.name


FILTERS: tuple[Filter, ...] = (
    Filter("regex", "-e", "REGEX", "Keep records with a stack frame matching REGEX (repeatable).",
           _parse_regex, _frames_match, on_stacks=True),
    Filter("pid", "--pid", "PIDLIST", "Keep records whose pid is in the list.",
           parse_int_list, lambda s, v: _record(s).pid in _flatten(v)),
    Filter("tgid", "--tgid", "TGIDLIST", "Keep records whose tgid is in the list.",
           parse_int_list, lambda s, v: _record(s).tgid in _flatten(v)),
    # Like page_owner_sort, a record whose kernel prints no comm has the empty name.
    Filter("name", "--name", "CMDLIST", "Keep records whose command name is in the list.",
           _parse_names, lambda s, v: (_record(s).comm or "") in _flatten(v)),
    Filter("order", "--order", "ORDERS", "Keep allocations of these orders.",
           parse_int_list, lambda s, v: _record(s).order in _flatten(v)),
    Filter("gfp", "--gfp", "FLAG",
           "Keep records whose mask contains FLAG: a name (__GFP_ZERO), a composite "
           "(GFP_KERNEL), A|B, or hex.",
           _parse_gfp, lambda s, v: any(_gfp_contains(_record(s), flag) for flag in v)),
    Filter("migratetype", "--migratetype", "TYPES", "Keep pages of these migratetypes.",
           _parse_migratetypes, lambda s, v: _record(s).page_mt in _flatten(v)),
    Filter("block_migratetype", "--block-migratetype", "TYPES",
           "Keep pages in pageblocks of these migratetypes.",
           _parse_migratetypes, lambda s, v: _record(s).block_mt in _flatten(v)),
    Filter("zone", "--zone", "ZONES", "Keep pages in these zones (DMA, DMA32, Normal, ... or 0-4).",
           _parse_zones, lambda s, v: s.zone in _flatten(v)),
    Filter("node", "--node", "NODES", "Keep pages on these NUMA nodes.",
           parse_int_list, lambda s, v: s.node in _flatten(v)),
    Filter("module", "--module", "MODULES",
           "Keep stacks with a frame in these modules (vmlinux: stacks without any).",
           _parse_names, _has_module, on_stacks=True),
    Filter("allocator", "--allocator", "NAMES",
           "Keep records page_owner_sort classifies as CMA, SLAB, VMALLOC or OTHERS.",
           _parse_allocators,
           lambda s, v: bool(allocator_bits(_record(s)) & sum(set(_flatten(v))))),
    Filter("pfn_range", "--pfn-range", "A-B",
           "Keep allocations overlapping PFNs A to B inclusive (decimal or 0x-hex; repeatable).",
           parse_pfn_range, _in_pfn_ranges, per_record=True),
    Filter("ts_range", "--ts-range", "A-B",
           "Keep pages allocated A to B after boot (the record's ts: 30s, 2m, 1.5h; an end may "
           "be left open: 1h-; repeatable). The capture sidecar's uptime says when now is.",
           parse_duration_range, _in_ts_ranges, per_record=True),
    Filter("migrated", "--migrated", None, "Keep pages that have been migrated.",
           lambda text: True, lambda s, v: _record(s).migrate_reason is not None),
    Filter("memcg", "--memcg", "NAMES", "Keep pages charged to these memcgs (5.18+).",
           _parse_names, lambda s, v: _memcg_name(s) in _flatten(v)),
)  # fmt: skip


def get_filter(name: str) -> Filter:
    """Look up a filter by name."""
    for entry in FILTERS:
        if entry.name == name:
            return entry
    raise SpecError(f"unknown filter {name!r}")


_Terms = tuple[tuple[Filter, tuple[Any, ...]], ...]


@dataclass(frozen=True)
class Selection:
    """The filters given, each with its parsed values, and whether -v inverts -e."""

    terms: tuple[tuple[Filter, tuple[Any, ...]], ...] = ()
    invert_regex: bool = False

    @classmethod
    def build(cls, given: Sequence[tuple[str, Sequence[Any]]], invert_regex: bool = False
              ) -> Selection:  # fmt: skip
        """Build a selection from (filter name, parsed values) pairs; empty ones are dropped."""
        terms = tuple((get_filter(name), tuple(values)) for name, values in given if values)
        if invert_regex and not any(f.name == "regex" for f, _ in terms):
            raise SpecError("-v inverts -e; give a pattern with -e")
        return cls(terms, invert_regex)

    def matches(self, sample: Sample, memo: dict[Hashable, bool] | None = None) -> bool:
        """Tell whether a sample passes every filter.

        `memo` keeps what the filters that read no ts, pfn or block said per record shape
        (`shape_of`): records of one shape differ in nothing else.
        """
        shape = None if memo is None or sample.record is None else shape_of(sample.record)
        if memo is None or shape is None:
            return self._passes(sample, self.terms)
        hit = memo.get(shape)
        if hit is None:
            if len(memo) >= 10_000:
                memo.clear()
            hit = memo[shape] = self._passes(sample, self._shape_terms[0])
        return hit and self._passes(sample, self._shape_terms[1])

    @functools.cached_property
    def _shape_terms(self) -> tuple[_Terms, _Terms]:
        """Split the terms: those that read no ts, pfn or block, and the others."""
        return (tuple(term for term in self.terms if not term[0].per_record),
                tuple(term for term in self.terms if term[0].per_record))  # fmt: skip

    def _passes(self, sample: Sample, terms: _Terms) -> bool:
        """Tell whether a sample passes the given filters."""
        for entry, values in terms:
            hit = entry.test(sample, values)
            if entry.name == "regex" and self.invert_regex:
                hit = not hit
            if not hit:
                return False
        return True


@dataclass(frozen=True)
class GrepResult:
    """How many records (or stack blocks) were read and kept."""

    source: str
    kind: InputKind
    read: int
    selected: int


def grep_file(
    input_path: str,
    output_path: str,
    selection: Selection,
    *,
    count_only: bool = False,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
    stacks_from: str | None = None,
    flags_layout: FlagsLayout | None = None,
) -> GrepResult:
    """Write the records of a dump that pass the selection, as a dump (or count them)."""
    check_output_path(output_path, (input_path,))
    _REGEX_HITS.clear()  # keyed by interned stacks, which live as long as one run
    if count_only and not any(f.per_record for f, _ in selection.terms):
        return _count_file(input_path, output_path, selection, strict=strict,
                           on_warning=on_warning, on_progress=on_progress,
                           stacks_from=stacks_from, flags_layout=flags_layout)  # fmt: skip
    read = selected = 0
    with open_samples(input_path, strict=strict, on_warning=on_warning,
                      on_progress=on_progress, stacks_from=stacks_from,
                      layout=flags_layout) as stream:  # fmt: skip
        if stream.kind is not InputKind.DUMP:
            refused = [f.option for f, _ in selection.terms if not f.on_stacks]
            if refused:
                raise InputError(
                    f"{stream.name}: a show_stacks file has stacks only; "
                    f"{', '.join(refused)} need(s) a page_owner dump"
                )
        needs_ts = any(f.name == "ts_range" for f, _ in selection.terms)
        memo: dict[Hashable, bool] = {}
        with atomic_output(output_path, inputs=(input_path,)) as out:
            for sample in stream.samples:
                read += 1
                if needs_ts and sample.record is not None and sample.record.ts_nsec is None:
                    raise InputError(
                        f"{stream.name}:{sample.record.lineno}: this dump's records carry no "
                        "ts (kernels before 5.11 print none), so --ts-range selects nothing"
                    )
                if not selection.matches(sample, memo):
                    continue
                selected += 1
                if count_only:
                    continue
                record = sample.record
                if isinstance(record, ScanRecord):
                    out.write(record.text + b"\n")  # verbatim, closing blank line added
                elif record is not None:
                    text = record.raw if record.raw is not None else format_record(record)
                    out.write(encode(text if record.raw is None else text + "\n"))
                elif sample.entry is not None:
                    out.write(encode(format_stack_count(sample.entry)))
            if count_only:
                out.write(b"%d\n" % selected)
    return GrepResult(stream.name, stream.kind, read, selected)


class _CountPartial:
    """Records read and selected (a mergeable `Partial`), for `grep -c` without ts or pfn."""

    collapsible = True  # its filters read no ts, pfn or block; it sums times

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.read = self.selected = 0
        self.memo: dict[Hashable, bool] = {}

    def feed(self, samples: Iterable[Sample]) -> None:
        """Count the samples' records, and those that pass the selection."""
        matches, memo = self.selection.matches, self.memo
        for sample in samples:
            self.read += sample.times
            if matches(sample, memo):
                self.selected += sample.times

    def to_json(self) -> object:
        """Encode the counts."""
        return [self.read, self.selected]

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's counts."""
        self.read += data[0]
        self.selected += data[1]


def _count_file(
    input_path: str, output_path: str, selection: Selection, *, strict: bool,
    on_warning: WarningHandler | None, on_progress: ProgressHandler | None,
    stacks_from: str | None = None, flags_layout: FlagsLayout | None = None,
) -> GrepResult:  # fmt: skip
    """Count the records that pass a selection, a big dump on two cores as top reads it."""

    def check(stream: SampleStream) -> None:
        refused = [f.option for f, _ in selection.terms if not f.on_stacks]
        if stream.kind is not InputKind.DUMP and refused:
            raise InputError(
                f"{stream.name}: a show_stacks file has stacks only; "
                f"{', '.join(refused)} need(s) a page_owner dump"
            )

    stream, partial = aggregate_file(
        input_path, lambda: _CountPartial(selection), strict=strict, on_warning=on_warning,
        on_progress=on_progress, check=check, stacks_from=stacks_from, layout=flags_layout,
    )  # fmt: skip
    with atomic_output(output_path, inputs=(input_path,)) as out:
        out.write(b"%d\n" % partial.selected)
    return GrepResult(stream.name, stream.kind, partial.read, partial.selected)
