"""One-line summaries of live work for stderr: what a capture took, what each snapshot cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pageowner.live.capture import CaptureResult
from pageowner.live.watch import SnapshotCost, WatchResult

if TYPE_CHECKING:
    from pageowner.vmcore.capture import VmcoreCapture

__all__ = ["describe_capture", "describe_snapshot", "describe_watch", "format_bytes"]

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def format_bytes(size: float) -> str:
    """Print a byte count with a binary unit.

    >>> format_bytes(18470066)
    '17.6 MiB'
    """
    value = float(size)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _duration(seconds: float) -> str:
    """Print a short duration.

    >>> _duration(0.0042)
    '4.2 ms'
    """
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def describe_capture(result: CaptureResult) -> list[str]:
    """Say what a capture wrote, one line per file."""
    lines = [
        f"captured {result.records:,} records ({format_bytes(result.bytes_read)}) in "
        f"{_duration(result.seconds)} to {result.output}"
    ]
    for taken in result.files[1:]:
        lines.append(f"  {taken.source}: {format_bytes(taken.bytes_read)} -> {taken.path}")
    if result.sidecar is not None:
        lines.append(f"  kernel {result.meta.get('kernel_release')}, "
                     f"format {result.meta.get('format')}; details in {result.sidecar}")
    return lines


def describe_vmcore_capture(result: VmcoreCapture) -> list[str]:
    """Say what a capture from a crash dump wrote."""
    what = "freed pages" if result.meta.get("freed") else "records"
    lines = [f"read {result.records:,} {what} of kernel {result.release} from "
             f"{result.meta.get('vmcore')} to {result.output}"]
    files = result.meta.get("files")
    if isinstance(files, list):
        for taken in files[1:]:
            lines.append(f"  {taken['name']}: {taken['records']:,} blocks -> {taken['path']}")
    if result.sidecar is not None:
        lines.append(f"  format {result.meta.get('format')}; details in {result.sidecar}")
    return lines


def describe_snapshot(cost: SnapshotCost) -> str:
    """Say what one snapshot found and what it cost the watched machine."""
    return (
        f"snapshot {cost.index}: {cost.nr_stacks:,} stacks, {cost.nr_base_pages:,} pages; "
        f"read {format_bytes(cost.bytes_read)} from {cost.source} in {_duration(cost.seconds)}"
    )


def describe_watch(result: WatchResult) -> str:
    """Summarize a finished watch: how many snapshots and their mean cost."""
    ended = "stopped by Ctrl-C; " if result.interrupted else ""
    return (
        f"{ended}{len(result.snapshots)} snapshot(s) saved in {result.store}; mean cost "
        f"{format_bytes(result.mean_bytes)} and {_duration(result.mean_seconds)} per snapshot "
        f"({result.source})"
    )
