"""The fleet job on dask.distributed: one task per capture (or byte range), a tree reduction.

Every task reads one host's capture (in `fleet diff`, its before and after) with the
analysis layer's partial aggregation (`aggregate_range`, the API the two-core split
uses) and returns its `FleetTable`s as JSON bytes; merges take up to `fan_in` of those
and return one, so no process ever holds more
than a few tables and the merged one. Task functions are pure (same bytes for the same
arguments), which is what lets Dask run a lost worker's tasks again. dask is imported
only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from pageowner.analyze.analysis import (
    GroupTable,
    SampleStream,
    aggregate_range,
    get_group_key,
)
from pageowner.dump import parallel
from pageowner.errors import InputError, PageOwnerError
from pageowner.fleet.discover import Capture, Discovery, Skipped, discover
from pageowner.fleet.remote import fetched, is_remote
from pageowner.fleet.table import FleetTable, decode_tables, encode_tables
from pageowner.kernel.frames import StackInterner

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "Engine",
    "FleetError",
    "JobOptions",
    "connect",
    "dask_distributed",
    "host_tables",
    "merge_tables",
    "pair_hosts",
    "plan_ranges",
    "read_part",
    "read_fleet",
    "run_job",
]

DEFAULT_CHUNK_BYTES = 64 << 20
_COMPRESSED_MAGIC = (b"\xfd7zXZ\x00", b"\x1f\x8b")
ProgressHandler = Callable[[int, int], None]


class FleetError(PageOwnerError):
    """The cluster cannot be reached or the job failed."""


@dataclass(frozen=True)
class JobOptions:
    """What a fleet job reads and how it cuts the work."""

    by: str = "stack"
    exact: bool = False
    strict: bool = False
    chunk_bytes: int = DEFAULT_CHUNK_BYTES  # a capture bigger than this is read in ranges
    fan_in: int = 8  # tables per merge task
    group_by: str | None = None  # a --group-by field whose pages per value groups keep

    @property
    def columns(self) -> tuple[str, ...]:
        """Return the fields whose pages per value every group keeps: release, and group_by."""
        extra = () if self.group_by in (None, "release") else (self.group_by,)
        return ("release", *extra)


@dataclass(frozen=True)
class Engine:
    """Where a job runs: an existing scheduler, or a local cluster of `workers` processes."""

    scheduler: str | None = None  # tcp://HOST:PORT; None: $DASK_SCHEDULER_ADDRESS or local
    workers: int | None = None  # local cluster processes (default: one per core)


def dask_distributed() -> Any:
    """Import dask.distributed (untyped: its calls are checked by the tests, not mypy)."""
    return importlib.import_module("distributed")


@contextlib.contextmanager
def connect(engine: Engine) -> Iterator[Any]:
    """Yield a dask.distributed Client for `engine`; a local cluster is stopped after."""
    distributed = dask_distributed()
    Client, LocalCluster = distributed.Client, distributed.LocalCluster  # noqa: N806
    address = engine.scheduler or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise FleetError(f"cannot reach the dask scheduler at {address}: {exc}") from None
        with client:
            yield client
        return
    workers = engine.workers or os.cpu_count() or 1
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:  # fmt: skip
        yield client


def _is_compressed(path: str) -> bool:
    """Tell whether a file starts with the xz or gzip magic (read whole, not in ranges)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
    except OSError:
        return False
    return any(head.startswith(magic) for magic in _COMPRESSED_MAGIC)


def plan_ranges(capture: Capture, chunk_bytes: int) -> list[tuple[int, int | None]]:
    """Cut a capture into byte ranges at blank lines, each about `chunk_bytes` long.

    A compressed capture, or one named by an fsspec URL (fetched whole), is one range.
    """
    size = capture.size
    if size <= chunk_bytes or is_remote(capture.path) or _is_compressed(capture.path):
        return [(0, None)]
    try:
        fd = os.open(capture.path, os.O_RDONLY)
    except OSError:
        return [(0, None)]  # the task says why it cannot be read
    cuts = [0]
    try:
        while cuts[-1] + chunk_bytes < size:
            cut = parallel.find_block_boundary(fd, cuts[-1] + chunk_bytes, size)
            if cut is None or cut >= size:
                break
            cuts.append(cut)
    finally:
        os.close(fd)
    return [(start, end) for start, end in zip(cuts, [*cuts[1:], None], strict=True)]


