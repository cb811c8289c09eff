"""Joining 7.3 handle-mode records to their stacks (`--stacks-from`), on the real 7.3 files.

The oracle is the stack-mode dump of the same boot: the handle-mode dump joined to the
stack_handle dump must give its top, stats and flame graph, up to the pages that changed
between the reads, which are counted here from the PFNs of the two dumps (not from our
join). Joined to show_stacks_handles, the same except the handles that file lacks, which
are counted from the files' text.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.dump import parallel
from pageowner.dump.handles import unsigned_handle

Fixture = Callable[[str], Path]
_RECORD_RE = re.compile(
    r"^Page allocated via order (\d+),.*\nPFN (0x[0-9a-f]+) [^\n]*\n((?: [^\n]*\n)*)", re.M
)


def real(plain_fixture: Fixture, name: str) -> str:
    """Return the path of an uncompressed real 7.3 boot file."""
    return str(plain_fixture(f"real73/7.3-boot.{name}.txt.xz"))


def run_json(runner: CliRunner, *args: str) -> tuple[dict, str]:  # type: ignore[type-arg]
    """Run a command with --format json; return its report and its stderr."""
    result = runner.invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def pages_by_stack(report: dict) -> Counter[tuple[str, ...]]:  # type: ignore[type-arg]
    """Sum a top report's pages per full stack of function names."""
    pages: Counter[tuple[str, ...]] = Counter()
    for entry in report["entries"]:
        pages[tuple(entry["stack"]) or (entry["key"],)] += entry["pages"]
    return pages


def changed_pages(stack_dump: str, handle_dump: str, stack_handle_dump: str) -> int:
    """Count the pages whose record differs between two reads, by PFN, from the text alone.

    A record is (order, stack); the handle dump's stacks come from the stack_handle dump's
    text for the same handle. A PFN present in one dump only counts too.
    """
    frames_of: dict[str, str] = {}
    text = Path(stack_handle_dump).read_text()
    for match in re.finditer(r"^((?: [^\n]*\n)+)handle: (\d+)$", text, re.M):
        frames_of.setdefault(match[2], re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", match[1]))

    before = {}
    for match in _RECORD_RE.finditer(Path(stack_dump).read_text()):
        before[match[2]] = (int(match[1]), re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "", match[3]))
    after = {}
    for match in re.finditer(r"^Page allocated via order (\d+),.*\nPFN (0x[0-9a-f]+) [^\n]*\n"
                             r"handle: (\d+)\n", Path(handle_dump).read_text(), re.M):
        after[match[2]] = (int(match[1]), frames_of[match[3]])
    changed = [pfn for pfn in before.keys() | after.keys() if before.get(pfn) != after.get(pfn)]
    return sum(1 << side[pfn][0] for pfn in changed for side in (before, after) if pfn in side)


def test_join_to_stack_handle_dump_gives_the_stack_dump_top(
    plain_fixture: Fixture, runner: CliRunner
) -> None:
    # GIVEN the stack, handle and stack_handle dumps of one boot
    stack, handle, both = (real(plain_fixture, n) for n in
                           ("page_owner", "page_owner.handle", "page_owner.stack_handle"))
    # WHEN top ranks the stack dump, and the handle dump joined to the stack_handle dump
    expected, _ = run_json(runner, "top", stack, "--top", "0")
    joined, warnings = run_json(runner, "top", handle, "--top", "0", "--stacks-from", both)
    # THEN every handle resolves, and the groups differ by no more than the pages that
    # changed between the reads (559 pages of 527 PFNs on this boot)
    assert warnings == "" and "handle_note" not in joined
    changed = changed_pages(stack, handle, both)
    assert 0 < changed < 600
    before, after = pages_by_stack(expected), pages_by_stack(joined)
    assert sum(abs(before[k] - after[k]) for k in before.keys() | after.keys()) <= changed
    assert expected["entries"][0]["stack"] == joined["entries"][0]["stack"]
    assert abs(expected["total_pages"] - joined["total_pages"]) <= changed


