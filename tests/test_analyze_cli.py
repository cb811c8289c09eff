"""Command-line behaviour of the analysis commands: inputs, outputs, errors and exit codes."""

from __future__ import annotations

import io
import json
import lzma
import re
from pathlib import Path

import pytest

from pageowner.analyze.top import TopOptions, top_file
from pageowner.report.summaries import render_report, top_report
from tests.analyze_support import CASES, REAL, REAL_DUMPS, SHOW_STACKS, fixture
from tests.analyze_support import run as run_cli

MODERN = fixture("modern-6.12.txt")
STACKS = fixture(SHOW_STACKS[1])


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pageowner: ")
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["top", MODERN, "--by", "colour"],
        ["top", MODERN, "--top", "-1"],
        ["top", MODERN, "--format", "xml"],
        ["top", MODERN, "--page-size", "3K"],
        ["top", MODERN, "--page-size", "big"],
        ["diff", MODERN],
        ["diff", MODERN, MODERN, "--min-delta", "0"],
        ["diff", "-", "-"],
        ["flame", MODERN, "--format", "svg"],
        ["flame", MODERN, "--weight", "kilos"],
        ["flame", "-", "--diff", "-"],
        ["grep", "--pfn-range", "5-1", MODERN],
        ["grep", "--pfn-range", "0x10", MODERN],
        ["grep", "--ts-range", "2m-1m", MODERN],
        ["grep", "--ts-range", "10s", MODERN],
        ["grep", "--ts-range", "-", MODERN],
        ["grep", "--ts-range", "1h-soon", MODERN],
        ["grep", "--ts-range", "nan-", MODERN],
        ["grep", "-v", MODERN],
        ["grep", "-e", "(unclosed", MODERN],
        ["grep", "--gfp", "__GFP_BOGUS", MODERN],
        ["grep", "--migratetype", "Sticky", MODERN],
        ["grep", "--zone", "Highmem", MODERN],
        ["grep", "--allocator", "PERCPU", MODERN],
        ["grep", "--pid", "one", MODERN],
        ["stats", MODERN, "--bogus"],
        ["frag", MODERN, "--top", "x"],
    ],
    ids=lambda args: " ".join(args[:3]),
)
def test_bad_option_is_a_usage_error(args: list[str]) -> None:
    # WHEN an option value is wrong / THEN exit 2, with click's usage message
    result = run_cli(args, stdin=b"")
    assert result.exit_code == 2, result.stderr
    assert "Usage:" in result.stderr or "Error:" in result.stderr


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_garbage_input_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", "\n\nhello world\nsecond line\n")
    result = run_cli(["top", path])
    assert result.exit_code == 1
    assert _one_line_error(result.stderr) == (
        f"pageowner: {path}:3: neither a page_owner dump nor a show_stacks file: 'hello world'"
    )


