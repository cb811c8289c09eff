"""Our side of each documented difference from page_owner_sort (docs/compat.md).

Each test is named after the row of docs/compat.md it proves.
"""

from __future__ import annotations

import lzma
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from tests.conftest import FIXTURES
from tests.sortcases import Case, load_cases
from tests.test_sort_golden import drop_last_record

# Rows with --cull as well are covered by test_1_sort_with_cull.
SORT_ROWS = [
    case
    for case in load_cases()
    if case.sort_ignored_by_tool and not any(a.startswith("--cull") for a in case.args)
]
PID = re.compile(rb"pid\s*([0-9]*),")
TGID = re.compile(rb"tgid\s*([0-9]*) ")
COMM = re.compile(rb"tgid\s*[0-9]*\s*\((.*)\),\s*ts")
TS = re.compile(rb"ts\s*([0-9]*)\s*ns")
ALLOCATORS = {b"CMA": 2, b"SLAB": 4, b"VMALLOC": 8, b"OTHERS": 16}


def run_sort(runner: CliRunner, args: list[str], source: Path, tmp_path: Path) -> bytes:
    """Run `pageowner sort` and return the report."""
    output = tmp_path / "out.txt"
    result = runner.invoke(cli, ["sort", *args, str(source), str(output)])
    assert result.exit_code == 0, result.output
    return output.read_bytes()


def split_groups(report: bytes) -> list[bytes]:
    """Split a default-format report into its group chunks."""
    return [chunk for chunk in re.split(rb"\n\n(?=\d+ times, )", report.rstrip(b"\n")) if chunk]


def visible_key(chunk: bytes, name: str) -> object | None:
    """Read one sort key's value back from a printed group, or None if it is not shown."""
    head, _, txt = chunk.partition(b"\n")
    if name == "times":
        return int(head.split(b" times")[0])
    if name == "pages":
        return int(head.split(b", ")[1].split(b" pages")[0])
    if name == "allocator":
        return sum(bit for label, bit in ALLOCATORS.items() if b" " + label + b" " in head + b" ")
    if name == "txt":
        return txt + b"\n"
    if name == "stacktrace":
        return txt.partition(b"\n")[2] + b"\n"
    patterns = {"pid": PID, "tgid": TGID, "name": COMM, "alloc_ts": TS}
    match = patterns[name].search(txt)
    if match is None:
        return None if name == "alloc_ts" else (-1 if name in ("pid", "tgid") else b"")
    value = match.group(1)
    if name == "alloc_ts":
        return int(value) if value else None  # digits cut out: not visible
    return value if name == "name" else int(value or b"-1")


def parse_sort_arg(case: Case) -> list[tuple[str, bool]]:
    """Return the (key, descending) terms of a case's --sort value."""
    from pageowner.sort.options import parse_sort_spec

    arg = next(a for a in case.args if a.startswith("--sort"))
    value = arg.split("=", 1)[1] if "=" in arg else case.args[case.args.index(arg) + 1]
    return [(key.name, key.descending) for key in parse_sort_spec(value)]


@pytest.mark.parametrize("case", SORT_ROWS, ids=lambda case: case.id)
def test_1_sort_is_honoured(
    case: Case, plain_fixture: Callable[[str], Path], tmp_path: Path, runner: CliRunner
) -> None:
    # GIVEN a reference row whose --sort the 6.12 tool ignored
    source = plain_fixture(case.input_path)
    terms = parse_sort_arg(case)
    golden = lzma.decompress((FIXTURES / case.expected_path).read_bytes())

    # WHEN pageowner sorts with it
    ours = split_groups(run_sort(runner, list(case.args), source, tmp_path))

    # THEN, unless timestamps stay in the text (first key `at`), the groups are the tool's
    if terms[0][0] != "alloc_ts":
        assert Counter(ours) == Counter(split_groups(golden))
    else:
        reference = next(
            c for c in load_cases() if c.input == case.input and c.args == ("-a",)
        )
        with_ts = split_groups(lzma.decompress((FIXTURES / reference.expected_path).read_bytes()))
        assert Counter(ours) == Counter(with_ts)
        if terms == [("alloc_ts", False)]:
            assert ours == with_ts  # --sort=at is -a
    # AND they come in the order the keys ask for, as far as the printed text shows them
    rows = []
    for chunk in ours:
        values = []
        for name, descending in terms:
            value = visible_key(chunk, name)
            if value is None:
                break
            values.append((value, descending))
        rows.append(values)
    for before, after in zip(rows, rows[1:], strict=False):
        for (a, descending), (b, _) in zip(before, after, strict=False):
            if a != b:
                assert (a > b) if descending else (a < b), (before, after)  # type: ignore[operator]
                break
    assert len(ours) > 1


