"""`pageowner watch`: snapshots from show_handles, show_stacks or the dump, into the store."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.dump.dumpfile import format_frame, iter_records
from pageowner.dump.stacksfile import iter_stack_counts
from pageowner.errors import ParseError, SpecError, StateError
from pageowner.live.capture import RawFile, open_raw
from pageowner.live.clock import ManualClock
from pageowner.live.store import Store
from pageowner.live.watch import (
    SnapshotKind,
    choose_source,
    group_dump_by_stack,
    iter_stack_blocks,
    watch,
)
from pageowner.units import parse_duration
from tests.live_trees import (
    FakeMachine,
    ScriptedSeries,
    leak_and_noise,
    real_bytes,
    real_stacks,
    show_stacks_text,
)


def _stored_series(path: Path) -> list[dict[tuple[str, ...], int]]:
    """Read a store back as one {stack: pages} per snapshot."""
    with Store.open(str(path)) as store:
        snapshots = store.snapshots()
        stacks = store.stacks()
        per_snapshot: dict[int, dict[tuple[str, ...], int]] = {s.id: {} for s in snapshots}
        for snapshot_id, stack_id, pages in store.samples():
            per_snapshot[snapshot_id][stacks[stack_id].frames] = pages
    return [per_snapshot[s.id] for s in snapshots]


def _nonzero(counts: dict[tuple[str, ...], int]) -> dict[tuple[str, ...], int]:
    return {stack: pages for stack, pages in counts.items() if pages}


@pytest.mark.parametrize("mode", ["show_stacks", "show_handles", "page_owner"])
def test_watch_stores_each_snapshot_as_scripted(tmp_path: Path, mode: str) -> None:
    # GIVEN a machine whose counts change at every interval (a leak among noise)
    machine = FakeMachine(tmp_path / "host")
    series, _ = leak_and_noise(6, stacks=5 if mode == "page_owner" else 8)
    script = ScriptedSeries(machine, series, mode=mode)
    clock = script.clock()
    # WHEN watched for six snapshots a minute apart
    result = watch(str(tmp_path / "s.db"), host=machine.host, interval=60, count=6, clock=clock)
    # THEN the source is the cheapest one present, and the store holds exactly the script
    assert result.source == mode
    assert not result.interrupted
    assert _stored_series(tmp_path / "s.db") == [_nonzero(c) for c in series]
    with Store.open(str(tmp_path / "s.db")) as store:
        times = [s.taken_at for s in store.snapshots()]
        meta = store.meta()
    assert times == [1_800_000_000.0 + 60 * i for i in range(6)]
    assert meta["source"] == mode
    assert meta["kernel_release"] == "6.12.117"


def test_costs_are_the_bytes_read(tmp_path: Path) -> None:
    # GIVEN a show_stacks series
    machine = FakeMachine(tmp_path / "host")
    series, _ = leak_and_noise(3)
    script = ScriptedSeries(machine, series)
    costs = []
    # WHEN watched
    watch(str(tmp_path / "s.db"), host=machine.host, interval=10, count=3,
          clock=script.clock(), on_snapshot=costs.append)
    # THEN each snapshot's cost is the size of the show_stacks text it read
    assert [c.bytes_read for c in costs] == [len(show_stacks_text(c)) for c in series]
    assert [c.nr_base_pages for c in costs] == [sum(c.values()) for c in series]
    assert [c.index for c in costs] == [1, 2, 3]


def test_show_stacks_handles_is_read_again_only_for_new_handles(tmp_path: Path) -> None:
    # GIVEN a 6.19 machine where a new stack appears at the fourth snapshot
    machine = FakeMachine(tmp_path / "host")
    stacks = real_stacks()[:4]
    series = [{stacks[0]: 5 + i, stacks[1]: 7} for i in range(3)]
    series += [{stacks[0]: 9, stacks[1]: 7, stacks[2]: 1} for _ in range(3)]
    script = ScriptedSeries(machine, series, mode="show_handles")
    opened: Counter[str] = Counter()

    def counting_open(path: str) -> RawFile:
        opened[Path(path).name] += 1
        return open_raw(path)

    # WHEN watched over the six snapshots
    watch(str(tmp_path / "s.db"), host=machine.host, interval=1, count=6,
          clock=script.clock(), opener=counting_open)
    # THEN show_handles is read each time, the handle map once at start and once for the new one
    assert opened == {"show_handles": 6, "show_stacks_handles": 2}
    assert _stored_series(tmp_path / "s.db") == series
    with Store.open(str(tmp_path / "s.db")) as store:
        assert sorted(row.handle for row in store.stacks().values()) == [1000, 1008, 1016]


def test_dump_grouping_matches_the_parsed_records() -> None:
    # GIVEN the real 6.12 dump
    data = real_bytes("6.12.117-work.page_owner.txt.xz")
    expected: Counter[bytes] = Counter()
    for record in iter_records(data.splitlines(keepends=True)):
        stack = "\n".join(format_frame(f) for f in record.stack).encode()
        expected[stack] += record.nr_pages
    # WHEN grouped by stack from 64 KiB chunks, as a watch reads it
    chunks = [data[i:i + 65536] for i in range(0, len(data), 65536)]
    totals = group_dump_by_stack(chunks)
    # THEN every stack's pages are what the full parser says
    assert totals == dict(expected)
    assert sum(totals.values()) == sum(expected.values())


def test_ctrl_c_keeps_the_snapshots_taken(tmp_path: Path) -> None:
    # GIVEN a watch without --count, interrupted during its fourth wait
    machine = FakeMachine(tmp_path / "host")
    series, _ = leak_and_noise(10)
    script = ScriptedSeries(machine, series)
    clock = script.clock()
    hook = clock.on_sleep

    def interrupt_on_fourth(c: ManualClock) -> None:
        if c.sleeps == 4:
            raise KeyboardInterrupt
        assert hook is not None
        hook(c)

    clock.on_sleep = interrupt_on_fourth
    # WHEN it runs
    result = watch(str(tmp_path / "s.db"), host=machine.host, interval=5, clock=clock)
    # THEN it reports the interruption and the four snapshots are saved
    assert result.interrupted
    assert len(result.snapshots) == 4
    assert _stored_series(tmp_path / "s.db") == [_nonzero(c) for c in series[:4]]


def test_a_store_keeps_one_source(tmp_path: Path) -> None:
    # GIVEN a store of show_stacks snapshots
    machine = FakeMachine(tmp_path / "host")
    script = ScriptedSeries(machine, leak_and_noise(2)[0])
    watch(str(tmp_path / "s.db"), host=machine.host, count=1, clock=script.clock())
    # WHEN a watch reading the full dump is pointed at it
    with pytest.raises(StateError) as caught:
        watch(str(tmp_path / "s.db"), host=machine.host, count=1,
              source=SnapshotKind.PAGE_OWNER, clock=ManualClock())
    # THEN it refuses, saying how to go on
    assert str(caught.value) == (
        f"{tmp_path / 's.db'}: holds show_stacks snapshots, and this watch would read "
        "page_owner; their counts are not comparable (page_owner also counts early "
        "allocations): use another store, or --source show_stacks")


def test_choose_source_prefers_the_cheapest(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path / "host")
    machine.write("page_owner", b"")
    assert choose_source(machine.host) is SnapshotKind.PAGE_OWNER
    machine.write("page_owner_stacks/show_stacks", b"")
    assert choose_source(machine.host) is SnapshotKind.SHOW_STACKS
    machine.write("page_owner_stacks/show_handles", b"")
    assert choose_source(machine.host) is SnapshotKind.SHOW_STACKS  # no handle map: not usable
    machine.write("page_owner_stacks/show_stacks_handles", b"")
    assert choose_source(machine.host) is SnapshotKind.SHOW_HANDLES


@pytest.mark.parametrize(("text", "seconds"), [
    ("10s", 10.0), ("500ms", 0.5), ("2m", 120.0), ("1h", 3600.0), ("3", 3.0), ("0", 0.0),
    ("1.5min", 90.0),
])  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "fast", "10 parsecs", "-1s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SpecError):
        parse_duration(text)


def test_cli_watch_prints_the_cost_of_each_snapshot(tmp_path: Path) -> None:
    # GIVEN a show_stacks tree (the real 6.12 file)
    machine = FakeMachine(tmp_path / "host")
    data = real_bytes("6.12.117-work.show_stacks.txt.xz")
    machine.write("page_owner_stacks/show_stacks", data)
    # WHEN watched twice with no wait
    result = CliRunner().invoke(cli, ["watch", "--into", str(tmp_path / "s.db"), "--interval",
                                      "0", "--count", "2", "--debugfs", str(machine.debugfs)])
    # THEN each snapshot line gives stacks, pages, bytes and time; then the summary
    assert result.exit_code == 0, result.output
    entries = list(iter_stack_counts(data.splitlines(keepends=True)))
    pages = sum(entry.nr_base_pages or 0 for entry in entries)
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    for index, line in enumerate(lines[:2], start=1):
        assert line.startswith(f"snapshot {index}: {len(entries)} stacks, {pages:,} pages; "
                               f"read {len(data) / 1024:.1f} KiB from show_stacks in ")
    assert lines[2].startswith(f"2 snapshot(s) saved in {tmp_path / 's.db'}; mean cost "
                               f"{len(data) / 1024:.1f} KiB and ")


def test_cli_bad_interval_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["watch", "--into", str(tmp_path / "s.db"),
                                      "--interval", "soon"])
    assert result.exit_code == 2
    assert "Invalid value for '--interval'" in result.stderr


def test_fast_stack_blocks_match_the_full_parser() -> None:
    # GIVEN the real show_stacks file
    data = real_bytes("6.12.117-work.show_stacks.txt.xz")
    # WHEN read by the watch's block reader and by the full parser
    fast = list(iter_stack_blocks(data, "show_stacks"))
    full = list(iter_stack_counts(data.splitlines(keepends=True)))
    # THEN both find the same stacks and counts
    assert [(b.frames, b.nr_base_pages, b.handle) for b in fast] == [
        (tuple(format_frame(f) for f in e.stack), e.nr_base_pages, e.handle) for e in full
    ]


def test_fast_stack_blocks_report_a_bad_line() -> None:
    data = b" f+0x1/0x2\nnr_base_pages: 3\n\n g+0x1/0x2\nbogus line\n\n"
    with pytest.raises(ParseError) as caught:
        list(iter_stack_blocks(data, "show_stacks"))
    assert str(caught.value) == "show_stacks:5: not a page_owner_stacks line: 'bogus line'"


def test_sigint_stops_a_real_watch_cleanly(tmp_path: Path) -> None:
    # GIVEN a real `pageowner watch` process with no --count, on a show_stacks tree
    machine = FakeMachine(tmp_path / "host")
    machine.write("page_owner_stacks/show_stacks", real_bytes("6.12.117-work.show_stacks.txt.xz"))
    store = tmp_path / "s.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "pageowner", "watch", "--into", str(store), "--interval",
         "50ms", "--debugfs", str(machine.debugfs)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert process.stdout is not None
    # WHEN Ctrl-C (SIGINT) arrives after its third snapshot
    lines = [process.stdout.readline() for _ in range(3)]
    process.send_signal(signal.SIGINT)
    rest, errors = process.communicate(timeout=60)
    # THEN it exits 0 and says it was stopped; the count it gives is what the store holds
    # (the signal may land between storing a snapshot and printing its line)
    assert process.returncode == 0, errors
    announced = [line for line in lines + rest.splitlines() if line.startswith("snapshot ")]
    with Store.open(str(store)) as opened:
        stored = len(opened.snapshots())
    assert rest.splitlines()[-1].startswith(
        f"stopped by Ctrl-C; {stored} snapshot(s) saved in {store}")
    assert stored - 1 <= len(announced) <= stored
    assert len(announced) >= 3
