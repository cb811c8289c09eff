"""Saving and loading a machine: one versioned binary file, written atomically, locked.

The state directory (`--state`, `$PAGEOWNER_STATE`, or `.pageowner/`) holds `state.bin`
and `lock`. `state.bin` is the magic `PGOWNSIM`, a length, a JSON manifest (format
version, the machine's small tables, and for each binary section its offset, length and
SHA-256), then the sections: the per-page arrays, the buddy allocator's arrays and free
lists, the stack depot's counts. Nothing is pickled and nothing is evaluated.

A save writes a temporary file in the same directory (unnamed, O_TMPFILE, where the file
system allows), fsyncs it and renames it over the old one, so a command killed midway
leaves the previous state. Every command holds
`lock` (flock: shared to read, exclusive to change) and waits a while for another one to
finish before refusing. A missing, corrupt, older or newer state is reported with a
hint and never replaced unless `boot --force` is given.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import mmap
import os
import sys
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pageowner import __version__
from pageowner.dump.fileio import atomic_output
from pageowner.errors import OutputError, PageOwnerError, StateError
from pageowner.sim.freearea import ZoneSpec
from pageowner.sim.machine import (
    AllocClass,
    Machine,
    Memcg,
    MemoryLayout,
    _Arrays,
    load_symbols,
)
from pageowner.sim.mmzone import NR_MIGRATETYPES, NR_ORDERS
from pageowner.sim.stackdepot import StackDepot
from pageowner.sim.tasks import TaskTable

__all__ = [
    "FORMAT_VERSION",
    "STATE_FILE",
    "default_state_dir",
    "exists",
    "load",
    "locked",
    "save",
]

FORMAT_VERSION = 1
MAGIC = b"PGOWNSIM"
SUM_MAGIC = b"PGOWNSUM"  # then the SHA-256 of the manifest: the last 40 bytes of the file
_SUM_SIZE = len(SUM_MAGIC) + 32
STATE_FILE = "state.bin"
LOCK_FILE = "lock"
LOCK_TIMEOUT_ENV = "PAGEOWNER_LOCK_TIMEOUT"
_DEFAULT_LOCK_TIMEOUT = 10.0
_HINT = "run 'pageowner boot --force' to start a new machine"


def default_state_dir(option: str | None) -> Path:
    """Return the state directory: the option, $PAGEOWNER_STATE, or ./.pageowner."""
    if option:
        return Path(option)
    env = os.environ.get("PAGEOWNER_STATE")
    return Path(env) if env else Path(".pageowner")


def exists(directory: Path) -> bool:
    """Tell whether a directory holds a state file (valid or not)."""
    return (directory / STATE_FILE).exists()


@contextlib.contextmanager
def locked(directory: Path, exclusive: bool, create: bool = False) -> Iterator[None]:
    """Hold the state's lock; wait up to $PAGEOWNER_LOCK_TIMEOUT seconds, then refuse."""
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"{directory}: cannot create state directory: "
                             f"{exc.strerror}") from None
    elif not directory.is_dir():
        raise StateError(f"{directory}: no machine booted here; run 'pageowner boot' first")
    path = directory / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"{path}: cannot open lock: {exc.strerror}") from None
    try:
        timeout = float(os.environ.get(LOCK_TIMEOUT_ENV, _DEFAULT_LOCK_TIMEOUT))
        deadline = time.monotonic() + timeout
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
                    who = f" (pid {holder})" if holder else ""
                    raise StateError(
                        f"{directory}: the machine is busy with another pageowner command"
                        f"{who}; try again when it has finished") from None
                time.sleep(0.05)
        if exclusive:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# -- saving --------------------------------------------------------------------------------

