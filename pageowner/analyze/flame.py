"""Flame graph data: stacks folded root first, a speedscope document, and a frame tree.

page_owner prints stacks leaf first; flame graphs want them root first, so every builder
here reverses them. Frames are named without offsets (`function [module]`), so one function
is one box however many call sites it has. Weights are pages, bytes (pages times the page
size) or times (records; dumps only).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pageowner import __version__
from pageowner.analyze.analysis import (
    DEFAULT_PAGE_SIZE,
    InputKind,
    ProgressHandler,
    Sample,
    SampleStream,
    WarningHandler,
    aggregate_file,
)
from pageowner.errors import SpecError
from pageowner.kernel.frames import StackInfo, StackInterner, frame_label

__all__ = [
    "SPEEDSCOPE_SCHEMA",
    "FlameData",
    "FlameNode",
    "FlameOptions",
    "Weight",
    "build_tree",
    "fold_lines",
    "read_flame_data",
    "speedscope_document",
]

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
NO_STACK = "(no stack)"


class Weight(enum.Enum):
    """What the width of a frame measures."""

    PAGES = "pages"
    BYTES = "bytes"
    TIMES = "times"


@dataclass(frozen=True)
class FlameOptions:
    """How stacks are weighed."""

    weight: Weight = Weight.PAGES
    page_size: int = DEFAULT_PAGE_SIZE
    strict: bool = False
    jobs: int = 2  # processes for each big regular file (1 or 2)
    # show_stacks_handles or stack_handle dump naming 7.3 handle-only records' frames
    stacks_from: str | None = None


@dataclass(frozen=True)
class FlameData:
    """Weighted stacks of one input (root first), or of two for a differential graph."""

    source: str
    kind: InputKind
    weight: Weight
    stacks: dict[tuple[str, ...], int]
    before_source: str | None = None
    before: dict[tuple[str, ...], int] | None = None

    @property
    def total(self) -> int:
        """Return the sum of all weights."""
        return sum(self.stacks.values())


def _folded_name(frame_name: str) -> str:
    """Make a frame name safe for the folded format (`;` separates frames)."""
    return frame_name.replace(";", ":").replace("\n", " ")


class _FlamePartial:
    """The weight of each distinct stack over some samples (a mergeable `Partial`).

    Stacks are summed by `StackInfo` while reading, then by their root-first folded names,
    which is what crosses processes: names are a function of the frames, so a later part's
    names add up exactly as its stacks would have, and first-seen order is kept.
    """

    collapsible = True  # reads no ts, pfn or block; sums pages and times

    def __init__(self, times: bool) -> None:
        self.times = times
        self.by_stack: dict[StackInfo, int] = {}
        self.merged: dict[tuple[str, ...], int] | None = None  # once a later part came in

    def feed(self, samples: Iterable[Sample]) -> None:
        """Add each sample's weight (times or pages) to its stack."""
        by_stack = self.by_stack
        times = self.times
        for sample in samples:
            weight = sample.times if times else sample.pages
            by_stack[sample.stack] = by_stack.get(sample.stack, 0) + weight

    def folded(self) -> dict[tuple[str, ...], int]:
        """Return the weight of each root-first stack of folded names, in first-seen order."""
        if self.merged is not None:
            return self.merged
        stacks: dict[tuple[str, ...], int] = {}
        for info, value in self.by_stack.items():
            names = tuple(_folded_name(frame_label(frame)) for frame in reversed(info.frames))
            names = names or (NO_STACK,)
            stacks[names] = stacks.get(names, 0) + value
        return stacks

    def to_json(self) -> object:
        """Encode the folded stacks and their weights in first-seen order."""
        return [[list(names), value] for names, value in self.folded().items()]

    def merge_json(self, data: Any, interner: StackInterner) -> None:
        """Add a later part's folded stacks; its new stacks go after ours."""
        stacks = self.merged = self.folded()
        for names, value in data:
            key = tuple(names)
            stacks[key] = stacks.get(key, 0) + value


