"""The mergeable fleet table: groups over hosts, each with a bounded summary of its hosts.

A `FleetTable` is what every task of a fleet job returns and every merge returns: the
groups of `GroupTable` (analyze/analysis.py) plus, per group, its pages per host as a
`HostPages` (exact up to 64 hosts, then a histogram and the top hosts: bounded whatever
the fleet's size), its pages per value of each --group-by field, and in `fleet diff` the
hosts where it grew most; and the hosts read, skipped and warned about. Tables travel as
JSON (frames as text, no pickle). Merging keeps first-seen order, so the merged table of
captures in a fixed order is the same whatever the shape of the reduction tree.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pageowner.analyze.analysis import (
    Group,
    GroupKey,
    GroupTable,
    frames_from_json,
    frames_to_json,
    key_from_json,
)
from pageowner.fleet.discover import Capture, Skipped, group_value
from pageowner.fleet.sketch import HostPages, top_hosts
from pageowner.kernel.frames import StackInterner

__all__ = ["FleetGroup", "FleetTable", "HostEntry", "decode_tables", "encode_tables"]


@dataclass(frozen=True)
class HostEntry:
    """One host read: its capture and its totals."""

    host: str
    release: str
    captured_at: str
    path: str
    pages: int
    times: int
    fields: tuple[tuple[str, str], ...] = ()  # the sidecar fields --group-by names

    def to_json(self) -> list[object]:
        """Encode as a JSON list."""
        return [self.host, self.release, self.captured_at, self.path, self.pages, self.times,
                [list(item) for item in self.fields]]  # fmt: skip

    @classmethod
    def from_json(cls, data: list[Any]) -> HostEntry:
        """Decode `to_json`."""
        host, release, when, path, pages, times, fields = data
        return cls(host, release, when, path, pages, times,
                   tuple((str(k), str(v)) for k, v in fields))  # fmt: skip

    def value(self, name: str) -> str:
        """Return the --group-by value of this host: release, host or a sidecar field."""
        if name == "release":
            return self.release
        if name == "host":
            return self.host
        return dict(self.fields).get(name, "-")


@dataclass
class FleetGroup(Group):
    """One group over the fleet: totals and main caller, pages per host, per column, growth."""

    spread: HostPages = field(default_factory=HostPages)
    columns: dict[str, dict[str, int]] = field(default_factory=dict)  # field -> value -> pages
    grew: list[tuple[str, int]] = field(default_factory=list)  # top hosts by growth (diff)
    # The frames as JSON text, carried through merges undecoded (`stack` is then empty).
    frames: str = ""

    def merge(self, later: FleetGroup) -> None:
        """Add the same group of other hosts."""
        self.pages += later.pages
        self.times += later.times
        for caller, pages in later.callers.items():
            self.callers[caller] = self.callers.get(caller, 0) + pages
        self.spread.merge(later.spread)
        for name, values in later.columns.items():
            mine = self.columns.setdefault(name, {})
            for value, pages in values.items():
                mine[value] = mine.get(value, 0) + pages
        if later.grew:
            self.grew = top_hosts([*self.grew, *later.grew])

    def frames_text(self) -> str:
        """Return the stack's frames as JSON text."""
        if not self.frames:
            self.frames = json.dumps(frames_to_json(self.stack), ensure_ascii=True,
                                     separators=(",", ":"))  # fmt: skip
        return self.frames

    def to_json(self) -> list[Any]:
        """Encode as a JSON list (the frames as one JSON text)."""
        return [self.key, self.label, self.frames_text(), self.pages, self.times,
                list(self.callers.items()), self.spread.to_json(),
                [[name, list(values.items())] for name, values in self.columns.items()],
                [list(item) for item in self.grew]]  # fmt: skip

    @classmethod
    def from_json(cls, data: list[Any], interner: StackInterner,
                  stacks: bool = True) -> FleetGroup:  # fmt: skip
        """Decode `to_json`, interning the stack in `interner`.

        Without `stacks` (merges), the frames stay JSON text and `stack` is empty: a
        merge then holds one string per group, not every table's frames as objects.
        """
        key_data, label, frames, pages, times, callers, spread, columns, grew = data
        stack = frames_from_json(json.loads(frames), interner) if stacks else interner.intern(())
        return cls(key_from_json(key_data), label, stack, pages, times,
                   {str(c): int(p) for c, p in callers}, HostPages.from_json(spread),
                   {str(name): {str(v): int(p) for v, p in values} for name, values in columns},
                   [(str(h), int(d)) for h, d in grew], "" if stacks else frames)  # fmt: skip


