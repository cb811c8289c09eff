"""`pageowner fleet export`: a fleet as Parquet, partitioned by kernel release.

OUT/groups/release=R/part-NNNNNN-HOST.parquet holds one host's rows, one per group (host,
captured_at, key, stack_id, pages, times; release is the partition); OUT/stacks.parquet
names each stack_id's frames, leaf first. Each part is written by the worker task that
reads the host (`parts.write_host_part`, temp file and rename: a rerun task rewrites the same
name), so no process holds more than one host's rows; the client writes only the stacks
table, from the merged table. Hive-style partitions read as they are in DuckDB, pandas
and Spark. The folder is written beside OUT and renamed into place: whole or not at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from pageowner.errors import OutputError
from pageowner.fleet.job import Engine, JobOptions, ProgressHandler, read_fleet
from pageowner.fleet.parts import stack_id
from pageowner.fleet.table import FleetTable

__all__ = ["ExportResult", "export_fleet"]


@dataclass(frozen=True)
class ExportResult:
    """What was written: the folder, its rows, stacks and releases, and the table read."""

    output: str
    rows: int
    stacks: int
    releases: tuple[str, ...]
    table: FleetTable


def _write_stacks(table: FleetTable, path: str) -> int:
    """Write stack_id -> frames of every group of the merged table; return the stacks."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stacks: dict[int, list[str]] = {}
    for group in table.groups.values():
        stacks.setdefault(stack_id(group.key), list(group.stack.labels()))
    pq.write_table(pa.table({"stack_id": pa.array(list(stacks), pa.int64()),
                             "frames": pa.array(list(stacks.values()),
                                                pa.list_(pa.string()))}), path)  # fmt: skip
    return len(stacks)


def _remove_leftovers(folder: str) -> None:
    """Remove the temporary files of tasks that died while writing (Dask reran them)."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            if name.startswith("."):
                os.unlink(os.path.join(root, name))


def export_fleet(paths: Sequence[str], options: JobOptions, engine: Engine, output: str, *,
                 host_from: str | None = None,
                 on_progress: ProgressHandler | None = None) -> ExportResult:  # fmt: skip
    """Read a fleet on the cluster and write it as a Parquet dataset in the new folder `output`.

    The workers write into a folder beside `output` (it must be on storage they see).
    """
    if os.path.lexists(output):
        raise OutputError(f"{output}: already exists; give a new folder")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise OutputError(f"{output}: no such folder {parent}")
    temporary = f"{os.path.abspath(output)}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.join(temporary, "groups"))
        (table,) = read_fleet([paths], options, engine, host_from=host_from,
                              on_progress=on_progress, export_to=temporary)  # fmt: skip
        stacks = _write_stacks(table, os.path.join(temporary, "stacks.parquet"))
        _remove_leftovers(temporary)
        os.rename(temporary, output)
    except OSError as exc:
        shutil.rmtree(temporary, ignore_errors=True)
        raise OutputError(f"{output}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    rows = sum(group.spread.count for group in table.groups.values())
    releases = tuple(sorted({entry.release for entry in table.hosts.values()}))
    return ExportResult(output, rows, stacks, releases, table)