# -- tasks: plain functions of JSON text, run on the workers ---------------------------------


def read_part(spec: str) -> bytes:
    """Read one range of a capture into a group table (JSON), or say why it cannot be."""
    args = json.loads(spec)
    path = args["path"]
    key = get_group_key(args["by"], exact=args["exact"])
    warnings: list[str] = []

    def check(stream: SampleStream) -> None:
        stream.require_records("fleet analysis")

    remote = is_remote(path)
    local = path
    try:
        with fetched(path) if remote else contextlib.nullcontext(path) as local:
            samples, table = aggregate_range(
                local, lambda: GroupTable(key), args["start"], args["end"],
                strict=args["strict"], on_warning=warnings.append, check=check,
            )  # fmt: skip
    except PageOwnerError as exc:
        return json.dumps({"error": _named(str(exc), path, local)}).encode()
    except OSError as exc:
        return json.dumps({"error": f"{path}: {exc.strerror or exc}"}).encode()
    warnings = [_named(w, path, local) for w in warnings]
    payload = {"samples": samples, "warnings": warnings, "table": table.to_json()}
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _named(message: str, url: str, local: str) -> str:
    """Name a fetched capture by its URL in a message about its local copy."""
    return message.replace(local, url) if local != url else message


def _join_capture(capture: Capture, parts: Sequence[bytes], by: str, exact: bool,
                  columns: Sequence[str]) -> FleetTable:  # fmt: skip
    """Join the ranges of one capture into its fleet table, or a skipped entry."""
    key = get_group_key(by, exact=exact)
    interner = StackInterner()
    table = GroupTable(key)
    samples = 0
    warnings: list[str] = []
    for part in parts:
        data = json.loads(part)
        if "error" in data:
            return FleetTable.skipped_only(key, Skipped(capture.host, capture.path,
                                                        data["error"]), columns)  # fmt: skip
        samples += data["samples"]
        warnings.extend(data["warnings"])
        table.merge_json(data["table"], interner)
    if samples == 0:
        reason = ("empty (0 bytes)" if capture.size == 0 else
                  f"no page_owner record could be read ({warnings[0]})" if warnings else
                  "no page_owner record in it")  # fmt: skip
        return FleetTable.skipped_only(key, Skipped(capture.host, capture.path, reason),
                                       columns)  # fmt: skip
    fleet = FleetTable.from_capture(capture, table, columns)
    if warnings:
        fleet.warnings.append(f"{capture.host}: {len(warnings)} block(s) of {capture.path} "
                              f"skipped; the first: {warnings[0]}")
    return fleet


def _note_growth(before: FleetTable, after: FleetTable, host: str) -> None:
    """Record, in each AFTER group, the host's growth when it grew there."""
    for key, group in after.groups.items():
        old = before.groups.get(key)
        delta = group.pages - (old.pages if old is not None else 0)
        if delta > 0:
            group.grew = [(host, delta)]


def host_tables(task: str, *parts: bytes) -> bytes:
    """Read one host's captures (one per side) into one fleet table per side (JSON list).

    `parts` are the ranges read by `read_part` tasks, side after side; without them the
    task reads its captures itself. With two sides (before, after) the host's growth per
    group is noted here, where both are at hand. With `export`, the host's rows are
    written as a Parquet part file by this task.
    """
    args = json.loads(task)
    columns = tuple(args["columns"])
    key = get_group_key(args["by"], exact=args["exact"])
    given = list(parts)
    tables: list[FleetTable] = []
    for capture_text, specs in zip(args["sides"], args["specs"], strict=True):
        if capture_text is None:
            tables.append(FleetTable(key.name, columns))
            continue
        read = [given.pop(0) for _ in specs] if parts else [read_part(spec) for spec in specs]
        tables.append(_join_capture(_capture_from_json(capture_text), read, args["by"],
                                    args["exact"], columns))  # fmt: skip
    if len(tables) == 2:
        _note_growth(tables[0], tables[1], args["host"])
    if args.get("export") and tables[0].hosts:
        from pageowner.fleet.parts import write_host_part

        write_host_part(args["export"], args["index"], tables[0])
    return encode_tables(tables)


