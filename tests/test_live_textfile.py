"""`watch --textfile`: a node_exporter textfile per snapshot, checked by the real promtool."""

from __future__ import annotations

import re
from pathlib import Path

from click.testing import CliRunner

from pageowner.analyze.top import TopOptions, top_file
from pageowner.cli import cli
from pageowner.live.clock import ManualClock
from pageowner.live.watch import watch
from tests.analyze_support import ROOT, fixture
from tests.live_trees import FakeMachine, ScriptedSeries, leak_and_noise, real_bytes
from tests.tools import promtool, run_tool

SHOW_STACKS = "6.12.117-work.show_stacks.txt.xz"


def _series(text: str, name: str) -> list[tuple[dict[str, str], str]]:
    """Return the (labels, value) of every sample of one metric in a textfile."""
    found = []
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if match:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(1) or ""))
            found.append((labels, match.group(2)))
    return found


def _watch_real(tmp_path: Path, *extra: str) -> str:
    machine = FakeMachine(tmp_path / "host")
    machine.write("page_owner_stacks/show_stacks", real_bytes(SHOW_STACKS))
    prom = tmp_path / "pageowner.prom"
    result = CliRunner().invoke(cli, ["watch", "--into", str(tmp_path / "s.db"), "--interval",
                                      "0", "--count", "2", "--debugfs", str(machine.debugfs),
                                      "--textfile", str(prom), *extra])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("pageowner")] == [prom.name]
    return prom.read_text()


def test_textfile_top_stacks_are_top_by_caller_of_the_same_file(tmp_path: Path) -> None:
    text = _watch_real(tmp_path, "--top", "3")
    top = top_file(str(ROOT / fixture(SHOW_STACKS)), TopOptions(top=3, jobs=1))
    assert _series(text, "pageowner_pages") == [({"source": "show_stacks"},
                                                  str(top.total_pages))]
    stacks = _series(text, "pageowner_stack_pages")
    assert [(labels["caller"], int(value)) for labels, value in stacks] == [
        (entry.caller, entry.pages) for entry in top.entries]
    # Bounded labels: the caller and a 12-digit id, never the stack.
    assert all(set(labels) == {"caller", "stack_id"} for labels, _ in stacks)
    assert all(re.fullmatch(r"[0-9a-f]{12}", labels["stack_id"]) for labels, _ in stacks)
    assert len({labels["stack_id"] for labels, _ in stacks}) == 3
    read_bytes = _series(text, "pageowner_snapshot_read_bytes")
    assert read_bytes == [({}, str(len(real_bytes(SHOW_STACKS))))]
    assert _series(text, "pageowner_snapshot_timestamp_seconds")
    assert _series(text, "pageowner_snapshot_read_seconds")


def test_promtool_accepts_the_textfile(tmp_path: Path) -> None:
    text = _watch_real(tmp_path)
    output = run_tool([promtool(), "check", "metrics"], tmp_path, stdin=text.encode())
    assert output.strip() == ""
    assert len(_series(text, "pageowner_stack_pages")) == 10


def test_each_snapshot_replaces_the_file(tmp_path: Path) -> None:
    machine = FakeMachine(tmp_path / "host")
    series, _ = leak_and_noise(4)
    script = ScriptedSeries(machine, series)
    seen: list[str] = []
    prom = tmp_path / "out.prom"
    clock: ManualClock = script.clock()
    watch(str(tmp_path / "s.db"), host=machine.host, interval=60, count=4, clock=clock,
          textfile=str(prom), textfile_top=0,
          on_snapshot=lambda cost: seen.append(prom.read_text()))
    assert len(seen) == 4
    for counts, text in zip(series, seen, strict=True):
        assert _series(text, "pageowner_pages")[0][1] == str(sum(counts.values()))
        stack_pages = sorted(int(v) for _, v in _series(text, "pageowner_stack_pages"))
        assert stack_pages == sorted(v for v in counts.values() if v)
    times = [float(_series(text, "pageowner_snapshot_timestamp_seconds")[0][1]) for text in seen]
    assert times == [1_800_000_000.0 + 60 * i for i in range(4)]
