"""Profile data for pprof: one sample per distinct stack and label set, with three values.

pprof wants, per sample, the stack leaf first, values (pages, bytes, allocations) and labels
that `-tagfocus` filters on. A page_owner record carries pid, tgid, comm, the GFP mask, the
order, the migratetype, zone and node (from its Flags field) and, since 5.18, its memcg, so
records that share a stack and all of those are summed into one sample. A show_stacks file
has stacks and page counts only: its samples have no labels and no allocation count.
The encoding itself (profile.proto, gzip) is `pageowner.report.pprof`'s job.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pageowner.analyze.analysis import (
    DEFAULT_PAGE_SIZE,
    InputKind,
    ProgressHandler,
    Sample,
    WarningHandler,
    aggregate_file,
    frames_from_json,
    frames_to_json,
    node_of,
    zone_label,
    zone_of,
)
from pageowner.errors import SpecError
from pageowner.kernel.frames import StackInfo, StackInterner
from pageowner.model import Frame

__all__ = [
    "LABEL_KEYS",
    "ProfileData",
    "ProfileOptions",
    "ProfileSample",
    "read_profile",
    "read_profile_pair",
]

# The labels of each sample, in this order; a value the record lacks (an older kernel's
# format) is left out of that sample rather than written as a placeholder.
LABEL_KEYS: tuple[str, ...] = (
    "pid", "tgid", "comm", "gfp", "order", "migratetype", "zone", "node", "memcg",
)  # fmt: skip

Labels = tuple[tuple[str, str | int], ...]


@dataclass(frozen=True)
class ProfileOptions:
    """How an input is read for a profile."""

    page_size: int = DEFAULT_PAGE_SIZE
    strict: bool = False
    jobs: int = 2  # processes for a big regular file (1 or 2)
    # show_stacks_handles or stack_handle dump naming 7.3 handle-only records' frames
    stacks_from: str | None = None


@dataclass(frozen=True)
class ProfileSample:
    """The pages, bytes and records of one stack under one label set."""

    frames: tuple[Frame, ...]  # leaf first, as page_owner prints them
    pages: int
    allocations: int  # records; 0 for show_stacks input, which does not count them
    labels: Labels


@dataclass(frozen=True)
class ProfileData:
    """The samples of one input, in first-seen order."""

    source: str
    kind: InputKind
    page_size: int
    samples: tuple[ProfileSample, ...]

    @property
    def total_pages(self) -> int:
        """Return the pages of every sample."""
        return sum(sample.pages for sample in self.samples)


def _labels(sample: Sample) -> Labels:
    """Return the labels a dump record carries (none for a show_stacks block)."""
    record = sample.record
    if record is None:
        return ()
    labels: list[tuple[str, str | int]] = []
    if record.pid is not None:
        labels.append(("pid", record.pid))
    if record.tgid is not None:
        labels.append(("tgid", record.tgid))
    if record.comm is not None:
        labels.append(("comm", record.comm))
    labels.append(("gfp", f"{record.gfp_mask:#x}"))
    labels.append(("order", record.order))
    if record.page_mt is not None:
        labels.append(("migratetype", record.page_mt.value))
    zone = zone_of(record)
    if zone is not None:
        labels.append(("zone", zone_label(zone)))
    node = node_of(record)
    if node is not None:
        labels.append(("node", node))
    if record.memcg is not None:
        labels.append(("memcg", record.memcg.name + (" (offline)" if record.memcg.offline
                                                     else "")))  # fmt: skip
    return tuple(labels)


class _ProfilePartial:
    """Pages and records per (stack, labels), in first-seen order (a mergeable `Partial`)."""

    def __init__(self) -> None:
        self.samples: dict[tuple[StackInfo, Labels], list[int]] = {}

    def feed(self, samples: Iterable[Sample]) -> None:
        """Add each sample's pages and records to its stack and label set."""
        table = self.samples
        for sample in samples:
            key = (sample.stack, _labels(sample))
            counts = table.get(key)
            if counts is None:
                counts = table[key] = [0, 0]
            counts[0] += sample.pages
            counts[1] += sample.times if sample.record is not None else 0

    def to_json(self) -> object:
        """Encode the samples with their frames and labels."""
        return [[frames_to_json(stack), [list(label) for label in labels], pages, records]
                for (stack, labels), (pages, records) in self.samples.items()]  # fmt: skip

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's samples; new ones go after ours."""
        for frames, labels, pages, records in data:
            key = (frames_from_json(frames, interner),
                   tuple((name, value) for name, value in labels))  # fmt: skip
            counts = self.samples.get(key)
            if counts is None:
                counts = self.samples[key] = [0, 0]
            counts[0] += pages
            counts[1] += records


def read_profile(
    path: str,
    options: ProfileOptions,
    *,
    interner: StackInterner | None = None,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> ProfileData:
    """Read a dump or show_stacks file into profile samples."""
    stream, partial = aggregate_file(
        path, _ProfilePartial, strict=options.strict, on_warning=on_warning,
        on_progress=on_progress, interner=interner, jobs=options.jobs,
        stacks_from=options.stacks_from,
    )  # fmt: skip
    samples = tuple(
        ProfileSample(stack.frames, pages, records, labels)
        for (stack, labels), (pages, records) in partial.samples.items()
    )
    return ProfileData(stream.name, stream.kind, options.page_size, samples)


def read_profile_pair(
    before_path: str,
    after_path: str,
    options: ProfileOptions,
    *,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> tuple[ProfileData, ProfileData]:
    """Read BEFORE and AFTER, for `pprof -diff_base BEFORE AFTER`."""
    if before_path == "-" and after_path == "-":
        raise SpecError("only one of BEFORE and AFTER can be standard input")
    interner = StackInterner()
    before = read_profile(before_path, options, interner=interner, on_warning=on_warning,
                          on_progress=on_progress)  # fmt: skip
    after = read_profile(after_path, options, interner=interner, on_warning=on_warning,
                         on_progress=on_progress)  # fmt: skip
    return before, after
