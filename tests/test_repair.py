"""The tolerance rules of docs/reader.md ("Text as people post it"), one hand-made test each.

Each test feeds a small text to the normaliser and compares its whole output with the
canonical dump a person would write by hand, then checks the warning it gives.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from pageowner.dump.dumpfile import DumpReader
from pageowner.dump.fileio import open_input
from pageowner.dump.repair import Tolerance, normalise_text, tolerate
from tests.analyze_support import run as run_cli

H612 = ("Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), "
        "ts 100 ns")  # fmt: skip
PFN = "PFN 0x114 type Unmovable Block 0 type Unmovable Flags 0x200(workingset|node=0|zone=0)"
F1, F2 = " post_alloc_hook+0x1a/0x20", " get_page_from_freelist+0x10/0x20"
CLEAN = f"{H612}\n{PFN}\n{F1}\n{F2}\n\n"


def fix(text: str, **kwargs: bool) -> tuple[str, list[str]]:
    """Normalise a text; return the output and the warnings."""
    out, normaliser = normalise_text(text.encode(), "t.txt", **kwargs)
    return out.decode(), normaliser.warnings()


def one(warnings: list[str], fragment: str) -> str:
    """Return the one warning that contains `fragment`."""
    found = [w for w in warnings if fragment in w]
    assert len(found) == 1, warnings
    return found[0]


def test_a_clean_dump_comes_out_unchanged_with_no_warning() -> None:
    assert fix(CLEAN) == (CLEAN, [])


# -- a. lines of unknown shape inside a record --------------------------------------------


def test_a_vendor_lines_stay_with_their_record_after_its_stack() -> None:
    text = f"{H612}\nSLAB_PAGE\n{PFN}\n{F1}\n{F2}\nvendor_tag: 7\n\n{H612}\nFILE_PAGE\n{F1}\n\n"
    out, warnings = fix(text)
    assert out == (f"{H612}\n{PFN}\n{F1}\n{F2}\nSLAB_PAGE\nvendor_tag: 7\n\n"
                   f"{H612}\n{F1}\nFILE_PAGE\n\n")  # fmt: skip
    assert one(warnings, "unknown shape kept").startswith("t.txt:2: ")
    assert "(2 times;" in one(warnings, "unknown shape kept")


# -- b. headers and frames of any shape ---------------------------------------------------


@pytest.mark.parametrize(("header", "canonical"), [
    # pid only (no tgid/comm): the 5.11-5.13 shape, kept as it is
    ("Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, ts 100 ns", None),
    # the pre-merge 5.18 series: pid N (comm)
    ("Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7 (bash), ts 100 ns",
     "Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid -1 (bash), ts 100 ns"),
    # no ts
    ("Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash)",
     "Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), ts 0 ns"),
    # a vendor field added
    ("Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), ts 100 ns, "
     "cpu 3", "Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), "
     "ts 100 ns"),
    # no mask at all
    ("Page allocated via order 2, pid 7, tgid 7 (a b), ts 1 ns",
     "Page allocated via order 2, mask 0x0(), pid 7, tgid 7 (a b), ts 1 ns"),
    # a pointer instead of the %pGg names
    ("Page allocated via order 0, mask 0x8(ffffff80085fb714)",
     "Page allocated via order 0, mask 0x8()"),
])  # fmt: skip
def test_b_headers_of_any_shape_become_a_kernels_shape(header: str, canonical: str | None) -> None:
    out, warnings = fix(f"{header}\n{F1}\n\n")
    assert out == f"{canonical or header}\n{F1}\n\n"
    assert bool(warnings) == (canonical is not None)
    # AND the typed reader reads the result, pages from the order
    record = next(iter(DumpReader(io.BytesIO(out.encode()), "t.txt", strict=True)))
    assert record.nr_pages == 1 << int(header.split()[4].rstrip(","))


def test_b_pointer_mask_is_named_in_its_own_warning() -> None:
    _, warnings = fix("Page allocated via order 0, mask 0x8(ffffff80085fb714), pid 1, ts 5 ns\n"
                      f"{F1}\n\n")  # fmt: skip
    assert one(warnings, "pointer printed instead").startswith("t.txt:1: ")


def test_b_frames_with_dots_decimal_offsets_null_and_old_addresses() -> None:
    text = (f"{H612}\n .alloc_pages_current+136\n kmalloc+280/512\n (null)\n"
            " [0xc000000000123456] .do_one+0x10/0x20\n [<ffffffff811682c4>] x+0x1/0x2\n\n")
    out, warnings = fix(text)
    assert out == (f"{H612}\n alloc_pages_current+0x88\n kmalloc+0x118/0x200\n (null)\n"
                   " do_one+0x10/0x20\n [<ffffffff811682c4>] x+0x1/0x2\n\n")  # fmt: skip
    assert "(3 times;" in one(warnings, "frame rewritten")


def test_b_a_missing_pfn_line_is_no_repair() -> None:
    text = f"{H612}\n{F1}\n\n"
    assert fix(text) == (text, [])


# -- c. damage from pasting ---------------------------------------------------------------


@pytest.mark.parametrize("indent", ["", "  ", "\t", "   \t"])
def test_c_frames_of_any_indent_get_one_space(indent: str) -> None:
    out, warnings = fix(f"{H612}\n{PFN}\n{indent}{F1[1:]}\n{indent}{F2[1:]}\n\n")
    assert out == CLEAN
    assert "(2 times;" in one(warnings, "re-indented")


def test_c_trailing_whitespace_is_removed(tmp_path: Path) -> None:
    text = f"{H612}  \n{PFN}\t\n{F1} \n{F2}\n\n"
    out, warnings = fix(text)
    assert out == CLEAN
    assert "(3 times;" in one(warnings, "trailing whitespace")
    # AND the sniff sends such a file to the normaliser (the typed reader would skip it)
    path = tmp_path / "dump.txt"
    path.write_text(text * 3)
    assert run_cli(["grep", "-c", str(path)]).stdout.strip() == "3"


def test_c_a_whitespace_only_line_separates_records() -> None:
    out, warnings = fix(f"{H612}\n{F1}\n  \t\n{H612}\n{F2}\n")
    assert out == f"{H612}\n{F1}\n\n{H612}\n{F2}\n\n"
    assert one(warnings, "whitespace-only").startswith("t.txt:3: ")


def test_c_wrapped_header_and_flags_are_joined() -> None:
    # a mail client wrapped the header at a space; a terminal cut the Flags field
    text = ("Page allocated via order 0, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7\n"
            "(bash), ts 100 ns\n"
            "PFN 0x114 type Unmovable Block 0 type Unmovable Flags 0x200(workingset|no\n"
            "de=0|zone=0)\n"
            f"{F1}\n{F2}\n\n")  # fmt: skip
    out, warnings = fix(text)
    assert out == CLEAN
    assert "(2 times;" in one(warnings, "wrapped header or PFN line joined")


def test_c_backslash_continuations_are_joined() -> None:
    # as in a blog post (fixtures/damaged/src/23-*): ` \` and an indented continuation
    text = ("Page allocated via order 0, \\\n  mask 0xcc0(GFP_KERNEL), \\\n"
            f"  pid 7, tgid 7 (bash), ts 100 ns\n{PFN}\n{F1}\n{F2}\n\n")
    assert fix(text)[0] == CLEAN


def test_c_count_on_the_header_line_is_a_report_group() -> None:
    out, _ = fix(f"3 times: {H612}\n{F1}\n\n")
    assert out == f"{H612}\n{F1}\n\n" * 3


@pytest.mark.parametrize("elision", ["...", "..", "(...)", "[...]", "\u2026"])
def test_c_elision_lines_are_dropped(elision: str) -> None:
    out, warnings = fix(f"{elision}\n{H612}\n{PFN}\n{F1}\n {elision}\n{F2}\n{elision}\n\n")
    assert out == CLEAN
    assert "(3 times;" in one(warnings, "elision")


@pytest.mark.parametrize("quote", ["> ", ">> ", "> > ", ">"])
def test_c_mail_quoting_is_removed(quote: str) -> None:
    text = "".join(f"{quote}{line}\n" for line in CLEAN.split("\n")[:-1])
    out, warnings = fix(text)
    assert out == CLEAN
    assert one(warnings, "mail quoting").startswith("t.txt:1: ")


@pytest.mark.parametrize("prefix", ["[  174.390000] ", "[  174.390000][ T9821] ", "<4>",
                                    "<4>[  174.390000] ", "(1)[123:kworker/1:2]",
                                    "Dec  6 00:00:01 host kernel: ",
                                    "[Sun Dec  6 00:00:01 2026] ",
                                    "kern  :warn  : [  174.390000] ",
                                    "2026-12-06T00:00:01.123456+00:00 host kernel: "])  # fmt: skip
def test_c_kernel_log_prefixes_are_removed(prefix: str) -> None:
    text = "".join(f"{prefix}{line}\n" for line in CLEAN.split("\n")[:-1])
    out, warnings = fix(text)
    assert out == CLEAN
    assert one(warnings, "kernel log prefixes").startswith("t.txt:1: ")


def test_c_records_without_blank_lines_between_them_are_split() -> None:
    out, warnings = fix(f"{H612}\n{F1}\n{H612}\n{F2}\n")
    assert out == f"{H612}\n{F1}\n\n{H612}\n{F2}\n\n"
    assert one(warnings, "without a blank line").startswith("t.txt:3: ")
    stacks, _ = fix(f"{F1}\nnr_base_pages: 4\n{F2}\nnr_base_pages: 5\n")
    assert stacks == f"{F1}\nnr_base_pages: 4\n\n{F2}\nnr_base_pages: 5\n\n"


def test_c_markup_fences_are_dropped() -> None:
    out, warnings = fix(f"```\n{H612}\n{F1}\n```\n<pre>\n{H612}\n{F2}\n</pre>\n")
    assert out == f"{H612}\n{F1}\n\n{H612}\n{F2}\n\n"
    assert "(4 times;" in one(warnings, "markup")


def test_c_html_entities_are_decoded() -> None:
    # a dump copied from a web page's source
    text = f"{H612}\n [&lt;ffffffff811682c4&gt;] x+0x1/0x2\n\n"
    out, warnings = fix(text)
    assert out == f"{H612}\n [<ffffffff811682c4>] x+0x1/0x2\n\n"
    assert one(warnings, "HTML entities")


def test_c_quoted_printable_is_decoded() -> None:
    text = CLEAN.replace("node=0|zone=0", "node=3D0|zone=3D0").replace(
        "Block 0 type", "Block 0 ty=\npe")
    out, warnings = fix(text)
    assert out == CLEAN
    assert one(warnings, "quoted-printable")


# -- d. texts that hold page_owner data but are not dumps --------------------------------


def test_d_reports_of_every_era_give_their_times_and_pages() -> None:
    # 6.12: times, pages and allocator; <5.16: times only; --cull=st: 3 times, 5 pages
    report = (f"2 times, 2 pages, allocated by OTHERS :\n{H612}\n{F1}\n\n"
              f"1 times:\n{H612}\n{F2}\n\n"
              f"3 times, 5 pages:\n{F1}\n{F2}\n\n")  # fmt: skip
    out, warnings = fix(report)
    blocks = out.split("\n\n")[:-1]
    assert blocks[:3] == [f"{H612}\n{F1}"] * 2 + [f"{H612}\n{F2}"]
    orders = [int(b.split()[4].rstrip(",")) for b in blocks[3:]]
    assert len(orders) == 3 and sum(1 << order for order in orders) == 5
    assert "(3 times;" in one(warnings, "page_owner_sort report")


def test_d_cull_lines_without_stacks_keep_pid_and_comm() -> None:
    out, _ = fix("2 times, 2 pages, PID 7, TGID 7, task_comm_name: bash\n")
    assert out == "Page allocated via order 0, mask 0x0(), pid 7, tgid 7 (bash), ts 0 ns\n\n" * 2


LOG = """\
[  170.500000] BUG: Bad page state in process bash  pfn:1000
[  170.500000] page_owner tracks the page as freed
[  170.500000] page last allocated via order 1, migratetype Unmovable, gfp_mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), ts 100, free_ts 0
[  170.500000]  post_alloc_hook+0x1a/0x20
[  170.500000]  my_driver_alloc+0x1a/0x20
[  170.500000] page last free pid 7 tgid 7 ts 200 stack trace:
[  170.500000]  free_unref_page+0x1/0x2
[  170.500000]  my_driver_free+0x1/0x2
[  170.500000] Call Trace:
[  170.500000]  dump_stack_lvl+0x5d/0x80
"""  # noqa: E501


@pytest.mark.parametrize("free", [False, True])
def test_d_dump_page_owner_in_a_kernel_log_gives_one_record(free: bool) -> None:
    out, warnings = fix(LOG, free=free)
    frames = (" free_unref_page+0x1/0x2\n my_driver_free+0x1/0x2" if free
              else " post_alloc_hook+0x1a/0x20\n my_driver_alloc+0x1a/0x20")  # fmt: skip
    assert out == ("Page allocated via order 1, mask 0xcc0(GFP_KERNEL), pid 7, tgid 7 (bash), "
                   f"ts 100 ns, free_ts 0 ns\n{frames}\n\n")  # fmt: skip
    assert one(warnings, "__dump_page_owner()").startswith("t.txt:3: ")
    # BUG:, Call Trace: and its frame; `page_owner tracks ...` is __dump_page_owner()'s own.
    assert "(3 times;" in one(warnings, "not page_owner data ignored")


def test_d_dump_page_context_and_migration_of_a_logged_page() -> None:
    # GIVEN dump_page()'s first line, __dump_page_owner()'s lines and its migration line
    # (lower case in the log), as `capture --vmcore --freed` writes them too
    text = ("page: refcount:0 mapcount:0 pfn:0x1000\n"
            "page_owner tracks the page as freed\n"
            "page last allocated via order 0, migratetype Movable, gfp_mask 0x0(), pid 1, "
            "tgid 1 (init), ts 5\n"
            " post_alloc_hook+0x1a/0x20\n"
            "page last free pid 2 tgid 2 ts 9 stack trace:\n"
            " free_unref_page+0x1/0x2\n"
            "page has been migrated, last migrate reason: compaction\n\n")
    out, warnings = fix(text)
    # THEN one record with the dump's migration line, and no line reported as ignored
    assert out == ("Page allocated via order 0, mask 0x0(), pid 1, tgid 1 (init), ts 5 ns\n"
                   " post_alloc_hook+0x1a/0x20\n"
                   "Page has been migrated, last migrate reason: compaction\n\n")
    assert not [w for w in warnings if "not page_owner data" in w]


SYZBOT = """\
page last allocated via order 0, migratetype Unmovable, gfp_mask 0x140dc0(GFP_USER|__GFP_COMP|__GFP_ZERO), pid 5109, tgid 5109 (syz-executor), ts 62766455400, free_ts 0
 set_page_owner include/linux/page_owner.h:32 [inline]
 post_alloc_hook+0x1f3/0x230 mm/page_alloc.c:1537