def test_page_owner_sort_report_is_read_with_its_counts(tmp_path: Path) -> None:
    # docs/reader.md d: a report's group counts as its times (formerly refused).
    path = _write(tmp_path, "sorted.txt", "3 times, 3 pages, allocated by OTHERS :\n x+0x1/0x2\n\n")
    result = run_cli(["stats", path, "--format", "json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["records"] == 3
    assert f"{path}:1: page_owner_sort report read" in result.stderr
    strict = run_cli(["stats", path, "--strict"])
    assert strict.exit_code == 1
    assert f"{path}:1:" in _one_line_error(strict.stderr)


def test_malformed_stacks_block_fails_with_its_line_when_strict(tmp_path: Path) -> None:
    text = " a+0x1/0x2\nnr_base_pages: 4\n\n b+0x1/0x2\nnr_base_pages: lots\n\n"
    path = _write(tmp_path, "show_stacks", text)
    strict = run_cli(["top", path, "--strict"])
    assert strict.exit_code == 1
    assert _one_line_error(strict.stderr) == (
        f"pageowner: {path}:5: not a page_owner_stacks line: 'nr_base_pages: lots'"
    )
    # Lenient (the default): the bad block is skipped with a warning naming its line.
    lenient = run_cli(["top", path, "--format", "csv"])
    assert lenient.exit_code == 0
    assert f"{path}:5:" in lenient.stderr and "warning" in lenient.stderr
    assert lenient.stdout.splitlines()[1].startswith("1,4,16384,100.0,1,")


def test_junk_block_in_a_dump_is_skipped_with_a_warning(tmp_path: Path) -> None:
    good = (CASES / "modern-6.12.txt").read_text()
    path = _write(tmp_path, "dump.txt", good + "garbage line\nmore\n\n")
    result = run_cli(["top", path, "--format", "json"])
    assert result.exit_code == 0
    assert "not a page_owner record" in result.stderr
    assert '"total_times": 460' in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["top", STACKS, "--by", "pid"], "--by pid needs a page_owner dump"),
        (["top", STACKS, "--times"], "ranking by times needs a page_owner dump"),
        (["frag", STACKS], "frag needs a page_owner dump"),
        (["flame", STACKS, "--weight", "times"], "--weight times needs a page_owner dump"),
        (["grep", "--pid", "1", STACKS], "--pid need(s) a page_owner dump"),
    ],
)
def test_show_stacks_refuses_what_only_a_dump_has(args: list[str], message: str) -> None:
    result = run_cli(args)
    assert result.exit_code == 1
    assert _one_line_error(result.stderr).endswith(message)


def test_show_stacks_handles_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "show_stacks_handles", " a+0x1/0x2\nhandle: 42\n\n")
    result = run_cli(["top", path])
    assert result.exit_code == 1
    assert "a show_stacks_handles file has no" in _one_line_error(result.stderr)


def test_show_handles_is_read_with_its_handles_as_stacks(tmp_path: Path) -> None:
    # docs/reader.md d: each handle's pages are counted (formerly refused).
    path = _write(tmp_path, "show_handles", "handle: 42\nnr_base_pages: 7\n\n")
    result = run_cli(["top", path, "--format", "csv"])
    assert result.exit_code == 0, result.stderr
    assert "handle:42" in result.stdout and ",7," in result.stdout


def test_missing_input_is_a_runtime_error() -> None:
    result = run_cli(["stats", "no/such/dump"])
    assert result.exit_code == 1
    assert _one_line_error(result.stderr) == "pageowner: no/such/dump: No such file or directory"


def test_stdin_input_gives_the_same_report_as_the_file() -> None:
    dump = REAL / REAL_DUMPS[2]
    from_file = run_cli(["top", str(dump), "--format", "csv"])
    from_stdin = run_cli(["top", "-", "--format", "csv"], stdin=lzma.decompress(dump.read_bytes()))
    assert from_stdin.exit_code == 0
    assert from_stdin.stdout == from_file.stdout


def test_diff_reads_one_side_from_stdin() -> None:
    boot = REAL / SHOW_STACKS[0]
    result = run_cli(["diff", "-", STACKS, "--top", "1", "--format", "csv"],
                     stdin=lzma.decompress(boot.read_bytes()))  # fmt: skip
    assert result.exit_code == 0
    assert result.stdout.splitlines()[1].startswith("1,added,24968,")


