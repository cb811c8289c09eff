"""Seeds and a dictionary for the fuzzers, cut from the project's fixtures at run time.

Seeds are the first few records of every fixture era (3.19 to 6.12 dumps, a show_stacks
file), small enough to mutate quickly; the dictionary holds the tokens the readers look for.
"""

from __future__ import annotations

import lzma
from pathlib import Path

__all__ = ["TOKENS", "seeds", "write_dictionary"]

ROOT = Path(__file__).resolve().parents[1]
_SEED_BYTES = 4096

TOKENS: tuple[bytes, ...] = (
    b"Page allocated via order ", b", mask 0x", b"(GFP_KERNEL|__GFP_COMP)", b", pid ",
    b", tgid ", b" (", b"), ts ", b" ns", b", free_ts ", b"PFN ", b"PFN 0x", b" type ",
    b"Unmovable", b"Movable", b"Reclaimable", b"HighAtomic", b"CMA", b"Isolate",
    b" Block ", b" Flags 0x", b"(slab|node=0|zone=1)", b"node=", b"zone=", b"|",
    b" post_alloc_hook+0x1e3/0x210", b" __vmalloc_node_range+0x39c/0x880",
    b" [<ffffffff8194b43f>] ", b" [xfs]", b"+0x", b"/0x", b" (mm/page_alloc.c:3048)",
    b"Page has been migrated, last migrate reason: ", b"Slab cache page",
    b"Charged (via objcg) to offline memcg ", b"nr_base_pages: ", b"stack_count: ",
    b"handle: ", b"\n\n", b"\r\n", b"\r", b"\x00", b"\xff\xfe", b"Fallback", b"        ",
    b"18446744073709551616", b"99999999999999999999999999", b"-1", b"65", b"63",
)


def _head(data: bytes, records: int) -> bytes:
    """Return the first `records` blocks of a dump, each with its blank line."""
    parts = data[: 64 * _SEED_BYTES].split(b"\n\n")
    return b"\n\n".join(parts[:records]) + b"\n\n"


def seeds() -> list[bytes]:
    """Return the seed inputs: a few records of every fixture, whole and cut."""
    out: list[bytes] = []
    sources = sorted((ROOT / "fixtures" / "cases").glob("*.txt"))
    sources += sorted((ROOT / "fixtures" / "real").glob("*.xz"))
    for path in sources:
        if path.suffix == ".xz":
            with lzma.open(path) as handle:
                data = handle.read(64 * _SEED_BYTES)
        else:
            data = path.read_bytes()
        for records in (1, 3):
            seed = _head(data, records)[:_SEED_BYTES]
            if seed not in out:
                out.append(seed)
    return out


def write_dictionary(path: Path) -> None:
    """Write the tokens as a libFuzzer dictionary file."""
    lines = []
    for token in TOKENS:
        escaped = "".join(
            chr(byte) if 32 <= byte < 127 and byte not in (34, 92) else f"\\x{byte:02x}"
            for byte in token
        )
        lines.append(f'"{escaped}"')
    path.write_text("\n".join(lines) + "\n")
