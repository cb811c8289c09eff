"""Write what /sys/kernel/debug/page_owner would have printed at the moment of a crash dump.

`capture_vmcore` walks page_ext in the vmcore (pageowner.vmcore.walk), builds the typed
records of the dumped kernel's era and prints them with the dump writer, so every later
command reads the result as it reads a live capture. With `freed` it writes instead what
no debugfs read can show: the pages whose last owner freed them, each in the kernel's own
`__dump_page_owner()` words (docs/vmcore.md), which the readers take back.
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pageowner.dump.dumpfile import format_frame, format_lines
from pageowner.dump.era import SIDECAR_SUFFIX, version_from_release
from pageowner.dump.fileio import atomic_output
from pageowner.errors import SpecError
from pageowner.kernel.kernels import dump_format_for, version_key
from pageowner.live.capture import stacks_output_path
from pageowner.model import Frame, MemcgCharge, MigrateType, PageFlags, PageRecord
from pageowner.vmcore.image import VmcoreError, open_vmcore
from pageowner.vmcore.walk import OwnerInfo, PageOwnerWalker

__all__ = ["MODES", "VmcoreCapture", "capture_vmcore", "parse_nid_list"]

MODES = ("stack", "handle", "stack_handle")
SIDECAR_VERSION = 1


@dataclass(frozen=True, slots=True)
class VmcoreCapture:
    """What a vmcore capture wrote."""

    output: str
    sidecar: str | None
    records: int
    release: str
    version: str
    meta: dict[str, object]


def parse_nid_list(text: str, max_nodes: int = 64) -> frozenset[int]:
    """Parse a node list the kernel's way: `0`, `0,2`, `0-3`, `0,2-3,5`.

    >>> sorted(parse_nid_list("0,2-3"))
    [0, 2, 3]
    """
    nodes: set[int] = set()
    for part in text.split(","):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            first = int(low, 10)
            last = int(high, 10) if sep else first
        except ValueError:
            raise SpecError(f"--nid {text!r}: want a node list such as 0,2-3") from None
        if first > last or last >= max_nodes:
            raise SpecError(f"--nid {text!r}: nodes run from 0 to {max_nodes - 1}")
        nodes.update(range(first, last + 1))
    if not nodes:
        raise SpecError(f"--nid {text!r}: an empty node list")
    return frozenset(nodes)


class _Printer:
    """Turn OwnerInfo into the text of the dumped kernel's era."""

    def __init__(self, walker: PageOwnerWalker, version: str) -> None:
        """Remember the era's shapes and the kernel's name tables."""
        self.walker = walker
        self.version = version
        self.fmt = dump_format_for(version)
        self.memcg = version_key(version) >= (5, 18)
        # 7.3 prints the root memcg again (`Charged to memcg /`); 6.12 printed nothing for it
        # (shared/reference/kernel-7.3.md 6). Where between them it came back is [uncertain].
        self.root_memcg = version_key(version) >= (7, 3)
        names = walker.migrate_reason_names
        self.never = names.index("never_migrated") if "never_migrated" in names else len(names)
        prog = walker.prog
        try:
            self.movable_shift = int(prog.constant("___GFP_MOVABLE_BIT"))
        except LookupError:
            self.movable_shift = 3  # ___GFP_MOVABLE 0x08 since 4.4
        self._frame_text: dict[int, list[str]] = {}
        self._types = {name: MigrateType(name) for name in walker.migratetype_names
                       if name in MigrateType._value2member_map_}

    def migratetype(self, number: int) -> MigrateType | None:
        """Return the MigrateType a number names in the dumped kernel."""
        names = self.walker.migratetype_names
        return self._types.get(names[number]) if 0 <= number < len(names) else None

    def record(self, info: OwnerInfo, block_mt: int, with_stack: bool) -> PageRecord:
        """Build the typed record of one page."""
        walker = self.walker
        names, fields = walker.format_page_flags(info.page_flags)
        # gfp_migratetype(): the Movable and Reclaimable bits read as one two-bit number.
        page_mt = (info.gfp_mask >> self.movable_shift) & 0x3
        reason = info.last_migrate_reason
        slab, charge = (False, None)
        if self.memcg:
            slab, charge = walker.memcg_line(info)
        memcg = None
        if charge is not None and (charge[0] != "/" or self.root_memcg or charge[1]):
            memcg = MemcgCharge(charge[0], via_objcg=charge[1], offline=charge[2])
        header = self.fmt.header
        return PageRecord(
            order=info.order,
            gfp_mask=info.gfp_mask,
            gfp_names=walker.format_gfp(info.gfp_mask),
            pid=info.pid,
            tgid=info.tgid if header.has_tgid else None,
            comm=info.comm if header.has_tgid else None,
            ts_nsec=info.ts_nsec,
            free_ts_nsec=info.free_ts_nsec if header.has_free_ts else None,
            pfn=info.pfn,
            page_mt=self.migratetype(page_mt),
            block=info.pfn >> walker.pageblock_order,
            block_mt=self.migratetype(block_mt),
            flags=PageFlags(info.page_flags, names, fields),
            stack=walker.frames(info.handle) if with_stack else (),
            migrate_reason=(walker.migrate_reason_names[reason]
                            if 0 <= reason < self.never else None),
            slab_cache=slab,
            memcg=memcg,
            fmt=self.fmt,
        )

    def lines(self, info: OwnerInfo, block_mt: int, mode: str) -> list[str]:
        """Print one record of the debugfs file in a print mode (7.3 modes)."""
        # The frames are printed once per handle, not once per record.
        record = self.record(info, block_mt, with_stack=False)
        lines = format_lines(record)
        tail = []
        if mode != "handle":
            tail.extend(self._frame_lines(info.handle))
        if mode != "stack":
            # 7.3: `handle: %u` follows the frames (stack_handle) or stands for them.
            tail.append(f"handle: {info.handle}")
        at = 1 + (record.pfn is not None)
        lines[at:at] = tail
        return lines

    def _frame_lines(self, handle: int) -> list[str]:
        """Return the printed frame lines of a handle (cached)."""
        cached = self._frame_text.get(handle)
        if cached is None:
            cached = self._frame_text[handle] = [
                format_frame(frame) for frame in self.walker.frames(handle)]
        return cached

    def freed_lines(self, info: OwnerInfo, block_mt: int) -> list[str]:
        """Print a freed page as __dump_page_owner() of its era does (docs/vmcore.md)."""
        walker = self.walker
        page_mt = self.migratetype((info.gfp_mask >> self.movable_shift) & 0x3)
        mt = page_mt.value if page_mt is not None else "Unmovable"
        head = (f"page last allocated via order {info.order}, migratetype {mt}, gfp_mask "
                f"{info.gfp_mask:#x}({walker.format_gfp(info.gfp_mask)})")
        header = self.fmt.header
        if header.has_tgid:
            head += f", pid {info.pid}, tgid {info.tgid} ({info.comm}), ts {info.ts_nsec}"
        elif header.has_pid:
            head += f", pid {info.pid}, ts {info.ts_nsec}"
        if header.has_free_ts:
            head += f", free_ts {info.free_ts_nsec or 0}"
        lines = [f"page: refcount:{info.refcount} mapcount:{info.mapcount + 1} "
                 f"pfn:{info.pfn:#x}",
                 "page_owner tracks the page as freed", head]
        lines += _frames_or(walker.frames(info.handle), "page_owner allocation stack trace "
                            "missing")
        if info.free_pid is not None:
            lines.append(f"page last free pid {info.free_pid} tgid {info.free_tgid} ts "
                         f"{info.free_ts_nsec or 0} stack trace:")
        else:
            lines.append("page last free stack trace:")
        lines += _frames_or(walker.frames(info.free_handle) if info.free_handle else (),
                            "page_owner free stack trace missing")
        reason = info.last_migrate_reason
        if 0 <= reason < self.never:
            lines.append("page has been migrated, last migrate reason: "
                         f"{walker.migrate_reason_names[reason]}")
        return lines


