"""The fleet job on dask.distributed: one task per capture (or byte range), a tree reduction.

Every task reads its capture with the analysis layer's partial aggregation
(`aggregate_range`, the API the two-core split uses) and returns a `FleetTable` as JSON
bytes; merges take up to `fan_in` tables and return one, so no process ever holds more
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
from pageowner.fleet.table import FleetTable
from pageowner.kernel.frames import StackInterner

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "Engine",
    "FleetError",
    "JobOptions",
    "connect",
    "dask_distributed",
    "plan_ranges",
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
    """Cut a capture into byte ranges at blank lines, each about `chunk_bytes` long."""
    size = capture.size
    if size <= chunk_bytes or _is_compressed(capture.path):
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
    key = get_group_key(args["by"], exact=args["exact"])
    warnings: list[str] = []

    def check(stream: SampleStream) -> None:
        stream.require_records("fleet analysis")

    try:
        samples, table = aggregate_range(
            args["path"], lambda: GroupTable(key), args["start"], args["end"],
            strict=args["strict"], on_warning=warnings.append, check=check,
        )  # fmt: skip
    except PageOwnerError as exc:
        return json.dumps({"error": str(exc)}).encode()
    except OSError as exc:
        return json.dumps({"error": f"{args['path']}: {exc.strerror or exc}"}).encode()
    payload = {"samples": samples, "warnings": warnings, "table": table.to_json()}
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def capture_table(capture_json: str, by: str, exact: bool, *parts: bytes) -> bytes:
    """Join the ranges of one capture into its fleet table, or a skipped entry."""
    capture = _capture_from_json(capture_json)
    key = get_group_key(by, exact=exact)
    interner = StackInterner()
    table = GroupTable(key)
    samples = 0
    warnings: list[str] = []
    for part in parts:
        data = json.loads(part)
        if "error" in data:
            return FleetTable.skipped_only(key, Skipped(capture.host, capture.path,
                                                        data["error"])).to_json()
        samples += data["samples"]
        warnings.extend(data["warnings"])
        table.merge_json(data["table"], interner)
    if samples == 0:
        reason = ("empty (0 bytes)" if capture.size == 0 else
                  f"no page_owner record could be read ({warnings[0]})" if warnings else
                  "no page_owner record in it")  # fmt: skip
        return FleetTable.skipped_only(key, Skipped(capture.host, capture.path,
                                                    reason)).to_json()
    fleet = FleetTable.from_capture(capture, table)
    if warnings:
        fleet.warnings.append(f"{capture.host}: {len(warnings)} block(s) of {capture.path} "
                              f"skipped; the first: {warnings[0]}")
    return fleet.to_json()


def read_capture(capture_json: str, spec: str, by: str, exact: bool) -> bytes:
    """Read a capture of one range: `read_part` and `capture_table` in one task."""
    return capture_table(capture_json, by, exact, read_part(spec))


def merge_tables(*tables: bytes) -> bytes:
    """Merge fleet tables given in capture order."""
    interner = StackInterner()
    merged = FleetTable.from_json(tables[0], interner)
    for payload in tables[1:]:
        merged.merge(FleetTable.from_json(payload, interner))
    return merged.to_json()


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


def _submit_capture(client: Any, capture: Capture, options: JobOptions) -> tuple[Any, list[Any]]:
    """Submit the tasks of one capture; return its table's future and every future made."""
    text = _capture_to_json(capture)
    ranges = plan_ranges(capture, options.chunk_bytes)
    specs = [json.dumps({"path": capture.path, "start": start, "end": end, "by": options.by,
                         "exact": options.exact, "strict": options.strict})
             for start, end in ranges]  # fmt: skip
    if len(specs) == 1:
        future = client.submit(read_capture, text, specs[0], options.by, options.exact)
        return future, [future]
    parts = [client.submit(read_part, spec) for spec in specs]
    future = client.submit(capture_table, text, options.by, options.exact, *parts)
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
            merged = self.client.submit(merge_tables, *self.levels[level])
            self.merges.append(merged)
            self.levels[level] = []
            self.add(merged, level + 1)

    def root(self) -> Any:
        """Merge what is left, earliest captures first; return the root's future or None."""
        left = [future for level in reversed(self.levels) for future in level]
        while len(left) > 1:
            left = [self.client.submit(merge_tables, *left[i : i + self.fan_in])
                    for i in range(0, len(left), self.fan_in)]  # fmt: skip
            self.merges.extend(left)
        return left[0] if left else None


def run_job(
    client: Any,
    sides: Sequence[Sequence[Capture]],
    options: JobOptions,
    on_progress: ProgressHandler | None = None,
) -> list[FleetTable]:
    """Read each side's captures on the cluster and merge them; one table per side."""
    as_completed = dask_distributed().as_completed
    key = get_group_key(options.by, exact=options.exact)
    roots: list[Any] = []
    every: list[Any] = []
    early: list[list[Skipped]] = []
    for captures in sides:
        tree = _Tree(client, options.fan_in)
        bad: list[Skipped] = []
        for capture in captures:
            damaged = _damaged(capture)
            if damaged is not None:
                bad.append(damaged)
                continue
            table, made = _submit_capture(client, capture, options)
            every.extend(made)
            tree.add(table)
        early.append(bad)
        roots.append(tree.root())
        every.extend(tree.merges)
    total = len(every)
    done = 0
    if on_progress is not None:
        on_progress(0, total)
    # Only the roots stay referenced: a finished task's result is freed once merged.
    completed = as_completed(every)
    del every
    try:
        for _future in completed:
            done += 1
            if on_progress is not None:
                on_progress(done, total)
    except Exception as exc:  # noqa: BLE001 - a task that failed on every retry
        raise FleetError(f"the fleet job failed: {type(exc).__name__}: {exc}") from None
    results = []
    interner = StackInterner()
    for root, bad in zip(roots, early, strict=True):
        table = FleetTable(key.name) if root is None else FleetTable.from_json(
            root.result(), interner)  # fmt: skip
        table.skipped = sorted([*bad, *table.skipped], key=lambda s: (s.host, s.path))
        results.append(table)
    return results


def read_fleet(
    path_sets: Sequence[Sequence[str]],
    options: JobOptions,
    engine: Engine,
    *,
    host_from: str | None = None,
    on_progress: ProgressHandler | None = None,
) -> list[FleetTable]:
    """Discover each set of PATHs and read it on the cluster: one merged table per set.

    With `options.strict`, a capture that is skipped fails the job (InputError).
    """
    found: list[Discovery] = [discover(paths, host_from) for paths in path_sets]
    with connect(engine) as client:
        tables = run_job(client, [d.captures for d in found], options, on_progress)
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
