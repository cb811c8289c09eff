"""Learn the simulator's per-kernel profiles from the real dumps in fixtures/real.

Writes pageowner/data/sim-<family>.json for the three kernels we have real dumps of
(5.10.223, 6.1.192, 6.12.117), and sim-7.3-boot.json, the boot of the real 7.3 boot
dump (fixtures/real73) that 7.3 lays over the 6.12 family: the stacks that appear (as
frame text, interned), symbol sizes and call-site offsets, the allocations a boot
leaves behind (stack, order, gfp mask, task, count, page flags, trailing lines, time
window), and the allocations of the
fixtures' init-script workload that are not the big tmpfs files (which the `capture`
workload generates itself from --mb). Run from the repository root:

    .venv/bin/python tools/learn_sim_profiles.py

It is a development tool: the JSON it writes is committed, and nothing imports this file.
"""

from __future__ import annotations

import collections
import json
import lzma
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pageowner.dump.dumpfile import iter_records
from pageowner.model import PageRecord

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "fixtures" / "real"
OUT = ROOT / "pageowner" / "data"
SECTION_PAGES = 32768  # 128 MiB sparsemem sections on x86_64

# Bytes of page_ext per page (struct page_ext + page_owner data), per family: the early
# page count is one table per section plus a few other pages found at page_owner init.
PAGE_EXT_BYTES = {"5.10": 36, "6.1": 64, "6.12": 72, "7.3": 72}
REAL73 = ROOT / "fixtures" / "real73"

# 5.10 dumps print no task: which task a stack ran in, by the first function found in it.
TASK_BY_FUNCTION_5_10 = (
    ("read_page_owner", "reader"),
    ("start_kernel", "swapper:0"),
    ("kthreadd", "kthreadd:2"),
    ("devtmpfsd", "kdevtmpfs:16"),
    ("worker_thread", "kworker/u2:0:9"),
    ("kernel_init", "swapper/0:1"),
    ("ret_from_fork", "swapper/0:1"),
)
ROLE_BY_FUNCTION_5_10 = (
    ("read_page_owner", "reader"),
    ("__x64_sys_getdents64", "find"),
    ("vfs_statx", "find"),
    ("proc_", "find"),
    ("kernfs_", "find"),
    ("load_elf_binary", "sleep"),
    ("do_execveat_common", "sleep"),
    ("exc_page_fault", "sleep"),
    ("copy_process", "sleep"),
    ("worker_thread", "kworker"),
)


@dataclass
class Profile:
    """What is being collected for one family."""

    family: str
    frames: dict[str, int]
    stacks: dict[tuple[int, ...], int]
    flags: dict[tuple[str, ...], int]
    lines: dict[tuple[str, ...], int]

    def stack_id(self, record: PageRecord) -> int:
        """Intern a record's stack."""
        ids = []
        for frame in record.stack:
            text = frame.symbolic()
            ids.append(self.frames.setdefault(text, len(self.frames)))
        return self.stacks.setdefault(tuple(ids), len(self.stacks))

    def flags_id(self, record: PageRecord) -> int:
        """Intern a record's page flag names."""
        names = record.flags.names if record.flags is not None else ()
        return self.flags.setdefault(tuple(names), len(self.flags))

    def lines_id(self, record: PageRecord) -> int:
        """Intern a record's trailing lines (memcg), migration excluded."""
        lines: list[str] = []
        if record.slab_cache:
            lines.append("Slab cache page")
        if record.memcg is not None:
            via = "(via objcg) " if record.memcg.via_objcg else ""
            off = "offline " if record.memcg.offline else ""
            lines.append(f"Charged {via}to {off}memcg {record.memcg.name}")
        return self.lines.setdefault(tuple(lines), len(self.lines))


def load(name: str, folder: Path = REAL) -> list[PageRecord]:
    """Read one real dump."""
    with lzma.open(folder / name, "rb") as stream:
        return list(iter_records(stream, name))


def functions(record: PageRecord) -> list[str]:
    """Return a record's function names."""
    return [frame.function for frame in record.stack]


def is_early(record: PageRecord) -> bool:
    """Tell whether a record carries the early stack."""
    return bool(record.stack) and record.stack[0].function == "register_early_stack"


SHMEM_DATA = {"shmem_alloc_page", "shmem_alloc_folio", "shmem_alloc_hugepage",
              "shmem_alloc_hugefolio"}
SLAB = {"___slab_alloc", "new_slab", "allocate_slab"}


