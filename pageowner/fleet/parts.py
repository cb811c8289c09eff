"""One host's rows of `fleet export` as a Parquet part file, written by the task that reads it.

Kept apart from `export` (the client side, which runs the job) so that the job's tasks
can import it. pyarrow is imported only when a part is written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import urllib.parse
from collections.abc import Hashable

from pageowner.fleet.table import FleetTable

__all__ = ["stack_id", "write_host_part"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stack_id(key: Hashable) -> int:
    """Name a group by a signed 64-bit hash of its key (stable across runs and hosts).

    For `--by stack` the key is the stack as `top` compares it (build suffixes cut off
    unless --exact), so one stack printed differently by two kernels is one stack_id.
    """
    text = json.dumps(key, ensure_ascii=False, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _timestamp(text: str) -> datetime.datetime | None:
    """Parse a sidecar's captured_at (ISO 8601, Z for UTC); None when unknown."""
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def write_host_part(folder: str, index: int, table: FleetTable) -> str:
    """Write a one-host table's rows into FOLDER/groups/release=R/; return the part's path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ((host, entry),) = table.hosts.items()
    groups = list(table.groups.values())
    schema = pa.schema([("host", pa.string()), ("captured_at", pa.timestamp("s", tz="UTC")),
                        ("key", pa.string()), ("stack_id", pa.int64()),
                        ("pages", pa.int64()), ("times", pa.int64())])  # fmt: skip
    rows = pa.table({
        "host": [host] * len(groups),
        "captured_at": [_timestamp(entry.captured_at)] * len(groups),
        "key": [group.label for group in groups],
        "stack_id": [stack_id(group.key) for group in groups],
        "pages": [group.pages for group in groups],
        "times": [group.times for group in groups],
    }, schema=schema)  # fmt: skip
    partition = os.path.join(folder, "groups",
                             "release=" + urllib.parse.quote(entry.release, safe=""))
    os.makedirs(partition, exist_ok=True)
    name = f"part-{index:06d}-{_UNSAFE.sub('_', host)[:64]}.parquet"
    final = os.path.join(partition, name)
    # Dot-named while written: readers of the dataset skip such files.
    temporary = os.path.join(partition, f".{name}.tmp-{os.getpid()}")
    try:
        pq.write_table(rows, temporary)
        os.replace(temporary, final)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    return final