def _frames_or(frames: tuple[Frame, ...], missing: str) -> list[str]:
    """Return the frame lines, or the kernel's `... missing` line when there are none."""
    if not frames:
        return [missing]
    return [" " + frame.symbolic() for frame in frames]


def _records(walker: PageOwnerWalker, printer: _Printer, *, mode: str, freed: bool,
             nids: frozenset[int] | None,
             on_progress: Callable[[int, int], None] | None) -> Iterator[tuple[bytes, int]]:
    """Yield the encoded text of every record, with its count (1)."""
    for info, block_mt in walker.walk(freed=freed, on_progress=on_progress):
        if nids is not None and walker.node_of(info.page_flags) not in nids:
            continue
        lines = printer.freed_lines(info, block_mt) if freed else \
            printer.lines(info, block_mt, mode)
        yield ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape"), 1


STACKS_FILES = ("show_stacks", "show_handles", "show_stacks_handles")


def _signed32(handle: int) -> int:
    """Return a handle as page_owner_stacks prints it (`%d`).

    >>> _signed32(0xffffffff)
    -1
    """
    return handle - (1 << 32) if handle & 0x80000000 else handle


def stacks_text(walker: PageOwnerWalker, printer: _Printer, name: str) -> Iterator[bytes]:
    """Yield the blocks of one page_owner_stacks file as the dumped kernel would print them."""
    threshold = walker.depot.pages_threshold()
    for handle, refcount in walker.depot.stack_list():
        pages = refcount - 1  # a listed record starts at 1; each page adds one
        lines: list[str] = []
        if name == "show_stacks_handles":
            lines = [*printer._frame_lines(handle), f"handle: {_signed32(handle)}"]
        elif pages >= 1 and pages >= threshold:
            if name == "show_stacks":
                lines = [*printer._frame_lines(handle), f"nr_base_pages: {pages}"]
            else:
                lines = [f"handle: {_signed32(handle)}", f"nr_base_pages: {pages}"]
        if lines:
            yield ("\n".join(lines) + "\n\n").encode("utf-8", "surrogateescape")