def merge_tables(*payloads: bytes) -> bytes:
    """Merge lists of side tables given in host order, side by side.

    Group by group into the first list, frames left as text: a merge holds the merged
    table and the JSON text of its inputs, not their objects.
    """
    interner = StackInterner()
    merged = decode_tables(payloads[0], interner, stacks=False)
    for payload in payloads[1:]:
        decode_tables(payload, interner, stacks=False, into=merged)
    return encode_tables(merged)


def _capture_to_json(capture: Capture) -> str:
    return json.dumps([capture.path, capture.host, capture.release, capture.captured_at,
                       capture.size, [list(item) for item in capture.fields],
                       capture.expected_bytes])  # fmt: skip


def _capture_from_json(text: str) -> Capture:
    path, host, release, when, size, fields, expected = json.loads(text)
    return Capture(path, host, release, when, size,
                   tuple((str(k), str(v)) for k, v in fields), expected)  # fmt: skip


# -- the client side -----------------------------------------------------------------------


def _damaged(capture: Capture) -> Skipped | None:
    """Say why a capture is known to be bad before reading it: not the size it was written."""
    if capture.expected_bytes is not None and capture.size != capture.expected_bytes:
        return Skipped(capture.host, capture.path,
                       f"damaged: {capture.size} bytes, but its sidecar says "
                       f"{capture.expected_bytes} were captured")  # fmt: skip
    return None


def _specs(capture: Capture | None, options: JobOptions) -> list[str]:
    """Return the read_part specs of a capture's byte ranges (none for no capture)."""
    if capture is None:
        return []
    return [json.dumps({"path": capture.path, "start": start, "end": end, "by": options.by,
                        "exact": options.exact, "strict": options.strict})
            for start, end in plan_ranges(capture, options.chunk_bytes)]  # fmt: skip


def _submit_host(client: Any, index: int, host: str, captures: Sequence[Capture | None],
                 options: JobOptions, export_to: str | None) -> tuple[Any, list[Any]]:  # fmt: skip
    """Submit the tasks of one host (a capture per side); return its tables' future and all."""
    specs = [_specs(capture, options) for capture in captures]
    task = json.dumps({
        "host": host, "index": index, "by": options.by, "exact": options.exact,
        "columns": list(options.columns), "export": export_to, "specs": specs,
        "sides": [None if c is None else _capture_to_json(c) for c in captures]})
    if all(len(side) <= 1 for side in specs):
        future = client.submit(host_tables, task)
        return future, [future]
    parts = [client.submit(read_part, spec) for side in specs for spec in side]
    future = client.submit(host_tables, task, *parts)
    return future, [*parts, future]


class _Tree:
    """Submit a merge as soon as `fan_in` tables of one level are submitted.

    Dask runs tasks in submission order among those ready, so a merge submitted right
    after its inputs runs before later captures are read: a worker holds a few tables at
    a time, not one per host. Levels hold futures in capture order (a higher level's
    tables come from earlier captures), so the merged order is the serial one.
    """

    def __init__(self, client: Any, fan_in: int) -> None:
        self.client = client
        self.fan_in = fan_in
        self.levels: list[list[Any]] = []
        self.merges: list[Any] = []

    def add(self, future: Any, level: int = 0) -> None:
        """Add a table at a level, merging the level when it is full."""
        while len(self.levels) <= level:
            self.levels.append([])
        self.levels[level].append(future)
        if len(self.levels[level]) == self.fan_in:
            # Before any ready read: a merge frees its inputs, a read adds a table.
            merged = self.client.submit(merge_tables, *self.levels[level], priority=level + 1)
            self.merges.append(merged)
            self.levels[level] = []
            self.add(merged, level + 1)

    def root(self) -> Any:
        """Merge what is left, earliest captures first; return the root's future or None."""
        left = [future for level in reversed(self.levels) for future in level]
        while len(left) > 1:
            left = [self.client.submit(merge_tables, *left[i : i + self.fan_in], priority=1)
                    for i in range(0, len(left), self.fan_in)]  # fmt: skip
            self.merges.extend(left)
        return left[0] if left else None


