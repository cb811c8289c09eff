"""Bad inputs for the hardening tests: mutated dumps, odd values, odd line ends, odd files.

Every input is built from fixtures/cases/modern-6.12.txt (a real-format 6.12 dump), so a
failure names what was done to it. `COMMANDS` lists every command that reads a dump, with
its arguments around INPUT and OUTPUT.
"""

from __future__ import annotations

import random
from pathlib import Path

from tests.symbols.elfwriter import symbol_sections, text_section, write_elf

ROOT = Path(__file__).resolve().parents[1]
BASE = (ROOT / "fixtures/cases/modern-6.12.txt").read_bytes()
STACKS_XZ = ROOT / "fixtures/real/6.12.117-work.show_stacks.txt.xz"
FIRST = BASE.split(b"\n\n")[0] + b"\n\n"  # one whole record, with its blank line

# Command lines with {i} for the input, {o} for the output and {v} for an ELF vmlinux.
COMMANDS: dict[str, list[str]] = {
    "sort": ["sort", "{i}", "{o}"],
    "sort-cull": ["sort", "-m", "--cull=st,n", "{i}", "{o}"],
    "sort-a": ["sort", "-a", "{i}", "{o}"],
    "grep": ["grep", "-e", "alloc", "{i}", "-o", "{o}"],
    "top": ["top", "{i}", "-o", "{o}"],
    "top-name": ["top", "--by", "zone", "--format", "json", "{i}", "-o", "{o}"],
    "diff": ["diff", "{i}", str(ROOT / "fixtures/cases/modern-6.12.txt"), "-o", "{o}"],
    "stats": ["stats", "--format", "csv", "{i}", "-o", "{o}"],
    "frag": ["frag", "{i}", "-o", "{o}"],
    "flame": ["flame", "--format", "folded", "{i}", "-o", "{o}"],
    "symbolize": ["symbolize", "--vmlinux", "{v}", "--allow-mismatch", "--no-cache", "{i}",
                  "-o", "{o}"],
}


def vmlinux_bytes() -> bytes:
    """Return a small ELF with a few of the fixture's functions and no DWARF."""
    functions = [("post_alloc_hook", 0x401000, 0x210), ("get_page_from_freelist", 0x401210, 0x1180)]
    return write_elf([text_section(0x3000)] + symbol_sections(functions))


def _lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _frames_record(count: int) -> bytes:
    """One record with `count` frames (the kernel keeps 16 or 64; a corrupt file, more)."""
    header, pfn = _lines_of(FIRST)[:2]
    frames = b"".join(b" f%d+0x1/0x20\n" % n for n in range(count))
    return header + b"\n" + pfn + b"\n" + frames + b"\n"


def _truncations(count: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.randrange(1, len(BASE)) for _ in range(count))
    return {f"truncated-at-{cut}": BASE[:cut] for cut in cuts}


def bad_dumps() -> dict[str, bytes]:
    """Return the generated and mutated dumps, by name."""
    rng = random.Random(6)
    junk = bytes(rng.randrange(256) for _ in range(4096))
    nul = bytearray(BASE)
    for _ in range(40):
        nul.insert(rng.randrange(len(nul)), 0)
    inputs = {
        "empty": b"",
        "blank-lines-only": b"\n\n\r\n\n",
        "binary-junk": junk,
        "junk-between-records": FIRST + junk + b"\n\n" + BASE,
        "nul-bytes": bytes(nul),
        "invalid-utf8-comm": BASE.replace(b"(dd)", b"(d\xff\xfe\xc3)"),
        "ten-mb-line": FIRST + b" " + b"x" * (10 << 20) + b"\n\n" + BASE,
        "ten-mb-frame": FIRST.rstrip(b"\n") + b"\n " + b"y" * (10 << 20) + b"\n\n",
        "100000-frames": _frames_record(100_000) + BASE,
        "numbers-past-64-bits": BASE
        .replace(b"order 0,", b"order 99999999999999999999999,", 3)
        .replace(b"pid 1,", b"pid 340282366920938463463374607431768211456,")
        .replace(b"ts 1007803805 ns", b"ts 18446744073709551616 ns")
        .replace(b"PFN 0x1012", b"PFN 0xffffffffffffffffffffffffffff")
        .replace(b"Block 8 ", b"Block 36893488147419103232 ", 5)
        .replace(b"Flags 0x4000000000000000(", b"Flags 0x1ffffffffffffffffffffffff(", 5),
        "five-thousand-digits": BASE.replace(b"pid 2048,", b"pid " + b"9" * 5000 + b",")
        .replace(b"ts 1004280348 ns", b"ts " + b"7" * 5000 + b" ns"),
        "order-64": BASE.replace(b"order 3,", b"order 64,"),
        "negative-pids": BASE.replace(b"pid 1,", b"pid -5,").replace(b"tgid 1 ", b"tgid -7 "),
        "odd-flag-fields": BASE.replace(b"zone=2)", b"zone=two)").replace(b"node=0|", b"node=08|"),
        "crlf": BASE.replace(b"\n", b"\r\n"),
        "mixed-line-ends": b"".join(
            line + (b"\r\n" if n % 3 == 0 else b"\n") for n, line in enumerate(_lines_of(BASE)[:-1])
        ),
        "lone-cr-line-ends": BASE.replace(b"\n", b"\r"),
        "lone-cr-in-lines": BASE.replace(b" get_page_from", b"\r get_page_from"),
        "cr-before-blank": BASE.replace(b"\n\n", b"\n\r\n", 10),
    }
    inputs.update(_truncations(4, seed=6))
    return inputs


# Inputs whose meaning equals the plain dump's: every command must print the same.
SAME_AS_BASE = ("crlf", "mixed-line-ends")
