"""Renderers of a trend report: a table with sparklines, JSON, and a self-contained HTML page.

`RENDERERS` maps each `--format` to a function writing the report to a text stream. The
HTML page draws one SVG line chart per top stack on the server side (so it reads without
JavaScript) and adds hover read-outs with a few lines of inline script; it loads nothing.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Literal, TextIO

from pageowner.live.trend import StackTrend, TrendReport
from pageowner.report.tables import Column, Table, render_text

__all__ = ["RENDERERS", "render_html", "render_json", "render_table", "sparkline", "trend_json"]

_BARS = "▁▂▃▄▅▆▇█"
TREND_JSON_VERSION = 1


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """Draw values as a row of block characters, bucketed down to `width`.

    >>> sparkline([0, 1, 2, 3, 4, 5, 6, 7])
    '▁▂▃▄▅▆▇█'
    """
    if not values:
        return ""
    if len(values) > width:
        buckets = []
        for index in range(width):
            lo = index * len(values) // width
            hi = max(lo + 1, (index + 1) * len(values) // width)
            part = values[lo:hi]
            buckets.append(sum(part) / len(part))
        values = buckets
    low, high = min(values), max(values)
    if high == low:
        return _BARS[0] * len(values)
    scale = (len(_BARS) - 1) / (high - low)
    return "".join(_BARS[round((v - low) * scale)] for v in values)


_CLOCK_NAMES = {"uptime": "the machine's uptime", "watch": "the watch's clock"}


def _title(report: TrendReport) -> str:
    """Describe the series in one line."""
    return (
        f"{report.store}: {len(report.times)} snapshots over {report.span_minutes:.1f} min "
        f"of {_CLOCK_NAMES[report.clock]}, "
        f"{len(report.stacks)} stacks, {len(report.steady)} growing steadily"
    )


_TREND_COLUMNS = (
    Column("#", "rank"),
    Column("!", "steady", align="left"),
    Column("pages/min", "slope"),
    Column("R²", "r2"),
    Column("up", "rising"),
    Column("pages", "pages"),
    Column("trend", "trend", align="left"),
    Column("id", "stack_id"),
    Column("stack (first frame outside the allocator)", "stack", align="left"),
)


def _legend(report: TrendReport) -> str:
    """Say what makes growth steady."""
    rule = (f"slope > 0, R² ≥ {report.options.min_r2:g}, "
            f"≥ {report.options.min_rising:.0%} of steps up")  # fmt: skip
    return f"● steady growth: {rule}" if report.steady else f"no stack grows steadily ({rule})"


def _trend_table(report: TrendReport) -> Table:
    """Lay out the top stacks as table rows (strings as shown)."""
    rows = tuple(
        (str(rank), "●" if trend.steady else "", f"{trend.slope:+.2f}", f"{trend.r2:.2f}",
         f"{trend.rising:.0%}", f"{trend.first:,}→{trend.last:,}", sparkline(trend.series),
         str(trend.stack_id), trend.label)
        for rank, trend in enumerate(report.top, start=1)
    )  # fmt: skip
    return Table("stacks by growth", _TREND_COLUMNS, rows, notes=(_legend(report),))


def render_table(report: TrendReport, out: TextIO) -> None:
    """Print the top stacks: a rich table on a terminal, aligned text elsewhere."""
    if not _is_terminal(out):
        # Like top, diff and stats: plain columns that grep, diff and cut can read.
        render_text([_trend_table(report)], out, header=_title(report))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table as RichTable

    table = RichTable(title=escape(_title(report)), title_justify="left", expand=False)
    for column in _TREND_COLUMNS:
        justify: Literal["left", "center", "right"] = (
            "center" if column.name == "steady" else "right" if column.align == "right"
            else "left")  # fmt: skip
        table.add_column(escape(column.header), justify=justify,
                         no_wrap=column.name == "trend",
                         overflow="fold")  # fmt: skip
    for trend, row in zip(report.top, _trend_table(report).rows, strict=True):
        table.add_row(*(escape(cell) for cell in row), style="red" if trend.steady else None)
    console = Console(file=out, highlight=False, soft_wrap=False)
    console.print(table)
    console.print(escape(_legend(report)))


def _is_terminal(out: TextIO) -> bool:
    """Tell whether a stream is a terminal."""
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _stack_json(rank: int, trend: StackTrend) -> dict[str, object]:
    """Describe one stack for JSON."""
    return {
        "rank": rank,
        "stack_id": trend.stack_id,
        "label": trend.label,
        "steady_growth": trend.steady,
        "slope_pages_per_min": round(trend.slope, 6),
        "r2": round(trend.r2, 6),
        "rising_share": round(trend.rising, 6),
        "first_pages": trend.first,
        "last_pages": trend.last,
        "peak_pages": trend.peak,
        "series": list(trend.series),
        "frames": [frame.strip() for frame in trend.frames],
    }


def trend_json(report: TrendReport) -> dict[str, object]:
    """Return the report as plain JSON data (the top stacks only)."""
    options = report.options
    return {
        "pageowner_trend": TREND_JSON_VERSION,
        "store": report.store,
        "meta": dict(report.meta),
        "snapshots": len(report.times),
        "span_minutes": round(report.span_minutes, 6),
        "times": list(report.times),
        "clock": report.clock,
        "uptimes": list(report.uptimes),
        "boot_ids": list(report.boot_ids),
        "criteria": {
            "min_r2": options.min_r2,
            "min_rising_share": options.min_rising,
            "min_snapshots": options.min_snapshots,
        },
        "fail_on_slope": options.fail_on_slope,
        "stacks_total": len(report.stacks),
        "steady_total": len(report.steady),
        "stacks": [_stack_json(rank, t) for rank, t in enumerate(report.top, start=1)],
    }


def render_json(report: TrendReport, out: TextIO) -> None:
    """Write the report as JSON."""
    json.dump(trend_json(report), out, indent=2, ensure_ascii=False)
    out.write("\n")


# Chart geometry, in SVG user units.
_WIDTH, _HEIGHT = 640, 220
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 12, 34


def _nice_max(value: float) -> float:
    """Round an axis maximum up to 1, 2 or 5 times a power of ten.

    >>> _nice_max(1234)
    2000.0
    """
    if value <= 0:
        return 1.0
    power = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _chart(trend: StackTrend, minutes: Sequence[float], index: int) -> str:
    """Draw one stack's pages over time as an SVG line chart with axes."""
    span = minutes[-1] - minutes[0] if len(minutes) > 1 else 0.0
    xs = list(minutes) if span > 0 else [float(i) for i in range(len(minutes))]
    x_max = xs[-1] if xs and xs[-1] > 0 else 1.0
    y_max = _nice_max(trend.peak)
    plot_w = _WIDTH - _LEFT - _RIGHT
    plot_h = _HEIGHT - _TOP - _BOTTOM

    def px(x: float) -> float:
        return _LEFT + plot_w * x / x_max

    def py(y: float) -> float:
        return _TOP + plot_h * (1 - y / y_max)

    parts = [
        f'<svg class="chart" id="chart-{index}" data-index="{index}" '
        f'viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" height="{_HEIGHT}" role="img" '
        f'aria-label="pages over time of {html.escape(trend.label)}">'
    ]
    for step in range(5):
        y = y_max * step / 4
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
                     f'y1="{py(y):.1f}" y2="{py(y):.1f}"/>')
        parts.append(f'<text class="tick" x="{_LEFT - 6}" y="{py(y) + 4:.1f}" '
                     f'text-anchor="end">{y:,.0f}</text>')
    for step in range(5):
        x = x_max * step / 4
        label = f"{x:.1f} min" if span > 0 else f"#{x + 1:.0f}"
        # The last label ends at the axis end: centred there, it would spill off the chart.
        anchor = "end" if step == 4 else "middle"
        parts.append(f'<text class="tick" x="{px(x):.1f}" y="{_HEIGHT - 14}" '
                     f'text-anchor="{anchor}">{label}</text>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" '
                 f'y2="{_HEIGHT - _BOTTOM}"/>')
    parts.append(f'<line class="axis" x1="{_LEFT}" x2="{_WIDTH - _RIGHT}" '
                 f'y1="{_HEIGHT - _BOTTOM}" y2="{_HEIGHT - _BOTTOM}"/>')
    points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, trend.series, strict=True))
    parts.append(f'<polyline class="line" points="{points}"/>')
    parts.append(f'<g class="tip" visibility="hidden"><line class="cursor" y1="{_TOP}" '
                 f'y2="{_HEIGHT - _BOTTOM}"/><circle r="4"/>'
                 f'<text class="readout" y="{_TOP + 12}"></text></g>')
    parts.append("</svg>")
    return "".join(parts)