def is_shmem_write(record: PageRecord) -> bool:
    """Tell whether a record is a tmpfs data page written by write(2) (the dd data pages)."""
    names = set(functions(record))
    return "vfs_write" in names and bool(names & SHMEM_DATA) and not names & SLAB


def entry_key(profile: Profile, record: PageRecord) -> tuple[int, int, int, int, int]:
    """Group records by stack, order, mask, flags and trailing lines."""
    return (profile.stack_id(record), record.order, record.gfp_mask,
            profile.flags_id(record), profile.lines_id(record))


def aggregate(profile: Profile, records: list[PageRecord], times: list[int],
              base: int) -> list[list[int]]:
    """Turn records into [stack, order, gfp, count, flags, lines, t0_us, t1_us] entries."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for record, ts in zip(records, times, strict=True):
        key = entry_key(profile, record)
        rel = max(0, (ts - base) // 1000)
        group = groups.get(key)
        if group is None:
            groups[key] = [*key[:3], 1, *key[3:], rel, rel]
        else:
            group[3] += 1
            group[6] = min(group[6], rel)
            group[7] = max(group[7], rel)
    return sorted(groups.values(), key=lambda entry: (entry[6], entry[0]))


def synthetic_times(records: list[PageRecord], start_ns: int, span_ns: int) -> list[int]:
    """Give time-less (5.10) records times that follow their pfn order."""
    count = max(1, len(records))
    return [start_ns + span_ns * index // count for index in range(len(records))]


def symbol_table(profile: Profile) -> dict[str, Any]:
    """Collect symbol sizes and the offsets each caller calls its callee at."""
    frames_by_id = {index: text for text, index in profile.frames.items()}
    sizes: dict[str, int] = {}
    offsets: dict[str, collections.Counter[tuple[str, int]]] = collections.defaultdict(
        collections.Counter)
    for stack in profile.stacks:
        previous = "<top>"
        for frame_id in stack:
            text = frames_by_id[frame_id]
            symbol, _, rest = text.partition("+0x")
            offset_text, _, size_text = rest.partition("/0x")
            size_text = size_text.split(" ")[0]
            offset = int(offset_text, 16)
            sizes[symbol] = int(size_text, 16)
            offsets[symbol][(previous, offset)] += 1
            previous = symbol
    table = {}
    for symbol, size in sorted(sizes.items()):
        by_callee: dict[str, int] = {}
        for (callee, offset), _count in offsets[symbol].most_common():
            by_callee.setdefault(callee, offset)
        default = offsets[symbol].most_common(1)[0][0][1]
        table[symbol] = {"size": size, "default": default, "calls": by_callee}
    return table


def task_key(record: PageRecord) -> str:
    """Name a record's task as comm:pid (tgid equals pid in every fixture)."""
    return f"{record.comm}:{record.pid}"


def classify(names: list[str], table: tuple[tuple[str, str], ...], default: str) -> str:
    """Pick the first table value whose function (prefix) appears in the stack."""
    for function, value in table:
        if any(name.startswith(function) for name in names):
            return value
    return default