def test_1_sort_with_cull(plain_fixture: Callable[[str], Path], tmp_path: Path,
                          runner: CliRunner) -> None:
    # GIVEN a dump culled by pid WHEN sorted by pid descending
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    lines = run_sort(runner, ["--sort=-p", "--cull=p"], source, tmp_path).splitlines()
    pids = [int(line.rsplit(b"PID ", 1)[1]) for line in lines]
    default = run_sort(runner, ["--cull=p"], source, tmp_path).splitlines()
    # THEN the same lines come out, by pid from high to low
    assert sorted(lines) == sorted(default)
    assert pids == sorted(pids, reverse=True) and len(set(pids)) == len(pids) > 5


def test_1_short_flag_wins_over_sort(plain_fixture: Callable[[str], Path], tmp_path: Path,
                                     runner: CliRunner) -> None:
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    assert run_sort(runner, ["-m", "--sort=n"], source, tmp_path) == lzma.decompress(
        (FIXTURES / "real/expected/6.1.192-boot.m.txt.xz").read_bytes()
    )


def test_2_last_record_is_kept(tmp_path: Path, runner: CliRunner) -> None:
    # GIVEN a dump whose last record has no closing blank line
    source = FIXTURES / "cases/no-final-blank-line.txt"
    text = source.read_bytes()
    assert not text.endswith(b"\n\n")
    # WHEN sorted
    output = tmp_path / "out.txt"
    result = runner.invoke(cli, ["sort", "--cull=st", str(source), str(output)])
    # THEN all 40 records count (the tool counts 39), with a warning naming the line
    assert result.exit_code == 0
    times = [int(m) for m in re.findall(rb"^(\d+) times", output.read_bytes(), re.M)]
    assert sum(times) == text.count(b"Page allocated via order") == 40
    last_stack = text[text.rfind(b"\n\n") :].split(b"\n", 4)[4]
    assert last_stack.rstrip(b"\n") in output.read_bytes()
    assert "no-final-blank-line.txt:448: the dump ends without the blank line" in result.stderr
    # AND without that record the output is the tool's
    trimmed = tmp_path / "trimmed.txt"
    trimmed.write_bytes(drop_last_record(text))
    golden = lzma.decompress((FIXTURES / "cases/expected/no-final-blank-line.cull_st.txt.xz").read_bytes())
    assert run_sort(runner, ["--cull=st"], trimmed, tmp_path) == golden


def test_3_stdin_and_stdout(plain_fixture: Callable[[str], Path], tmp_path: Path,
                            runner: CliRunner) -> None:
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    result = runner.invoke(cli, ["sort", "-m", "-", "-"], input=source.read_bytes())
    assert result.exit_code == 0
    assert result.stdout_bytes == lzma.decompress(
        (FIXTURES / "real/expected/6.1.192-boot.m.txt.xz").read_bytes()
    )


def test_3_compressed_input(tmp_path: Path, runner: CliRunner) -> None:
    # The fixture itself is .xz: it is read as the dump it holds.
    source = FIXTURES / "real/5.10.223-boot.page_owner.txt.xz"
    assert run_sort(runner, ["-s"], source, tmp_path) == lzma.decompress(
        (FIXTURES / "real/expected/5.10.223-boot.s.txt.xz").read_bytes()
    )


def test_4_crlf_reads_as_lf(plain_fixture: Callable[[str], Path], tmp_path: Path,
                            runner: CliRunner) -> None:
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(source.read_bytes().replace(b"\n", b"\r\n"))
    assert run_sort(runner, ["--cull=st"], crlf, tmp_path) == lzma.decompress(
        (FIXTURES / "real/expected/6.1.192-boot.cull_st.txt.xz").read_bytes()
    )


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["sort", "missing.txt", "out.txt"], 1, "pageowner: missing.txt: No such file or directory"),
        (["sort", "--sort=bogus", "IN", "out.txt"], 2, "Invalid value for '--sort': unknown sort key 'bogus'"),
        (["sort", "--cull=times", "IN", "out.txt"], 2, "Invalid value for '--cull': unknown cull key 'times'"),
        (["sort", "--pid=1,x", "IN", "out.txt"], 2, "Invalid value for '--pid': not a number: 'x'"),
        (["sort", "IN", "no/such/dir/out.txt"], 1, "cannot create output: No such file or directory"),
        (["sort", "IN", "IN"], 1, "refusing to overwrite the input file"),
        (["sort", "IN"], 2, "Missing argument 'OUTPUT'"),
    ],
)
def test_5_exit_codes(args: list[str], code: int, message: str, tmp_path: Path,
                      runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an input file in the working directory
    monkeypatch.chdir(tmp_path)
    (tmp_path / "IN").write_bytes((FIXTURES / "cases/era-5.14.txt").read_bytes())
    before = (tmp_path / "IN").read_bytes()
    # WHEN a command goes wrong THEN it exits with its code and one line naming the problem
    result = runner.invoke(cli, args)
    assert result.exit_code == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "IN").read_bytes() == before
    assert not (tmp_path / "out.txt").exists()


