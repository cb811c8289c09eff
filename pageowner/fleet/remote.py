"""Captures named by fsspec URLs (s3://, gs://, zip://...::file://...): list, stat and fetch.

A PATH with a protocol other than a plain `file://` goes through fsspec (installed with
dask); plain paths and `file://` URLs keep the local fast path (os calls, byte ranges).
fsspec is imported only here, when such a URL is given. A URL is kept whole as a
capture's path, the folder part being the first segment of a chained URL
(`zip://fleet/host-1/page_owner.txt::file:///data/fleet.zip`), so its sidecar is the
same URL with `.meta.json` after that part. Workers fetch a remote capture whole into a
local temporary file and read it as any dump: no byte ranges over fsspec.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from pageowner.errors import InputError

__all__ = [
    "expand_url",
    "fetched",
    "is_remote",
    "local_path",
    "read_url",
    "url_beside",
    "url_size",
]

_GLOB_CHARS = re.compile(r"[*?\[]")
_COPY_BYTES = 1 << 20


def is_remote(path: str) -> bool:
    """Tell whether PATH is read through fsspec: a URL other than a plain file:// one."""
    if "://" not in path:
        return False
    return not (path.startswith("file://") and "::" not in path)


def local_path(path: str) -> str:
    """Return the local path of a plain path or file:// URL."""
    return path[len("file://"):] if path.startswith("file://") else path


def _split(url: str) -> tuple[str, str, str]:
    """Split a URL into its protocol, its first segment's path and the chain after it."""
    head, sep, chain = url.partition("::")
    protocol, _, inner = head.partition("://")
    return protocol, inner, sep + chain


def url_beside(url: str, relative: str) -> str:
    """Return the URL of `relative` in the folder of `url`'s first segment."""
    protocol, inner, chain = _split(url)
    return f"{protocol}://{posixpath.join(posixpath.dirname(inner), relative)}{chain}"


def _with_suffix(url: str, suffix: str) -> str:
    protocol, inner, chain = _split(url)
    return f"{protocol}://{inner}{suffix}{chain}"


def _filesystem(url: str) -> tuple[Any, str]:
    """Return the fsspec filesystem of a URL and its path there, or fail naming the URL."""
    protocol = _split(url)[0]
    try:
        core = importlib.import_module("fsspec.core")
        fs, path = core.url_to_fs(url)
    except ImportError as exc:  # the protocol's package (s3fs, gcsfs...) is missing
        raise InputError(f"{url}: cannot read {protocol}:// URLs: {exc}") from None
    except (ValueError, OSError) as exc:
        raise InputError(f"{url}: cannot open: {exc}") from None
    return fs, str(path)


def expand_url(url: str) -> tuple[list[tuple[str, str]], str | None]:
    """List the files of a URL (a folder is walked, a glob matched), each with its path
    below the URL for --host-from; or say why there are none."""
    protocol, inner, chain = _split(url)
    fs, path = _filesystem(url)
    base = path
    try:
        if _GLOB_CHARS.search(inner):
            found = sorted(p for p in fs.glob(path) if fs.isfile(p))
            named = [(p, p) for p in found]
            empty = "the pattern matches no file"
        elif fs.isdir(path):
            found = sorted(fs.find(path))
            named = [(p, posixpath.relpath(p, base)) for p in found]
            empty = "an empty folder"
        elif fs.isfile(path):
            named, empty = [(path, path)], ""
        else:
            return [], "no such file or folder"
    except OSError as exc:
        return [], f"cannot be listed: {exc}"
    if not named:
        return [], empty
    # A filesystem may strip or keep its protocol in the paths it lists: keep the path.
    return [(f"{protocol}://{fs._strip_protocol(p)}{chain}", rel) for p, rel in named], None


def read_url(url: str, suffix: str = "") -> bytes | None:
    """Read a small file (a sidecar) whole; None when it does not exist."""
    target = _with_suffix(url, suffix)
    fs, path = _filesystem(target)
    try:
        if not fs.exists(path):
            return None
        data: bytes = fs.cat_file(path)
    except FileNotFoundError:
        return None
    return data


def url_size(url: str) -> int:
    """Return the size of a remote file in bytes (OSError when it cannot be had)."""
    fs, path = _filesystem(url)
    size = fs.size(path)
    if size is None:
        raise OSError(f"{url}: its filesystem does not say its size")
    return int(size)


@contextlib.contextmanager
def fetched(url: str) -> Iterator[str]:
    """Copy a remote capture into a local temporary file (removed after); yield its path."""
    fs, path = _filesystem(url)
    handle, local = tempfile.mkstemp(prefix="pageowner-fleet-", suffix=".capture")
    try:
        with os.fdopen(handle, "wb") as out:
            try:
                with fs.open(path, "rb") as source:
                    shutil.copyfileobj(source, out, _COPY_BYTES)
            except OSError as exc:
                raise InputError(f"{url}: cannot be read: {exc}") from None
        yield local
    finally:
        with contextlib.suppress(OSError):
            os.unlink(local)