def early_info(family: str, records: list[PageRecord], mem_pages: int) -> dict[str, Any]:
    """Describe the early-allocated pages: per-section tables plus a fixed rest."""
    early = [r for r in records if is_early(r)]
    sections = (mem_pages + SECTION_PAGES - 1) // SECTION_PAGES
    per_section = -(-SECTION_PAGES * PAGE_EXT_BYTES[family] // 4096)
    first = early[0]
    return {
        "count": len(early),
        "per_section": per_section,
        "fixed": len(early) - sections * per_section,
        "pid": first.pid if first.pid is not None else 1,
        "comm": first.comm if first.comm is not None else "swapper/0",
        "ts_ns": first.ts_nsec or 0,
        "flags": list(first.flags.names) if first.flags else [],
    }


def learn_boot(profile: Profile, boot_records: list[PageRecord], has_ts: bool
               ) -> tuple[dict[str, int], list[list[Any]], tuple[list[PageRecord], list[int]]]:
    """Learn a boot: its tasks, its entries (early pages and the reader left out), the reader.

    Everything but early pages and the dd that read the file.
    """
    if has_ts:
        reader_pid = max(r.pid or 0 for r in boot_records if r.comm == "dd") if any(
            r.comm == "dd" for r in boot_records) else None
        boot_times = [r.ts_nsec or 0 for r in boot_records]
    else:
        reader_pid = None
        boot_times = synthetic_times(boot_records, 300_000_000, 1_400_000_000)
    tasks: dict[str, int] = {}
    boot_by_task: dict[str, tuple[list[PageRecord], list[int]]] = collections.defaultdict(
        lambda: ([], []))
    reader: tuple[list[PageRecord], list[int]] = ([], [])
    for record, ts in zip(boot_records, boot_times, strict=True):
        if is_early(record):
            continue
        if has_ts:
            if reader_pid is not None and record.pid == reader_pid:
                reader[0].append(record)
                reader[1].append(ts)
                continue
            task = task_key(record)
        else:
            task = classify(functions(record), TASK_BY_FUNCTION_5_10, "swapper/0:1")
            if task == "reader":
                reader[0].append(record)
                reader[1].append(ts)
                continue
        boot_by_task[task][0].append(record)
        boot_by_task[task][1].append(ts)
    boot_entries = []
    for task, (records, times) in boot_by_task.items():
        task_index = tasks.setdefault(task, len(tasks))
        for entry in aggregate(profile, records, times, 0):
            names = [n for n in profile_functions(profile, entry[0])]
            scale = "mem" if "alloc_large_system_hash" in names else ""
            boot_entries.append([*entry[:3], task_index, *entry[3:], scale])
    boot_entries.sort(key=lambda e: (e[7], e[0]))
    return tasks, boot_entries, reader


def learn(family: str, kernel: str, boot_name: str | None, work_name: str,
          mem_mb: int, work_mem_mb: int, learned_mb: int) -> dict[str, Any]:
    """Build one family's profile."""
    profile = Profile(family, {}, {}, {}, {})
    work = load(work_name)
    has_ts = work[0].ts_nsec is not None
    if has_ts:
        dd_pids = sorted({r.pid for r in work if r.comm == "dd" and is_shmem_write(r)
                          and r.order == 0}, key=lambda pid: -sum(
                              1 for r in work if r.pid == pid))
        start = min(r.ts_nsec or 0 for r in work if r.comm == "dd")
    else:
        dd_pids = []
        start = 0
    boot_records = load(boot_name) if boot_name else [r for r in work if (r.ts_nsec or 0) < start]
    mem_pages = mem_mb * 256
    early = early_info(family, boot_records, mem_pages)

    tasks, boot_entries, reader = learn_boot(profile, boot_records, has_ts)

    # -- the capture workload's residue, by role
    sites: dict[str, int] = {}
    roles: dict[str, dict[str, Any]] = {}
    if has_ts:
        capture = [r for r in work if (r.ts_nsec or 0) >= start and not is_early(r)]
        big_pid = dd_pids[0]
        small_pid = dd_pids[1]
        huge = [r for r in capture if r.comm == "dd" and r.order == 9 and is_shmem_write(r)]
        huge_pid = huge[0].pid
        work_reader = max(r.pid or 0 for r in capture if r.comm == "dd")
        for name, pid in (("shmem_write", big_pid), ("shmem_write_small", small_pid)):
            data = [r for r in capture if r.pid == pid and is_shmem_write(r)
                    and r.migrate_reason is None]
            common = collections.Counter(entry_key(profile, r) for r in data).most_common(1)[0][0]
            sites[name] = common[0]
            sites[name + "_lines"] = common[4]
            sites[name + "_flags"] = common[3]
            sites[name + "_gfp"] = common[2]
        sites["shmem_write_huge"] = profile.stack_id(huge[0])
        sites["shmem_write_huge_gfp"] = huge[0].gfp_mask
        sites["shmem_write_huge_flags"] = profile.flags_id(huge[0])
        sites["shmem_write_huge_lines"] = profile.lines_id(huge[0])
        sleeps = {r.pid for r in capture if r.comm == "exe"}
        groups: dict[str, tuple[list[PageRecord], list[int], set[int], str]] = {}
        for record in capture:
            pid = record.pid or 0
            if pid in (big_pid, small_pid, huge_pid) and is_shmem_write(record):
                continue  # generated from --mb by the workload itself
            if pid == work_reader:
                role, comm = "reader", record.comm or ""
                if record.comm != "dd":
                    role = "reader-fork"
            elif pid in sleeps:
                role = "sleep" if record.comm == "exe" else "sleep-fork"
                comm = record.comm or ""
            elif pid == big_pid:
                role, comm = "dd-big", "dd"
            elif pid == small_pid:
                role, comm = "dd-small", "dd"
            elif pid == huge_pid:
                role, comm = "dd-huge", "dd"
            elif record.comm == "dd":
                role, comm = "dd-file", "dd"
            elif pid == 1:
                role, comm = "init", "init"
            elif record.comm in ("find",):
                role, comm = "find", "find"
            else:
                role, comm = f"task:{record.comm}:{pid}", record.comm or ""
            group = groups.setdefault(role, ([], [], set(), comm))
            group[0].append(record)
            group[1].append(record.ts_nsec or 0)
            group[2].add(pid)
        reader_role = ("reader", "reader-fork")
        for role, (records, times, pids, comm) in groups.items():
            if role in reader_role:
                continue
            base = min(times)
            roles[role] = {
                "comm": comm,
                "ntasks": len(pids),
                "pids": sorted(pids),
                "t0_us": (base - start) // 1000,
                "t1_us": (max(times) - start) // 1000,
                "entries": aggregate(profile, records, times, base),
                "migrated": sum(1 for r in records if r.migrate_reason),
            }
        data_migrated = sum(1 for r in capture if r.migrate_reason and is_shmem_write(r)
                            and r.pid in (big_pid, small_pid))
        reader_records = [r for r in capture if r.pid == work_reader]
        reader = (reader_records, [r.ts_nsec or 0 for r in reader_records])
    else:
        boot_keys = collections.Counter(entry_key(profile, r) for r in boot_records)
        capture = []
        for record in work:
            key = entry_key(profile, record)
            if boot_keys[key] > 0:
                boot_keys[key] -= 1
                continue
            capture.append(record)
        data = [r for r in capture if is_shmem_write(r) and r.order == 0]
        common = collections.Counter(entry_key(profile, r) for r in data).most_common(1)[0][0]
        for name in ("shmem_write", "shmem_write_small"):
            sites[name] = common[0]
            sites[name + "_lines"] = common[4]
            sites[name + "_flags"] = common[3]
            sites[name + "_gfp"] = common[2]
        huge = [r for r in capture if r.order == 9 and is_shmem_write(r)]
        sites["shmem_write_huge"] = profile.stack_id(huge[0])
        sites["shmem_write_huge_gfp"] = huge[0].gfp_mask
        sites["shmem_write_huge_flags"] = profile.flags_id(huge[0])
        sites["shmem_write_huge_lines"] = profile.lines_id(huge[0])
        generated = (learned_mb + 8) * 256
        groups2: dict[str, list[PageRecord]] = collections.defaultdict(list)
        for record in capture:
            key = entry_key(profile, record)
            if key == common and generated > 0:
                generated -= 1
                continue
            if record.order == 9 and is_shmem_write(record):
                continue
            role = classify(functions(record), ROLE_BY_FUNCTION_5_10, "init")
            groups2[role].append(record)
        groups2.pop("reader", None)  # the same dd read both dumps: keep the boot one
        offsets = {"init": 2_000_000_000, "sleep": 4_500_000_000, "find": 4_800_000_000,
                   "kworker": 2_000_000_000}
        for role, records in groups2.items():
            base = offsets.get(role, 1_000_000_000)
            times = synthetic_times(records, base, 1_000_000_000)
            roles[role] = {
                "comm": {"sleep": "exe", "kworker": "kworker/u2:0"}.get(role, role),
                "ntasks": 40 if role == "sleep" else 1,
                "pids": [],
                "t0_us": base // 1000,
                "t1_us": (base + 1_000_000_000) // 1000,
                "entries": aggregate(profile, records, times, base),
                "migrated": 0,
            }
        data_migrated = 0
    dd_part = [(r, t) for r, t in zip(*reader, strict=True) if r.comm in ("dd", None)]
    fork_part = [(r, t) for r, t in zip(*reader, strict=True) if r.comm not in ("dd", None)]
    base = min(reader[1], default=0)
    reader_info = {
        "comm": "dd",
        "entries": aggregate(profile, [r for r, _ in dd_part], [t for _, t in dd_part], base),
        "fork_entries": aggregate(profile, [r for r, _ in fork_part],
                                  [t for _, t in fork_part], base),
    }
    sites["early"] = next(profile.stack_id(r) for r in boot_records if is_early(r))
    dummy = [r for r in work if r.stack and r.stack[0].function == "register_dummy_stack"]
    if dummy:
        sites["dummy"] = profile.stack_id(dummy[0])
    frames = [text for text, _ in sorted(profile.frames.items(), key=lambda item: item[1])]
    stacks = [list(ids) for ids, _ in sorted(profile.stacks.items(), key=lambda item: item[1])]
    return {
        "family": family,
        "kernel": kernel,
        "sources": [n for n in (boot_name, work_name) if n],
        "boot_mem_mb": mem_mb,
        "work_mem_mb": work_mem_mb,
        "learned_mb": learned_mb,
        "frames": frames,
        "stacks": stacks,
        "symbols": symbol_table(profile),
        "flags": [list(names) for names, _ in sorted(profile.flags.items(),
                                                      key=lambda item: item[1])],
        "lines": [list(lines) for lines, _ in sorted(profile.lines.items(),
                                                      key=lambda item: item[1])],
        "sites": sites,
        "early": early,
        "tasks": [name for name, _ in sorted(tasks.items(), key=lambda item: item[1])],
        "boot": boot_entries,
        "reader": reader_info,
        "capture": roles,
        "capture_data_migrated": data_migrated,
    }


def learn_boot_overlay(version: str, kernel: str, boot_name: str, mem_mb: int,
                       family: str) -> dict[str, Any]:
    """Learn only the boot of a kernel whose work dumps are not here, over a family.

    The real 7.3 work runs are kept back to measure the simulator on a run it has not
    seen, so 7.3 takes its boot (tasks, allocations, early pages, page_owner's own
    stacks) from the real 7.3 boot dump and everything else from `family`
    (pageowner.sim.stacks.load_overlay merges the two).
    """
    profile = Profile(version, {}, {}, {}, {})
    boot_records = load(boot_name, REAL73)
    tasks, boot_entries, _ = learn_boot(profile, boot_records, True)
    sites = {"early": next(profile.stack_id(r) for r in boot_records if is_early(r))}
    dummy = [r for r in boot_records
             if r.stack and r.stack[0].function == "register_dummy_stack"]
    if dummy:
        sites["dummy"] = profile.stack_id(dummy[0])
    frames = [text for text, _ in sorted(profile.frames.items(), key=lambda item: item[1])]
    stacks = [list(ids) for ids, _ in sorted(profile.stacks.items(), key=lambda item: item[1])]
    return {
        "overlay_of": family,
        "kernel": kernel,
        "sources": [boot_name],
        "boot_mem_mb": mem_mb,
        "frames": frames,
        "stacks": stacks,
        "symbols": symbol_table(profile),
        "flags": [list(names) for names, _ in sorted(profile.flags.items(),
                                                      key=lambda item: item[1])],
        "lines": [list(lines) for lines, _ in sorted(profile.lines.items(),
                                                      key=lambda item: item[1])],
        "sites": sites,
        "early": early_info(version, boot_records, mem_mb * 256),
        "tasks": [name for name, _ in sorted(tasks.items(), key=lambda item: item[1])],
        "boot": boot_entries,
    }


def profile_functions(profile: Profile, stack_id: int) -> list[str]:
    """Return the function names of an interned stack."""
    by_id = {index: text for text, index in profile.frames.items()}
    ids = next(ids for ids, index in profile.stacks.items() if index == stack_id)
    return [by_id[i].partition("+0x")[0] for i in ids]


def main() -> int:
    """Learn and write the three profiles."""
    jobs = [
        ("5.10", "5.10.223", "5.10.223-boot.page_owner.txt.xz",
         "5.10.223-work.page_owner.txt.xz", 256, 256, 64),
        ("6.1", "6.1.192", "6.1.192-boot.page_owner.txt.xz",
         "6.1.192-work1g.page_owner.txt.xz", 256, 1024, 640),
        ("6.12", "6.12.117", None, "6.12.117-work.page_owner.txt.xz", 256, 256, 64),
    ]
    for family, kernel, boot, work, mem_mb, work_mb, learned_mb in jobs:
        data = learn(family, kernel, boot, work, mem_mb, work_mb, learned_mb)
        path = OUT / f"sim-{family}.json"
        path.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n")
        print(f"{path.relative_to(ROOT)}: {len(data['stacks'])} stacks, "
              f"{len(data['boot'])} boot entries, {len(data['capture'])} roles",
              file=sys.stderr)
    overlay = learn_boot_overlay("7.3", "7.3.0-rc7", "7.3-boot.page_owner.txt.xz", 1024, "6.12")
    path = OUT / "sim-7.3-boot.json"
    path.write_text(json.dumps(overlay, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{path.relative_to(ROOT)}: {len(overlay['stacks'])} stacks, "
          f"{len(overlay['boot'])} boot entries", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
