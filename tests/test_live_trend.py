"""`pageowner trend`: a steady leak ranks first, noise gives no false leak, CI can fail on it."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from pageowner.cli import cli
from pageowner.errors import ThresholdExceeded
from pageowner.live.trend import (
    TrendOptions,
    analyze_series,
    analyze_store,
    fit_line,
    label_stack,
    rising_share,
)
from pageowner.live.watch import watch
from pageowner.report.trend import sparkline
from tests.live_trees import FakeMachine, ScriptedSeries, leak_and_noise, noise_only, noise_series

GOLDEN = Path(__file__).resolve().parent / "golden" / "live"
UPDATE = os.environ.get("PAGEOWNER_UPDATE_GOLDEN") == "1"


def _watched(tmp_path: Path, series: list, mode: str = "show_stacks",  # type: ignore[type-arg]
             interval: float = 60.0) -> str:
    """Watch a scripted series into tmp_path/s.db; return the store path."""
    machine = FakeMachine(tmp_path / "host")
    script = ScriptedSeries(machine, series, mode=mode)
    store = str(tmp_path / "s.db")
    watch(store, host=machine.host, interval=interval, count=len(series), clock=script.clock())
    return store


def _check_golden(name: str, text: str, tmp_path: Path) -> None:
    """Compare text with a golden file (PAGEOWNER_UPDATE_GOLDEN=1 rewrites it)."""
    text = text.replace(str(tmp_path), "<tmp>")
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("mode", ["show_stacks", "show_handles", "page_owner"])
def test_a_steady_leak_ranks_first(tmp_path: Path, mode: str) -> None:
    # GIVEN 12 snapshots a minute apart: one real stack leaks 40 pages/min, the others wobble
    series, leak = leak_and_noise(12, stacks=5 if mode == "page_owner" else 8)
    store = _watched(tmp_path, series, mode)
    # WHEN the trend is computed
    report = analyze_store(store)
    # THEN the leaking stack ranks first, at 40 pages/min, and it alone grows steadily
    first = report.stacks[0]
    assert first.frames == leak
    assert first.slope == pytest.approx(40.0)
    assert first.r2 == pytest.approx(1.0)
    assert [t.frames for t in report.steady] == [leak]


def test_noise_only_gives_no_leak_through_a_watch(tmp_path: Path) -> None:
    # GIVEN 20 snapshots of eight stacks that only wobble
    store = _watched(tmp_path, noise_only(20, seed=3))
    # WHEN ranked
    report = analyze_store(store)
    # THEN nothing is called steady growth
    assert report.steady == ()
    assert len(report.stacks) == 8


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(8, 40), amplitude=st.integers(1, 500),
       base=st.integers(0, 5000), stacks=st.integers(1, 12))
def test_noise_never_looks_like_a_leak(seed: int, length: int, amplitude: int, base: int,
                                       stacks: int) -> None:
    # GIVEN stationary noise on several stacks
    times = [60.0 * i for i in range(length)]
    series = {i: noise_series(seed + i, length, base, amplitude) for i in range(stacks)}
    # WHEN judged
    ranked = analyze_series(times, series, {})
    # THEN no stack is steady growth
    assert not any(t.steady for t in ranked)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), length=st.integers(6, 40), amplitude=st.integers(0, 100),
       extra=st.integers(0, 300), stacks=st.integers(1, 8))
def test_a_leak_through_noise_is_found_and_ranked_first(
    seed: int, length: int, amplitude: int, extra: int, stacks: int
) -> None:
    # GIVEN a leak rising faster per step than the noise can wobble, among noisy stacks
    rate = 2 * amplitude + 1 + extra
    times = [30.0 * i for i in range(length)]
    series = {i: noise_series(seed + i, length, 1000, amplitude) for i in range(stacks)}
    leak_noise = noise_series(seed - 1, length, 0, amplitude // 2)
    series[99] = [100 + rate * i + e for i, e in enumerate(leak_noise)]
    # WHEN judged
    ranked = analyze_series(times, series, {})
    # THEN the leak is steady and first, with its rate recovered (per minute: 2 steps)
    assert ranked[0].stack_id == 99
    assert ranked[0].steady
    assert ranked[0].slope == pytest.approx(2 * rate, rel=0.2)


@settings(max_examples=50, deadline=None)
@given(slope=st.integers(-1000, 1000), intercept=st.integers(0, 10**6),
       xs=st.lists(st.integers(0, 10**5), min_size=2, max_size=30, unique=True))
def test_fit_line_recovers_an_exact_line(slope: int, intercept: int, xs: list[int]) -> None:
    fit = fit_line(xs, [slope * x + intercept for x in xs])
    assert fit.slope == pytest.approx(slope, abs=1e-6)
    assert fit.intercept == pytest.approx(intercept, rel=1e-6, abs=1e-3)
    assert fit.r2 == (pytest.approx(1.0) if slope else 0.0)


def test_rising_share_counts_steps_that_do_not_go_down() -> None:
    assert rising_share([5, 5, 6, 4, 7]) == 0.75
    assert rising_share([3]) == 0.0
    assert rising_share([9, 8, 7]) == 0.0


def test_label_skips_allocator_frames() -> None:
    stack = (" post_alloc_hook+0x1a5/0x1d0", " get_page_from_freelist+0xf9a/0x1190",
             " __alloc_pages_noprof+0x196/0xe80", " alloc_pages_mpol_noprof+0x8a/0x1e0",
             " new_slab+0x364/0x430", " ___slab_alloc+0x75e/0xb90",
             " __kmalloc_cache_noprof+0x1d7/0x240", " syslog_print_all+0x70/0x1f0")
    assert label_stack(stack) == "syslog_print_all+0x70/0x1f0"
    assert label_stack(stack[:3]) == "__alloc_pages_noprof+0x196/0xe80"
    assert label_stack(()) == "(no stack)"


def test_sparkline_buckets_long_series() -> None:
    assert sparkline([1, 1, 1]) == "▁▁▁"
    assert sparkline(list(range(100)), width=8) == "▁▂▃▄▅▆▇█"
    assert sparkline([]) == ""


def _leak_store(tmp_path: Path) -> str:
    series, _ = leak_and_noise(12)
    return _watched(tmp_path, series)


LEAK_LABEL = label_stack(leak_and_noise(1)[1])


def test_fail_on_slope_trips_at_the_leak_rate(tmp_path: Path) -> None:
    # GIVEN a store with a 40 pages/min leak
    store = _leak_store(tmp_path)
    runner = CliRunner()
    # WHEN trend runs with limits below and above the leak's rate
    tripped = runner.invoke(cli, ["trend", store, "--format", "json", "--fail-on-slope", "39"])
    passed = runner.invoke(cli, ["trend", store, "--format", "json", "--fail-on-slope", "41"])
    # THEN the lower limit exits 3 naming the stack, after writing the report; the higher exits 0
    assert tripped.exit_code == 3
    assert tripped.stderr == (
        "pageowner: 1 stack(s) grow steadily at or over 39 pages/min; the first, "
        f"{LEAK_LABEL}, grows 40.00 pages/min (R^2 1.00)\n")
    assert json.loads(tripped.stdout)["fail_on_slope"] == 39.0
    assert passed.exit_code == 0


def test_fail_on_slope_ignores_noise(tmp_path: Path) -> None:
    # GIVEN only noise, whose least-squares slopes are not zero
    store = _watched(tmp_path, noise_only(20, seed=5))
    report = analyze_store(store, TrendOptions(fail_on_slope=0.0))
    assert any(t.slope > 0 for t in report.stacks)
    # WHEN checked against a zero limit, THEN nothing trips
    report.check()


def test_check_raises_threshold_exceeded(tmp_path: Path) -> None:
    report = analyze_store(_leak_store(tmp_path), TrendOptions(fail_on_slope=10))
    with pytest.raises(ThresholdExceeded) as caught:
        report.check()
    assert caught.value.exit_code == 3


BOOT_A = "9f922574-b216-49cd-b418-2835c4c8c71e"
BOOT_B = "0b1d2c3e-4f50-4617-8829-3a4b5c6d7e8f"


def _watched_with_uptimes(tmp_path: Path, uptimes: list[str],
                          boot_ids: list[str] | None = None) -> tuple[str, int]:
    """Watch a 40 pages/step leak a minute apart, /proc/uptime scripted; return the store."""
    series, _ = leak_and_noise(len(uptimes))
    machine = FakeMachine(tmp_path / "host")
    script = ScriptedSeries(machine, series, uptimes=uptimes, boot_ids=boot_ids)
    store = str(tmp_path / "s.db")
    watch(store, host=machine.host, interval=60, count=len(series), clock=script.clock())
    return store, 40


def test_growth_is_measured_on_the_machines_uptime(tmp_path: Path) -> None:
    # GIVEN snapshots a minute apart on the watch's clock, while the machine's uptime moves
    # two minutes between them (a simulated machine, or a watch clock stepped by NTP)
    uptimes = [f"{5000 + 120 * i}.25 {900 + i}.00\n" for i in range(8)]
    store, per_step = _watched_with_uptimes(tmp_path, uptimes, [BOOT_A] * 8)
    # WHEN ranked
    report = analyze_store(store)
    # THEN each snapshot kept the machine's uptime, and the slope is per minute of it
    assert report.uptimes == tuple(5000.25 + 120 * i for i in range(8))
    assert report.clock == "uptime"
    assert report.minutes == tuple(2.0 * i for i in range(8))
    assert report.stacks[0].slope == pytest.approx(per_step / 2)
    assert report.stacks[0].steady
    # AND the reports say which clock that is
    table = CliRunner().invoke(cli, ["trend", store]).stdout
    assert "8 snapshots over 14.0 min of the machine's uptime," in " ".join(table.split())
    document = json.loads(CliRunner().invoke(cli, ["trend", store, "--format", "json"]).stdout)
    assert (document["clock"], document["span_minutes"]) == ("uptime", 14.0)


@pytest.mark.parametrize(("case", "uptimes"), [
    ("a reboot halfway", [f"{5000 + 120 * i}.00 0.00\n" for i in range(4)]
     + [f"{30 + 120 * i}.00 0.00\n" for i in range(4)]),
    ("an unreadable uptime", [f"{5000 + 120 * i}.00 0.00\n" for i in range(7)] + ["soon\n"]),
    # Watched soon after boot, then rebooted and up longer than that when watched again:
    # uptime still rises, only the boot_id tells.
    ("a reboot uptime hides", [f"{60 + 60 * i}.00 0.00\n" for i in range(4)]
     + [f"{900 + 60 * i}.00 0.00\n" for i in range(4)]),
])
def test_without_a_steady_uptime_the_watch_clock_is_used(tmp_path: Path, case: str,
                                                         uptimes: list[str]) -> None:
    # GIVEN snapshots whose uptimes go back (a reboot) or are missing at one snapshot, or
    # whose boot_id changes halfway
    boot_ids = [BOOT_A] * 4 + [BOOT_B if case == "a reboot uptime hides" else BOOT_A] * 4
    store, per_step = _watched_with_uptimes(tmp_path, uptimes, boot_ids)
    # WHEN ranked
    report = analyze_store(store)
    # THEN the watch's own clock measures the growth: a minute a snapshot
    assert report.clock == "watch", case
    assert report.minutes == tuple(float(i) for i in range(8))
    assert report.stacks[0].slope == pytest.approx(per_step)
    assert (report.uptimes[-1] is None) == (case == "an unreadable uptime")
    assert report.boot_ids == tuple(boot_ids)


def test_json_report_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the leak series in a store named relative to the working directory
    monkeypatch.chdir(tmp_path)
    _leak_store(tmp_path)
    # WHEN rendered as JSON
    result = CliRunner().invoke(cli, ["trend", "s.db", "--format", "json", "--top", "3"])
    # THEN it is the golden report
    assert result.exit_code == 0, result.output
    _check_golden("trend-leak.json", result.stdout, tmp_path)


def test_table_report_golden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _leak_store(tmp_path)
    result = CliRunner().invoke(cli, ["trend", "s.db", "--top", "5"])
    assert result.exit_code == 0, result.output
    _check_golden("trend-leak.table.txt", result.stdout, tmp_path)


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    # GIVEN the leak series
    store = _leak_store(tmp_path)
    out = tmp_path / "trend.html"
    # WHEN rendered as HTML into a file
    result = CliRunner().invoke(cli, ["trend", store, "--format", "html", "--top", "4",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    # THEN it loads nothing, draws one chart per top stack, the leak first with 12 points
    assert not re.search(r"""(src|href)\s*=|https?://|@import|url\(""", page)
    assert page.count('<svg class="chart"') == 4
    first = page.index('<section class="stack steady"')
    assert first == page.index("<section")
    assert LEAK_LABEL in page[first:page.index("</section>", first)]
    points = re.search(r'<polyline class="line" points="([^"]+)"', page)
    assert points is not None and len(points.group(1).split()) == 12
    data = json.loads(re.search(r'<script id="trend-data" type="application/json">(.*?)</script>',
                                page, re.S).group(1))  # type: ignore[union-attr]
    assert data["stacks"][0]["series"] == [20 + 40 * i for i in range(12)]


