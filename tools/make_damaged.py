#!/usr/bin/env python3
"""Make fixtures/damaged/: page_owner text damaged the ways people post it, from real dumps.

Every file is cut from a real fixture (fixtures/real, fixtures/real73, fixtures/cases) and
damaged by one kind of damage (docs/reader.md rules a-e). MANIFEST.tsv gives what a person
counts in each: records (a dump's records, a report's times, a log's dumped pages, a
show_* file's blocks), pages (where the text says), and the exit code every command must
give. The counts come from the clean cut, never from pageowner's readers.

Run `python3 tools/make_damaged.py [OUT]` (default fixtures/damaged; deterministic output:
tests/test_damaged_corpus.py checks that the committed files are what it makes).
"""

from __future__ import annotations

import lzma
import quopri
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "fixtures" / "damaged"
HEADER = "Page allocated via order "


def read_xz(path: str) -> str:
    """Return a fixture's text."""
    return lzma.decompress((ROOT / path).read_bytes()).decode("utf-8", "surrogateescape")


def blocks(text: str) -> list[list[str]]:
    """Split text into blocks of lines on blank lines."""
    return [block.split("\n") for block in text.strip("\n").split("\n\n") if block.strip()]


def join(records: list[list[str]]) -> str:
    """Print blocks back as a dump: each ends with a blank line."""
    return "".join("\n".join(lines) + "\n\n" for lines in records)


def cut(path: str, count: int) -> list[list[str]]:
    """Return the first `count` records of a real dump."""
    records = [b for b in blocks(read_xz(path)) if b[0].startswith(HEADER)]
    return records[:count]


def map_frames(records: list[list[str]], change: Callable[[str], str]) -> list[list[str]]:
    """Apply `change` to every frame line (lines starting with one space)."""
    return [[change(line) if line.startswith(" ") else line for line in rec] for rec in records]


def wrap_at(line: str, width: int) -> list[str]:
    """Wrap a line at spaces the way a mail client does (the space is lost)."""
    out: list[str] = []
    while len(line) > width:
        at = line.rfind(" ", 0, width)
        if at <= 0:
            break
        out.append(line[:at])
        line = line[at + 1 :]
    return out + [line]


def pages_of(record: list[str]) -> int:
    """Return a record's pages from its header's order."""
    match = re.match(r"Page allocated via order (\d+)", record[0])
    assert match
    return 1 << int(match[1])


def log_record(record: list[str], free_stack: list[str], stamp: float) -> list[str]:
    """Print a record the way __dump_page_owner() does in a 6.7+ kernel log (kernel.md A.7)."""
    header = re.match(
        r"Page allocated via order (\d+), mask (0x[0-9a-f]+\([^()]*\)), pid (\d+), "
        r"tgid (\d+) \((.*)\), ts (\d+) ns", record[0])  # fmt: skip
    assert header
    order, mask, pid, tgid, comm, ts = header.groups()
    frames = [line for line in record[1:] if line.startswith(" ")]
    prefix = f"[{stamp:12.6f}] "
    lines = [
        f"BUG: Bad page state in process {comm}  pfn:{10000 + int(ts) % 9999:x}",
        "page dumped because: nonzero mapcount",
        "page_owner tracks the page as freed",
        f"page last allocated via order {order}, migratetype Unmovable, gfp_mask {mask}, "
        f"pid {pid}, tgid {tgid} ({comm}), ts {ts}, free_ts 0",
        *frames,
        f"page last free pid {pid} tgid {tgid} ts {int(ts) + 1000} stack trace:",
        *free_stack,
        f"CPU: 1 UID: 0 PID: {pid} Comm: {comm} Not tainted 6.12.0 #1",
        "Call Trace:",
        " <TASK>",
        " dump_stack_lvl+0x5d/0x80",
        " bad_page+0x6e/0x100",
        " </TASK>",
    ]
    return [prefix + line for line in lines]


