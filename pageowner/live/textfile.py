"""A Prometheus text-format file of one snapshot, for node_exporter's textfile collector.

node_exporter reads every `*.prom` file in its `--collector.textfile.directory` at each
scrape, so the file is replaced whole (written beside and renamed) and never seen half
written. Series stay bounded: one per top-N stack, labelled with the stack's first frame
outside the allocator and a short id stable across snapshots and boots (a hash of the
frames' function names and modules, offsets left out), never the whole stack.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from pageowner.dump.dumpfile import parse_frame
from pageowner.dump.fileio import atomic_output
from pageowner.kernel.frames import first_caller, frame_label
from pageowner.live.store import StackSample

__all__ = ["TextfileSnapshot", "render_textfile", "stack_identity", "write_textfile"]

STACK_ID_HEX = 12  # 48 bits: a collision among a few thousand stacks is ~1e-8


@dataclass(frozen=True)
class TextfileSnapshot:
    """What one snapshot found and cost, as the textfile reports it."""

    source: str
    taken_at: float  # Unix time
    bytes_read: int
    read_seconds: float
    samples: tuple[StackSample, ...]


def stack_identity(frames: Iterable[str]) -> tuple[str, str]:
    """Return a stack's first caller outside the allocator and its short stable id.

    >>> stack_identity([" get_page_from_freelist+0x1/0x9", " shmem_alloc_folio+0x3f/0x90"])
    ('shmem_alloc_folio', '18eaaabbe602')
    """
    parsed = [parse_frame(line) for line in frames]
    index = first_caller(parsed)
    if index is not None:
        caller = frame_label(parsed[index])
    else:
        caller = "(no stack)" if not parsed else "(allocator only)"
    names = "\n".join(frame_label(frame) for frame in parsed)
    return caller, hashlib.sha256(names.encode()).hexdigest()[:STACK_ID_HEX]


def _label_value(text: str) -> str:
    """Escape a label value as the text format wants (backslash, quote, newline)."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


_METRICS = (
    ("pageowner_pages", "Base pages held by every stack in the snapshot."),
    ("pageowner_stacks", "Distinct stacks in the snapshot."),
    ("pageowner_stack_pages", "Base pages held by each of the top stacks (caller: the first "
                              "frame outside the allocator; stack_id: a hash of the stack)."),
    ("pageowner_snapshot_timestamp_seconds", "When the snapshot was taken (Unix time)."),
    ("pageowner_snapshot_read_bytes", "Bytes read from debugfs for the snapshot."),
    ("pageowner_snapshot_read_seconds", "Seconds spent reading and storing the snapshot."),
)  # fmt: skip


def render_textfile(snapshot: TextfileSnapshot, top: int) -> str:
    """Render a snapshot as Prometheus text format, `top` stacks at most (0: all)."""
    by_stack: dict[tuple[str, str], int] = {}
    for sample in snapshot.samples:
        key = stack_identity(sample.frames)
        by_stack[key] = by_stack.get(key, 0) + sample.nr_base_pages
    ranked = sorted(by_stack.items(), key=lambda item: (-item[1], item[0]))
    if top:
        ranked = ranked[:top]
    source = f'{{source="{_label_value(snapshot.source)}"}}'
    values: dict[str, list[str]] = {
        "pageowner_pages": [f"{source} {sum(by_stack.values())}"],
        "pageowner_stacks": [f"{source} {len(by_stack)}"],
        "pageowner_stack_pages": [
            f'{{caller="{_label_value(caller)}",stack_id="{stack_id}"}} {pages}'
            for (caller, stack_id), pages in ranked
        ],
        "pageowner_snapshot_timestamp_seconds": [f" {snapshot.taken_at:.3f}"],
        "pageowner_snapshot_read_bytes": [f" {snapshot.bytes_read}"],
        "pageowner_snapshot_read_seconds": [f" {snapshot.read_seconds:.6f}"],
    }
    lines: list[str] = []
    for name, help_text in _METRICS:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(f"{name}{value}" for value in values[name])
    return "\n".join(lines) + "\n"


def write_textfile(path: str, snapshot: TextfileSnapshot, top: int) -> None:
    """Replace `path` with the snapshot's metrics, atomically."""
    with atomic_output(path) as out:
        out.write(render_textfile(snapshot, top).encode())
