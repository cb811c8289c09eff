"""Symbolization benchmark: `pageowner symbolize` against `addr2line -i -f` on a real vmlinux.

Needs a vmlinux with full DWARF, named by PAGEOWNER_VMLINUX (it skips without one), e.g.
Debian's debug package, unpacked outside the repository:

    mkdir -p /opt/vmlinux && cd /opt/vmlinux
    apt-get download linux-image-6.1.0-56-amd64-dbg && dpkg-deb -x linux-image-*.deb root
    PAGEOWNER_VMLINUX=root/usr/lib/debug/boot/vmlinux-6.1.0-56-amd64 make bench

The frames are the unique stack lines of fixtures/real/6.1.192-work1g, looked up by name in
that vmlinux (its build differs from the fixture's kernel): each frame becomes
`name+off/size` with the vmlinux's size and the offset kept inside it. Optional
PAGEOWNER_MODULES (a modules directory, e.g. root/usr/lib/debug/lib/modules/6.1.0-56-amd64)
adds a module run: 300 xfs.ko functions against `addr2line -j .text`.

Printed: index build (cold), a cold run, a run with the index cached, a fully cached run,
addr2line on the same addresses, and how many inline chains agree with addr2line.
"""

from __future__ import annotations

import json
import lzma
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pageowner.symbols.elf import ElfSymbolTable  # noqa: E402

FIXTURE = ROOT / "fixtures/real/6.1.192-work1g.page_owner.txt.xz"
REPEATS = 3
_FRAME = re.compile(r" (\S+)\+0x([0-9a-f]+)/0x([0-9a-f]+)$")


def best_of(command: list[str], prepare: object = None) -> float:
    """Run a command REPEATS times; return the best wall time in seconds."""
    times = []
    for _ in range(REPEATS):
        if callable(prepare):
            prepare()
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def unique_stacks(path: Path) -> list[tuple[str, list[str]]]:
    """Return (header, frame lines) for each distinct stack of a dump, in first-seen order."""
    seen: dict[tuple[str, ...], str] = {}
    with lzma.open(path, "rt", encoding="utf-8", errors="surrogateescape") as text:
        header = ""
        frames: list[str] = []
        for line in text:
            line = line.rstrip("\n")
            if line.startswith("Page allocated"):
                header, frames = line, []
            elif line.startswith(" "):
                frames.append(line)
            elif not line and frames:
                seen.setdefault(tuple(frames), header)
                frames = []
    return [(header, list(stack)) for stack, header in seen.items()]


def rebase(stacks: list[tuple[str, list[str]]],
           table: ElfSymbolTable) -> tuple[str, dict[str, int], int]:  # fmt: skip
    """Rewrite frames with the vmlinux's sizes; return the dump, frame addresses, dropped."""
    addresses: dict[str, int] = {}
    dropped = set()
    records = []
    for header, stack in stacks:
        lines = []
        for frame in stack:
            match = _FRAME.match(frame)
            symbol = table.lookup(match[1]) if match else None
            if match is None or symbol is None:
                dropped.add(frame)
                continue
            offset = min(int(match[2], 16), symbol.size - 1)
            line = f" {symbol.name}+{offset:#x}/{symbol.size:#x}"
            addresses[line] = symbol.address + offset
            lines.append(line)
        if lines:
            records.append("\n".join([header] + lines) + "\n\n")
    return "".join(records), addresses, len(dropped)


