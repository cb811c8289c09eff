"""The records the simulated page_owner prints: one `PageRecord` per allocation head.

`record_at` reads a machine's page_owner state (order, class, ts, free_ts, migrate
reason of a head pfn) into the model the dump writer and the tests print; the streaming
writer in `pageowner.sim.dump` prints the same text without building records.
"""

from __future__ import annotations

from collections.abc import Iterator

from pageowner.kernel.tables import decode_flags, migrate_reason_names
from pageowner.model import MemcgCharge, MigrateType, PageRecord, PfnStyle
from pageowner.sim.buddy import MIGRATETYPE_NAMES, NO_ORDER, PAGEBLOCK_ORDER
from pageowner.sim.gfp import GFP, gfp_migratetype, to_version
from pageowner.sim.machine import AllocClass, Machine

__all__ = ["iter_heads", "migrate_reason_name", "record_at", "records"]

def iter_heads(machine: Machine) -> Iterator[int]:
    """Yield the head pfn of every allocation with page_owner data, in pfn order."""
    order = machine.page.order
    n = len(order)
    pfn = 0
    while pfn < n:
        value = order[pfn]
        if value == NO_ORDER:
            pfn += 1
            continue
        yield pfn
        pfn += 1 << value


def migrate_reason_name(version: str, reason: int) -> str:
    """Return the printed migrate reason: mm/debug.c's list of this release.

    `contig_range` was printed `cma` until 5.15-rc3 (kernel/tables.py), whatever the enum
    called it from 5.1 on; a reason the list lacks prints as "(null)".
    """
    # The simulated kernel is the x.y.0 release (sim.dump.release_of), before any stable
    # backport of the rename.
    names = migrate_reason_names(f"{version}.0")
    return names[reason] if reason < len(names) else "(null)"


def memcg_charge(machine: Machine, cls: AllocClass) -> MemcgCharge | None:
    """Return the `Charged ...` line of a class's pages, or None.

    7.3 (fixtures/real73) prints `Charged to memcg /` for user pages of the root memcg
    again, and never `offline`: a removed memcg's folios are reparented, here to the root
    (our memcgs are its children).
    """
    if cls.memcg:
        group = machine.memcgs[cls.memcg - 1]
        if not group.online and machine.kernel.memcg_reparents:
            return MemcgCharge("/", False, False)
        return MemcgCharge(group.name, cls.objcg, not group.online)
    user = GFP["__GFP_MOVABLE"] | GFP["__GFP_HARDWALL"]
    if machine.kernel.memcg_reparents and not cls.slab and cls.gfp & user == user:
        return MemcgCharge("/", False, False)
    return None


def record_at(machine: Machine, pfn: int) -> PageRecord:
    """Return the record /sys/kernel/debug/page_owner prints for a head pfn."""
    page = machine.page
    order = page.order[pfn]
    cls_id = page.cls[pfn]
    cls = machine.classes[cls_id]
    fmt = machine.fmt
    header = fmt.header
    cached = machine.record_cache.get(cls_id)
    if cached is None:
        gfp = to_version(cls.gfp, machine.version)
        table = machine.gfp_table
        cached = machine.record_cache[cls_id] = (
            gfp, decode_flags(gfp, table) if table is not None else None,
            machine.tasks[cls.task], MigrateType(MIGRATETYPE_NAMES[gfp_migratetype(cls.gfp)]))
    gfp, gfp_names, task, gfp_mt = cached
    block_mt = MigrateType(MIGRATETYPE_NAMES[machine.buddy.get_pageblock_mt(pfn)])
    page_mt: MigrateType | None = gfp_mt
    if fmt.pfn is PfnStyle.LETTERS and page_mt != block_mt:
        page_mt = None  # 3.19 prints only "Fallback"
    reason = page.migrate[pfn]
    memcg = None
    slab = False
    migrate_line, memcg_lines = machine.era
    if memcg_lines and machine.params.memcg:
        slab = cls.slab
        memcg = memcg_charge(machine, cls)
    return PageRecord(
        order=order,
        gfp_mask=gfp,
        gfp_names=gfp_names,
        pid=task.pid if header.has_pid else None,
        tgid=task.tgid if header.has_tgid else None,
        comm=task.comm if header.has_tgid else None,
        ts_nsec=page.ts[pfn] if header.has_pid else None,
        free_ts_nsec=page.free_ts[pfn] if header.has_free_ts else None,
        pfn=pfn,
        page_mt=page_mt,
        block=pfn >> PAGEBLOCK_ORDER,
        block_mt=block_mt,
        flags=machine.page_flags(pfn, cls),
        stack=machine.depot.frames(cls.stack),
        migrate_reason=(migrate_reason_name(machine.version, reason - 1)
                        if reason and migrate_line else None),
        slab_cache=slab,
        memcg=memcg,
        fmt=fmt,
    )

def records(machine: Machine) -> list[PageRecord]:
    """Return every record in pfn order (small machines; the writer streams)."""
    return [record_at(machine, pfn) for pfn in iter_heads(machine)]