def _read_stacks(
    path: str, options: FlameOptions, interner: StackInterner,
    on_warning: WarningHandler | None, on_progress: ProgressHandler | None,
) -> tuple[str, InputKind, dict[tuple[str, ...], int]]:  # fmt: skip
    """Sum the weights of each distinct root-first stack of one input."""
    times = options.weight is Weight.TIMES

    def check(stream: SampleStream) -> None:
        if times:
            stream.require_records("--weight times")

    stream, partial = aggregate_file(
        path, lambda: _FlamePartial(times), strict=options.strict, on_warning=on_warning,
        on_progress=on_progress, interner=interner, jobs=options.jobs, check=check,
        stacks_from=options.stacks_from,
    )  # fmt: skip
    scale = options.page_size if options.weight is Weight.BYTES else 1
    stacks = {names: value * scale for names, value in partial.folded().items()}
    return stream.name, stream.kind, stacks


def read_flame_data(
    path: str,
    options: FlameOptions,
    *,
    before_path: str | None = None,
    on_warning: WarningHandler | None = None,
    on_progress: ProgressHandler | None = None,
) -> FlameData:
    """Read the weighted stacks of an input, and of BEFORE for a differential graph."""
    if before_path == "-" and path == "-":
        raise SpecError("only one of INPUT and --diff can be standard input")
    interner = StackInterner()
    before_source = before = None
    if before_path is not None:
        before_source, _, before = _read_stacks(
            before_path, options, interner, on_warning, on_progress
        )
    source, kind, stacks = _read_stacks(path, options, interner, on_warning, on_progress)
    return FlameData(source, kind, options.weight, stacks, before_source, before)


def fold_lines(data: FlameData) -> Iterable[str]:
    """Yield folded lines, `a;b;c N` (or `a;b;c BEFORE AFTER` when differential), sorted."""
    if data.before is None:
        for stack in sorted(data.stacks):
            yield f"{';'.join(stack)} {data.stacks[stack]}\n"
        return
    # difffolded.pl's shape: every stack of either input, with both counts.
    for stack in sorted(set(data.stacks) | set(data.before)):
        yield f"{';'.join(stack)} {data.before.get(stack, 0)} {data.stacks.get(stack, 0)}\n"


def _profile(name: str, unit: str, stacks: dict[tuple[str, ...], int],
             frames: dict[str, int]) -> dict[str, Any]:  # fmt: skip
    """Build one sampled speedscope profile (samples root first, zero weights dropped)."""
    samples = []
    weights = []
    for stack in sorted(stacks):
        value = stacks[stack]
        if value <= 0:
            continue
        samples.append([frames.setdefault(frame, len(frames)) for frame in stack])
        weights.append(value)
    return {
        "type": "sampled",
        "name": name,
        "unit": unit,
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }


def speedscope_document(data: FlameData) -> dict[str, Any]:
    """Build a speedscope file (file-format-spec.ts): one profile, two when differential."""
    unit = "bytes" if data.weight is Weight.BYTES else "none"
    frames: dict[str, int] = {}
    profiles = []
    if data.before is not None:
        profiles.append(_profile(f"before: {data.before_source}", unit, data.before, frames))
        profiles.append(_profile(f"after: {data.source}", unit, data.stacks, frames))
    else:
        profiles.append(_profile(f"{data.source} ({data.weight.value})", unit, data.stacks,
                                 frames))  # fmt: skip
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": [{"name": name} for name in frames]},
        "profiles": profiles,
        "name": data.source,
        "activeProfileIndex": len(profiles) - 1,
        "exporter": f"pageowner {__version__}",
    }


@dataclass
class FlameNode:
    """A box of the flame graph: a frame reached by one path from the root."""

    name: str
    value: int = 0
    before: int = 0  # differential graphs: the value in BEFORE
    children: dict[str, FlameNode] = field(default_factory=dict)

    def sorted_children(self) -> list[FlameNode]:
        """Return the children, widest first (by name among equals)."""
        return sorted(self.children.values(), key=lambda n: (-max(n.value, n.before), n.name))


def build_tree(data: FlameData, root_name: str = "all") -> FlameNode:
    """Merge the stacks into a tree under one root."""
    root = FlameNode(root_name)
    _add_stacks(root, data.stacks, "value")
    if data.before is not None:
        _add_stacks(root, data.before, "before")
    return root


def _add_stacks(root: FlameNode, stacks: Mapping[tuple[str, ...], int], counter: str) -> None:
    """Add each stack's value to `counter` (value or before) along its path from the root."""
    for stack, value in stacks.items():
        node = root
        setattr(node, counter, getattr(node, counter) + value)
        for name in stack:
            child = node.children.get(name)
            if child is None:
                child = node.children[name] = FlameNode(name)
            setattr(child, counter, getattr(child, counter) + value)
            node = child