page last free pid 5108 tgid 5108 stack trace:
 free_unref_page+0x10/0x20 mm/page_alloc.c:2638

Memory state around the buggy address:
"""  # noqa: E501


def test_d_syzbot_symbolized_frames_keep_their_source_lines() -> None:
    out, warnings = fix(SYZBOT)
    # THEN the inlined set_page_owner is folded into the frame it is inlined in, as
    # `pageowner symbolize` writes it: the address's source, then the call site's
    assert out == ("Page allocated via order 0, mask 0x140dc0(GFP_USER|__GFP_COMP|__GFP_ZERO), "
                   "pid 5109, tgid 5109 (syz-executor), ts 62766455400 ns, free_ts 0 ns\n"
                   " post_alloc_hook+0x1f3/0x230 (include/linux/page_owner.h:32 "
                   "mm/page_alloc.c:1537)\n\n")  # fmt: skip
    record = next(iter(DumpReader(io.BytesIO(out.encode()), "t.txt", strict=True)))
    assert record.stack[0].symbol == "post_alloc_hook"
    assert record.stack[0].source == "include/linux/page_owner.h:32 mm/page_alloc.c:1537"
    assert one(warnings, "[inline] frames folded").startswith("t.txt:1: ")


def test_d_syzbot_inline_frames_name_the_stack_by_its_real_caller(tmp_path: Path) -> None:
    # GIVEN a syzbot report whose allocator and caller frames are partly inlined
    text = SYZBOT.replace(
        " post_alloc_hook+0x1f3/0x230 mm/page_alloc.c:1537\n",
        " post_alloc_hook+0x1f3/0x230 mm/page_alloc.c:1537\n"
        " prep_new_page mm/page_alloc.c:1544 [inline]\n"
        " get_page_from_freelist+0x3129/0x3280 mm/page_alloc.c:3311\n"
        " __alloc_pages+0x255/0x670 mm/page_alloc.c:4569\n"
        " process_one_work kernel/workqueue.c:2630 [inline]\n"
        " worker_thread+0x96f/0x11a0 kernel/workqueue.c:2784\n"
        " kthread+0x2fe/0x3b0 kernel/kthread.c:388\n"
        " ret_from_fork_asm mm/x.c:1 [inline]\n")
    path = tmp_path / "syzbot.txt"
    path.write_text(text)
    # WHEN top names its stack
    result = run_cli(["top", str(path), "--depth", "0"])
    # THEN the first caller outside the allocator is the real frame the inlined
    # process_one_work sits in, and a trailing inline line with no frame after it stays
    assert result.exit_code == 0, result.stderr
    assert "worker_thread < kthread < ret_from_fork_asm mm/x.c:1 [inline]" in result.stdout
    assert "(3 times;" in one(result.stderr.splitlines(), "[inline] frames folded")


def test_c_a_patch_is_read_as_the_text_its_hunks_make() -> None:
    # GIVEN a mail with a patch to page_owner.rst whose example changes: the old frame is a
    # - line, the new one a + line, the rest context; an rst literal block indents by a tab
    def block(prefix: str, line: str) -> str:
        return f"{prefix}\t{line}\n" if line else f"{prefix}\n"

    text = (f"Subject: [PATCH] docs: page_owner example\n\n{H612}\n\n"
            "diff --git a/Documentation/mm/page_owner.rst b/Documentation/mm/page_owner.rst\n"
            "--- a/Documentation/mm/page_owner.rst\n+++ b/Documentation/mm/page_owner.rst\n"
            "@@ -10,6 +10,6 @@ Usage\n"
            + block(" ", H612) + block(" ", PFN) + block("-", " old_frame+0x1/0x2")
            + block("+", F1) + block(" ", F2) + block("+", "")
            + "\\ No newline at end of file\n-- \n2.43.0\n")  # fmt: skip
    out, warnings = fix(text)
    # THEN the record reads as the patched document shows it, and the header in the mail
    # above the patch (no hunk) is read as it is
    assert out == f"{H612}\n\n{CLEAN}"
    # the hunk header, its six lines, `\\ No newline` and the `-- ` signature that follows
    assert "(9 times;" in one(warnings, "patch's hunks")
    assert one(warnings, "patch's hunks").startswith("t.txt:8: ")


def test_c_a_kernel_log_delimiter_is_no_quoted_printable_soft_break() -> None:
    # GIVEN KASAN's `=====` lines around __dump_page_owner() output
    delimiter = "=" * 66
    out, warnings = fix(f"{delimiter}\n{LOG}{delimiter}\n")
    # THEN they are lines outside page_owner data, not soft breaks joining the next line
    assert out == fix(LOG)[0]
    assert not [w for w in warnings if "quoted-printable" in w]


def test_d_show_stacks_with_elisions_and_the_old_trailer() -> None:
    text = f"...\n{F1}\n...\n{F2}\nstack_count: 4\n\n...\n"
    assert fix(text)[0] == f"{F1}\n{F2}\nstack_count: 4\n\n"


def test_d_show_handles_get_their_handle_as_stack() -> None:
    out, warnings = fix("...\nhandle: 42\nnr_base_pages: 7\n\n...\n")
    assert out == " handle:42\nnr_base_pages: 7\n\n"
    assert one(warnings, "show_handles")


def test_d_free_stacks_option_reaches_every_command(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    path.write_text(LOG)
    plain = run_cli(["top", str(path), "--format", "csv"])
    free = run_cli(["top", str(path), "--format", "csv", "--free"])
    assert plain.exit_code == free.exit_code == 0
    assert "my_driver_alloc" in plain.stdout and "my_driver_free" not in plain.stdout
    assert "my_driver_free" in free.stdout and "my_driver_alloc" not in free.stdout


# -- e. nothing to read; --strict; the clean path ----------------------------------------


@pytest.mark.parametrize("text", [b"", b"\x7fELF\x02\x01\x01\x00" * 20000, b"Hi all,\n"])
@pytest.mark.parametrize("command", ["grep", "stats", "sort"])
def test_e_a_text_with_nothing_in_it_is_an_error_naming_the_file(
    text: bytes, command: str, tmp_path: Path
) -> None:
    path = tmp_path / "nothing.txt"
    path.write_bytes(text)
    out = [str(tmp_path / "out.txt")] if command == "sort" else []
    result = run_cli([command, str(path), *out])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"pageowner: {path}")
    assert "Traceback" not in result.stderr


def test_e_sort_fails_on_a_text_with_nothing_in_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    result = run_cli(["sort", str(path), str(tmp_path / "out.txt")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"pageowner: {path}: empty input: no page_owner data"
    assert not (tmp_path / "out.txt").exists()


def test_strict_refuses_the_first_repair_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "quoted.txt"
    path.write_text("".join(f"> {line}\n" for line in CLEAN.split("\n")[:-1]))
    result = run_cli(["stats", str(path), "--strict"])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith(
        f"pageowner: {path}:1: mail quoting ('> ') removed (refused by --strict): '> Page")


def test_a_clean_dump_keeps_its_source_and_descriptor(tmp_path: Path) -> None:
    # the fast paths (two processes on one file) need the very same source back
    path = tmp_path / "dump.txt"
    path.write_bytes(CLEAN.encode() * 5000)  # past both sniffed ends
    with open_input(str(path)) as opened:
        source = tolerate(opened, Tolerance())
        assert source is opened and source.fd is not None
        assert os.lseek(source.fd, 0, os.SEEK_CUR) == 0


def test_damage_past_the_sniffed_ends_is_left_to_the_readers(tmp_path: Path) -> None:
    # documented limit: only the first and last 32 KiB are sniffed
    path = tmp_path / "dump.txt"
    middle = "".join(f"> {line}\n" for line in CLEAN.split("\n")[:-1])
    path.write_bytes((CLEAN * 1000 + middle + "\n" + CLEAN * 1000).encode())
    result = run_cli(["grep", "-c", str(path)])
    assert result.exit_code == 0
    assert int(result.stdout) == 2000
    assert "not a page_owner record" in result.stderr


def test_a_long_log_with_page_owner_data_only_in_its_middle(tmp_path: Path) -> None:
    # a `dmesg -t` of 200 KB (no prefixes to give it away) with one dumped page inside
    noise = "".join(f"usb 1-1: new device number {n} using xhci_hcd\n" for n in range(2500))
    path = tmp_path / "dmesg.txt"
    path.write_text(noise + SYZBOT + noise)
    result = run_cli(["grep", "-c", str(path)])
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) == 1


def test_d_a_big_report_group_is_expanded_as_it_is_read(tmp_path: Path) -> None:
    # a group stands for its records however many: written block by block, not held
    path = tmp_path / "report.txt"
    path.write_text(f"50000 times, 100000 pages:\n{H612.replace('order 0', 'order 1')}\n{F1}\n\n")
    result = run_cli(["sort", str(path), "-"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("50000 times, 100000 pages, allocated by OTHERS :\n")