@dataclass
class FleetTable:
    """Groups in first-seen order over the hosts read, with what was skipped and why.

    `columns` are the --group-by fields whose pages each group keeps per value (release
    always): bounded by the number of distinct values, so by hosts only for `host`.
    """

    by: str
    columns: tuple[str, ...] = ("release",)
    groups: dict[Hashable, FleetGroup] = field(default_factory=dict)
    hosts: dict[str, HostEntry] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def total_pages(self) -> int:
        """Return the pages of every host read."""
        return sum(entry.pages for entry in self.hosts.values())

    @property
    def total_times(self) -> int:
        """Return the records of every host read."""
        return sum(entry.times for entry in self.hosts.values())

    @classmethod
    def from_capture(cls, capture: Capture, table: GroupTable,
                     columns: Sequence[str] = ("release",)) -> FleetTable:  # fmt: skip
        """Make the fleet table of one host's group table."""
        fleet = cls(table.by.name, tuple(columns))
        kept = tuple((name, capture.field(name)) for name in columns
                     if name not in ("release", "host"))  # fmt: skip
        fleet.hosts[capture.host] = HostEntry(
            capture.host, capture.release, capture.captured_at, capture.path,
            table.total_pages, table.total_times, kept)  # fmt: skip
        values = [(name, group_value(capture, name)) for name in columns]
        for key, group in table.groups.items():
            fleet.groups[key] = FleetGroup(
                key, group.label, group.stack, group.pages, group.times,
                dict(group.callers) if group.callers else {group.stack.caller_label: group.pages},
                HostPages.of(capture.host, group.pages),
                {name: {value: group.pages} for name, value in values})  # fmt: skip
        return fleet

    def merge(self, later: FleetTable) -> None:
        """Add a later table of other hosts: its new groups after ours, summaries merged.

        `later` is consumed: its groups become this table's.
        """
        self._merge_head(later)
        for group in later.groups.values():
            self.add_group(group)

    def _merge_head(self, later: FleetTable) -> None:
        """Add a later table's hosts, skipped captures and warnings."""
        for host, entry in later.hosts.items():
            mine = self.hosts.get(host)
            if mine is None:
                self.hosts[host] = entry
            else:  # not made by the job (a host is one table); summed all the same
                self.hosts[host] = HostEntry(mine.host, mine.release, mine.captured_at,
                                             mine.path, mine.pages + entry.pages,
                                             mine.times + entry.times, mine.fields)  # fmt: skip
        self.skipped.extend(later.skipped)
        self.warnings.extend(later.warnings)

    def add_group(self, theirs: FleetGroup) -> None:
        """Add one group of other hosts: merged into ours, or new after ours."""
        group = self.groups.get(theirs.key)
        if group is None:
            self.groups[theirs.key] = theirs
        else:
            group.merge(theirs)

    def _head(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "columns": list(self.columns),
            "hosts": [entry.to_json() for entry in self.hosts.values()],
            "skipped": [[s.host, s.path, s.reason] for s in self.skipped],
            "warnings": self.warnings,
            "groups": len(self.groups),
        }

    @classmethod
    def _from_head(cls, data: dict[str, Any]) -> FleetTable:
        table = cls(data["by"], tuple(data["columns"]))
        for item in data["hosts"]:
            entry = HostEntry.from_json(item)
            table.hosts[entry.host] = entry
        table.skipped = [Skipped(*item) for item in data["skipped"]]
        table.warnings = list(data["warnings"])
        return table

    def to_json(self) -> bytes:
        """Encode as `encode_tables` does."""
        return encode_tables([self])

    @classmethod
    def from_json(cls, payload: bytes, interner: StackInterner) -> FleetTable:
        """Decode `to_json`, interning stacks in `interner`."""
        (table,) = decode_tables(payload, interner)
        return table

    @classmethod
    def skipped_only(cls, by: GroupKey, skipped: Skipped,
                     columns: Sequence[str] = ("release",)) -> FleetTable:  # fmt: skip
        """Make the table of a capture that could not be read."""
        table = cls(by.name, tuple(columns))
        table.skipped.append(skipped)
        return table


def encode_tables(tables: Sequence[FleetTable]) -> bytes:
    """Encode tables as zlib-compressed JSON lines: each table's head, then a line per group.

    Line by line, so that neither side holds a whole table's JSON objects at once;
    compressed, because tables wait on the workers between the levels of the merge tree
    and the frames text they carry shrinks about tenfold. JSON, never pickle.
    """
    packer = zlib.compressobj(1)
    chunks: list[bytes] = []
    for table in tables:
        chunks.append(packer.compress(_line(table._head())))
        chunks.extend(packer.compress(_line(group.to_json())) for group in table.groups.values())
    chunks.append(packer.flush())
    return b"".join(chunks)


def _line(data: object) -> bytes:
    return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def decode_tables(payload: bytes, interner: StackInterner, *, stacks: bool = True,
                  into: Sequence[FleetTable] | None = None) -> list[FleetTable]:  # fmt: skip
    """Decode `encode_tables`; with `into`, merge each table into those (in order) instead.

    Without `stacks` the frames stay JSON text (`FleetGroup.from_json`).
    """
    lines = _lines(payload)
    tables: list[FleetTable] = []
    for head_line in lines:
        head = json.loads(head_line)
        table = FleetTable._from_head(head)
        if into is not None:
            into[len(tables)]._merge_head(table)
            table = into[len(tables)]
        for _ in range(head["groups"]):
            table.add_group(FleetGroup.from_json(json.loads(next(lines)), interner, stacks))
        tables.append(table)
    return tables


def _lines(payload: bytes, step: int = 8192) -> Iterator[bytes]:
    """Yield the lines of `encode_tables`, decompressed a few kilobytes at a time.

    zlib.decompress of a whole table would hold its text, and peaks at several times it.
    """
    unpacker = zlib.decompressobj()
    rest = b""
    view = memoryview(payload)
    for start in range(0, len(view), step):
        *whole, rest = (rest + unpacker.decompress(view[start : start + step])).split(b"\n")
        yield from whole
    *whole, rest = (rest + unpacker.flush()).split(b"\n")
    yield from whole
    if rest:
        raise ValueError("a fleet table ends inside a line")
