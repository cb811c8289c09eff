"""Stream a 10 GB dump through a pipe into `sort` and `top`: throughput and flat memory.

The dump is made on the fly from the 132 MB real 6.1 fixture (179,205 records): copy k
has every PFN moved up by k * 2^22 (and its pageblock number with it), so the records are
new pages of the same stacks, as a bigger machine's dump would be. A generator process
writes it into a pipe; the command reads the pipe (`-`). Peak RSS is the command's own
(ru_maxrss from os.wait4 through an exec trampoline, as bench/sort_bench.py measures),
for 1 GB and for N GB: flat memory means the two are about the same.

    python bench/load_bench.py             # 1 GB and 10 GB, sort and top
    python bench/load_bench.py --gb 3 --commands top
    LOAD_BENCH_GB=2 make bench BENCH=load
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import lzma
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DUMP = ROOT / "fixtures/real/6.1.192-work1g.page_owner.txt.xz"
RECORDS = 179_205
PFN_SHIFT = 1 << 22  # above every PFN of the 1 GiB fixture machine (2^18 pages)
_EXEC = [sys.executable, "-S", "-c", "import os, sys; os.execvp(sys.argv[1], sys.argv[1:])"]
_F_SETPIPE_SZ = 1031  # Linux fcntl
_PFN_LINE = re.compile(rb"\nPFN (?P<pfn>0x[0-9a-f]+|[0-9]+) type \w+ Block (?P<block>[0-9]+) ")


def plain_dump() -> Path:
    """Return the decompressed fixture, cached under the temporary directory."""
    work = Path(tempfile.gettempdir()) / "pageowner-bench"
    work.mkdir(exist_ok=True)
    plain = work / DUMP.with_suffix("").name
    if not plain.exists():
        with lzma.open(DUMP) as source, plain.open("wb") as target:
            while chunk := source.read(1 << 20):
                target.write(chunk)
    return plain


class ShiftedCopies:
    """Copies of a dump with PFNs (and pageblocks) shifted; copy 0 is the dump itself."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pieces: list[bytes] = []  # text between the numbers
        self.pfns: list[int] = []
        self.hex: list[bool] = []
        self.blocks: list[int] = []
        position = 0
        for match in _PFN_LINE.finditer(data):
            pfn = match["pfn"]
            self.pieces.append(data[position:match.start("pfn")])
            self.pieces.append(data[match.end("pfn"):match.start("block")])
            position = match.end("block")
            self.hex.append(pfn.startswith(b"0x"))
            self.pfns.append(int(pfn, 0))
            self.blocks.append(int(match["block"]))
        self.tail = data[position:]

    def copy(self, number: int) -> bytes:
        """Return copy `number`: every PFN + number * 2^22, every block + number * 2^13."""
        if number == 0:
            return self.data
        shift, block_shift = number * PFN_SHIFT, number * PFN_SHIFT >> 9
        parts = []
        pieces = iter(self.pieces)
        for pfn, is_hex, block in zip(self.pfns, self.hex, self.blocks, strict=True):
            parts.append(next(pieces))
            parts.append(b"%#x" % (pfn + shift) if is_hex else b"%d" % (pfn + shift))
            parts.append(next(pieces))
            parts.append(b"%d" % (block + block_shift))
        parts.append(self.tail)
        return b"".join(parts)


def generate(total: int, out: int, report: Path) -> None:
    """Write whole shifted copies of the fixture to a descriptor until `total` bytes.

    Writes "COPIES BYTES" to `report` at the end (copies grow as their PFNs do).
    """
    copies = ShiftedCopies(plain_dump().read_bytes())
    written = 0
    number = 0
    with os.fdopen(out, "wb", closefd=False) as pipe:
        while written < total:
            data = copies.copy(number)
            pipe.write(data)
            written += len(data)
            number += 1
    report.write_text(f"{number} {written}\n")


def measure(command: list[str], gigabytes: float,
            output: Path | None) -> tuple[float, int, int, int]:
    """Feed `gigabytes` of dump to a command through a pipe.

    Returns the seconds, the command's peak RSS in MB, and the copies and bytes fed.
    """
    report = Path(tempfile.gettempdir()) / "pageowner-bench" / "load-generated.txt"
    writer = subprocess.Popen([sys.executable, __file__, "--generate", str(gigabytes),
                               str(report)], stdout=subprocess.PIPE)
    assert writer.stdout is not None
    with contextlib.suppress(OSError):  # a 1 MiB pipe: fewer wake-ups on both sides
        fcntl.fcntl(writer.stdout.fileno(), _F_SETPIPE_SZ, 1 << 20)
    start = time.perf_counter()
    stdout = output.open("wb") if output is not None else subprocess.DEVNULL
    process = subprocess.Popen([*_EXEC, *command], stdin=writer.stdout, stdout=stdout,
                               close_fds=True)
    writer.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    writer.wait()
    if output is not None:
        stdout.close()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0 or writer.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    copies, total = (int(word) for word in report.read_text().split())
    return elapsed, usage.ru_maxrss // 1024, copies, total


def counted_records(command: str, output: Path) -> int:
    """Return the records a command's output says it read."""
    text = output.read_text(errors="replace")
    if command == "sort":
        return sum(int(line.split(" ", 1)[0]) for line in text.splitlines()
                   if " times, " in line)
    match = re.search(r"in (\d+) records", text)
    return int(match.group(1)) if match else -1


def main() -> None:
    """Print throughput and peak RSS for each command at both sizes."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gb", type=float, default=float(os.environ.get("LOAD_BENCH_GB", 10)))
    parser.add_argument("--small-gb", type=float, default=1.0)
    parser.add_argument("--commands", default="sort,top")
    args = parser.parse_args()
    plain = plain_dump()
    work = plain.parent
    commands = {
        "sort": [sys.executable, "-m", "pageowner", "sort", "-", str(work / "load-sorted.txt")],
        "top": [sys.executable, "-m", "pageowner", "top", "-"],
    }
    print(f"source: {plain.name} ({plain.stat().st_size / 1e6:.0f} MB, {RECORDS} records), "
          "copies with shifted PFNs through a pipe")
    print(f"{'command':<8}{'size':>9}{'records':>12}{'time':>9}{'MB/s':>7}{'peak RSS':>10}")
    for name in args.commands.split(","):
        rss = {}
        for gigabytes in (args.small_gb, args.gb):
            output = work / f"load-{name}.out"
            seconds, peak, copies, total = measure(commands[name], gigabytes, output)
            if name == "sort":
                output = work / "load-sorted.txt"
            records = counted_records(name, output)
            status = "" if records == copies * RECORDS else f"  (expected {copies * RECORDS})"
            rss[gigabytes] = peak
            print(f"{name:<8}{total / 1e9:>7.1f}GB{records:>12}{seconds:>8.1f}s"
                  f"{total / 1e6 / seconds:>7.0f}{peak:>8}MB{status}", flush=True)
        small, big = rss[args.small_gb], rss[args.gb]
        print(f"  {name}: peak RSS {small} MB at {args.small_gb:g} GB, {big} MB at "
              f"{args.gb:g} GB ({big - small:+d} MB)", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--generate"]:
        generate(int(float(sys.argv[2]) * 1e9), sys.stdout.fileno(), Path(sys.argv[3]))
    else:
        main()