def test_6_progress_stays_off_stdout(plain_fixture: Callable[[str], Path],
                                     runner: CliRunner) -> None:
    source = plain_fixture("real/6.12.117-work.page_owner.txt.xz")
    result = runner.invoke(cli, ["sort", "--cull=p", str(source), "-"])
    assert result.exit_code == 0
    assert result.stderr == ""
    assert all(re.fullmatch(rb"\d+ times, \d+ pages, PID \d+", line)
               for line in result.stdout_bytes.splitlines())
    debug = runner.invoke(cli, ["sort", "-d", "--cull=p", str(source), "-"])
    assert "read 27574 records" in debug.stderr
    assert debug.stdout_bytes == result.stdout_bytes


def test_7_non_record_blocks(tmp_path: Path, runner: CliRunner) -> None:
    # GIVEN a dump with a block of garbage between two records
    records = (FIXTURES / "cases/era-5.14.txt").read_bytes().split(b"\n\n")
    source = tmp_path / "mixed.txt"
    source.write_bytes(records[0] + b"\n\nnot a record\nat all\n\n" + records[1] + b"\n\n")
    # WHEN sorted leniently THEN the garbage is skipped with a warning naming its line
    lenient = runner.invoke(cli, ["sort", "--cull=st", str(source), "-"])
    assert lenient.exit_code == 0
    line = records[0].count(b"\n") + 3
    assert f"mixed.txt:{line}: not a page_owner record, block skipped" in lenient.stderr
    assert sum(int(m) for m in re.findall(rb"^(\d+) times", lenient.stdout_bytes, re.M)) == 2
    # AND with --strict it is an error, exit 1, no output
    strict = runner.invoke(cli, ["sort", "--strict", str(source), str(tmp_path / "out.txt")])
    assert strict.exit_code == 1
    assert f"mixed.txt:{line}: not a page_owner record: 'not a record'" in strict.stderr
    assert not (tmp_path / "out.txt").exists()


def test_8_blank_line_runs(plain_fixture: Callable[[str], Path], tmp_path: Path,
                           runner: CliRunner) -> None:
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    spaced = tmp_path / "spaced.txt"
    spaced.write_bytes(b"\n\n" + source.read_bytes().replace(b"\n\n", b"\n\n\n\n"))
    assert run_sort(runner, [], spaced, tmp_path) == lzma.decompress(
        (FIXTURES / "real/expected/6.1.192-boot.default.txt.xz").read_bytes()
    )


def test_9_long_records_and_nul(tmp_path: Path, runner: CliRunner) -> None:
    # GIVEN a record with 20,000 frames (over 128 KiB) and one with a NUL in its comm
    frame = b" shmem_alloc_folio+0x97/0xb0\n"
    header = b"Page allocated via order 0, mask 0x0(), pid 1, tgid 1 (%s), ts 5 ns\n"
    pfn = b"PFN 0x1000 type Unmovable Block 8 type Unmovable Flags 0x0(node=0|zone=1)\n"
    source = tmp_path / "big.txt"
    source.write_bytes(
        header % b"big" + pfn + frame * 20000 + b"\n" + header % b"a\x00b" + pfn + frame + b"\n"
    )
    # WHEN sorted by name THEN both records are there, whole
    report = run_sort(runner, ["--cull=n"], source, tmp_path)
    assert report == b"1 times, 1 pages, task_comm_name: a\x00b\n1 times, 1 pages, task_comm_name: big\n"
    assert run_sort(runner, [], source, tmp_path).count(frame) == 20001


def test_10_two_sort_flags(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["sort", "-m", "-t", "in", "out"])
    assert result.exit_code == 2
    assert "choose one sort flag, not -m -t" in result.stderr


def test_11_numbers_are_exact(tmp_path: Path, runner: CliRunner) -> None:
    source = tmp_path / "wide.txt"
    source.write_bytes(
        b"Page allocated via order 40, mask 0x0(), pid 4294967297, tgid 7 (x), ts 1 ns\n"
        b" foo+0x1/0x2\n\n"
    )
    report = run_sort(runner, ["--cull=p"], source, tmp_path)
    assert report == b"1 times, 1099511627776 pages, PID 4294967297\n"