def pair_hosts(sides: Sequence[Sequence[Capture]]) -> list[tuple[str, list[Capture | None]]]:
    """Pair each side's captures by host, in host order; None where a side lacks the host."""
    by_host: dict[str, list[Capture | None]] = {}
    for number, captures in enumerate(sides):
        for capture in captures:
            by_host.setdefault(capture.host, [None] * len(sides))[number] = capture
    return sorted(by_host.items())


def run_job(
    client: Any,
    sides: Sequence[Sequence[Capture]],
    options: JobOptions,
    on_progress: ProgressHandler | None = None,
    export_to: str | None = None,
) -> list[FleetTable]:
    """Read each side's captures on the cluster and merge them; one table per side.

    A host's captures of every side are read by one task, so that `fleet diff` knows
    each host's growth per group there and sends up only the hosts that grew most.
    """
    as_completed = dask_distributed().as_completed
    key = get_group_key(options.by, exact=options.exact)
    tree = _Tree(client, options.fan_in)
    every: list[Any] = []
    early: list[list[Skipped]] = [[] for _ in sides]
    for index, (host, captures) in enumerate(pair_hosts(sides)):
        for number, capture in enumerate(captures):
            damaged = _damaged(capture) if capture is not None else None
            if damaged is not None:
                early[number].append(damaged)
                captures[number] = None
        if all(capture is None for capture in captures):
            continue
        tables, made = _submit_host(client, index, host, captures, options, export_to)
        every.extend(made)
        tree.add(tables)
    root = tree.root()
    every.extend(tree.merges)
    total = len(every)
    done = 0
    if on_progress is not None:
        on_progress(0, total)
    # Only the root stays referenced: a finished task's result is freed once merged.
    completed = as_completed(every)
    del every
    try:
        for _future in completed:
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    except Exception as exc:  # noqa: BLE001 - a task that failed on every retry
        raise FleetError(f"the fleet job failed: {type(exc).__name__}: {exc}") from None
    interner = StackInterner()
    if root is None:
        results = [FleetTable(key.name, options.columns) for _ in sides]
    else:
        try:
            payload = root.result()
        except Exception as exc:  # noqa: BLE001 - as above: a task that failed every retry
            raise FleetError(f"the fleet job failed: {type(exc).__name__}: {exc}") from None
        results = decode_tables(payload, interner)
    for table, bad in zip(results, early, strict=True):
        table.skipped = sorted([*bad, *table.skipped], key=lambda s: (s.host, s.path))
    return results


def read_fleet(
    path_sets: Sequence[Sequence[str]],
    options: JobOptions,
    engine: Engine,
    *,
    host_from: str | None = None,
    on_progress: ProgressHandler | None = None,
    export_to: str | None = None,
) -> list[FleetTable]:
    """Discover each set of PATHs and read it on the cluster: one merged table per set.

    With `options.strict`, a capture that is skipped fails the job (InputError). With
    `export_to` (a folder the workers see), each host's rows of the first set are written
    there as Parquet by the task that reads it.
    """
    found: list[Discovery] = [discover(paths, host_from) for paths in path_sets]
    with connect(engine) as client:
        tables = run_job(client, [d.captures for d in found], options, on_progress,
                         export_to)  # fmt: skip
    for table, discovery, path_set in zip(tables, found, path_sets, strict=True):
        table.skipped = sorted([*discovery.skipped, *table.skipped],
                               key=lambda s: (s.host, s.path))  # fmt: skip
        table.warnings = [*discovery.warnings, *table.warnings]
        if options.strict and table.skipped:
            first = table.skipped[0]
            raise InputError(f"{first.path}: {first.reason} (--strict; "
                             f"{len(table.skipped)} capture(s) could not be used)")
        if not table.hosts:
            why = (f"; {len(table.skipped)} skipped, the first: {table.skipped[0].path}: "
                   f"{table.skipped[0].reason}" if table.skipped else "")
            raise InputError(f"no capture could be read in {' '.join(path_set)}{why}")
    return tables