def test_join_gives_the_stack_dump_stats_and_flame(
    plain_fixture: Fixture, runner: CliRunner, tmp_path: Path
) -> None:
    stack, handle, both = (real(plain_fixture, n) for n in
                           ("page_owner", "page_owner.handle", "page_owner.stack_handle"))
    changed = changed_pages(stack, handle, both)
    # WHEN stats reads both ways THEN every breakdown agrees up to the changed pages
    expected, _ = run_json(runner, "stats", stack)
    joined, _ = run_json(runner, "stats", handle, "--stacks-from", both)
    assert expected["sections"].keys() == joined["sections"].keys()
    for name, rows in expected["sections"].items():
        theirs = {row["key"]: row["pages"] for row in joined["sections"][name]}
        ours = {row["key"]: row["pages"] for row in rows}
        assert sum(abs(ours.get(k, 0) - theirs.get(k, 0)) for k in ours.keys() | theirs.keys()) \
            <= changed, name
    # AND the folded flame graphs agree the same way
    folded = []
    for args in ([stack], [handle, "--stacks-from", both]):
        out = tmp_path / "f.txt"
        result = runner.invoke(cli, ["flame", *args, "--format", "folded", "-o", str(out)])
        assert result.exit_code == 0, result.output
        weights = Counter({line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
                           for line in out.read_text().splitlines()})
        folded.append(weights)
    assert sum(abs(folded[0][k] - folded[1][k]) for k in folded[0].keys() | folded[1].keys()) \
        <= changed
    assert not any(key.startswith("handle ") for key in folded[1])


def test_join_to_show_stacks_handles_leaves_the_unlisted_handles(
    plain_fixture: Fixture, runner: CliRunner
) -> None:
    # GIVEN the handle dump and show_stacks_handles of the same boot
    handle, both = real(plain_fixture, "page_owner.handle"), real(plain_fixture,
                                                                  "page_owner.stack_handle")
    shows = real(plain_fixture, "show_stacks_handles")
    listed = {unsigned_handle(int(h)) for h in
              re.findall(r"^handle: (-?\d+)$", Path(shows).read_text(), re.M)}
    dumped = Counter(int(h) for h in
                     re.findall(r"^handle: (\d+)$", Path(handle).read_text(), re.M))
    missing = {h: n for h, n in dumped.items() if h not in listed}
    # WHEN top joins it both ways
    by_list, warnings = run_json(runner, "top", handle, "--top", "0", "--stacks-from", shows)
    by_dump, _ = run_json(runner, "top", handle, "--top", "0", "--stacks-from", both)
    # THEN one warning counts the unlisted handles' records (160 handles, 5390 records)
    assert len(missing) == 160 and sum(missing.values()) == 5390
    assert warnings.count("warning") == 1
    assert f"{sum(missing.values())} records of {len(missing)} handles not in" in warnings
    # AND they are groups `handle N`; everything else is as joined to the stack_handle dump
    listed_groups = pages_by_stack(by_list)
    handle_groups = {k: v for k, v in listed_groups.items() if k[0].startswith("handle ")}
    assert {int(k[0].split()[1]) for k in handle_groups} == set(missing)
    assert sum(handle_groups.values()) == sum(
        1 << int(m[1]) for m in re.finditer(
            r"^Page allocated via order (\d+),.*\n.*\nhandle: (\d+)$",
            Path(handle).read_text(), re.M) if int(m[2]) in missing)
    resolved = {k: v for k, v in listed_groups.items() if k not in handle_groups}
    full = pages_by_stack(by_dump)
    assert all(full[k] >= v for k, v in resolved.items())
    assert by_list["total_pages"] == by_dump["total_pages"]


def test_without_stacks_records_group_by_handle_and_say_so(
    plain_fixture: Fixture, runner: CliRunner
) -> None:
    handle = real(plain_fixture, "page_owner.handle")
    report, warnings = run_json(runner, "top", handle, "--top", "3")
    assert [e["caller"] for e in report["entries"]][0] == "handle 1048577"
    assert "8739 handle-only records (mode=handle, 451 handles) have no frames" in warnings
    assert "--stacks-from" in warnings
    # AND the report itself says so, in its JSON and after the text table
    assert warnings.endswith(report["handle_note"] + "\n")
    text = runner.invoke(cli, ["top", handle, "--top", "3"]).stdout
    assert text.endswith(f"note: {report['handle_note']}\n")


