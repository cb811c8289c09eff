"""watch and trend against the simulator, end to end: the leak is named first, noise is no leak.

A small simulated machine (64 MiB) is watched through the trees `pageowner dump
--debugfs-tree/--proc-tree` lays out, on each version's cheapest source: show_handles
(6.19), show_stacks (6.12), the whole dump (6.1). Between snapshots a minute of work runs:
the leaking driver (`pageowner run leak`) amid page cache reads reclaimed as memory fills
and processes that fault memory in and exit, or that noise alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from pageowner.dump.dumpfile import decode
from pageowner.dump.era import detect_kernel, sniff_dump_format
from pageowner.errors import ThresholdExceeded
from pageowner.kernel.kernels import dump_format_for
from pageowner.live.host import parse_uptime
from pageowner.live.store import Store
from pageowner.live.trend import TrendOptions, analyze_store
from pageowner.live.watch import group_dump_by_stack
from tests.live_sim import LEAK_PAGES, START, Noise, SimLive, leak_with

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = 6

VERSIONS = [  # (kernel, the source watch picks on it)
    ("6.19", "show_handles"),
    ("6.12", "show_stacks"),
    ("6.1", "page_owner"),
]


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(("version", "source"), VERSIONS)
def test_trend_names_the_leak_first(tmp_path: Path, version: str, source: str) -> None:
    # GIVEN a simulated machine with page cache already in use
    sim = SimLive(tmp_path, version).boot()
    noise = Noise(seed=1)
    noise.warm_up(sim)
    # WHEN it is watched for six snapshots a minute apart, the driver leaking amid noise
    result = sim.watch_while(tmp_path / "s.db", SNAPSHOTS, leak_with(noise))
    # THEN watch read the version's cheapest source and recorded the simulated kernel
    assert result.source == source
    assert [s.taken_at for s in result.snapshots] == [START + 60 * i for i in range(SNAPSHOTS)]
    with Store.open(str(tmp_path / "s.db")) as store:
        meta = store.meta()
    assert (meta["kernel_release"], meta["source"]) == (sim.release, source)
    # AND trend ranks the leak first, the only steady growth
    report = analyze_store(str(tmp_path / "s.db"))
    leak = report.stacks[0]
    assert leak.label.startswith("leaky_refill+") and leak.label.endswith(" [leaky]")
    assert report.steady == (leak,)
    assert leak.series == tuple(LEAK_PAGES * i for i in range(SNAPSHOTS))
    # AND its rate is per minute of the machine's own (simulated) uptime, which each
    # snapshot took from the /proc/uptime laid out with it: the leak's 60 s an interval
    # plus the noise's page cache reads
    assert report.clock == "uptime"
    assert report.uptimes[-1] == parse_uptime((sim.proc / "uptime").read_text())
    uptime_minutes = [u / 60 for u in report.uptimes if u is not None]
    expected = statistics.linear_regression(uptime_minutes, leak.series).slope
    assert leak.slope == pytest.approx(expected)
    assert LEAK_PAGES * 0.98 < leak.slope < LEAK_PAGES
    assert leak.r2 == pytest.approx(1.0, abs=1e-3)
    # AND the noise was real: the page cache swung by thousands of pages meanwhile
    swings = [max(t.series) - min(t.series) for t in report.stacks[1:]]
    assert max(swings) > 2000
    # AND the leak's stack is the one the dump shows for the leaked pages
    dump = (sim.debugfs / "page_owner").read_bytes()
    leaked = {stack: pages for stack, pages in group_dump_by_stack([dump]).items()
              if b"leaky_refill" in stack}  # fmt: skip
    assert {tuple(decode(s).split("\n")): p for s, p in leaked.items()} == {
        leak.frames: LEAK_PAGES * (SNAPSHOTS - 1)
    }
    # AND --fail-on-slope trips under the leak's rate, not over it
    with pytest.raises(ThresholdExceeded, match="the first, leaky_refill"):
        analyze_store(str(tmp_path / "s.db"), TrendOptions(fail_on_slope=leak.slope - 1)).check()
    analyze_store(str(tmp_path / "s.db"), TrendOptions(fail_on_slope=leak.slope + 1)).check()


@pytest.mark.parametrize(("version", "source"), VERSIONS)
def test_noise_alone_is_no_leak(tmp_path: Path, version: str, source: str) -> None:
    # GIVEN the same machine and noise, without the leaking driver
    sim = SimLive(tmp_path, version).boot()
    noise = Noise(seed=1)
    noise.warm_up(sim)
    # WHEN watched for six snapshots
    result = sim.watch_while(tmp_path / "s.db", SNAPSHOTS, noise)
    assert result.source == source
    # THEN the page cache swung widely, yet no stack grows steadily
    report = analyze_store(str(tmp_path / "s.db"), TrendOptions(top=0))
    assert max(max(t.series) - min(t.series) for t in report.stacks) > 2000
    assert report.steady == ()
    # AND the CLI's --fail-on-slope does not trip, even at one page a minute
    code, out, err = _invoke("trend", str(tmp_path / "s.db"), "--fail-on-slope", "1")
    assert code == 0, err
    assert "no stack grows steadily" in out


def test_capture_takes_the_era_from_the_simulated_proc(tmp_path: Path) -> None:
    # GIVEN a simulated 6.12 machine's debugfs and /proc trees
    sim = SimLive(tmp_path, "6.12").boot()
    sim.run("leak", "--pages", "64")
    sim.lay_out()
    # WHEN captured with the CLI, as on a live machine
    out = tmp_path / "d.txt"
    code, _, err = _invoke("capture", "-o", str(out), "--page-owner-stacks", "--debugfs",
                           str(sim.debugfs), "--proc", str(sim.proc))  # fmt: skip
    assert code == 0, err
    # THEN the dump and stacks file are the simulated kernel's bytes, and the sidecar names
    # the simulated kernel, whose registry format is what the text shows
    assert out.read_bytes() == (sim.debugfs / "page_owner").read_bytes()
    stacks = tmp_path / "d.show_stacks.txt"
    assert stacks.read_bytes() == (sim.debugfs / "page_owner_stacks/show_stacks").read_bytes()
    era = detect_kernel(str(out))
    assert (era.source, era.version, era.release) == ("sidecar", "6.12", sim.release)
    assert era.fmt == dump_format_for("6.12") == sniff_dump_format(out.read_bytes()[:65536])
    assert f"kernel {sim.release}" in err
    # AND the host it names is the simulated one (never set by an init: "(none)"), not ours
    sidecar = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert sidecar["hostname"] == "(none)"


def test_a_machine_without_page_owner_is_diagnosed_as_such(tmp_path: Path) -> None:
    # GIVEN a simulated machine booted without page_owner=on (its debugfs has no page_owner)
    sim = SimLive(tmp_path, "6.12")
    code, _, err = _invoke("boot", "--kernel", "6.12", "--mem", "64M",
                           "--state", str(sim.state))  # fmt: skip
    assert code == 0, err
    sim.lay_out()
    # WHEN captured and watched
    for command in (["capture", "-o", str(tmp_path / "d.txt")],
                    ["watch", "--into", str(tmp_path / "s.db"), "--count", "1"]):  # fmt: skip
        code, _, err = _invoke(*command, "--debugfs", str(sim.debugfs), "--proc", str(sim.proc))
        # THEN each says page_owner is off, from the simulated cmdline and config, not that
        # debugfs is unmounted
        assert code == 1
        assert err == (
            f"pageowner: cannot read {sim.debugfs / 'page_owner'}: page_owner is not enabled "
            f"({sim.proc / 'cmdline'} lacks page_owner=on; {sim.proc / 'config.gz'} has "
            "CONFIG_PAGE_OWNER=y)\nhint: boot with page_owner=on on the kernel command line "
            "(for GRUB: add it to GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub, "
            "reboot)\n"
        )


def _readme_walkthrough() -> str:
    """Return the simulator walk-through: the first sh block after its marker."""
    text = (ROOT / "README.md").read_text()
    marker = text.index("<!-- walk-through: tests/test_live_sim.py runs this block -->")
    match = re.search(r"```sh\n(.*?)```", text[marker:], re.S)
    assert match is not None
    return match.group(1)


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    # GIVEN the README's walk-through, in a directory whose .venv/bin/pageowner is ours
    installed = Path(sys.executable).parent / "pageowner"
    if not installed.exists() or shutil.which("bash") is None:
        pytest.skip(f"needs bash and the pageowner script beside {sys.executable}")
    (tmp_path / ".venv/bin").mkdir(parents=True)
    (tmp_path / ".venv/bin/pageowner").symlink_to(installed)
    script = _readme_walkthrough()
    # WHEN bash runs it, every command checked
    env = {**os.environ, "TMPDIR": str(tmp_path), "COLUMNS": "100", "NO_COLOR": "1"}
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    # THEN it succeeds, the trend table ranks the leaking driver first as a steady growth,
    # and the HTML report is written
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.match(r"\d+  [● ]  ", line)]
    assert rows and re.match(r"1  ●  .*leaky_refill\+0x[0-9a-f]+/0x[0-9a-f]+ \[leaky\]",
                             rows[0]), done.stdout  # fmt: skip
    assert sum("●" in row for row in rows) == 1
    # (under the walk-through's own temporary folder: nothing is left in the checkout)
    [home] = tmp_path.glob("tmp.*")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".venv", home.name]
    assert (home / "trend.html").read_text().startswith("<!DOCTYPE html>")
    # AND --fail-on-slope tripped on the leak (exit 3), after writing the JSON report
    assert done.stdout.splitlines()[-1] == "exit 3"
    report = json.loads((home / "trend.json").read_text())
    assert report["stacks"][0]["label"].startswith("leaky_refill+")
    assert report["stacks"][0]["series"] == [256 * i for i in range(5)]
    # AND on the simulated clock every run gives the leak's row the README shows
    assert report["clock"] == "uptime"
    assert rows[0] in (ROOT / "README.md").read_text()
    assert report["meta"]["kernel_release"] == "6.19.0-pageowner-sim"
