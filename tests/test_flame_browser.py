"""The HTML flame graph in a real browser: it renders, zooms on click and searches.

Needs headless Chromium (Debian's `chromium` package; `make test` installs it when it runs
as root with apt). Without it the test skips and says why. Screenshots are kept in
artifacts/ (git-ignored); docs/flame.png is a copy of artifacts/flame.png.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.analyze_support import REAL_DUMPS, ROOT, SHOW_STACKS, fixture
from tests.analyze_support import run as run_cli
from tests.browser import Browser, Page
from tests.conftest import requires_chromium

ARTIFACTS = ROOT / "artifacts"

pytestmark = requires_chromium


def _flame(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "flame.html"
    result = run_cli(["flame", *args, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    return out


# The widest box of a frame name, in viewport coordinates.
_RECT = """(() => {
  const boxes = [...document.querySelectorAll('.frame')].filter(d => d.dataset.name === %r);
  if (!boxes.length) return null;
  const width = d => d.getBoundingClientRect().width;
  const el = boxes.reduce((a, b) => (width(b) > width(a) ? b : a));
  const r = el.getBoundingClientRect();
  return {id: el.dataset.id, x: r.x, y: r.y, width: r.width, height: r.height,
          full: document.getElementById('flame').getBoundingClientRect().width};
})()"""


def _rect(page: Page, name: str) -> dict[str, float] | None:
    value: dict[str, float] | None = page.evaluate(_RECT % name)
    return value


def test_flame_graph_renders_zooms_and_searches(browser: Browser, tmp_path: Path) -> None:
    # GIVEN the HTML flame graph of the 6.12 work dump, opened from disk
    html = _flame(tmp_path, fixture(REAL_DUMPS[3]))
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", html.read_text())  # no network
    page = browser.new_page(width=1200, height=760)
    page.goto(html.as_uri())
    # THEN frames render: the root spans the width, and the tmpfs write is the widest child
    assert page.evaluate("document.querySelectorAll('.frame').length") > 100
    root = _rect(page, "all")
    assert root is not None and abs(root["width"] - root["full"]) < 1
    folio = _rect(page, "shmem_alloc_folio")
    assert folio is not None and 0.6 * folio["full"] < folio["width"] < 0.8 * folio["full"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "flame-before-zoom.png")

    # WHEN a frame is clicked
    inode = _rect(page, "alloc_inode")
    assert inode is not None and inode["width"] < 0.2 * inode["full"]
    page.click(inode["x"] + inode["width"] / 2, inode["y"] + inode["height"] / 2)
    # THEN it spans the full width, its ancestors stay above it, and other stacks are gone
    zoomed = page.evaluate(
        f"document.querySelector('.frame[data-id=\"{inode['id']}\"]').getBoundingClientRect()"
        ".width"
    )
    assert abs(zoomed - inode["full"]) < 1
    assert page.evaluate("document.querySelectorAll('.frame.ancestor').length") >= 1
    assert _rect(page, "shmem_alloc_folio") is None
    page.screenshot(ARTIFACTS / "flame-zoomed.png")

    # WHEN the zoom is reset and "slab" is searched
    page.evaluate("document.getElementById('reset').click()")
    page.evaluate("document.getElementById('search').focus()")
    page.type_text("slab")
    # THEN every highlighted frame matches, and the share of matched memory is shown
    names = page.evaluate("[...document.querySelectorAll('.frame.match')].map(d => d.dataset.name)")
    assert names and all("slab" in name.lower() for name in names)
    others = page.evaluate(
        "[...document.querySelectorAll('.frame:not(.match)')].map(d => d.dataset.name)"
    )
    assert not any("slab" in name.lower() for name in others)
    assert re.fullmatch(r"matched \d+ pages \([\d.]+ [KMG]iB\), [\d.]+% of all",
                        page.evaluate("document.getElementById('matched').textContent"))
    # hover shows the details line
    folio = _rect(page, "shmem_alloc_folio")
    assert folio is not None
    page.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": folio["x"] + 20,
                                           "y": folio["y"] + 5})  # fmt: skip
    details = page.evaluate("document.getElementById('details').textContent")
    assert details.startswith("shmem_alloc_folio \u2014 24968 pages (97.5 MiB), 72.11% of all")
    shot = page.screenshot(ARTIFACTS / "flame.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_differential_flame_graph_colours_growth_red(browser: Browser, tmp_path: Path) -> None:
    # GIVEN a differential graph of the 6.12 show_stacks files (boot -> work)
    html = _flame(tmp_path, fixture(SHOW_STACKS[1]), "--diff", fixture(SHOW_STACKS[0]))
    page = browser.new_page(width=1200, height=760)
    page.goto(html.as_uri())
    # THEN the tmpfs write path, new since boot, is drawn deep red
    colour = page.evaluate(
        "[...document.querySelectorAll('.frame')].find(d => d.dataset.name === "
        "'shmem_alloc_folio').style.background"
    )
    red, green, blue = (int(v) for v in re.findall(r"\d+", colour))
    assert red > 200 and green < 100 and blue < 100
    legend = page.evaluate("document.getElementById('legend').textContent")
    assert legend.startswith("Width: AFTER. Red: grew since BEFORE")
    page.screenshot(ARTIFACTS / "flame-diff.png")