def test_13_a_30_digit_pid_is_out_of_range(tmp_path: Path, runner: CliRunner) -> None:
    # GIVEN a pid 30 digits long: the 6.12 tool copies it into a 25-byte buffer unchecked
    pid = b"123456789012345678901234567890"
    source = tmp_path / "long-pid.txt"
    source.write_bytes(
        b"Page allocated via order 0, mask 0x0(), pid %s, tgid 7 (x), ts 1 ns\n"
        b" foo+0x1/0x2\n\n" % pid
    )
    # WHEN culled by pid THEN it is out of range, -1, as the 7.3 tool reads it (no overflow)
    report = run_sort(runner, ["--cull=p"], source, tmp_path)
    assert report == b"1 times, 1 pages, PID -1\n"


def test_12_f_alone_sorts_by_times(plain_fixture: Callable[[str], Path], tmp_path: Path,
                                   runner: CliRunner) -> None:
    # GIVEN a dump with free_ts WHEN sorted with -f and no sort flag
    source = plain_fixture("real/6.1.192-boot.page_owner.txt.xz")
    report = run_sort(runner, ["-f"], source, tmp_path)
    # THEN the groups are the ones the 5.18-6.6 tool prints with -f (as in its -f -m run),
    # ranked by times as -f -t ranks them, not left in text order
    golden = lzma.decompress((FIXTURES / "real/expected/6.1.192-boot.f_m.txt.xz").read_bytes())
    assert sorted(split_groups(report)) == sorted(split_groups(golden))
    times = [int(m) for m in re.findall(rb"^(\d+) times", report, re.M)]
    assert times == sorted(times, reverse=True) and len(set(times)) > 3
    assert report == run_sort(runner, ["-f", "-t"], source, tmp_path)


def test_13_pre_5_18_dumps_are_sorted_as_6_12_does(
    plain_fixture: Callable[[str], Path], tmp_path: Path, runner: CliRunner
) -> None:
    # GIVEN the real 5.10 dump, on which page_owner_sort 7.3 prints "Out of memory",
    # writes nothing and exits 0 (kernel-7.3.md 5)
    source = plain_fixture("real/5.10.223-boot.page_owner.txt.xz")
    output = tmp_path / "sorted.txt"
    # WHEN pageowner sort reads it
    result = runner.invoke(cli, ["sort", str(source), str(output)])
    # THEN it writes the 6.12 tool's report, byte for byte
    expected = lzma.decompress((FIXTURES / "real/expected/5.10.223-boot.default.txt.xz").read_bytes())
    assert result.exit_code == 0 and "Out of memory" not in result.output
    assert output.read_bytes() == expected


def test_14_damaged_text_is_sorted_as_the_dump_it_came_from(
    plain_fixture: Callable[[str], Path], tmp_path: Path, runner: CliRunner
) -> None:
    # GIVEN a real dump, and the same dump mail-quoted with its frames indented by a tab
    clean = plain_fixture("real/6.12.117-work.page_owner.txt.xz").read_bytes()[:200_000]
    clean = clean[: clean.rindex(b"\n\n") + 2]
    damaged = tmp_path / "quoted.txt"
    damaged.write_bytes(b"".join(b"> " + (b"\t" + line[1:] if line.startswith(b" ") else line)
                                 for line in clean.splitlines(keepends=True)))  # fmt: skip
    (tmp_path / "clean.txt").write_bytes(clean)
    # WHEN both are sorted
    want = runner.invoke(cli, ["sort", str(tmp_path / "clean.txt"), "-"])
    got = runner.invoke(cli, ["sort", str(damaged), "-"])
    # THEN the reports are the same bytes, and the repairs are named once each
    assert want.exit_code == got.exit_code == 0
    assert got.stdout_bytes == want.stdout_bytes
    assert re.search(r"quoted.txt:1: mail quoting \('> '\) removed \(\d+ times", got.stderr)
    assert "quoted.txt:3: stack frames re-indented" in got.stderr
    # AND --strict refuses the first repair
    strict = runner.invoke(cli, ["sort", "--strict", str(damaged), "-"])
    assert strict.exit_code == 1
    assert "quoted.txt:1: mail quoting ('> ') removed (refused by --strict)" in strict.stderr


@pytest.mark.parametrize("content", [b"", b"\x7fELF\x02\x01\x01\x00\x00\x00", b"not a dump\n"])
def test_15_nothing_to_read_is_an_error(content: bytes, tmp_path: Path,
                                        runner: CliRunner) -> None:  # fmt: skip
    # GIVEN an input without a single record (the C tool writes an empty report, exit 0)
    source = tmp_path / "nothing.txt"
    source.write_bytes(content)
    # WHEN sorted THEN exit 1, one line naming the file, and no output file
    result = runner.invoke(cli, ["sort", str(source), str(tmp_path / "out.txt")])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"pageowner: {source}")
    assert not (tmp_path / "out.txt").exists()
