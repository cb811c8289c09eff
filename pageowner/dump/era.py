"""Which kernel a dump comes from: from its capture sidecar when there is one, else its text.

`pageowner capture` writes `FILE.meta.json` beside a dump with the kernel release; a dump
without one is recognised by the shape of its first records (kernel.md A.2-A.4), which
narrows it to the registry versions printing that shape.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from pageowner.dump.dumpfile import iter_blocks, parse_block
from pageowner.dump.fileio import iter_lines, open_input
from pageowner.dump.stacksfile import sniff_kind
from pageowner.errors import InputError, ParseError
from pageowner.kernel.kernels import KERNEL_VERSIONS, KernelVersion, dump_format_for, version_key
from pageowner.model import DumpFormat, StacksFileKind

__all__ = [
    "SIDECAR_SUFFIX",
    "Era",
    "detect_kernel",
    "load_sidecar",
    "sidecar_flags_layout",
    "sidecar_path",
    "sniff_dump_format",
    "version_from_release",
    "versions_printing",
]

SIDECAR_SUFFIX = ".meta.json"
# Enough text for several records of any era (a record is at most one page, kernel.md A.1).
_SNIFF_BYTES = 1 << 16
_HANDLE_LINE_RE = re.compile(rb"\n(?:PFN [^\n]*| [^\n]*)\nhandle: [0-9]+\n")
_RELEASE_RE = re.compile(r"(?P<major>\d+)\.(?P<minor>\d+)")

# The first kernel printing each page_owner_stacks file (kernel.md D).
_STACKS_SINCE = {
    StacksFileKind.SHOW_STACKS: "6.9",
    StacksFileKind.SHOW_HANDLES: "6.19",
    StacksFileKind.SHOW_STACKS_HANDLES: "6.19",
}


@dataclass(frozen=True)
class Era:
    """What is known of the kernel that wrote a file, and how it was learnt."""

    source: str  # "sidecar", "text" or "unknown"
    version: str | None = None  # major.minor, known from a sidecar only
    release: str | None = None
    fmt: DumpFormat | None = None
    # Registry versions consistent with the text, oldest first.
    candidates: tuple[str, ...] = ()
    stacks_kind: StacksFileKind | None = None

    @property
    def kernel(self) -> KernelVersion | None:
        """Return the registry entry of the version, when it is known."""
        return KernelVersion(self.version) if self.version is not None else None

    def describe(self) -> str:
        """Say in a few words what was found, for messages."""
        if self.version is not None:
            return f"kernel {self.release or self.version} (from {self.source})"
        if self.candidates:
            span = self.candidates[0]
            if len(self.candidates) > 1:
                span += f"-{self.candidates[-1]}"
            shape = f"format {self.fmt}" if self.fmt is not None else "stacks file"
            return f"{shape}, kernels {span} (from the text)"
        return "unknown kernel"


def sidecar_path(path: str) -> str:
    """Return the sidecar name of a capture file.

    >>> sidecar_path("d.txt")
    'd.txt.meta.json'
    """
    return path + SIDECAR_SUFFIX


def version_from_release(release: str) -> str | None:
    """Return the major.minor of a kernel release string.

    >>> version_from_release("6.12.117-amd64")
    '6.12'
    """
    match = _RELEASE_RE.match(release.strip())
    return f"{int(match['major'])}.{int(match['minor'])}" if match else None


def versions_printing(fmt: DumpFormat) -> tuple[str, ...]:
    """Return the registry versions whose page_owner prints records of this shape.

    >>> versions_printing(dump_format_for("6.1"))
    ('5.18', '6.1')
    """
    return tuple(v for v in KERNEL_VERSIONS if dump_format_for(v) == fmt)


def sniff_dump_format(head: bytes) -> DumpFormat | None:
    """Return the line shapes of the first complete record in some leading bytes."""
    for block in iter_blocks(iter_lines(head)):
        if not block.complete:
            break
        try:
            return parse_block(block.lines).fmt
        except ParseError:
            continue
    return None


def load_sidecar(path: str, not_json: str) -> Any:
    """Return the parsed JSON of a dump's capture sidecar, None without one; raise if unreadable.

    `not_json` is the reason the error gives when the sidecar is not JSON.
    """
    meta = sidecar_path(path)
    if not os.path.exists(meta):
        return None
    try:
        with open(meta, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise InputError(f"{meta}: {exc.strerror or exc}") from None
    except ValueError:
        raise InputError(f"{meta}: not a pageowner capture sidecar ({not_json})") from None


def _read_sidecar(path: str) -> Era | None:
    """Return the era a capture sidecar names, None without one; raise if it is unreadable."""
    meta = sidecar_path(path)
    data = load_sidecar(path, "no kernel_release")
    if data is None:
        return None
    try:
        release = data["kernel_release"]
    except (KeyError, TypeError):
        raise InputError(f"{meta}: not a pageowner capture sidecar (no kernel_release)") from None
    if not isinstance(release, str) or (version := version_from_release(release)) is None:
        raise InputError(f"{meta}: kernel_release {release!r} is not a kernel release")
    return Era("sidecar", version, release, dump_format_for(version), (version,))


def sidecar_flags_layout(path: str) -> str | None:
    """Return the flags layout a capture sidecar names (from the kernel config), or None.

    `pageowner capture` records it when it could read the kernel's .config; a dump
    without a sidecar, or a sidecar without the key, gives None.
    """
    data = load_sidecar(path, "not JSON")
    layout = data.get("flags_layout") if isinstance(data, dict) else None
    return layout if isinstance(layout, str) else None


def detect_kernel(path: str) -> Era:
    """Tell which kernel wrote a dump or stacks file: its sidecar first, else its text."""
    era = _read_sidecar(path) if path != "-" else None
    if era is not None:
        return era
    chunks: list[bytes] = []
    size = 0
    with open_input(path) as source:
        while size < _SNIFF_BYTES and (chunk := source.read(_SNIFF_BYTES - size)):
            chunks.append(chunk)
            size += len(chunk)
    head = b"".join(chunks)
    fmt = sniff_dump_format(head)
    if fmt is not None:
        candidates = versions_printing(fmt)
        if _HANDLE_LINE_RE.search(head):
            # Only 7.3's `mode=handle|stack_handle` prints a handle in the dump.
            candidates = tuple(v for v in candidates if KernelVersion(v).has_print_modes)
        return Era("text", fmt=fmt, candidates=candidates)
    kind = sniff_kind(head)
    if kind is not None:
        since = _STACKS_SINCE[kind]
        newer = tuple(v for v in KERNEL_VERSIONS if version_key(v) >= version_key(since))
        return Era("text", candidates=newer, stacks_kind=kind)
    return Era("unknown")
