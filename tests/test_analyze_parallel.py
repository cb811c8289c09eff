"""Analysis commands read a big dump file on two cores exactly as on one.

Each command line runs with --jobs 1 and --jobs 2 on dumps built from the real 6.12 work
dump (records shuffled differently in each half, so that groups are first seen in either
process); stdout, stderr (warnings and their line numbers) and the exit status must be the
same. The size threshold is lowered so that small files are split; one test keeps the
real threshold on a file above it.
"""

from __future__ import annotations

import lzma
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.dump import parallel
from tests.conftest import FIXTURES

WORK = FIXTURES / "real/6.12.117-work.page_owner.txt.xz"
# A block that is not a record: skipped with a warning, or an error with --strict.
BAD = b"Page allocated via order zero, mask 0x0\nthis is not a page_owner record\n"


def _records() -> list[bytes]:
    """Return the records of the real 6.12 work dump, each without its blank line."""
    data = lzma.decompress(WORK.read_bytes())
    return [block for block in data.split(b"\n\n") if block.strip()]


@pytest.fixture(scope="module")
def dumps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write the dumps the tests split: clean, damaged in both halves, damaged late, junk, mixed.

    The 6.12 work dump has no page in a pageblock of another migratetype; in `mixed` one
    record in ten has its block's type changed, so frag finds mixed blocks and culprits in
    both halves, and blocks whose first record in each half gives a different type.
    """
    records = _records()
    rng = random.Random(11)
    first = rng.sample(records, 1500)
    second = rng.sample(records, 1500)
    clean = first + second
    damaged = list(clean)
    damaged.insert(2250, BAD)  # in the second half, after the split
    damaged.insert(700, BAD)  # in the first half
    late = list(clean)
    late.insert(2600, BAD)
    types = [b"Unmovable", b"Movable", b"Reclaimable"]
    mixed = [
        re.sub(rb"(Block \d+ type )(\w+)",
               lambda m: m[1] + rng.choice([t for t in types if t != m[2]]), record)
        if rng.random() < 0.1 else record
        for record in clean
    ]  # fmt: skip
    folder = tmp_path_factory.mktemp("parallel")
    contents = {
        "clean": b"\n\n".join(clean) + b"\n\n",
        # Two bad blocks, and a last record cut off by the end of the file.
        "damaged": b"\n\n".join(damaged) + b"\n\n" + records[0][: len(records[0]) // 2],
        "late": b"\n\n".join(late) + b"\n\n",
        "junk": (BAD + b"\n") * 3000,
        "mixed": b"\n\n".join(mixed) + b"\n\n",
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / f"{name}.txt"
        paths[name].write_bytes(data)
    return paths


Run = Callable[[list[str]], tuple[int, str, str, int]]


def _count_forks(monkeypatch: pytest.MonkeyPatch) -> list[Callable[[], bytes]]:
    """Let the commands fork on this machine too; return the list each fork is added to."""
    monkeypatch.setattr(parallel, "parallel_available", lambda: True)
    forks: list[Callable[[], bytes]] = []
    start = parallel.ForkedCall.start

    def counting_start(work: Callable[[], bytes]) -> parallel.ForkedCall:
        forks.append(work)
        return start(work)

    monkeypatch.setattr(parallel.ForkedCall, "start", counting_start)
    return forks


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run a command line; return its status, stdout, stderr and the processes it forked."""
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    forks = _count_forks(monkeypatch)

    def invoke(args: list[str]) -> tuple[int, str, str, int]:
        forks.clear()
        result = CliRunner().invoke(cli, args)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr, len(forks)

    return invoke


def both_ways(run: Run, args: list[str], inputs: int = 1) -> tuple[int, str, str]:
    """Run with --jobs 1 and --jobs 2, check that both say the same, return that."""
    status1, out1, err1, forks1 = run([*args, "--jobs", "1"])
    status2, out2, err2, forks2 = run([*args, "--jobs", "2"])
    assert (forks1, forks2) == (0, inputs)
    assert err2 == err1
    assert out2 == out1
    assert status2 == status1
    return status1, out1, err1


BY_KEYS = ["stack", "caller", "pid", "tgid", "name", "module", "allocator", "gfp", "order",
           "zone", "node", "migratetype"]  # fmt: skip


@pytest.mark.parametrize("by", BY_KEYS)
def test_top_by_every_key_is_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, by: str
) -> None:
    # GIVEN a dump with a bad block in each half and a cut-off last record
    # WHEN top groups it by each key on one and on two cores
    status, out, err = both_ways(run, ["top", str(dumps["damaged"]), "--by", by,
                                        "--top", "0", "--format", "json"])  # fmt: skip
    # THEN the results and the warnings are the same, and the warnings name both bad blocks
    assert status == 0
    assert '"rank": 1,' in out
    assert err.count("(block skipped)") == 2
    assert "the dump ends" in err