def _section(rank: int, trend: StackTrend, minutes: Sequence[float]) -> str:
    """Lay out one stack: heading, figures, chart and the full stack."""
    verdict = '<span class="verdict">steady growth</span>' if trend.steady else ""
    frames = html.escape("\n".join(frame.strip() for frame in trend.frames))
    return (
        f'<section class="stack{" steady" if trend.steady else ""}" '
        f'data-stack-id="{trend.stack_id}">'
        f'<h2><span class="rank">#{rank}</span> <code class="label">'
        f"{html.escape(trend.label)}</code> {verdict}</h2>"
        f'<p class="figures">{trend.slope:+.2f} pages/min · R² {trend.r2:.2f} · '
        f"{trend.rising:.0%} of steps up · {trend.first:,} → {trend.last:,} pages "
        f"(peak {trend.peak:,})</p>"
        f"{_chart(trend, minutes, rank - 1)}"
        f"<details><summary>stack ({len(trend.frames)} frames)</summary>"
        f"<pre>{frames}</pre></details></section>"
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em auto;max-width:680px;color:#222}
h1{font-size:1.3em}h2{font-size:1em;margin:1.4em 0 .2em}
code.label{font-size:1.05em}.rank{color:#888}
.verdict{background:#c0392b;color:#fff;border-radius:3px;padding:0 .4em;font-size:.85em}
.figures{margin:.1em 0;color:#555}
svg.chart{display:block;background:#fafafa;border:1px solid #ddd}
.grid{stroke:#e4e4e4}.axis{stroke:#888}.tick{font-size:11px;fill:#666}
.line{fill:none;stroke:#2c6fbb;stroke-width:2}.steady .line{stroke:#c0392b}
.cursor{stroke:#999;stroke-dasharray:3 3}.tip circle{fill:#222}.readout{font-size:12px}
pre{font-size:12px;background:#f4f4f4;padding:.5em;overflow-x:auto}
"""

# Hover read-out: find the snapshot nearest the pointer and show its time and pages.
_SCRIPT = """
(function(){
  var data = JSON.parse(document.getElementById("trend-data").textContent);
  document.querySelectorAll("svg.chart").forEach(function(svg){
    var stack = data.stacks[+svg.dataset.index];
    var pts = svg.querySelector("polyline").getAttribute("points").trim().split(/\\s+/)
      .map(function(p){ var xy = p.split(","); return [+xy[0], +xy[1]]; });
    var tip = svg.querySelector(".tip"), dot = tip.querySelector("circle"),
        cur = tip.querySelector(".cursor"), text = tip.querySelector(".readout");
    svg.show = function(i){
      var p = pts[i];
      cur.setAttribute("x1", p[0]); cur.setAttribute("x2", p[0]);
      dot.setAttribute("cx", p[0]); dot.setAttribute("cy", p[1]);
      // Right of the point on the left half, left of it on the right half: never clipped.
      var left = p[0] > svg.viewBox.baseVal.width / 2;
      text.setAttribute("text-anchor", left ? "end" : "start");
      text.setAttribute("x", left ? p[0] - 6 : p[0] + 6);
      text.textContent = "+" + data.minutes[i].toFixed(1) + " min: " +
        stack.series[i].toLocaleString("en-US") + " pages";
      tip.setAttribute("visibility", "visible");
    };
    svg.addEventListener("mousemove", function(ev){
      var m = svg.getScreenCTM().inverse(), x = ev.clientX * m.a + ev.clientY * m.c + m.e;
      var best = 0;
      pts.forEach(function(p, i){ if (Math.abs(p[0] - x) < Math.abs(pts[best][0] - x)) best = i; });
      svg.show(best);
    });
    svg.addEventListener("mouseleave", function(){ tip.setAttribute("visibility", "hidden"); });
  });
  document.body.dataset.ready = "1";
})();
"""


def render_html(report: TrendReport, out: TextIO) -> None:
    """Write a self-contained page: the summary, then one line chart per top stack."""
    minutes = report.minutes
    data = {
        "minutes": [round(m, 4) for m in minutes],
        "stacks": [{"label": t.label, "series": list(t.series)} for t in report.top],
    }
    # "</" cannot appear inside a script element; JSON allows "<\/" for it.
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    sections = "".join(_section(rank, t, minutes) for rank, t in enumerate(report.top, start=1))
    steady = len(report.steady)
    summary = (
        f"{steady} stack(s) grow steadily" if steady else "no stack grows steadily"
    )
    out.write(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>pageowner trend: {html.escape(report.store)}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>pageowner trend</h1><p class=\"summary\">{html.escape(_title(report))}. "
        f"<strong>{summary}</strong> (slope &gt; 0, R² ≥ {report.options.min_r2:g}, "
        f"≥ {report.options.min_rising:.0%} of steps up).</p>"
        f"{sections}"
        f'<script id="trend-data" type="application/json">{payload}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


Renderer = Callable[[TrendReport, TextIO], None]

RENDERERS: dict[str, Renderer] = {
    "text": render_table,
    "json": render_json,
    "html": render_html,
}
