"""Find the captures of a fleet: files with their sidecars, named by folder, glob or URL.

Plain paths and file:// URLs are listed with os calls; other URLs through fsspec
(`fleet.remote`), kept whole as the capture's path.

A capture is what `pageowner capture -o FILE` writes: the dump and FILE.meta.json, whose
hostname, kernel_release and captured_at name the host, its kernel and the time. Without
a sidecar, `--host-from '{host}/...'` reads them from the path. What cannot be used is
listed as skipped with its reason; nothing is read here beyond sidecars and sizes.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pageowner.dump.era import SIDECAR_SUFFIX
from pageowner.errors import SpecError
from pageowner.fleet.remote import expand_url, is_remote, local_path, read_url, url_beside, url_size

__all__ = [
    "Capture",
    "Discovery",
    "Skipped",
    "discover",
    "group_value",
    "host_pattern",
]

_GLOB_CHARS = re.compile(r"[*?\[]")
_PATTERN_FIELDS = ("host", "release", "captured_at")
UNKNOWN = "-"


@dataclass(frozen=True)
class Capture:
    """One host's dump: where it is, whose it is, and what its sidecar says."""

    path: str
    host: str
    release: str
    captured_at: str
    size: int
    fields: tuple[tuple[str, str], ...] = ()  # the sidecar's scalar fields, as text
    expected_bytes: int | None = None  # the size the sidecar recorded

    def field(self, name: str) -> str:
        """Return a sidecar field as text, or '-' when absent."""
        return dict(self.fields).get(name, UNKNOWN)


@dataclass(frozen=True)
class Skipped:
    """A capture left out, and why."""

    host: str
    path: str
    reason: str


@dataclass
class Discovery:
    """The captures found (sorted by host, time and path), those skipped, and warnings."""

    captures: list[Capture] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def host_pattern(text: str) -> re.Pattern[str]:
    """Compile --host-from: `{host}`, `{release}`, `{captured_at}` are path parts, `...` any.

    Paths are matched below the folder given (a glob's or a file's path as given).

    >>> host_pattern("{host}/...").search("web-1/x.txt")["host"]
    'web-1'
    >>> host_pattern("{host}/{release}/*.txt").search("/d/web-1/6.1.0/x.txt")["host"]
    'web-1'
    """
    parts: list[str] = []
    seen: set[str] = set()
    for token in re.split(r"(\{[a-z_]+\}|\.\.\.|\*)", text):
        if token == "...":
            parts.append(".*")
        elif token == "*":
            parts.append("[^/]*")
        elif token.startswith("{") and token.endswith("}"):
            name = token[1:-1]
            if name not in _PATTERN_FIELDS or name in seen:
                raise SpecError(f"--host-from: {token} is not one of "
                                f"{', '.join('{' + f + '}' for f in _PATTERN_FIELDS)}, once each")
            seen.add(name)
            parts.append(f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(token))
    if "host" not in seen:
        raise SpecError("--host-from needs {host}, e.g. '{host}/...'")
    # Anchored at the end of the path, matching from a path-part boundary.
    return re.compile("(?:^|/)" + "".join(parts) + "$")


def group_value(capture: Capture, name: str) -> str:
    """Return what `--group-by NAME` puts a capture under: release, host or a sidecar field."""
    if name == "release":
        return capture.release
    if name == "host":
        return capture.host
    return capture.field(name)