def main(out: Path = SOURCE) -> None:
    """Write every damaged file and the manifest into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    base = cut("fixtures/real/6.12.117-work.page_owner.txt.xz", 300)
    old = cut("fixtures/real/5.10.223-work.page_owner.txt.xz", 200)
    era319 = [b for b in blocks((ROOT / "fixtures/cases/era-3.19.txt").read_text())
              if b[0].startswith(HEADER)]  # fmt: skip
    n, pages = len(base), sum(map(pages_of, base))
    rows: list[tuple[str, str, int, int | str, int]] = []
    files: dict[str, str] = {}

    def add(name: str, damage: str, text: str, records: int, npages: int | str,
            rc: int = 0) -> None:  # fmt: skip
        files[name] = text
        rows.append((name, damage, records, npages, rc))

    add("clean-6.12.txt", "none (the cut itself)", join(base), n, pages)
    add("indent0.txt", "frames not indented", join(map_frames(base, str.lstrip)), n, pages)
    add("indent2.txt", "frames indented by 2 spaces",
        join(map_frames(base, lambda f: " " + f)), n, pages)  # fmt: skip
    add("indent-tab.txt", "frames indented by a tab",
        join(map_frames(base, lambda f: "\t" + f[1:])), n, pages)  # fmt: skip
    add("blank-spaces.txt", "separator lines holding spaces",
        join(base).replace("\n\n", "\n   \n"), n, pages)  # fmt: skip
    add("wrapped-72.txt", "headers and PFN lines wrapped at 72 columns (mail)",
        join([[w for line in rec for w in (wrap_at(line, 72) if not line.startswith(" ")
                                          else [line])] for rec in base]), n, pages)  # fmt: skip
    add("elided.txt", "stacks cut after 4 frames with '...' / '(...)' lines",
        join([rec[:6] + ["..." if i % 2 else "(...)"] for i, rec in enumerate(base)]),
        n, pages)  # fmt: skip
    add("mail-quoted.txt", "mail quoting '> '",
        "".join("> " + line + "\n" if line else ">\n" for line in join(base).split("\n")[:-1]),
        n, pages)  # fmt: skip
    add("mail-quoted-2.txt", "mail quoting '>> ' of a reply",
        "".join(">> " + line + "\n" for line in join(base).split("\n")[:-1]), n, pages)
    for name, prefix in (("kmsg-time.txt", "[  174.390000] "),
                         ("kmsg-thread.txt", "[  174.390000][ T9821] "),
                         ("kmsg-level.txt", "<4>"),
                         ("kmsg-mtk.txt", "(1)[123:kworker/1:2]")):  # fmt: skip
        add(name, f"kernel log prefix {prefix.strip()!r}",
            "".join(prefix + line + "\n" for line in join(base).split("\n")[:-1]), n, pages)
    add("quoted-printable.txt", "mail saved raw: quoted-printable (=3D, soft breaks)",
        quopri.encodestring(join(base).encode()).decode(), n, pages)  # fmt: skip
    add("patch-rst.txt", "a patch adding the dump to an rst document: + lines, tab-indented",
        "diff --git a/doc.rst b/doc.rst\n--- a/doc.rst\n+++ b/doc.rst\n"
        f"@@ -1,0 +1,{len(join(base).splitlines()) + 2} @@\n+Example::\n+\n"
        + "".join(f"+\t{line}\n" if line else "+\n" for line in join(base).split("\n")[:-1]),
        n, pages)  # fmt: skip
    add("vendor-lines.txt", "vendor lines between header and PFN line, and after the stack",
        join([[rec[0], "SLAB_PAGE" if i % 2 else "FILE_PAGE", *rec[1:], "vendor_tag: 7"]
              for i, rec in enumerate(base)]), n, pages)  # fmt: skip
    add("pointer-mask.txt", "a pointer printed instead of the %pGg names",
        join([[re.sub(r"mask (0x[0-9a-f]+)\([^()]*\)", r"mask \1(ffffff80085fb714)", rec[0]),
               *rec[1:]] for rec in base]), n, pages)  # fmt: skip
    add("no-pfn.txt", "PFN lines missing",
        join([[line for line in rec if not line.startswith("PFN ")] for rec in base]),
        n, pages)  # fmt: skip
    add("decimal-offsets.txt", "frames with decimal offsets and no size (sym+280)",
        join(map_frames(base, lambda f: re.sub(
            r"\+0x([0-9a-f]+)/0x[0-9a-f]+", lambda m: f"+{int(m[1], 16)}", f))), n, pages)
    add("ppc64-dots.txt", "ppc64 dot names (.sym+0x../0x..) and (null) frames",
        join([[*rec, " (null)"] for rec in map_frames(
            base, lambda f: " ." + f[1:] if "+0x" in f else f)]), n, pages)  # fmt: skip
    add("fields-missing.txt", "headers with pid only (no tgid/comm), or no ts",
        join([[re.sub(r", tgid \d+ \(.*\)", "", rec[0]) if i % 2
               else re.sub(r", ts \d+ ns", "", rec[0]), *rec[1:]]
              for i, rec in enumerate(base)]), n, pages)  # fmt: skip
    add("fields-added.txt", "headers with vendor fields added (cpu, free_ts)",
        join([[rec[0] + f", cpu {i % 4}, free_ts 0 ns", *rec[1:]]
              for i, rec in enumerate(base)]), n, pages)  # fmt: skip
    add("era-5.10.txt", "none: a 5.10 dump (no pid/ts) read as it is",
        join(old), len(old), sum(map(pages_of, old)))  # fmt: skip
    add("era-3.19-tabs.txt", "3.19 letter-flags dump, frames indented by a tab",
        join(map_frames(era319, lambda f: "\t" + f[1:])), len(era319),
        sum(map(pages_of, era319)))  # fmt: skip
    add("blog-6.19-continuation.txt", "real post: header split with ' \\' continuations",
        (SOURCE / "src/23-blog-mfo-6.19-page_owner-linecontinuation-x86_64.txt")
        .read_text(), 1, 1)  # fmt: skip

    # page_owner_sort reports (the real 6.12 tool's output, cut to its last groups).
    report = blocks(read_xz("fixtures/real/expected/6.12.117-work.default.txt.xz"))[-60:]
    times = [int(b[0].split()[0]) for b in report]
    rpages = [int(b[0].split()[2]) for b in report]
    add("report-6.12.txt", "page_owner_sort 6.12 report ('N times, M pages, allocated by X :')",
        join(report), sum(times), sum(rpages))  # fmt: skip
    add("report-old.txt", "page_owner_sort <5.16 report ('N times:')",
        join([[f"{t} times:", *b[1:]] for t, b in zip(times, report, strict=True)]),
        sum(times), sum(rpages))  # fmt: skip
    add("report-one-line.txt", "report with the count on the header line (pasted)",
        join([[f"{t} times: {b[1]}", *b[2:]] for t, b in zip(times, report, strict=True)]),
        sum(times), sum(rpages))  # fmt: skip
    cull = blocks(read_xz("fixtures/real/expected/6.12.117-work.cull_st.txt.xz"))[-40:]
    add("report-cull-st.txt", "page_owner_sort --cull=st report (stacks, no headers)",
        join(cull), sum(int(b[0].split()[0]) for b in cull),
        sum(int(b[0].split()[2]) for b in cull))  # fmt: skip

    # A kernel log with three pages dumped by __dump_page_owner().
    free_stack = [" free_unref_folios+0x3a1/0x6b0", " folios_put_refs+0x10f/0x1a0",
                  " free_pages_and_swap_cache+0xd1/0x120"]  # fmt: skip
    log: list[str] = ["[    0.000000] Linux version 6.12.0 (build@host) #1 SMP"]
    for i, rec in enumerate(base[100:103]):
        log += log_record(rec, free_stack, 170.5 + i)
    add("kernel-log.txt", "kernel log with __dump_page_owner() output of 3 pages",
        "\n".join(log) + "\n", 3, sum(map(pages_of, base[100:103])))  # fmt: skip

    # page_owner_stacks text as posted.
    stacks = blocks(read_xz("fixtures/real73/7.3-boot.show_stacks.txt.xz"))[:40]
    spages = sum(int(b[-1].split()[1]) for b in stacks)
    add("show_stacks-elided.txt", "show_stacks with '...' lines around and inside",
        "...\n\n" + join([[*b[:3], "...", b[-1]] for b in stacks]) + "...\n",
        len(stacks), spages)  # fmt: skip
    add("show_stacks-stack_count.txt", "show_stacks of the 6.9 series ('stack_count: N')",
        join([[*b[:-1], b[-1].replace("nr_base_pages", "stack_count")] for b in stacks]),
        len(stacks), spages)  # fmt: skip
    handles = blocks(read_xz("fixtures/real73/7.3-boot.show_handles.txt.xz"))[:40]
    add("show_handles-elided.txt", "show_handles with '...' lines",
        "...\n" + join(handles) + "...\n", len(handles),
        sum(int(b[-1].split()[1]) for b in handles))  # fmt: skip

    # Texts from which nothing can be read: every command fails, naming the file.
    add("empty.txt", "an empty file", "", 0, "-", 1)
    add("binary.bin", "binary bytes (an ELF-like file)",
        "\x7fELF\x02\x01\x01" + "".join(chr(i % 256) for i in range(0, 4000, 7)), 0, "-", 1)
    add("prose.txt", "a mail with no page_owner text",
        "Hi all,\n\nthe machine ran out of memory again.\n\nThanks\n", 0, "-", 1)

    for name, text in files.items():
        (out / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    with (out / "MANIFEST.tsv").open("w") as manifest:
        manifest.write("file\trecords\tpages\texit\tdamage\n")
        for name, damage, records, npages, rc in rows:
            manifest.write(f"{name}\t{records}\t{npages}\t{rc}\t{damage}\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE)