def capture_vmcore(vmcore: str, vmlinux: str, output: str, *, mode: str = "stack",
                   nids: frozenset[int] | None = None, freed: bool = False,
                   stacks: bool = False,
                   on_progress: Callable[[int, int], None] | None = None) -> VmcoreCapture:
    """Write the page_owner dump (or with `freed`, the freed pages) held in a crash dump."""
    if mode not in MODES:
        raise SpecError(f"--mode {mode!r}: choose one of {', '.join(MODES)}")
    if stacks and output == "-":
        raise SpecError("--page-owner-stacks needs -o FILE: the stacks files are written beside it")
    image = open_vmcore(vmcore, vmlinux)
    version = version_from_release(image.release)
    if version is None:
        raise VmcoreError(f"{vmcore}: VMCOREINFO names no kernel release (OSRELEASE "
                          f"{image.release!r})")
    if mode != "stack" and version_key(version) < (7, 3):
        raise SpecError(f"--mode {mode}: print modes exist from kernel 7.3; this dump is "
                        f"{image.release}")
    fault = image.prog_fault_error()
    try:
        walker = PageOwnerWalker(image)
        printer = _Printer(walker, version)
        count = 0
        inputs = (vmcore, vmlinux)
        with atomic_output(output, inputs=inputs) as out:
            for data, n in _records(walker, printer, mode=mode, freed=freed, nids=nids,
                                    on_progress=on_progress):
                out.write(data)
                count += n
    except fault as exc:
        raise VmcoreError(f"{vmcore}: kernel memory the walk needs is not in the dump "
                          f"({exc}); hint: the vmcore is damaged, or filtered by "
                          "makedumpfile with a level that drops kernel data") from exc
    when = datetime.datetime.fromtimestamp(os.stat(vmcore).st_mtime, tz=datetime.timezone.utc)
    meta: dict[str, object] = {
        "pageowner_capture": SIDECAR_VERSION,
        "source": "vmcore",
        "vmcore": os.path.abspath(vmcore),
        "vmlinux": os.path.abspath(vmlinux),
        "kernel_release": image.release,
        "kernel_version": version,
        "build_id": image.build_id,
        "hostname": _hostname(walker),
        "captured_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "page_size": walker.page_size,
        "records": count,
        "mode": mode,
        "nid": sorted(nids) if nids is not None else None,
        "freed": freed,
        "format": str(printer.fmt),
        "complete": True,
    }
    files: list[dict[str, object]] = [{"name": "page_owner", "path": output,
                                       "records": count}]
    if stacks:
        names: tuple[str, ...] = STACKS_FILES
        if version_key(version) < (6, 19):
            names = STACKS_FILES[:1]
        if version_key(version) < (6, 9):
            names = ()
        for name in names:
            target = stacks_output_path(output, name)
            with atomic_output(target, inputs=inputs) as out:
                blocks = 0
                for block in stacks_text(walker, printer, name):
                    out.write(block)
                    blocks += 1
            files.append({"name": f"page_owner_stacks/{name}", "path": target,
                          "records": blocks})
    meta["files"] = files
    sidecar = None
    if output != "-":
        sidecar = output + SIDECAR_SUFFIX
        with atomic_output(sidecar, inputs=inputs) as out:
            out.write(json.dumps(meta, indent=2).encode() + b"\n")
    return VmcoreCapture(output, sidecar, count, image.release, version, meta)


def _hostname(walker: PageOwnerWalker) -> str | None:
    """Return the dumped kernel's nodename (init_uts_ns), if readable."""
    try:
        name = walker.prog["init_uts_ns"].name.nodename.string_().decode()
    except (LookupError, ValueError, walker._drgn.FaultError):
        return None
    return name or None