def test_show_handles_sign_is_read_unsigned(tmp_path: Path, runner: CliRunner) -> None:
    # GIVEN a dump handle above 2^31 (%u) and show_stacks_handles printing it with %d
    dump = tmp_path / "d.txt"
    dump.write_text(
        "Page allocated via order 1, mask 0x0(), pid 1, tgid 1 (init), ts 5 ns\n"
        "PFN 0x1000 type Unmovable Block 8 type Unmovable Flags 0x0(node=0|zone=1)\n"
        "handle: 4294967295\n\n")
    shows = tmp_path / "s.txt"
    shows.write_text(" alloc_pages+0x1/0x10\n my_driver_probe+0x2/0x20 [mydrv]\nhandle: -1\n\n")
    # WHEN joined THEN the handle resolves to the frames
    report, warnings = run_json(runner, "top", str(dump), "--stacks-from", str(shows))
    assert warnings == ""
    assert report["entries"][0]["stack"] == ["alloc_pages", "my_driver_probe [mydrv]"]


def test_grep_stack_filter_sees_joined_frames(plain_fixture: Fixture, runner: CliRunner,
                                              tmp_path: Path) -> None:
    handle, both = real(plain_fixture, "page_owner.handle"), real(plain_fixture,
                                                                  "page_owner.stack_handle")
    out = tmp_path / "g.txt"
    # WHEN grep -e selects a function of the early stack in the handle dump
    result = runner.invoke(cli, ["grep", handle, "-e", "register_early_stack",
                                 "--stacks-from", both, "-o", str(out)])
    assert result.exit_code == 0, result.output
    # THEN it prints those records as read: handle only, all of the early handle
    text = out.read_text()
    assert text.count("Page allocated") == text.count("handle: 1048577\n") == 4700


def test_a_bad_stacks_file_is_one_line(plain_fixture: Fixture, runner: CliRunner) -> None:
    handle = real(plain_fixture, "page_owner.handle")
    for other in ("show_stacks", "page_owner"):
        result = runner.invoke(cli, ["top", handle, "--stacks-from", real(plain_fixture, other)])
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and "--stacks-from needs" in result.stderr


def test_two_processes_count_as_one(plain_fixture: Fixture, runner: CliRunner,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a handle dump read in two parts (the second in a forked child)
    handle, shows = real(plain_fixture, "page_owner.handle"), real(plain_fixture,
                                                                   "show_stacks_handles")
    one, warn_one = run_json(runner, "top", handle, "-j", "1", "--stacks-from", shows)
    monkeypatch.setattr(parallel, "MIN_PARALLEL_BYTES", 0)
    two, warn_two = run_json(runner, "top", handle, "-j", "2", "--stacks-from", shows)
    # THEN the report and the one warning are those of one process
    assert one == two and warn_one == warn_two and warn_one.count("warning") == 1


def test_diff_and_frag_take_stacks_from(plain_fixture: Fixture, runner: CliRunner) -> None:
    stack, handle, both = (real(plain_fixture, n) for n in
                           ("page_owner", "page_owner.handle", "page_owner.stack_handle"))
    changed = changed_pages(stack, handle, both)
    # WHEN diff compares the stack dump with the joined handle dump of the same boot
    report, warnings = run_json(runner, "diff", stack, handle, "--stacks-from", both)
    # THEN 410 of 414 stacks are unchanged and what changed is within the pages that did
    assert warnings == "" and report["unchanged"] >= 400
    assert sum(abs(e["delta_pages"]) for e in report["entries"]) <= changed
    # AND frag reads it as it reads the stack dump (this boot has no mixed pageblock, so
    # both list no culprit stack)
    ours, warnings = run_json(runner, "frag", handle, "--stacks-from", both)
    theirs, _ = run_json(runner, "frag", stack)
    assert warnings == "" and ours["records"] == Path(handle).read_text().count("Page allocated")
    assert [z["mixed"] for z in ours["zones"]] == [z["mixed"] for z in theirs["zones"]]
    assert ours["culprits"] == theirs["culprits"]
