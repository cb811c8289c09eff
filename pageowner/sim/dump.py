"""What the simulated /sys/kernel/debug prints: page_owner and page_owner_stacks.

`write_page_owner` streams the records in pfn order with text cached per allocation class
(a 16 GiB machine has millions of records but a few thousand classes); a test proves it
prints exactly what `pageowner.dump.dumpfile.format_record(record_at(machine, pfn))` prints.
The page_owner_stacks files are printed with `pageowner.dump.stacksfile.format_stack_count`.
Reading a file the simulated kernel does not have fails like the real read:
"No such file or directory".
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from pageowner.dump.dumpfile import HEADER_PREFIX, encode
from pageowner.dump.fileio import atomic_output
from pageowner.dump.stacksfile import format_stack_count
from pageowner.errors import InputError, OutputError
from pageowner.kernel.tables import LETTER_FLAGS, MIGRATETYPE_NUMBERS_3_19, decode_flags
from pageowner.model import HeaderStyle, MigrateType, PfnStyle, StackCount
from pageowner.sim.buddy import MAX_ORDER, MIGRATETYPE_NAMES, NO_ORDER, PAGEBLOCK_ORDER
from pageowner.sim.gfp import gfp_migratetype, to_version
from pageowner.sim.machine import Machine
from pageowner.sim.records import memcg_charge, migrate_reason_name

__all__ = [
    "DEBUGFS",
    "PRINT_MODES",
    "parse_nodelist",
    "STACKS_FILES",
    "boot_id_of",
    "check_file",
    "iter_stack_counts",
    "stacks_file_text",
    "uptime_text",
    "write_debugfs_tree",
    "write_page_owner",
    "write_proc_tree",
]

DEBUGFS = "/sys/kernel/debug"
# page_owner_stacks files and the version that added them (v6.9 show_stacks, v6.19 handles).
STACKS_FILES: dict[str, tuple[int, int]] = {
    "show_stacks": (6, 9),
    "count_threshold": (6, 9),
    "show_handles": (6, 19),
    "show_stacks_handles": (6, 19),
}
_RUN = re.compile(rb"[^\xff]+")
Progress = Callable[[int, int | None], None]


def check_file(machine: Machine, name: str) -> None:
    """Raise InputError the way reading a missing debugfs file fails."""
    if name == "page_owner":
        exists = machine.page_owner
    else:
        exists = machine.page_owner and machine.kernel_key >= STACKS_FILES[name]
        name = f"page_owner_stacks/{name}"
    if not exists and not machine.page_owner:
        # What `capture` says on a real machine booted without it (live/diagnose.py).
        raise InputError(f"{DEBUGFS}/{name}: No such file or directory: page_owner is not "
                         "enabled (the machine was booted without page_owner=on)\n"
                         "hint: boot with page_owner=on on the kernel command line: "
                         "pageowner boot --force --cmdline page_owner=on")
    if not exists:
        raise InputError(f"{DEBUGFS}/{name}: No such file or directory (kernel "
                         f"{machine.kernel.version} does not have it)")


# 7.3's print modes (`mode=` written to page_owner): what follows the PFN line.
PRINT_MODES = ("stack", "handle", "stack_handle")


def parse_nodelist(text: str, machine: Machine) -> frozenset[int]:
    """Read a `nid=` node list (`0`, `0,2`, `0-3`) as 7.3's page_owner write does.

    An empty list, a reversed range or a node without memory is EINVAL there, a node of
    64 or more ERANGE; here each is an InputError naming the list.

    >>> parse_nodelist("0-1,", Machine.create("7.3", 256 << 20, "numa=fake=2", 1))
    frozenset({0, 1})
    """
    nodes: set[int] = set()
    with_memory = {zone.node for zone in machine.buddy.zones
                   if zone.spec.end_pfn > zone.spec.start_pfn}
    for part in text.split(","):
        if not part and nodes:
            continue  # a trailing comma is accepted (measured on 7.3: `nid=0,`)
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise InputError(f"nid={text}: not a node list (EINVAL)")
        low, high = int(first), int(last or first)
        if high >= 64:
            raise InputError(f"nid={text}: node {high} is not below MAX_NUMNODES 64 (ERANGE)")
        if low > high:
            raise InputError(f"nid={text}: reversed range {part} (EINVAL)")
        nodes.update(range(low, high + 1))
    if not nodes:
        raise InputError(f"nid={text}: empty node list (EINVAL)")
    missing = sorted(nodes - with_memory)
    if missing:
        raise InputError(f"nid={text}: node {missing[0]} has no memory (EINVAL)")
    return frozenset(nodes)


class _Writer:
    """Format records of one machine from per-class cached pieces."""

    def __init__(self, machine: Machine, mode: str = "stack") -> None:
        self.machine = machine
        self.mode = mode
        self.kernel = machine.kernel
        self.fmt = machine.fmt
        self.migrate_line, self.memcg_lines = machine.era
        self.header_cache: dict[tuple[int, int], str] = {}
        self.mid_cache: dict[int, str] = {}
        self.tail_cache: dict[tuple[int, int, int], str] = {}
        self.body_cache: dict[tuple[int, int], str] = {}
        self.chunk_zone = machine.buddy.chunk_zone

    def header(self, cls_id: int, order: int) -> str:
        """Return the header up to the ts value (or the whole line for old eras)."""
        key = (cls_id, order)
        text = self.header_cache.get(key)
        if text is None:
            machine = self.machine
            cls = machine.classes[cls_id]
            style = self.fmt.header
            gfp = to_version(cls.gfp, machine.version)
            text = f"{HEADER_PREFIX}{order}, mask {gfp:#x}"
            if style is not HeaderStyle.MASK:
                table = self.machine.gfp_table
                text += f"({decode_flags(gfp, table) if table is not None else ''})"
            task = machine.tasks[cls.task]
            if style.has_tgid:
                text += f", pid {task.pid}, tgid {task.tgid} ({task.comm}), ts "
            elif style.has_pid:
                text += f", pid {task.pid}, ts "
            else:
                text += "\n"
            self.header_cache[key] = text
        return text

    def pfn_mid(self, cls_id: int) -> str:
        """Return ` type <page mt> Block ` for a class."""
        text = self.mid_cache.get(cls_id)
        if text is None:
            cls = self.machine.classes[cls_id]
            text = f" type {MIGRATETYPE_NAMES[gfp_migratetype(cls.gfp)]} Block "
            self.mid_cache[cls_id] = text
        return text

    def pfn_tail(self, cls_id: int, block_mt: int, pfn: int) -> str:
        """Return ` type <block mt> Flags ...` for a class, block type and zone."""
        key = (cls_id, block_mt, self.chunk_zone[pfn >> MAX_ORDER])
        text = self.tail_cache.get(key)
        if text is None:
            machine = self.machine
            flags = machine.page_flags(pfn, machine.classes[cls_id])
            parts = list(flags.names)
            if self.fmt.pfn is not PfnStyle.DEC_RAW_FLAGS:
                parts += [f"{k}={v}" for k, v in flags.fields]
            text = (f" type {MIGRATETYPE_NAMES[block_mt]} Flags {flags.value or 0:#x}"
                    f"({'|'.join(parts)})\n")
            self.tail_cache[key] = text
        return text

    def letters_line(self, pfn: int, cls_id: int, block_mt: int) -> str:
        """Return the 3.19 PFN line."""
        machine = self.machine
        cls = machine.classes[cls_id]
        flags = machine.page_flags(pfn, cls)
        block_type = MigrateType(MIGRATETYPE_NAMES[block_mt])
        number = MIGRATETYPE_NUMBERS_3_19.index(block_type)
        page_mt = gfp_migratetype(cls.gfp)
        fallback = "        " if page_mt == block_mt else "Fallback"
        letters = "".join(letter if name in flags.names else " " for letter, name in LETTER_FLAGS)
        return (f"PFN {pfn} Block {pfn >> PAGEBLOCK_ORDER} type {number} {fallback} "
                f"Flags {letters}\n")

    def body(self, cls_id: int, reason: int) -> str:
        """Return the stack and trailing lines, blank separator included."""
        key = (cls_id, reason)
        text = self.body_cache.get(key)
        if text is None:
            machine = self.machine
            cls = machine.classes[cls_id]
            text = "" if self.mode == "handle" else machine.depot.text(cls.stack)
            if self.mode != "stack":
                text += f"handle: {machine.depot.handle(cls.stack)}\n"
            if reason and self.migrate_line:
                text += ("Page has been migrated, last migrate reason: "
                         f"{migrate_reason_name(machine.version, reason - 1)}\n")
            if self.memcg_lines and machine.params.memcg:
                if cls.slab:
                    text += "Slab cache page\n"
                charge = memcg_charge(machine, cls)
                if charge is not None:
                    via = "(via objcg) " if charge.via_objcg else ""
                    offline = "offline " if charge.offline else ""
                    text += f"Charged {via}to {offline}memcg {charge.name}\n"
            text += "\n"
            self.body_cache[key] = text
        return text


def write_page_owner(machine: Machine, out: BinaryIO, progress: Progress | None = None,
                     mode: str = "stack", nids: frozenset[int] | None = None) -> int:
    """Write /sys/kernel/debug/page_owner; return the number of records.

    `mode` and `nids` are what a 7.3 descriptor reads after `mode=... nid=...` was
    written to it: `handle: N` after the frames or instead of them, and only the pages
    whose flags name one of the nodes. The loop is `_Writer.record` unrolled, with the
    cached pieces looked up by integer keys: this is where a 16 GiB machine spends its
    dump time.
    """
    check_file(machine, "page_owner")
    if (mode != "stack" or nids is not None) and not machine.kernel.has_print_modes:
        raise InputError(f"{DEBUGFS}/page_owner: {machine.version} takes no `mode=`/`nid=` "
                         "writes (7.3 added them)")
    if mode not in PRINT_MODES:
        raise InputError(f"mode={mode}: not one of {', '.join(PRINT_MODES)} (EINVAL)")
    writer = _Writer(machine, mode)
    page = machine.page
    orders, classes, ts, free_ts, migrate = (page.order, page.cls, page.ts, page.free_ts,
                                             page.migrate)
    pageblock_mt = machine.buddy.pageblock_mt
    chunk_zone = machine.buddy.chunk_zone
    header_style = writer.fmt.header
    has_pid = header_style.has_pid
    has_free_ts = header_style.has_free_ts
    pfn_style = writer.fmt.pfn
    letters = pfn_style is PfnStyle.LETTERS
    hex_pfn = pfn_style is PfnStyle.HEX
    heads: dict[int, str] = {}
    mids: dict[int, str] = {}
    tails: dict[int, str] = {}
    bodies: dict[int, str] = {}
    parts: list[str] = []
    append = parts.append
    count = 0
    total = machine.layout.nr_pages
    zones = machine.buddy.zones
    skip_chunk = bytes(len(chunk_zone)) if nids is None else bytes(
        position < 0 or zones[position].node not in nids for position in chunk_zone)
    for run in _RUN.finditer(orders):
        pfn = run.start()
        end = run.end()
        while pfn < end:
            order = orders[pfn]
            if order == NO_ORDER:
                pfn += 1
                continue
            if skip_chunk[pfn >> 10]:
                pfn += 1 << order
                continue
            cls_id = classes[pfn]
            key = cls_id << 8 | order
            head = heads.get(key)
            if head is None:
                head = heads[key] = writer.header(cls_id, order)
            if has_pid:
                if has_free_ts:
                    append(f"{head}{ts[pfn]} ns, free_ts {free_ts[pfn]} ns\n")
                else:
                    append(f"{head}{ts[pfn]} ns\n")
            else:
                append(head)
            block_mt = pageblock_mt[pfn >> PAGEBLOCK_ORDER]
            if letters:
                append(writer.letters_line(pfn, cls_id, block_mt))
            else:
                mid = mids.get(cls_id)
                if mid is None:
                    mid = mids[cls_id] = writer.pfn_mid(cls_id)
                tail_key = (cls_id << 8 | block_mt) << 4 | chunk_zone[pfn >> 10]
                tail = tails.get(tail_key)
                if tail is None:
                    tail = tails[tail_key] = writer.pfn_tail(cls_id, block_mt, pfn)
                if hex_pfn:
                    append(f"PFN {pfn:#x}{mid}{pfn >> PAGEBLOCK_ORDER}{tail}")
                else:
                    append(f"PFN {pfn}{mid}{pfn >> PAGEBLOCK_ORDER}{tail}")
            body_key = cls_id << 8 | migrate[pfn]
            body = bodies.get(body_key)
            if body is None:
                body = bodies[body_key] = writer.body(cls_id, migrate[pfn])
            append(body)
            count += 1
            pfn += 1 << order
            if len(parts) >= 24576:
                out.write(encode("".join(parts)))
                parts.clear()
                if progress is not None:
                    progress(pfn, total)
    if parts:
        out.write(encode("".join(parts)))
    if progress is not None:
        progress(total, total)
    return count


def iter_stack_counts(machine: Machine, name: str, threshold: int = 0) -> Iterator[StackCount]:
    """Yield the blocks of a page_owner_stacks file (show_stacks, show_handles, ...)."""
    check_file(machine, name)
    depot = machine.depot
    for index in depot.iter_listed():
        count = depot.nr_pages[index]
        if name == "show_stacks_handles":
            yield StackCount(depot.frames(index), handle=depot.handle(index))
            continue
        if count < 1 or count < threshold:
            continue
        if name == "show_stacks":
            yield StackCount(depot.frames(index), nr_base_pages=count)
        else:
            yield StackCount((), handle=depot.handle(index), nr_base_pages=count)


def stacks_file_text(machine: Machine, name: str, threshold: int = 0) -> str:
    """Return the whole text of a page_owner_stacks file."""
    if name == "count_threshold":
        check_file(machine, name)
        return f"{threshold}\n" if machine.kernel.count_threshold_newline else f"{threshold}"
    return "".join(format_stack_count(entry)
                   for entry in iter_stack_counts(machine, name, threshold))


def write_debugfs_tree(machine: Machine, directory: str, threshold: int = 0) -> list[str]:
    """Lay out the machine's debugfs files under a directory; return the files written.

    Each file is written whole and renamed into place, so a reader sees the old or the new
    file, never a half-written one. Files the simulated kernel does not have are removed.
    """
    root = Path(directory)
    try:
        root.mkdir(parents=True, exist_ok=True)
        # A mounted debugfs is never empty: bdi/ is made at postcore_initcall on every
        # kernel with CONFIG_DEBUG_FS (mm/backing-dev.c, 2.6.32+). Live tools take an
        # empty directory for an unmounted debugfs, so a machine booted without
        # page_owner must still show it to be told apart.
        (root / "bdi").mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create directory: {exc.strerror}") from None
    written: list[str] = []
    target = root / "page_owner"
    if machine.page_owner:
        with atomic_output(str(target)) as out:
            write_page_owner(machine, out)
        # debugfs_create_file() modes: 0400, and 0600 from 7.3, which takes writes
        _chmod(target, 0o600 if machine.kernel.has_print_modes else 0o400)
        written.append(str(target))
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    stacks_dir = root / "page_owner_stacks"
    for name, since in STACKS_FILES.items():
        path = stacks_dir / name
        if machine.page_owner and machine.kernel_key >= since:
            stacks_dir.mkdir(exist_ok=True)
            with atomic_output(str(path)) as out:
                out.write(encode(stacks_file_text(machine, name, threshold)))
            _chmod(path, 0o600 if name == "count_threshold" else 0o400)
            written.append(str(path))
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    with contextlib.suppress(OSError):
        if stacks_dir.exists() and not any(stacks_dir.iterdir()):
            os.rmdir(stacks_dir)
    return written


def _chmod(path: Path, mode: int) -> None:
    """Give a laid-out debugfs file the mode the kernel creates it with."""
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise OutputError(f"{path}: cannot set mode {mode:o}: {exc.strerror}") from None


# What the simulated kernel was built with: the options page_owner needs and uses.
_CONFIG = (
    "CONFIG_PAGE_OWNER=y", "CONFIG_DEBUG_FS=y", "CONFIG_STACKDEPOT=y", "CONFIG_MEMCG=y",
    "CONFIG_TRANSPARENT_HUGEPAGE=y", "CONFIG_COMPACTION=y", "CONFIG_CMA=y",
    "CONFIG_SPARSEMEM_VMEMMAP=y", "CONFIG_ZONE_DMA=y", "CONFIG_ZONE_DMA32=y",
)


def release_of(machine: Machine) -> str:
    """Return the `uname -r` of the simulated kernel.

    >>> from pageowner.sim.machine import Machine
    >>> release_of(Machine.create("6.12", 64 << 20, "", 1))
    '6.12.0-pageowner-sim'
    """
    return f"{machine.version}.0-pageowner-sim"


def boot_id_of(machine: Machine) -> str:
    """Return the machine's boot_id: a version 4 UUID, drawn from its seed and boot options.

    The kernel draws a random one at each boot; ours is derived so that a machine booted
    again the same way has the same one (its uptime starting over still shows the reboot).
    """
    facts = f"{machine.seed}/{machine.kernel}/{machine.mem_bytes}/{machine.params.cmdline}"
    digest = hashlib.sha256(facts.encode("utf-8", "surrogateescape")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def uptime_text(machine: Machine) -> str:
    """Return /proc/uptime on the simulated clock ("%lu.%02lu %lu.%02lu"; no idle time kept).

    >>> machine = Machine.create("6.12", 64 << 20, "", 1)
    >>> machine.clock_ns = 5_678_912_345
    >>> uptime_text(machine)
    '5.67 0.00\\n'
    """
    seconds, centis = divmod(machine.clock_ns // 10_000_000, 100)
    return f"{seconds}.{centis:02d} 0.00\n"


def write_proc_tree(machine: Machine, directory: str) -> list[str]:
    """Lay out the /proc files capture and watch read (cmdline, osrelease, hostname...)."""
    root = Path(directory)
    try:
        (root / "sys" / "kernel" / "random").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{directory}: cannot create directory: {exc.strerror}") from None
    files = {
        root / "cmdline": encode(machine.params.cmdline + "\n"),
        root / "sys" / "kernel" / "osrelease": encode(release_of(machine) + "\n"),
        # No init ever sets it: the kernel's default node name (UTS_NODENAME).
        root / "sys" / "kernel" / "hostname": b"(none)\n",
        root / "sys" / "kernel" / "random" / "boot_id": encode(boot_id_of(machine) + "\n"),
        root / "config.gz": gzip.compress(("\n".join(_CONFIG) + "\n").encode(), mtime=0),
        root / "uptime": encode(uptime_text(machine)),
    }
    for path, data in files.items():
        with atomic_output(str(path)) as out:
            out.write(data)
    return [str(path) for path in files]