def _sections(machine: Machine) -> list[tuple[str, bytes | bytearray | memoryview]]:
    """Return the binary sections of a machine, in file order."""
    page = machine.page
    buddy = machine.buddy
    free_lists = array("q")
    for zone_index, zone in enumerate(buddy.zones):
        for order in range(NR_ORDERS):
            for mt in range(NR_MIGRATETYPES):
                for pfn, seq in zone.lists[order][mt].seq.items():
                    free_lists.extend((zone_index, order, mt, pfn, seq))
    return [
        ("page.order", page.order),
        ("page.cls", memoryview(page.cls).cast("B")),
        ("page.ts", memoryview(page.ts).cast("B")),
        ("page.free_ts", memoryview(page.free_ts).cast("B")),
        ("page.migrate", page.migrate),
        ("page.obj", memoryview(page.obj).cast("B")),
        ("buddy.free_order", buddy.free_order),
        ("buddy.free_mt", buddy.free_mt),
        ("buddy.alloc_order", buddy.alloc_order),
        ("buddy.alloc_mt", buddy.alloc_mt),
        ("buddy.reserved", buddy.reserved),
        ("buddy.pageblock_mt", buddy.pageblock_mt),
        ("buddy.free_lists", memoryview(free_lists).cast("B")),
        ("depot.nr_pages", memoryview(machine.depot.nr_pages).cast("B")),
    ]


def _manifest(machine: Machine) -> dict[str, Any]:
    """Return the JSON part of a machine."""
    layout = machine.layout
    buddy = machine.buddy
    return {
        "version": machine.version,
        "mem_bytes": machine.mem_bytes,
        "cmdline": machine.params.cmdline,
        "seed": machine.seed,
        "clock_ns": machine.clock_ns,
        "op_counter": machine.op_counter,
        "symbols": machine.symbols_source,
        "layout": {
            "nr_pages": layout.nr_pages,
            "usable": [list(r) for r in layout.usable],
            "reserved": [list(r) for r in layout.reserved],
            "zones": [[z.index, z.name, z.start_pfn, z.end_pfn, z.node] for z in layout.zones],
            "cma": list(layout.cma) if layout.cma else None,
            "initrd": list(layout.initrd) if layout.initrd else None,
        },
        "zones": [
            {"present": z.present, "managed": z.managed, "free": z.free,
             "free_cma": z.free_cma, "watermark": z.watermark,
             "lowmem_reserve": z.lowmem_reserve,
             "counters": [[list(z.lists[o][m].counters) for m in range(NR_MIGRATETYPES)]
                          for o in range(NR_ORDERS)]}
            for z in buddy.zones
        ],
        "allocated_pages": buddy.allocated_pages,
        "tasks": [[t.pid, t.tgid, t.comm] for t in machine.tasks.tasks],
        "next_pid": machine.tasks.next_pid,
        "memcgs": [[m.name, m.online] for m in machine.memcgs],
        "classes": [[c.stack, c.gfp, c.task, c.flags, c.memcg, int(c.objcg), int(c.slab)]
                    for c in machine.classes],
        "flag_sets": [list(f) for f in machine.flag_sets],
        "objects": machine.objects,
        "stacks": [list(lines) for lines in machine.depot.stacks],
        "listed": machine.depot.listed,
        "unlisted": machine.depot.unlisted,
        "dmesg": machine.dmesg,
        "history": machine.history,
        "notes": machine.notes,
        "reader": machine.reader,
    }