@pytest.mark.parametrize("args", [
    ["--exact", "--times", "--full-stacks", "--threshold", "2", "--depth", "0"],
    ["--by", "name", "--format", "csv"],
    ["--by", "caller", "--top", "5", "--format", "text"],
])  # fmt: skip
def test_top_options_are_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, args: list[str]
) -> None:
    # GIVEN clean and damaged dumps WHEN top ranks them with several options
    for name in ("clean", "damaged"):
        status, out, _ = both_ways(run, ["top", str(dumps[name]), *args])
        # THEN one and two cores print the same
        assert status == 0
        assert out


def test_skipped_block_line_numbers_are_the_files(dumps: dict[str, Path], run: Run) -> None:
    # GIVEN the damaged dump WHEN read on two cores
    _, _, err = both_ways(run, ["top", str(dumps["damaged"])])
    # THEN each warning's line number is that of the bad block in the file
    text = dumps["damaged"].read_bytes()
    bad_lines = []
    at = text.find(BAD)
    while at >= 0:
        bad_lines.append(text.count(b"\n", 0, at) + 1)
        at = text.find(BAD, at + 1)
    assert [f"{dumps['damaged']}:{n}:" in err for n in bad_lines] == [True, True]


@pytest.mark.parametrize("name", ["damaged", "late"])
def test_strict_error_is_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, name: str
) -> None:
    # GIVEN a bad block in the first half (damaged) or only in the second (late)
    # WHEN top reads it with --strict
    status, _, err = both_ways(run, ["top", str(dumps[name]), "--strict"])
    # THEN both fail on the same line of the file
    text = dumps[name].read_bytes()
    lineno = text.count(b"\n", 0, text.find(BAD)) + 1
    assert status == 1
    assert f"{dumps[name]}:{lineno}:" in err


def test_unreadable_input_is_the_same_error(dumps: dict[str, Path], run: Run) -> None:
    # GIVEN a file of which no block is a record WHEN top reads it on one and two cores
    status, _, err = both_ways(run, ["top", str(dumps["junk"])])
    # THEN both fail saying that no block could be read
    assert status == 1
    assert "no other block could be read" in err


@pytest.mark.parametrize("args", [
    ["--format", "json"],
    ["--by", "caller", "--min-delta", "3", "--full-stacks"],
    ["--by", "allocator", "--format", "csv"],
])  # fmt: skip
def test_diff_is_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, args: list[str]
) -> None:
    # GIVEN two big dumps WHEN diff compares them on one and two cores (each input split)
    status, out, err = both_ways(
        run, ["diff", str(dumps["clean"]), str(dumps["damaged"]), *args], inputs=2
    )
    # THEN the results and warnings are the same
    assert status == 0
    assert err.count("(block skipped)") == 2


def test_diff_strict_error_in_a_later_half(dumps: dict[str, Path], run: Run) -> None:
    # GIVEN a bad block in the second half of AFTER WHEN diff --strict reads both inputs
    args = ["diff", str(dumps["clean"]), str(dumps["late"]), "--strict"]
    status, _, err = both_ways(run, args, inputs=2)
    # THEN both fail on that line
    text = dumps["late"].read_bytes()
    lineno = text.count(b"\n", 0, text.find(BAD)) + 1
    assert status == 1
    assert f"{dumps['late']}:{lineno}:" in err


def test_real_threshold_splits_a_big_file(
    plain_fixture: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the 18 MB real 6.12 dump, above the threshold users get
    path = plain_fixture("real/6.12.117-work.page_owner.txt.xz")
    assert path.stat().st_size >= parallel.MIN_PARALLEL_BYTES
    forks = _count_forks(monkeypatch)
    # WHEN top reads it with the default jobs and with one
    two = CliRunner().invoke(cli, ["top", str(path), "--by", "caller"])
    one = CliRunner().invoke(cli, ["top", str(path), "--by", "caller", "-j", "1"])
    # THEN the default forked once and printed what one process prints
    assert len(forks) == 1
    assert (two.exit_code, two.stdout, two.stderr) == (one.exit_code, one.stdout, one.stderr)


@pytest.mark.parametrize("fmt", ["text", "json", "csv"])
def test_stats_is_the_same_on_two_cores(dumps: dict[str, Path], run: Run, fmt: str) -> None:
    # GIVEN the damaged dump WHEN stats totals it on one and two cores
    status, out, err = both_ways(run, ["stats", str(dumps["damaged"]), "--format", fmt])
    # THEN the totals and warnings are the same
    assert status == 0
    assert "order" in out
    assert err.count("(block skipped)") == 2


@pytest.mark.parametrize("name", ["late", "junk"])
def test_stats_errors_are_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, name: str
) -> None:
    # GIVEN a bad block late in the file (--strict), or nothing readable at all
    # WHEN stats reads it on one and two cores
    status, _, err = both_ways(run, ["stats", str(dumps[name]), "--strict"])
    # THEN both fail the same way, naming the file
    assert status == 1
    assert str(dumps[name]) in err


