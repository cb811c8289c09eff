"""`pageowner filter`: a drop-in for 7.3's tools/mm/page_owner_filter.

page_owner_filter opens /sys/kernel/debug/page_owner read-write, writes `mode=... nid=...`
in one write and copies what it reads to stdout or a file (kernel-7.3.md 4). Its messages
are kept word for word (the ones seen on the real 7.3 kernel, fixtures/real73/
7.3-boot.console.txt); they are raised as `FilterToolError`, which the CLI prints bare.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from pageowner.errors import CaptureError
from pageowner.live.capture import (
    READ_SIZE,
    FilterFile,
    ReadStats,
    copy_records,
    open_raw_rw,
)
from pageowner.model import PrintMode

__all__ = ["USAGE", "FilterRequest", "FilterToolError", "check_request", "run_filter"]

USAGE = """\
Usage: page_owner_filter [OPTIONS]

Options:
  -m, --mode MODE      : print_mode (stack, handle, or stack_handle)
  -n, --nid NID_LIST   : NUMA node IDs (comma-separated or ranges)
  -o, --output FILE    : output file (default: stdout)
  -h, --help           : show this help message

Examples:
  page_owner_filter -m stack
  page_owner_filter -m handle
  page_owner_filter -m stack_handle
  page_owner_filter -m stack -o output.txt
  page_owner_filter -n 0,1,2
  page_owner_filter -m stack -n 0
"""

_MODES = tuple(mode.value for mode in PrintMode)
_RANGE_RE = re.compile(r"(?P<start>[0-9]+)-(?P<end>[0-9]+)")


class FilterToolError(CaptureError):
    """A page_owner_filter failure: its exact stderr text (without the final newline)."""


@dataclass(frozen=True)
class FilterRequest:
    """What page_owner_filter was asked for."""

    mode: str | None = None
    nid: str | None = None

    @property
    def command(self) -> bytes:
        """Return the one write that sets the filter."""
        tokens = [f"mode={self.mode}"] if self.mode is not None else []
        if self.nid is not None:
            tokens.append(f"nid={self.nid}")
        return " ".join(tokens).encode()


def check_request(request: FilterRequest) -> None:
    """Refuse what the tool refuses before it opens page_owner."""
    if request.mode is None and request.nid is None:
        raise FilterToolError(
            "Error: At least one filter (-m or -n) must be specified\n\n" + USAGE.rstrip("\n")
        )
    if request.mode is not None and request.mode not in _MODES:
        raise FilterToolError(
            f"Error: Invalid mode '{request.mode}'\nValid modes: {', '.join(_MODES)}"
        )
    for part in (request.nid or "").split(","):
        match = _RANGE_RE.fullmatch(part)
        if match and int(match["start"]) > int(match["end"]):
            raise FilterToolError(f"Error: Invalid range {part} (start must be <= end)")


_REJECTED = """\
Error: Kernel rejected the filter command.
Possible causes:
  - Kernel does not support per-fd filtering
  - NUMA node has no memory
  - Unknown reason"""


def run_filter(
    request: FilterRequest,
    page_owner: str,
    write: Callable[[bytes], object],
    *,
    opener: Callable[[str], FilterFile] = open_raw_rw,
    read_size: int = READ_SIZE,
) -> ReadStats:
    """Set the filter on a fresh descriptor and copy every read to `write`."""
    check_request(request)
    if not os.path.exists(page_owner):
        raise FilterToolError(
            f"Error: {page_owner} does not exist\nMake sure page_owner is enabled in kernel"
        )
    try:
        raw = opener(page_owner)
    except OSError as exc:
        # [uncertain] the tool's full sentence; kernel-7.3.md 4 quotes its end only.
        raise FilterToolError(
            f"Error: {page_owner} does not support write access ({exc.strerror or exc})"
        ) from None
    try:
        try:
            raw.write(request.command)
        except OSError:
            raise FilterToolError(_REJECTED) from None
        stats = copy_records(raw, write, read_size=read_size)
    finally:
        raw.close()
    if stats.error is not None:
        raise FilterToolError(f"Error: read failed: {stats.error.strerror or stats.error}")
    return stats