def _expand(path: str) -> tuple[list[tuple[str, str]], str | None]:
    """List the candidate files of one PATH argument, each with the path --host-from reads.

    Or say why there are none.
    """
    if is_remote(path):
        return expand_url(path)
    path = local_path(path)
    if _GLOB_CHARS.search(path):
        found = sorted((p, p) for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        return found, None if found else "the pattern matches no file"
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found.extend((os.path.join(root, name),
                          os.path.relpath(os.path.join(root, name), path))
                         for name in sorted(files))  # fmt: skip
        return found, None if found else "an empty folder"
    if os.path.lexists(path):
        return [(path, path)], None
    return [], "no such file or folder"


def _read_sidecar(path: str) -> tuple[dict[str, object] | None, str | None]:
    """Read a capture's sidecar: its content, or the reason it cannot be used."""
    name = os.path.basename(path.partition("::")[0]) + SIDECAR_SUFFIX
    try:
        if is_remote(path):
            raw = read_url(path, SIDECAR_SUFFIX)
            if raw is None:
                return None, None
        else:
            with open(path + SIDECAR_SUFFIX, "rb") as handle:
                raw = handle.read()
        data = json.loads(raw)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as exc:
        return None, f"unreadable sidecar {name}: {exc}"
    if not isinstance(data, dict):
        return None, f"sidecar {name} is not a JSON object"
    return data, None


def _companions(files: Iterable[str]) -> set[str]:
    """Return the files that belong to a capture without being one: sidecars, stacks copies."""
    skip: set[str] = set()
    for path in files:
        head, sep, chain = path.partition("::")
        if head.endswith(SIDECAR_SUFFIX):
            skip.add(path)
            dump = head[: -len(SIDECAR_SUFFIX)] + sep + chain
            sidecar, _ = _read_sidecar(dump)
            listed = sidecar.get("files") if sidecar else None
            for entry in listed[1:] if isinstance(listed, list) else []:
                if isinstance(entry, dict) and isinstance(entry.get("file"), str):
                    skip.add(url_beside(dump, entry["file"]) if is_remote(dump) else
                             os.path.join(os.path.dirname(dump), entry["file"]))
    return skip


def _capture(path: str, named_by: str, pattern: re.Pattern[str] | None) -> Capture | Skipped:
    """Describe one candidate file, or say why it is skipped."""
    sidecar, problem = _read_sidecar(path)
    matched = pattern.search(named_by.replace(os.sep, "/")) if pattern is not None else None
    named = matched.groupdict() if matched else {}
    host = str(sidecar.get("hostname") or "") if sidecar else ""
    host = host or named.get("host") or ""
    if problem is not None:
        return Skipped(host or UNKNOWN, path, problem)
    if not host:
        reason = ("no sidecar, and the path does not match --host-from" if pattern is not None
                  else f"no sidecar ({SIDECAR_SUFFIX}); name hosts with --host-from '{{host}}/...'")
        return Skipped(UNKNOWN, path, reason)
    try:
        size = url_size(path) if is_remote(path) else os.stat(path).st_size
    except OSError as exc:
        return Skipped(host, path, f"cannot be read: {exc.strerror or exc}")
    release = str((sidecar or {}).get("kernel_release") or named.get("release") or UNKNOWN)
    when = str((sidecar or {}).get("captured_at") or named.get("captured_at") or UNKNOWN)
    scalars = tuple(sorted((key, str(value)) for key, value in (sidecar or {}).items()
                           if isinstance(value, str | int | float | bool)))  # fmt: skip
    expected = (sidecar or {}).get("bytes")
    return Capture(path, host, release, when, size, scalars,
                   expected if isinstance(expected, int) else None)


def discover(paths: Sequence[str], host_from: str | None = None) -> Discovery:
    """Find the captures under PATH arguments; one capture per host and capture time.

    Two captures of one host at one time are one (the first by path is kept); of several
    captures of one host at different times the latest is kept. Both are warnings.
    """
    pattern = host_pattern(host_from) if host_from else None
    result = Discovery()
    candidates: list[tuple[str, str]] = []
    for path in paths:
        found, problem = _expand(path)
        if problem is not None:
            result.skipped.append(Skipped(UNKNOWN, path, problem))
        candidates.extend(found)
    companions = _companions(path for path, _ in candidates)
    seen: set[str] = set()
    found_captures: list[Capture] = []
    for path, named_by in candidates:
        real = path if is_remote(path) else os.path.realpath(path)
        if path in companions or real in seen:
            continue
        seen.add(real)
        item = _capture(path, named_by, pattern)
        if isinstance(item, Skipped):
            result.skipped.append(item)
        else:
            found_captures.append(item)
    found_captures.sort(key=lambda c: (c.host, c.captured_at, c.path))
    by_host: dict[str, list[Capture]] = {}
    for capture in found_captures:
        by_host.setdefault(capture.host, []).append(capture)
    for host, captures in by_host.items():
        latest = max(captures, key=lambda c: c.captured_at)
        keep = next(c for c in captures if c.captured_at == latest.captured_at)
        result.captures.append(keep)
        for other in captures:
            if other is keep:
                continue
            if other.captured_at == keep.captured_at:
                result.warnings.append(
                    f"{host}: {other.path} is a second capture of the same host at the same "
                    f"time ({keep.captured_at}) as {keep.path}; counted once")
            else:
                result.warnings.append(
                    f"{host}: {other.path} ({other.captured_at}) is older than {keep.path} "
                    f"({keep.captured_at}); only the latest capture of a host counts")
    result.skipped.sort(key=lambda s: (s.host, s.path))
    return result
