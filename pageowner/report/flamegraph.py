"""Write flame graphs: folded stacks, speedscope JSON, or one self-contained HTML file.

The HTML page is `pageowner/data/flame.html` with the frame tree embedded as JSON; it loads
nothing from the network. Its script zooms on click and highlights search matches; for a
differential graph (`--diff BEFORE`) widths are AFTER and colours show growth (red) and
shrinkage (blue), as in Brendan Gregg's differential flame graphs.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any, TextIO

from pageowner.analyze.flame import FlameData, FlameNode, Weight, build_tree, fold_lines
from pageowner.analyze.flame import speedscope_document as _speedscope_document

__all__ = ["FLAME_FORMATS", "html_document", "render_flame"]

_PLACEHOLDER = re.compile("__TITLE__|__FLAME_DATA__")


def _render_folded(data: FlameData, out: TextIO, page_size: int) -> None:
    for line in fold_lines(data):
        out.write(line)


def _render_speedscope(data: FlameData, out: TextIO, page_size: int) -> None:
    json.dump(_speedscope_document(data), out, ensure_ascii=True, separators=(",", ":"))
    out.write("\n")


def _tree_json(root: FlameNode, names: dict[str, int]) -> list[Any]:
    """Encode a node as [name index, value, before, [children]], widest child first."""
    return [
        names.setdefault(root.name, len(names)),
        root.value,
        root.before,
        [_tree_json(child, names) for child in root.sorted_children()],
    ]


def html_document(data: FlameData, page_size: int, title: str | None = None) -> str:
    """Build the HTML page of a flame graph."""
    root = build_tree(data)
    names: dict[str, int] = {}
    tree = _tree_json(root, names)
    unit = {Weight.PAGES: "pages", Weight.BYTES: "bytes", Weight.TIMES: "times"}[data.weight]
    if title is None:
        title = f"page_owner flame graph: {data.source}"
        if data.before is not None:
            title = f"page_owner differential flame graph: {data.before_source} -> {data.source}"
    subtitle = f"{len(data.stacks)} stacks, total {root.value} {unit}"
    if unit == "pages":
        subtitle += f" of {page_size} bytes"
    if data.before is not None:
        subtitle += f"; before: {root.before} {unit}"
    payload = {
        "names": list(names),
        "tree": tree,
        "unit": unit,
        "page_size": page_size,
        "diff": data.before is not None,
        "subtitle": subtitle,
    }
    # Inside <script>, "</" could end the element; JSON allows "<\/" for it.
    embedded = json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("</", "<\\/")
    template = resources.files("pageowner").joinpath("data/flame.html").read_text("utf-8")
    values = {"__TITLE__": html.escape(title), "__FLAME_DATA__": embedded}
    # One pass, so a file or frame name that looks like a placeholder stays as it is.
    return _PLACEHOLDER.sub(lambda match: values[match[0]], template)


def _render_html(data: FlameData, out: TextIO, page_size: int) -> None:
    out.write(html_document(data, page_size))


FLAME_FORMATS: dict[str, Callable[[FlameData, TextIO, int], None]] = {
    "folded": _render_folded,
    "speedscope": _render_speedscope,
    "html": _render_html,
}


def render_flame(data: FlameData, out: TextIO, fmt: str = "html", page_size: int = 4096) -> None:
    """Write a flame graph in one of `FLAME_FORMATS`."""
    FLAME_FORMATS[fmt](data, out, page_size)