@pytest.mark.parametrize("fmt", ["folded", "speedscope", "html"])
@pytest.mark.parametrize("weight", ["pages", "bytes", "times"])
def test_flame_is_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, fmt: str, weight: str
) -> None:
    # GIVEN the damaged dump WHEN flame draws it in each format and weight on one and two cores
    status, out, err = both_ways(run, ["flame", str(dumps["damaged"]), "--format", fmt,
                                        "--weight", weight])  # fmt: skip
    # THEN the graphs and the warnings are the same
    assert status == 0
    assert "__alloc_pages" in out
    assert err.count("(block skipped)") == 2
    assert "the dump ends" in err


@pytest.mark.parametrize("fmt", ["folded", "html"])
def test_flame_diff_is_the_same_on_two_cores(dumps: dict[str, Path], run: Run, fmt: str) -> None:
    # GIVEN two big dumps WHEN flame draws a differential graph (each input split)
    args = ["flame", str(dumps["damaged"]), "--diff", str(dumps["clean"]), "--format", fmt]
    status, out, err = both_ways(run, args, inputs=2)
    # THEN the graphs and the warnings are the same
    assert status == 0
    assert "__alloc_pages" in out
    assert err.count("(block skipped)") == 2


@pytest.mark.parametrize("name", ["damaged", "late"])
def test_flame_strict_error_is_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, name: str
) -> None:
    # GIVEN a bad block in the first half (damaged) or only in the second (late)
    # WHEN flame reads it with --strict, alone and as the AFTER of a differential graph
    text = dumps[name].read_bytes()
    lineno = text.count(b"\n", 0, text.find(BAD)) + 1
    for args, inputs in (([], 1), (["--diff", str(dumps["clean"])], 2)):
        status, _, err = both_ways(run, ["flame", str(dumps[name]), "--strict", *args],
                                   inputs=inputs)  # fmt: skip
        # THEN both fail on the same line of the file
        assert status == 1
        assert f"{dumps[name]}:{lineno}:" in err


def test_flame_unreadable_input_is_the_same_error(dumps: dict[str, Path], run: Run) -> None:
    # GIVEN a file of which no block is a record WHEN flame reads it on one and two cores
    status, _, err = both_ways(run, ["flame", str(dumps["junk"]), "--format", "folded"])
    # THEN both fail saying that no block could be read
    assert status == 1
    assert "no other block could be read" in err


@pytest.mark.parametrize("args", [
    ["--format", "text"],
    ["--format", "json", "--top", "0"],
    ["--format", "csv", "--exact", "--top", "0"],
    ["--format", "text", "--top", "3", "--depth", "0"],
])  # fmt: skip
def test_frag_is_the_same_on_two_cores(dumps: dict[str, Path], run: Run, args: list[str]) -> None:
    # GIVEN a dump with mixed pageblocks in both halves, and the damaged one
    # WHEN frag counts their mixed pageblocks on one and two cores
    for name in ("mixed", "damaged"):
        status, out, err = both_ways(run, ["frag", str(dumps[name]), *args])
        # THEN the zones, the culprits and the warnings are the same
        assert status == 0
        assert err.count("(block skipped)") == (2 if name == "damaged" else 0)
        if name == "mixed" and "csv" not in args:  # csv has the zone table only
            assert " in Movable" in out


def test_frag_mixed_dump_is_mixed_in_both_halves(dumps: dict[str, Path]) -> None:
    # GIVEN the mixed dump WHEN its halves are counted on their own
    text = dumps["mixed"].read_bytes()
    split = text.find(b"\n\n", len(text) // 2) + 2
    folder = dumps["mixed"].parent
    counts = []
    for name, part in (("first", text[:split]), ("second", text[split:])):
        path = folder / f"mixed-{name}.txt"
        path.write_bytes(part)
        result = CliRunner().invoke(cli, ["frag", str(path), "-j", "1"])
        found = re.search(r"(\d+) in a pageblock of another migratetype", result.stdout)
        assert found is not None
        counts.append(int(found[1]))
    # THEN each has well over a hundred mismatched records: the merge has work to do
    assert min(counts) > 100


@pytest.mark.parametrize("name", ["damaged", "late", "junk"])
def test_frag_errors_are_the_same_on_two_cores(
    dumps: dict[str, Path], run: Run, name: str
) -> None:
    # GIVEN a bad block in either half (--strict), or nothing readable at all
    # WHEN frag reads it on one and two cores
    status, _, err = both_ways(run, ["frag", str(dumps[name]), "--strict"])
    # THEN both fail the same way, naming the file
    assert status == 1
    assert str(dumps[name]) in err
