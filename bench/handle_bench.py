"""7.3 print modes: the size and our reading cost of a handle capture against a stack capture.

1. The real 7.3 boot run (fixtures/real73): bytes of the stack, handle and stack_handle
   dumps, read from one boot a few ms apart.
2. A simulated 7.3 machine (1 GiB, `run capture`, seed 1): its page_owner in stack mode,
   and the same records in handle and stack_handle mode (each stack's handle taken from
   the simulator's show_stacks_handles; stacks it does not list get handles of their own).
   Each mode is served one record per read(), as the kernel does, and copied by
   copy_records (our Python cost per capture; the kernel's own printing cost, which the
   7.3 patch measured 4.4x lower in handle mode, is not simulated), median of 3.
3. `top` (one process) on the stack dump, and on the handle dump joined to
   show_stacks_handles: what reading the smaller capture costs afterwards, median of 3.

Run: .venv/bin/python bench/handle_bench.py  (or `make bench BENCH=handle`)
"""

from __future__ import annotations

import lzma
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import OneRecordPerRead, median_seconds  # noqa: E402
from pageowner.analyze.top import TopOptions, top_file  # noqa: E402
from pageowner.live.capture import copy_records  # noqa: E402
from pageowner.sim import api  # noqa: E402

REAL73 = ROOT / "fixtures" / "real73"
_FRAMES_RE = re.compile(rb"((?: [^\n]*\n)+)handle: (-?[0-9]+)\n")


def _modes(dump: bytes, stacks_handles: bytes) -> dict[str, list[bytes]]:
    """Return the dump's records in the three print modes."""
    handles = {m[1]: int(m[2]) & 0xFFFFFFFF for m in _FRAMES_RE.finditer(stacks_handles)}
    records: dict[str, list[bytes]] = {"stack": [], "handle": [], "stack_handle": []}
    for block in dump.split(b"\n\n"):
        if not block:
            continue
        lines = block.split(b"\n")
        frames = [line for line in lines if line.startswith(b" ")]
        rest = [line for line in lines if not line.startswith(b" ")]
        key = b"".join(line + b"\n" for line in frames)
        handle = handles.setdefault(key, (1 << 31) + len(handles))
        head, tail = rest[:2], rest[2:]
        handle_line = [b"handle: %d" % handle]
        records["stack"].append(block + b"\n\n")
        records["handle"].append(b"\n".join(head + handle_line + tail) + b"\n\n")
        records["stack_handle"].append(b"\n".join(head + frames + handle_line + tail) + b"\n\n")
    return records


def main() -> None:
    sizes = {name: len(lzma.decompress((REAL73 / f"7.3-boot.{name}.txt.xz").read_bytes()))
             for name in ("page_owner", "page_owner.handle", "page_owner.stack_handle")}
    stack = sizes["page_owner"]
    print("real 7.3 boot run: " + ", ".join(
        f"{name} {size / 1e6:.2f} MB ({size / stack:.2f}x)" for name, size in sizes.items()))

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        api.boot(base / "st", "7.3", 1 << 30, "page_owner=on")
        api.run(base / "st", "capture", [])
        with open(base / "po.txt", "wb") as out:
            api.dump(base / "st", out)
        dump = (base / "po.txt").read_bytes()
        stacks_handles = _sim_stacks_handles(base)
        modes = _modes(dump, stacks_handles)
        first = sum(map(len, modes["stack"]))
        for mode, records in modes.items():
            size = sum(map(len, records))
            seconds = median_seconds(lambda r=records: copy_records(OneRecordPerRead(r),
                                                                    lambda b: None), 3)
            (base / f"{mode}.txt").write_bytes(b"".join(records))
            print(f"simulated 7.3, 1 GiB, run capture: {mode:12} {len(records):,} records, "
                  f"{size / 1e6:.2f} MB ({size / first:.2f}x), copied in "
                  f"{seconds * 1000:.0f} ms")
        options = TopOptions(jobs=1)
        plain = median_seconds(lambda: top_file(str(base / "stack.txt"), options), 3)
        joined_options = TopOptions(jobs=1, stacks_from=str(base / "ssh.txt"))
        joined = median_seconds(lambda: top_file(str(base / "handle.txt"), joined_options), 3)
        print(f"top: stack dump {plain * 1000:.0f} ms; handle dump joined to "
              f"show_stacks_handles {joined * 1000:.0f} ms ({joined / plain:.2f}x)")


def _sim_stacks_handles(base: Path) -> bytes:
    """Return the simulated machine's show_stacks_handles."""
    with open(base / "ssh.txt", "wb") as out:
        api.dump(base / "st", out, stacks="show_stacks_handles")
    return (base / "ssh.txt").read_bytes()


if __name__ == "__main__":
    main()