def test_output_file_is_written_whole_and_stdout_stays_empty(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = run_cli(["stats", MODERN, "--format", "json", "-o", str(out)])
    assert result.exit_code == 0 and result.stdout == ""
    assert out.read_text().startswith("{\n")
    assert not [p for p in tmp_path.iterdir() if p.name != "report.json"]  # no temp file left


def test_output_over_an_input_is_refused(tmp_path: Path) -> None:
    dump = tmp_path / "dump.txt"
    dump.write_bytes((CASES / "modern-6.12.txt").read_bytes())
    before = dump.read_bytes()
    result = run_cli(["grep", "--pid", "1", str(dump), "-o", str(dump)])
    assert result.exit_code == 1
    assert "refusing to overwrite the input file" in _one_line_error(result.stderr)
    assert dump.read_bytes() == before


def test_fail_on_growth_exits_3_after_writing_the_report() -> None:
    boot = fixture(SHOW_STACKS[0])
    tripped = run_cli(["diff", boot, STACKS, "--top", "2", "--fail-on-growth", "20000"])
    assert tripped.exit_code == 3
    assert "changes by stack" in tripped.stdout
    assert _one_line_error(tripped.stderr).startswith(
        "pageowner: 1 group(s) grew by more than 20000 pages; the most: +24968 pages"
    )
    # Growth counts even when --min-delta hides the group from the report.
    hidden = run_cli(["diff", boot, STACKS, "--min-delta", "30000", "--fail-on-growth", "100"])
    assert hidden.exit_code == 3
    calm = run_cli(["diff", boot, STACKS, "--fail-on-growth", "25000"])
    assert calm.exit_code == 0


def test_grep_output_is_a_dump_that_sort_reads() -> None:
    grepped = run_cli(["grep", "--name", "dd", MODERN])
    assert grepped.exit_code == 0
    sorted_report = run_cli(["sort", "-", "-"], stdin=grepped.stdout.encode())
    direct = run_cli(["sort", "--name", "dd", MODERN, "-"])
    assert sorted_report.exit_code == direct.exit_code == 0
    assert sorted_report.stdout == direct.stdout != ""


def test_grep_on_show_stacks_keeps_whole_blocks() -> None:
    result = run_cli(["grep", "-e", "shmem_write_begin", STACKS])
    blocks = [b for b in result.stdout.split("\n\n") if b]
    assert blocks and all("shmem_write_begin" in b for b in blocks)
    assert all(b.splitlines()[-1].startswith("nr_base_pages: ") for b in blocks)
    again = run_cli(["top", "-", "--format", "csv"], stdin=result.stdout.encode())
    assert again.exit_code == 0


def test_rich_table_keeps_module_brackets() -> None:
    # GIVEN a report whose frames carry [module] (rich markup syntax)
    result = top_file(str(CASES / "modern-6.12.txt"), TopOptions(by="caller", top=0))
    out = io.StringIO()
    # WHEN drawn as a rich table for a terminal
    render_report(top_report(result, 4096), out, "text", terminal=True, width=160)
    # THEN the text survives escaping, and rich drew a box
    text = out.getvalue()
    assert "xfs_buf_alloc_backing_mem [xfs]" in text
    assert "━" in text or "─" in text


def test_help_of_every_analysis_command() -> None:
    for command in ("grep", "top", "diff", "stats", "frag", "flame"):
        result = run_cli([command, "--help"])
        assert result.exit_code == 0
        assert "Usage: " in result.stdout and "--output" in result.stdout


def test_a_dump_of_which_nothing_parses_is_an_error(tmp_path: Path) -> None:
    text = "Page allocated via order x, mask y\n stack+0x1/0x2\n\nPage allocated via order z\n\n"
    path = _write(tmp_path, "broken.txt", text)
    result = run_cli(["stats", path])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"pageowner: {path}:1: malformed page_owner header: 'Page allocated via order x, mask y'"
        " (and no other block could be read)"
    )


@pytest.mark.parametrize("command", [["top", "--by", "name"], ["stats"]])
def test_csv_rounds_percentages_as_json_does(command: list[str]) -> None:
    import csv
    import json

    path = fixture("6.12.117-work.page_owner.txt.xz")
    text = run_cli([command[0], path, *command[1:], "--format", "csv"]).stdout
    document = json.loads(run_cli([command[0], path, *command[1:], "--format", "json"]).stdout)
    csv_percents = [row["percent"] for row in csv.DictReader(io.StringIO(text))
                    if row.get("percent")]
    assert csv_percents
    assert all(re.fullmatch(r"\d+(\.\d{1,2})?", value) for value in csv_percents), csv_percents

    def json_percents(node: object) -> list[float]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "percent" and v is not None] + [
                p for v in node.values() for p in json_percents(v)]
        if isinstance(node, list):
            return [p for v in node for p in json_percents(v)]
        return []

    assert sorted(float(v) for v in csv_percents) == sorted(json_percents(document))
