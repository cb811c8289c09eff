"""Replaying learned allocation profiles on a machine.

A learned entry says: this many blocks of this order, with this stack, gfp mask, page
flags and trailing memcg lines, were allocated between t0 and t1 (microseconds from the
start of their phase). `replay` turns entries into allocation events, orders them by time
and performs them, each in the task the caller maps the entry to.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pageowner.sim.gfp import canonical_from
from pageowner.sim.machine import AllocClass, Machine
from pageowner.sim.stacks import FamilyProfile

__all__ = ["Entry", "LineInfo", "decode_entries", "parse_lines", "replay"]

_CHARGED = re.compile(
    r"Charged (?P<objcg>\(via objcg\) )?to (?P<offline>offline )?memcg (?P<name>.*)")


@dataclass(frozen=True)
class LineInfo:
    """What a record's trailing lines say about memcg charging."""

    slab: bool = False
    memcg: str | None = None
    objcg: bool = False
    offline: bool = False


def parse_lines(lines: Sequence[str]) -> LineInfo:
    """Read `Slab cache page` and `Charged ...` lines.

    >>> parse_lines(["Charged (via objcg) to memcg wl"])
    LineInfo(slab=False, memcg='wl', objcg=True, offline=False)
    """
    slab = False
    memcg = None
    objcg = offline = False
    for line in lines:
        if line == "Slab cache page":
            slab = True
            continue
        match = _CHARGED.fullmatch(line)
        if match:
            memcg = match["name"]
            objcg = bool(match["objcg"])
            offline = bool(match["offline"])
    return LineInfo(slab, memcg, objcg, offline)


@dataclass(frozen=True)
class Entry:
    """One learned allocation group."""

    stack: int
    order: int
    gfp: int  # canonical
    count: int
    flags: tuple[str, ...]
    lines: LineInfo
    t0_us: int
    t1_us: int
    task: int = -1  # index into the profile's task list (boot entries)
    scale: str = ""


def decode_entries(profile: FamilyProfile, rows: Sequence[Sequence[object]],
                   boot: bool = False) -> list[Entry]:
    """Decode JSON rows: boot rows carry a task and a scale, role rows do not."""
    entries = []
    for row in rows:
        if boot:
            stack, order, gfp, task, count, flags, lines, t0, t1, scale = row
        else:
            stack, order, gfp, count, flags, lines, t0, t1 = row
            task, scale = -1, ""
        entries.append(Entry(
            int(stack), int(order), canonical_from(int(gfp), profile.kernel),  # type: ignore[call-overload]
            int(count), profile.flags[int(flags)], parse_lines(profile.lines[int(lines)]),  # type: ignore[call-overload]
            int(t0), int(t1), int(task), str(scale),  # type: ignore[call-overload]
        ))
    return entries


def replay(machine: Machine, entries: Sequence[Entry], task_of: Callable[[Entry, int], int],
           start_ns: int, *, count_scale: Callable[[Entry], float] | None = None,
           time_scale: float = 1.0, obj_of: Callable[[Entry, int], str | None] | None = None,
           on_event: Callable[[int], None] | None = None) -> int:
    """Allocate every entry's blocks at their times; return how many blocks.

    `task_of(entry, i)` names the task of the i-th block of an entry; `count_scale`
    multiplies counts (memory-sized hash tables, a bigger run); `on_event(t_ns)` is called
    before each allocation so the caller can interleave its own events.
    """
    builder = machine.builder
    events: list[tuple[int, int, int]] = []
    for number, entry in enumerate(entries):
        count = entry.count
        if count_scale is not None:
            count = max(0, round(count * count_scale(entry)))
        span = max(0, entry.t1_us - entry.t0_us) * 1000
        for i in range(count):
            offset = entry.t0_us * 1000 + (span * i // max(1, count - 1) if count > 1 else 0)
            events.append((start_ns + int(offset * time_scale), number, i))
    events.sort()
    classes: dict[tuple[int, int], AllocClass] = {}
    stacks: dict[int, int] = {}
    done = 0
    for stamp, number, i in events:
        entry = entries[number]
        if on_event is not None:
            on_event(stamp)
        task = task_of(entry, i)
        key = (number, task)
        alloc_class = classes.get(key)
        if alloc_class is None:
            stack = stacks.get(entry.stack)
            if stack is None:
                stack = stacks[entry.stack] = machine.stack(builder.learned(entry.stack))
            lines = entry.lines
            memcg = machine.memcg_id(lines.memcg, not lines.offline)
            alloc_class = classes[key] = AllocClass(
                stack, entry.gfp, task, machine.flags_id(entry.flags), memcg,
                lines.objcg, lines.slab)
        # learned times are in microseconds: spread them over the nanoseconds
        stamp = max(stamp + (number * 7919 + i * 104729) % 997, machine.clock_ns + 50)
        machine.alloc(alloc_class, entry.order, 1, obj_of(entry, i) if obj_of else None,
                      ts=[stamp])
        done += 1
    return done
