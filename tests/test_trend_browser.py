"""The HTML trend report in a real browser: one chart per top stack, hover read-outs, no network.

The store comes from the simulator: a 6.19 machine watched for ten minutes on a manual
clock while its leaking driver loses 256 pages a minute amid page cache noise. Needs
headless Chromium (Debian's `chromium` package; `make test` installs it when it runs as
root with apt); without it the test skips and says why. Screenshots are kept in
artifacts/ (git-ignored); docs/trend.png is a copy of artifacts/trend.png.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pageowner.cli import cli
from tests.browser import Browser, Page
from tests.conftest import requires_chromium
from tests.live_sim import LEAK_PAGES, Noise, SimLive, leak_with

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
SNAPSHOTS = 10
TOP = 3

pytestmark = requires_chromium


def _trend(*args: str) -> str:
    result = CliRunner().invoke(cli, ["trend", *args])
    assert result.exit_code == 0, result.stderr
    return result.stdout


# Each chart: its index, its section's stack id, and its points in viewport coordinates.
_CHARTS = """[...document.querySelectorAll('svg.chart')].map(svg => {
  const m = svg.getScreenCTM();
  const points = svg.querySelector('polyline').getAttribute('points').trim().split(/\\s+/)
    .map(p => p.split(',').map(Number))
    .map(([x, y]) => ({x: x * m.a + y * m.c + m.e, y: x * m.b + y * m.d + m.f}));
  const box = svg.getBoundingClientRect();
  return {index: +svg.dataset.index, stack: +svg.closest('section').dataset.stackId,
          steady: svg.closest('section').classList.contains('steady'),
          top: box.top, bottom: box.bottom, width: box.width, points};
})"""

_TIP = """(() => {
  const svg = document.querySelector('svg.chart[data-index="%d"]');
  const tip = svg.querySelector('.tip');
  const text = tip.querySelector('.readout'), box = text.getBBox();
  return {visibility: tip.getAttribute('visibility'), text: text.textContent,
          cx: +tip.querySelector('circle').getAttribute('cx'),
          inside: box.x >= 0 && box.x + box.width <= svg.viewBox.baseVal.width};
})()"""


def _tip(page: Page, index: int) -> dict[str, Any]:
    value: dict[str, Any] = page.evaluate(_TIP % index)
    return value


def _readout(minutes: float, pages: int) -> str:
    return f"+{minutes:.1f} min: {pages:,} pages"


def test_trend_page_draws_a_chart_per_stack_and_reads_out_on_hover(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN ten minutes of a leaking 6.19 machine (seed 7: the page cache ends near where
    # it began, so the second chart is its noise) rendered as HTML and as JSON
    sim = SimLive(tmp_path / "machine", "6.19").boot()
    noise = Noise(seed=7)
    noise.warm_up(sim)
    sim.watch_while(tmp_path / "leak.db", SNAPSHOTS, leak_with(noise))
    monkeypatch.chdir(tmp_path)  # the page's title names the store as given: leak.db
    html = tmp_path / "trend.html"
    _trend("leak.db", "--format", "html", "--top", str(TOP), "-o", str(html))
    report = json.loads(_trend("leak.db", "--format", "json", "--top", str(TOP)))
    text = html.read_text()
    # THEN the page refers to nothing outside itself
    assert not re.search(r"""(src|href)\s*=|url\(|@import|https?://""", text)

    # WHEN opened in the browser
    page = browser.new_page(width=760, height=720)
    page.goto(html.as_uri())
    # THEN its script ran, it loaded no resource, and its data is the JSON report's
    assert page.evaluate("document.body.dataset.ready") == "1"
    assert page.evaluate("performance.getEntriesByType('resource').length") == 0
    data = page.evaluate("JSON.parse(document.getElementById('trend-data').textContent)")
    assert [s["series"] for s in data["stacks"]] == [s["series"] for s in report["stacks"]]
    # (minutes of the simulated machine's uptime: a minute of leak and the noise's reads)
    minutes = data["minutes"]
    assert report["clock"] == "uptime"
    start = report["uptimes"][0]
    assert minutes == [round((u - start) / 60, 4) for u in report["uptimes"]]
    assert all(1 <= b - a < 1.1 for a, b in zip(minutes, minutes[1:], strict=False))
    # AND there is one drawn chart per top stack, in rank order, one point per snapshot
    charts = page.evaluate(_CHARTS)
    assert [c["index"] for c in charts] == list(range(TOP))
    assert [c["stack"] for c in charts] == [s["stack_id"] for s in report["stacks"]]
    assert all(c["width"] > 600 and len(c["points"]) == SNAPSHOTS for c in charts)
    # AND the first is the leak, marked steady, its line rising at every snapshot;
    # the second, the page cache, is not steady and goes down as well as up
    leak, cache = charts[0], charts[1]
    assert report["stacks"][0]["label"].startswith("leaky_refill+") and leak["steady"]
    assert report["stacks"][0]["series"] == [LEAK_PAGES * i for i in range(SNAPSHOTS)]
    ys = [p["y"] for p in leak["points"]]
    assert all(b < a for a, b in zip(ys, ys[1:], strict=False))  # screen y grows downwards
    assert report["stacks"][1]["label"].startswith("page_cache_ra_unbounded+")
    assert not cache["steady"]
    cache_ys = [p["y"] for p in cache["points"]]
    assert any(b > a for a, b in zip(cache_ys, cache_ys[1:], strict=False))

    # WHEN the pointer moves over the leak chart near each snapshot
    assert _tip(page, 0)["visibility"] == "hidden"
    middle = (leak["top"] + leak["bottom"]) / 2
    for k in (0, 4, SNAPSHOTS - 1):
        point = leak["points"][k]
        page.call("Input.dispatchMouseEvent",
                  {"type": "mouseMoved", "x": point["x"] + 3, "y": middle})  # fmt: skip
        # THEN the read-out shows that snapshot's time and pages, at its point
        tip = _tip(page, 0)
        assert tip["visibility"] == "visible"
        assert tip["text"] == _readout(minutes[k], LEAK_PAGES * k)
        assert tip["inside"], f"the read-out of snapshot {k} spills off the chart"
        assert abs(tip["cx"] - float(page.evaluate(
            "document.querySelector('svg.chart[data-index=\"0\"] polyline')"
            f".getAttribute('points').trim().split(/\\s+/)[{k}].split(',')[0]"))) < 1e-6
    ARTIFACTS.mkdir(exist_ok=True)
    shot = page.screenshot(ARTIFACTS / "trend.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # AND leaving the chart hides the read-out
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 2, "y": 2})
    assert _tip(page, 0)["visibility"] == "hidden"
    # AND svg.show(i) reads out any snapshot of any chart
    for index, stack in enumerate(report["stacks"]):
        page.evaluate(f"document.querySelector('svg.chart[data-index=\"{index}\"]').show(5)")
        assert _tip(page, index)["text"] == _readout(minutes[5], stack["series"][5])