def save(machine: Machine, directory: Path) -> None:
    """Write the machine's state atomically (temporary file, fsync, rename)."""
    sections = _sections(machine)
    table = []
    offset = 0
    for name, data in sections:
        length = len(data) if not isinstance(data, memoryview) else data.nbytes
        table.append({"name": name, "offset": offset, "length": length,
                      "sha256": hashlib.sha256(data).hexdigest()})
        offset += length
    header = json.dumps({
        "format_version": FORMAT_VERSION,
        "written_by": f"pageowner {__version__}",
        "byteorder": sys.byteorder,
        "sections": table,
        "machine": _manifest(machine),
    }, separators=(",", ":")).encode()
    target = directory / STATE_FILE
    # Named temporary files left by saves killed where O_TMPFILE is not available.
    for stale in directory.glob(f".{STATE_FILE}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
    try:
        # atomic_output writes an unnamed O_TMPFILE file and renames it over state.bin
        # only when it is complete and fsynced: a kill at any point leaves the previous
        # state and no temporary file.
        with atomic_output(str(target)) as out:
            out.write(MAGIC)
            out.write(len(header).to_bytes(8, "little"))
            out.write(header)
            for _, data in sections:
                out.write(data)
            # The sections carry their own checksums; this one covers the manifest, so a
            # flipped digit in it is caught too (files without it still load).
            out.write(SUM_MAGIC + hashlib.sha256(header).digest())
    except OutputError as exc:
        raise StateError(f"cannot save the machine: {exc}") from None
    except OSError as exc:
        raise StateError(f"{target}: cannot save the machine: {exc.strerror}") from None


# -- loading -------------------------------------------------------------------------------

def _corrupt(path: Path, why: str) -> StateError:
    """Build the error for a state that cannot be read."""
    return StateError(f"{path}: corrupt simulator state ({why}); {_HINT}")


def _read_header(path: Path, data: mmap.mmap | bytes) -> tuple[dict[str, Any], int]:
    """Check magic, version and checksums; return the header and where sections start."""
    if data[:8] != MAGIC:
        raise _corrupt(path, "not a pageowner state file")
    length = int.from_bytes(data[8:16], "little")
    if length <= 0 or 16 + length > len(data):
        raise _corrupt(path, "truncated header")
    manifest = bytes(data[16:16 + length])
    try:
        header = json.loads(manifest)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise _corrupt(path, "unreadable manifest") from None
    if not isinstance(header, dict) or not isinstance(header.get("format_version"), int):
        raise _corrupt(path, "manifest without a format version")
    version = header["format_version"]
    if version > FORMAT_VERSION:
        raise StateError(
            f"{path}: written by a newer pageowner ({header.get('written_by', '?')}, state "
            f"format {version}; this one reads {FORMAT_VERSION}); upgrade pageowner, or "
            f"{_HINT}")
    if version < FORMAT_VERSION:
        raise StateError(
            f"{path}: written by an older pageowner (state format {version}; this one reads "
            f"{FORMAT_VERSION}); {_HINT}")
    end = len(data)
    if data[end - _SUM_SIZE:end - 32] == SUM_MAGIC and end - _SUM_SIZE >= 16 + length:
        if hashlib.sha256(manifest).digest() != data[end - 32:end]:
            raise _corrupt(path, "the manifest fails its checksum")
        end -= _SUM_SIZE
    if header.get("byteorder") != sys.byteorder:
        raise StateError(f"{path}: written on a {header.get('byteorder')}-endian machine; "
                         f"{_HINT}")
    start = 16 + length
    try:
        sections_end = start
        for section in header["sections"]:
            offset, size = int(section["offset"]), int(section["length"])
            if offset < 0 or size < 0:
                raise ValueError("negative offset or length")
            section_end = start + offset + size
            if section_end > end:
                raise _corrupt(path, f"section {section['name']} is truncated")
            chunk = data[start + offset:section_end]
            if hashlib.sha256(chunk).hexdigest() != section["sha256"]:
                raise _corrupt(path, f"section {section['name']} fails its checksum")
            sections_end = max(sections_end, section_end)
    except (KeyError, TypeError, ValueError) as exc:
        raise _corrupt(path, f"bad section table: {exc}") from None
    if sections_end != end:
        raise _corrupt(path, f"{end - sections_end} unexpected bytes after the sections")
    return header, start


def load(directory: Path, with_symbols: bool = True) -> Machine:
    """Read a saved machine, or raise StateError with a hint."""
    path = directory / STATE_FILE
    try:
        handle = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        raise StateError(f"{directory}: no machine booted here; run 'pageowner boot' first"
                         ) from None
    except OSError as exc:
        raise StateError(f"{path}: {exc.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 16:
            raise _corrupt(path, "file too short")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            header, start = _read_header(path, data)
            try:
                return _build(header, data, start, with_symbols)
            except StateError:
                raise
            except (PageOwnerError, LookupError, TypeError, ValueError, ArithmeticError,
                    AttributeError, MemoryError) as exc:
                # Checksums passed, so this is a manifest made by hand or by a bug.
                raise _corrupt(path, f"inconsistent manifest: {exc}") from None


def _build(header: dict[str, Any], data: mmap.mmap, start: int, with_symbols: bool) -> Machine:
    """Recreate a Machine from a checked header and its sections."""
    info = header["machine"]
    raw: dict[str, memoryview] = {}
    view = memoryview(data)
    try:
        for section in header["sections"]:
            begin = start + section["offset"]
            raw[section["name"]] = view[begin:begin + section["length"]]

        def arr(name: str, typecode: str) -> array[int]:
            out = array(typecode)
            out.frombytes(raw[name])
            return out

        lay = info["layout"]
        layout = MemoryLayout(
            lay["nr_pages"], tuple(tuple(r) for r in lay["usable"]),
            tuple((str(n), int(a), int(b)) for n, a, b in lay["reserved"]),
            tuple(ZoneSpec(*z) for z in lay["zones"]),
            tuple(lay["cma"]) if lay["cma"] else None,
            tuple(lay["initrd"]) if lay["initrd"] else None,
        )
        n = layout.nr_pages
        page = _Arrays(bytearray(raw["page.order"]), arr("page.cls", "I"),
                       arr("page.ts", "Q"), arr("page.free_ts", "Q"),
                       bytearray(raw["page.migrate"]), arr("page.obj", "I"))
        if len(page.order) != n or len(page.ts) != n:
            raise ValueError("per-page arrays do not match the layout")
        symbols = None
        source = info.get("symbols")
        if source and with_symbols:
            symbols = load_symbols(source[0], source[1])
        machine = Machine.create(info["version"], info["mem_bytes"], info["cmdline"],
                                 info["seed"], symbols, tuple(source) if source else None,
                                 layout=layout, page=page)
        buddy = machine.buddy
        buddy.free_order = bytearray(raw["buddy.free_order"])
        buddy.free_mt = bytearray(raw["buddy.free_mt"])
        buddy.alloc_order = bytearray(raw["buddy.alloc_order"])
        buddy.alloc_mt = bytearray(raw["buddy.alloc_mt"])
        buddy.reserved = bytearray(raw["buddy.reserved"])
        buddy.pageblock_mt = bytearray(raw["buddy.pageblock_mt"])
        buddy.allocated_pages = info["allocated_pages"]
        for zone, saved in zip(buddy.zones, info["zones"], strict=True):
            zone.present = saved["present"]
            zone.managed = saved["managed"]
            zone.free = saved["free"]
            zone.free_cma = saved["free_cma"]
            zone.watermark = list(saved["watermark"])
            zone.lowmem_reserve = list(saved["lowmem_reserve"])
        entries: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        lists = arr("buddy.free_lists", "q")
        for index in range(0, len(lists), 5):
            zone_index, order, mt, pfn, seq = lists[index:index + 5]
            entries.setdefault((zone_index, order, mt), []).append((pfn, seq))
        for zone_index, (zone, saved) in enumerate(zip(buddy.zones, info["zones"], strict=True)):
            for order in range(NR_ORDERS):
                for mt in range(NR_MIGRATETYPES):
                    high, low = saved["counters"][order][mt]
                    zone.lists[order][mt].restore(entries.get((zone_index, order, mt), []),
                                                  high, low)
        machine.clock_ns = info["clock_ns"]
        machine.op_counter = info["op_counter"]
        tasks = TaskTable()
        for pid, tgid, comm in info["tasks"]:
            tasks.add(pid, tgid, comm)
        if len(tasks) != len(info["tasks"]):
            raise ValueError("duplicate tasks")
        tasks.next_pid = info["next_pid"]
        machine.tasks = tasks
        machine.memcgs = [Memcg(name, bool(online)) for name, online in info["memcgs"]]
        machine.classes = [AllocClass(s, g, t, f, m, bool(o), bool(sl))
                           for s, g, t, f, m, o, sl in info["classes"]]
        machine.flag_sets = [tuple(f) for f in info["flag_sets"]]
        machine.objects = list(info["objects"])
        depot = StackDepot()
        depot.restore([tuple(lines) for lines in info["stacks"]], arr("depot.nr_pages", "q"),
                      list(info["listed"]), machine.version,
                      list(info.get("unlisted", [])))
        machine.depot = depot
        machine.dmesg = list(info["dmesg"])
        machine.history = list(info["history"])
        machine.notes = list(info["notes"])
        machine.reader = info["reader"]
        machine.rebuild_indexes()
        _check(machine)
        return machine
    finally:
        for chunk in raw.values():
            chunk.release()
        view.release()


def _check(machine: Machine) -> None:
    """Refuse a manifest whose indices point nowhere."""
    stacks = len(machine.depot)
    tasks = len(machine.tasks)
    for cls in machine.classes:
        if not (0 <= cls.stack < stacks and 0 <= cls.task < tasks
                and 0 <= cls.flags < len(machine.flag_sets)
                and 0 <= cls.memcg <= len(machine.memcgs)):
            raise ValueError("an allocation class refers to a missing stack or task")
    if machine.page.cls and max(machine.page.cls) >= max(1, len(machine.classes)):
        raise ValueError("a page refers to a missing allocation class")

