"""`pageowner fleet export`: a merged fleet table as Parquet, partitioned by kernel release.

OUT/groups/release=R/*.parquet holds one row per host and group (host, release,
captured_at, key, stack_id, pages, times); OUT/stacks.parquet names each stack_id's
frames, leaf first. Hive-style partitions read as they are in DuckDB, pandas and Spark.
The folder is written beside OUT and renamed into place: whole or not at all.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import shutil
from dataclasses import dataclass

from pageowner.errors import OutputError
from pageowner.fleet.table import FleetTable
from pageowner.kernel.frames import StackInfo

__all__ = ["ExportResult", "export_table", "stack_id"]


@dataclass(frozen=True)
class ExportResult:
    """What was written: the folder, its rows, stacks and releases."""

    output: str
    rows: int
    stacks: int
    releases: tuple[str, ...]


def stack_id(stack: StackInfo) -> int:
    """Name a stack by a signed 64-bit hash of its frames (stable across runs and hosts)."""
    digest = hashlib.blake2b("\n".join(stack.labels()).encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()  # fmt: skip
    return int.from_bytes(digest, "big", signed=True)


def _timestamp(text: str) -> datetime.datetime | None:
    """Parse a sidecar's captured_at (ISO 8601, Z for UTC); None when unknown."""
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)


def export_table(table: FleetTable, output: str) -> ExportResult:
    """Write `table` as a Parquet dataset in the new folder `output`."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    if os.path.lexists(output):
        raise OutputError(f"{output}: already exists; give a new folder")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise OutputError(f"{output}: no such folder {parent}")
    columns: dict[str, list[object]] = {name: [] for name in (
        "host", "release", "captured_at", "key", "stack_id", "pages", "times")}
    stacks: dict[int, list[str]] = {}
    for group in table.groups.values():
        sid = stack_id(group.stack)
        stacks.setdefault(sid, list(group.stack.labels()))
        for host, (pages, times) in group.hosts.items():
            entry = table.hosts[host]
            columns["host"].append(host)
            columns["release"].append(entry.release)
            columns["captured_at"].append(_timestamp(entry.captured_at))
            columns["key"].append(group.label)
            columns["stack_id"].append(sid)
            columns["pages"].append(pages)
            columns["times"].append(times)
    schema = pa.schema([("host", pa.string()), ("release", pa.string()),
                        ("captured_at", pa.timestamp("s", tz="UTC")), ("key", pa.string()),
                        ("stack_id", pa.int64()), ("pages", pa.int64()),
                        ("times", pa.int64())])  # fmt: skip
    rows = pa.table(columns, schema=schema)
    stack_table = pa.table({"stack_id": pa.array(list(stacks), pa.int64()),
                            "frames": pa.array(list(stacks.values()), pa.list_(pa.string()))})
    temporary = f"{os.path.abspath(output)}.tmp-{os.getpid()}"
    try:
        os.makedirs(temporary)
        ds.write_dataset(rows, os.path.join(temporary, "groups"), format="parquet",
                         partitioning=ds.partitioning(pa.schema([("release", pa.string())]),
                                                      flavor="hive"),
                         basename_template="part-{i}.parquet")  # fmt: skip
        pq.write_table(stack_table, os.path.join(temporary, "stacks.parquet"))
        os.rename(temporary, output)
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    releases = tuple(sorted({entry.release for entry in table.hosts.values()}))
    return ExportResult(output, rows.num_rows, len(stacks), releases)
