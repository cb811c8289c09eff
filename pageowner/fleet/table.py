"""The mergeable fleet table: groups over hosts, each with its pages on every host.

A `FleetTable` is what every task of a fleet job returns and every merge returns: the
groups of `GroupTable` (analyze/analysis.py) plus, per group, the pages and times on
each host, and the hosts read, skipped and warned about. Tables travel as JSON (frames as
text, no pickle). Merging keeps first-seen order, so the merged table of captures in a
fixed order is the same whatever the shape of the reduction tree.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
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
from pageowner.fleet.discover import Capture, Skipped
from pageowner.kernel.frames import StackInterner

__all__ = ["FleetGroup", "FleetTable", "HostEntry"]


@dataclass(frozen=True)
class HostEntry:
    """One host read: its capture and its totals."""

    host: str
    release: str
    captured_at: str
    path: str
    pages: int
    times: int
    fields: tuple[tuple[str, str], ...] = ()

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
    """One group over the fleet: a host's group's totals and main caller, and pages per host."""

    hosts: dict[str, list[int]] = field(default_factory=dict)  # host -> [pages, times]


@dataclass
class FleetTable:
    """Groups in first-seen order over the hosts read, with what was skipped and why."""

    by: str
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
    def from_capture(cls, capture: Capture, table: GroupTable) -> FleetTable:
        """Make the fleet table of one host's group table."""
        fleet = cls(table.by.name)
        fleet.hosts[capture.host] = HostEntry(
            capture.host, capture.release, capture.captured_at, capture.path,
            table.total_pages, table.total_times, capture.fields)  # fmt: skip
        for key, group in table.groups.items():
            fleet.groups[key] = FleetGroup(
                key, group.label, group.stack, group.pages, group.times,
                dict(group.callers) if group.callers else {group.stack.caller_label: group.pages},
                {capture.host: [group.pages, group.times]})  # fmt: skip
        return fleet

    def merge(self, later: FleetTable) -> None:
        """Add a later table: its new groups after ours, per-host cells summed."""
        for host, entry in later.hosts.items():
            mine = self.hosts.get(host)
            if mine is None:
                self.hosts[host] = entry
            else:  # the same host from two tasks (one big capture in parts)
                self.hosts[host] = HostEntry(mine.host, mine.release, mine.captured_at,
                                             mine.path, mine.pages + entry.pages,
                                             mine.times + entry.times, mine.fields)  # fmt: skip
        self.skipped.extend(later.skipped)
        self.warnings.extend(later.warnings)
        groups = self.groups
        for key, theirs in later.groups.items():
            group = groups.get(key)
            if group is None:
                groups[key] = group = FleetGroup(key, theirs.label, theirs.stack)
            group.pages += theirs.pages
            group.times += theirs.times
            for caller, pages in theirs.callers.items():
                group.callers[caller] = group.callers.get(caller, 0) + pages
            for host, (pages, times) in theirs.hosts.items():
                cell = group.hosts.setdefault(host, [0, 0])
                cell[0] += pages
                cell[1] += times

    def to_json(self) -> bytes:
        """Encode as compact JSON bytes."""
        data = {
            "by": self.by,
            "hosts": [entry.to_json() for entry in self.hosts.values()],
            "skipped": [[s.host, s.path, s.reason] for s in self.skipped],
            "warnings": self.warnings,
            "groups": [
                [group.key, group.label, frames_to_json(group.stack), group.pages,
                 group.times, list(group.callers.items()),
                 [[host, cell[0], cell[1]] for host, cell in group.hosts.items()]]
                for group in self.groups.values()
            ],
        }  # fmt: skip
        return json.dumps(data, ensure_ascii=True, separators=(",", ":")).encode("ascii")

    @classmethod
    def from_json(cls, payload: bytes, interner: StackInterner) -> FleetTable:
        """Decode `to_json`, interning stacks in `interner`."""
        data = json.loads(payload)
        table = cls(data["by"])
        for item in data["hosts"]:
            entry = HostEntry.from_json(item)
            table.hosts[entry.host] = entry
        table.skipped = [Skipped(*item) for item in data["skipped"]]
        table.warnings = list(data["warnings"])
        for key_data, label, frames, pages, times, callers, hosts in data["groups"]:
            key = key_from_json(key_data)
            table.groups[key] = FleetGroup(
                key, label, frames_from_json(frames, interner), pages, times,
                dict((str(c), int(p)) for c, p in callers),
                {str(h): [int(p), int(t)] for h, p, t in hosts})  # fmt: skip
        return table

    @classmethod
    def skipped_only(cls, by: GroupKey, skipped: Skipped) -> FleetTable:
        """Make the table of a capture that could not be read."""
        table = cls(by.name)
        table.skipped.append(skipped)
        return table