def test_trend_of_a_missing_store(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["trend", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"pageowner: {tmp_path / 'none.db'}: no such store")


def test_text_off_a_terminal_is_aligned_plain_text(tmp_path: Path) -> None:
    # GIVEN the leak series, WHEN rendered to a pipe and to -o FILE
    store = _leak_store(tmp_path)
    piped = CliRunner().invoke(cli, ["trend", store, "--top", "3"])
    out = tmp_path / "trend.txt"
    written = CliRunner().invoke(cli, ["trend", store, "--top", "3", "-o", str(out)])
    assert piped.exit_code == written.exit_code == 0
    # THEN both are the same plain text: the title on one line, no box, no trailing spaces
    assert out.read_text() == piped.stdout
    lines = piped.stdout.splitlines()
    assert lines[0].endswith("8 stacks, 1 growing steadily")
    assert not any(line != line.rstrip() for line in lines)
    assert not set("┏┃━│└┡") & set(piped.stdout)


def test_format_table_is_a_deprecated_alias_of_text(tmp_path: Path) -> None:
    store = _leak_store(tmp_path)
    old = CliRunner().invoke(cli, ["trend", store, "--format", "table"])
    new = CliRunner().invoke(cli, ["trend", store, "--format", "text"])
    assert old.exit_code == new.exit_code == 0
    assert old.stdout == new.stdout
    assert old.stderr == "pageowner: warning: --format table is deprecated; use --format text\n"
    helped = CliRunner().invoke(cli, ["trend", "--help"]).stdout
    assert "[text|json|html]" in helped and "table" not in helped.split("--format")[1][:30]
