"""Text outputs: a file written atomically, or stdout, wrapped for text renderers."""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import TextIO

from pageowner.dump.fileio import atomic_output

__all__ = ["is_terminal", "text_output"]


def is_terminal(path: str) -> bool:
    """Tell whether output `path` is standard output on a terminal."""
    if path != "-":
        return False
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def text_output(path: str, *, inputs: tuple[str, ...] = ()) -> Iterator[TextIO]:
    """Open `path` (or `-`) for text, written whole or not at all.

    Text is UTF-8 with surrogateescape, so bytes a dump held that are not UTF-8 come out
    as they went in.
    """
    with atomic_output(path, inputs=inputs) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape",
                                newline="\n", write_through=False)  # fmt: skip
        try:
            yield text
            text.flush()
        finally:
            text.detach()