def addr2line_chains(vmlinux: str, addresses: list[int],
                     section: str | None = None) -> dict[int, list[tuple[str, str]]]:  # fmt: skip
    """Return addr2line -a -f -i answers per address (discriminators dropped)."""
    command = ["addr2line", "-a", "-f", "-i", "-e", vmlinux]
    if section:
        command += ["-j", section]
    out = subprocess.run(command + [hex(a) for a in addresses], check=True,
                         capture_output=True, text=True).stdout.splitlines()  # fmt: skip
    chains: dict[int, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    index = 0
    while index < len(out):
        if re.fullmatch(r"0x[0-9a-f]+", out[index]):
            current = chains.setdefault(int(out[index], 16), [])
            index += 1
            continue
        current.append((out[index], re.sub(r" \(discriminator \d+\)$", "", out[index + 1])))
        index += 2
    return chains


def agreement(document: dict[str, object], golden: dict[int, list[tuple[str, str]]],
              prefix: str) -> tuple[int, int]:  # fmt: skip
    """Count frames whose inline chain equals addr2line's (paths compared unstripped)."""
    same = total = 0
    for frame in document["frames"]:  # type: ignore[attr-defined]
        address = int(frame["address"], 16)
        ours = [(line["function"], f"{prefix}{line['file']}:{line['line'] or '?'}")
                for line in frame["lines"]]  # fmt: skip
        theirs = golden.get(address, [])
        if not ours and theirs and theirs[0][1] == "??:?":
            ours = theirs  # no line for that address: both say so
        total += 1
        same += ours == theirs
    return same, total


def main() -> int:
    """Run the benchmark and print its figures."""
    vmlinux = os.environ.get("PAGEOWNER_VMLINUX")
    if not vmlinux or not os.path.isfile(vmlinux):
        print("skipped: set PAGEOWNER_VMLINUX to a vmlinux with DWARF (see this script's "
              "docstring for Debian's linux-image-*-dbg)")  # fmt: skip
        return 0
    if shutil.which("addr2line") is None:
        print("skipped: addr2line (binutils) is needed for the comparison")
        return 0
    pageowner = [sys.executable, "-m", "pageowner", "symbolize", "--vmlinux", vmlinux]
    size_mb = os.path.getsize(vmlinux) / 1e6
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        start = time.perf_counter()
        with ElfSymbolTable.from_path(vmlinux, use_cache=False) as table:
            index_seconds = time.perf_counter() - start
            symbols = len(table)
            build_id = table.build_id
            stacks = unique_stacks(FIXTURE)
            text, addresses, dropped = rebase(stacks, table)
        dump = work / "frames.txt"
        dump.write_text(text)
        unique = sorted(set(addresses.values()))
        cache = work / "cache"
        out = work / "out.txt"

        def fresh_cache() -> None:
            shutil.rmtree(cache, ignore_errors=True)

        def drop_lines() -> None:
            for path in cache.glob("*.lines"):
                path.unlink()

        run = pageowner + ["--cache-dir", str(cache), "-o", str(out), str(dump)]
        cold = best_of(run, fresh_cache)
        subprocess.run(run, check=True)
        index_cached = best_of(run, drop_lines)
        subprocess.run(run, check=True)
        cached = best_of(run)
        a2l = best_of(["addr2line", "-i", "-f", "-e", vmlinux] + [hex(a) for a in unique])
        json_out = work / "out.json"
        subprocess.run(pageowner + ["--cache-dir", str(cache), "--format", "json",
                                    "--base-path", "", "-o", str(json_out), str(dump)],
                       check=True)  # fmt: skip
        same, total = agreement(json.loads(json_out.read_text()),
                                addr2line_chains(vmlinux, unique), "")  # fmt: skip
        lines_out = sum(1 for line in out.read_text().splitlines() if line.startswith(" "))
        print(f"vmlinux: {vmlinux} ({size_mb:.0f} MB, build-id {build_id}, "
              f"{symbols} function symbols)")  # fmt: skip
        print(f"input: {len(stacks)} unique stacks of {FIXTURE.name}; {len(addresses)} unique "
              f"frames found by name, {dropped} names absent from this build; "
              f"{lines_out} frame lines written")  # fmt: skip
        print(f"{'index build, cold (in-process: .symtab + .debug_aranges)':<62} "
              f"{index_seconds:6.2f} s")  # fmt: skip
        print(f"{'pageowner symbolize, cold (no cache; whole command)':<62} {cold:6.2f} s")
        print(f"{'pageowner symbolize, index cached (lines decoded again)':<62} "
              f"{index_cached:6.2f} s")  # fmt: skip
        print(f"{'pageowner symbolize, index and lines cached':<62} {cached:6.2f} s")
        print(f"{f'addr2line -i -f -e vmlinux ({len(unique)} addresses)':<62} {a2l:6.2f} s")
        print(f"inline chains equal to addr2line's: {same} of {total}")
        whole_dump(vmlinux, work, pageowner)
        modules = os.environ.get("PAGEOWNER_MODULES")
        if modules:
            module_bench(modules, work)
    return 0


def whole_dump(vmlinux: str, work: Path, pageowner: list[str]) -> None:
    """Symbolize the whole fixture dump (every record, frames rebased), cold and cached."""
    big = work / "whole.txt"
    rebased: dict[str, str] = {}
    with ElfSymbolTable.from_path(vmlinux, use_cache=False) as table, \
            lzma.open(FIXTURE, "rt", encoding="utf-8", errors="surrogateescape") as text, \
            big.open("w", encoding="utf-8", errors="surrogateescape") as out:  # fmt: skip
        for line in text:
            if line.startswith(" "):
                new = rebased.get(line)
                if new is None:
                    match = _FRAME.match(line.rstrip("\n"))
                    symbol = table.lookup(match[1]) if match else None
                    new = rebased[line] = "" if match is None or symbol is None else (
                        f" {symbol.name}+{min(int(match[2], 16), symbol.size - 1):#x}"
                        f"/{symbol.size:#x}\n")  # fmt: skip
                line = new
            out.write(line)
    cache = work / "whole-cache"
    run = pageowner + ["--cache-dir", str(cache), "-o", str(work / "whole.out"), str(big)]
    cold = best_of(run, lambda: shutil.rmtree(cache, ignore_errors=True))
    cached = best_of(run)
    size = big.stat().st_size / 1e6
    print(f"{f'whole dump ({size:.0f} MB, 179,205 records), cold':<62} {cold:6.2f} s")
    print(f"{'whole dump, cached':<62} {cached:6.2f} s")


def module_bench(modules: str, work: Path) -> None:
    """Resolve 300 xfs.ko functions (mid-function) with pageowner and addr2line -j .text."""
    found = list(Path(modules).rglob("xfs.ko"))
    if not found:
        print(f"module run skipped: no xfs.ko under {modules}")
        return
    ko = str(found[0])
    with ElfSymbolTable.from_path(ko, module="xfs", use_cache=False) as table:
        chosen = random.Random(1).sample(
            [symbol for symbol in table.iter_symbols() if symbol.size > 8], 300)
        lines, offsets = [], []
        for symbol in chosen:
            location = table._code_location(symbol)
            # addr2line takes one section (-j): keep the functions of .text.
            if location is not None and location[0].name == ".text":
                lines.append(f" {symbol.name}+{symbol.size // 2:#x}/{symbol.size:#x} [xfs]")
                offsets.append(location[1] + symbol.size // 2)
    dump = work / "xfs.txt"
    dump.write_text("Page allocated via order 0, mask 0xcc0\n" + "\n".join(lines) + "\n\n")
    vmlinux = os.environ["PAGEOWNER_VMLINUX"]
    command = [sys.executable, "-m", "pageowner", "symbolize", "--vmlinux", vmlinux,
               "--modules", modules, "--no-cache", "-o", str(work / "xfs.out"), str(dump)]
    ours = best_of(command)
    addresses = [hex(offset) for offset in offsets]
    theirs = best_of(["addr2line", "-i", "-f", "-j", ".text", "-e", ko] + addresses)
    print(f"{f'xfs.ko: pageowner symbolize, {len(lines)} frames, no cache':<62} {ours:6.2f} s")
    print(f"{f'xfs.ko: addr2line -i -f -j .text ({len(offsets)} addresses)':<62} {theirs:6.2f} s")
    json_out = work / "xfs.json"
    subprocess.run(command[:-3] + ["--format", "json", "--base-path", "", "-o", str(json_out),
                                   str(dump)], check=True)
    golden = addr2line_chains(ko, offsets, ".text")
    frames = json.loads(json_out.read_text())["frames"]
    same = quirk = 0
    for frame, offset in zip(frames, offsets, strict=True):
        ours_chain = [(line["function"], f"{line['file']}:{line['line'] or '?'}")
                      for line in frame["lines"]]
        if ours_chain == golden[offset]:
            same += 1
        elif [(f, loc.replace("/./xfs_trace.h:", "/xfs_trace.c:")) for f, loc in ours_chain] == (
                golden[offset]):
            quirk += 1  # binutils 2.40 names DWARF 5 file 1 after file 0 here (BENCHMARKS.md)
    print(f"xfs.ko inline chains equal to addr2line's: {same} of {len(frames)}, and {quirk} "
          "more once xfs_trace.h (file 1) is read as addr2line names it")


if __name__ == "__main__":
    sys.exit(main())
