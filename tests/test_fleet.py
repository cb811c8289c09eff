"""`pageowner fleet` on a real dask.distributed cluster (a scheduler and two workers on
127.0.0.1) and on a local one: the answers must be those of `pageowner top --format json`
added up host by host, whatever the workers, their count or their deaths."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import shutil
import signal
import sys
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")
pytest.importorskip("pyarrow")

from pageowner.analyze.analysis import GroupTable, aggregate_file, aggregate_range, get_group_key  # noqa: E402
from pageowner.fleet.discover import Capture, discover  # noqa: E402
from pageowner.fleet.job import Engine, JobOptions, plan_ranges, read_fleet  # noqa: E402
from pageowner.fleet.results import fleet_top  # noqa: E402
from pageowner.fleet.simulate import SimulateOptions, plan_fleet, simulate_host  # noqa: E402
from pageowner.kernel.frames import normalize_function  # noqa: E402
from pageowner.report.fleet import fleet_top_report  # noqa: E402
from pageowner.report.summaries import render_report  # noqa: E402
from tests.analyze_support import run  # noqa: E402
from tests.fleet_support import Cluster, captures_in, local_cluster, simulate  # noqa: E402

HOSTS = 4
TOP_ARGS = ["--top", "0", "--group-by", "release", "--format", "json"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fleet")
    simulate(root, HOSTS, rounds=2)
    return root


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with local_cluster(2) as running:
        yield running


@pytest.fixture(scope="module")
def sums(fleet: Path) -> dict[str, tuple[Counter[tuple[object, ...]], int, Counter[tuple[object, ...]]]]:
    """`pageowner top --format json` added up over the hosts of each round."""
    return {name: _per_host_sum(captures_in(fleet / name)) for name in ("round-1", "round-2")}


@pytest.fixture(scope="module")
def fleet_top_text(fleet: Path, cluster: Cluster) -> str:
    """`fleet top` of round 2 on the cluster, reading 2 MB byte ranges."""
    result = run(["fleet", "top", str(fleet / "round-2"), *TOP_ARGS, "--scheduler",
                  cluster.address, "--chunk-size", "2M"])
    assert result.exit_code == 0, result.stderr
    return result.stdout


def _json(args: list[str]) -> dict[str, object]:
    result = run(args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


def _stack_key(labels: list[str]) -> tuple[str, ...]:
    """Name a stack as `--by stack` compares it: build suffixes (.isra.0, _noprof) cut off.

    One stack can print differently on two kernels of the fleet; the fleet keeps the
    first host's frames as its label, so sums are compared by this key.
    """
    key = []
    for label in labels:
        name, sep, module = label.partition(" [")
        key.append(normalize_function(name) + sep + module)
    return tuple(key)


def _per_host_sum(dumps: list[Path], by: str = "stack") -> tuple[Counter[tuple[object, ...]], int, Counter[tuple[object, ...]]]:
    """Add up `pageowner top --format json --top 0` over hosts one by one."""
    pages: Counter[tuple[object, ...]] = Counter()
    hosts: Counter[tuple[object, ...]] = Counter()
    total = 0
    for dump in dumps:
        data = _json(["top", str(dump), "--top", "0", "--by", by, "--format", "json", "-j", "1"])
        total += data["total_pages"]  # type: ignore[operator]
        for entry in data["entries"]:  # type: ignore[attr-defined]
            key = _stack_key(entry["stack"])
            pages[key] += entry["pages"]
            hosts[key] += 1
    return pages, total, hosts


def _fleet_entries(data: dict[str, object]) -> tuple[Counter[tuple[object, ...]], Counter[tuple[object, ...]]]:
    pages: Counter[tuple[object, ...]] = Counter()
    hosts: Counter[tuple[object, ...]] = Counter()
    for entry in data["entries"]:  # type: ignore[attr-defined]
        key = _stack_key(entry["stack"])
        pages[key] += entry["pages"]
        hosts[key] += entry["hosts"]
    return pages, hosts


def test_a_range_read_adds_up_to_the_whole_file(fleet: Path) -> None:
    dump = captures_in(fleet / "round-2")[0]
    key = get_group_key("stack")
    _, whole = aggregate_file(str(dump), lambda: GroupTable(key), jobs=1)
    capture = Capture(str(dump), "h", "r", "t", dump.stat().st_size)
    ranges = plan_ranges(capture, 1 << 20)
    assert len(ranges) > 2
    data = dump.read_bytes()
    assert all(data[start - 2:start] == b"\n\n" for start, _ in ranges[1:])
    merged = GroupTable(key)
    from pageowner.kernel.frames import StackInterner

    interner = StackInterner()
    for start, end in ranges:
        _, part = aggregate_range(str(dump), lambda: GroupTable(key), start, end)
        merged.merge_json(part.to_json(), interner)
    assert merged.total_pages == whole.total_pages
    assert [(g.label, g.pages, g.times) for g in merged.groups.values()] == \
        [(g.label, g.pages, g.times) for g in whole.groups.values()]


def test_fleet_top_on_the_cluster_is_the_sum_of_top_per_host(sums: dict[str, Any], fleet_top_text: str) -> None:
    expected, total, hosts = sums["round-2"]
    data = json.loads(fleet_top_text)
    got, got_hosts = _fleet_entries(data)
    assert data["hosts"] == HOSTS
    assert data["total_pages"] == total
    assert got == expected
    assert got_hosts == hosts
    assert data["skipped"] == []


def test_a_local_cluster_gives_the_same_bytes(fleet: Path, fleet_top_text: str) -> None:
    """One local worker reading whole files, against two remote ones reading ranges."""
    local = run(["fleet", "top", str(fleet / "round-2"), *TOP_ARGS, "--workers", "1"])
    assert local.exit_code == 0, local.stderr
    assert local.stdout == fleet_top_text


DIFF_ARGS = ["--top", "0", "--format", "json", "--fail-on-growth", "0"]


def test_fleet_diff_is_the_growth_of_the_per_host_sums(fleet: Path, cluster: Cluster, sums: dict[str, Any]) -> None:
    before, before_total, _ = sums["round-1"]
    after, after_total, _ = sums["round-2"]
    # --fail-on-growth 0: every group that grew trips it (exit 3), after the report.
    result = run(["fleet", "diff", "--before", str(fleet / "round-1"), "--after",
                  str(fleet / "round-2"), *DIFF_ARGS, "--scheduler", cluster.address,
                  "--chunk-size", "2M"])
    assert result.exit_code == 3, result.stderr
    assert "grew over the fleet by more than 0 pages" in result.stderr
    # One local worker reading whole files (another tree, other tasks): the same bytes.
    local = run(["fleet", "diff", "--before", str(fleet / "round-1"), "--after",
                 str(fleet / "round-2"), *DIFF_ARGS, "--workers", "1"])
    assert local.exit_code == 3, local.stderr
    assert local.stdout == result.stdout
    data = json.loads(result.stdout)
    assert data["delta_pages"] == after_total - before_total
    expected = {key: after[key] - before[key] for key in {*before, *after}
                if after[key] != before[key]}
    got: Counter[tuple[object, ...]] = Counter()
    for entry in data["entries"]:
        got[_stack_key(entry["stack"])] += entry["delta_pages"]
    assert {k: v for k, v in got.items() if v} == expected
    top = data["entries"][0]
    assert top["delta_pages"] > 0
    assert top["top_hosts"][0]["delta_pages"] <= top["delta_pages"]
    # The hosts that grew most, from each host's own `top` in both rounds.
    grown = _host_growth(fleet, _stack_key(top["stack"]))
    expected_hosts = sorted(grown.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert [(h["host"], h["delta_pages"]) for h in top["top_hosts"]] == \
        [item for item in expected_hosts if item[1] > 0]


def _host_growth(fleet: Path, key: tuple[object, ...]) -> dict[str, int]:
    """Return each host's growth of one stack between the rounds, by `pageowner top`."""
    growth: dict[str, int] = {}
    for sign, name in ((-1, "round-1"), (1, "round-2")):
        for dump in captures_in(fleet / name):
            data = _json(["top", str(dump), "--top", "0", "--format", "json", "-j", "1"])
            pages = sum(e["pages"] for e in data["entries"]  # type: ignore[attr-defined]
                        if _stack_key(e["stack"]) == key)
            host = dump.parent.name
            growth[host] = growth.get(host, 0) + sign * pages
    return growth


def _bad_fleet(fleet: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    """Good captures among an empty, a truncated, a foreign, a sidecar-less and a duplicate."""
    root = tmp_path / "mixed"
    good = captures_in(fleet / "round-1")[:3]
    for dump in good:
        target = root / dump.parent.name
        target.mkdir(parents=True)
        shutil.copy(dump, target / dump.name)
        shutil.copy(f"{dump}.meta.json", target / f"{dump.name}.meta.json")
    sidecar = json.loads(Path(f"{good[0]}.meta.json").read_text())

    def add(name: str, data: bytes, host: str, size: int | None = None) -> None:
        folder = root / name
        folder.mkdir()
        (folder / "page_owner.txt").write_bytes(data)
        meta = dict(sidecar, hostname=host, bytes=len(data) if size is None else size)
        (folder / "page_owner.txt.meta.json").write_text(json.dumps(meta))

    add("empty", b"", "empty-host")
    whole = good[1].read_bytes()
    add("truncated", whole[: len(whole) // 3], "cut-host", size=len(whole))
    add("foreign", b"Hello, this is not a dump.\nAt all.\n\n", "foreign-host")
    (root / "notes.txt").write_text("fleet notes\n")
    dup = root / "copy-of-first"
    dup.mkdir()
    shutil.copy(good[0], dup / "page_owner.txt")
    shutil.copy(f"{good[0]}.meta.json", dup / "page_owner.txt.meta.json")
    return root, good


def test_bad_captures_are_skipped_with_reasons(fleet: Path, cluster: Cluster, tmp_path: Path) -> None:
    root, good = _bad_fleet(fleet, tmp_path)
    expected, total, _ = _per_host_sum(good)
    result = run(["fleet", "top", str(root), "--top", "0", "--format", "json",
                  "--scheduler", cluster.address])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["hosts"] == 3 and data["total_pages"] == total
    assert _fleet_entries(data)[0] == expected
    reasons = {Path(s["path"]).parent.name if s["host"] != "-" else Path(s["path"]).name:
               s["reason"] for s in data["skipped"]}
    assert reasons["empty"] == "empty (0 bytes)"
    assert reasons["truncated"].startswith("damaged: ")
    assert "neither a page_owner dump nor a show_stacks file" in reasons["foreign"]
    assert reasons["notes.txt"].startswith("no sidecar")
    assert len(reasons) == 4
    assert "same host at the same time" in result.stderr and "counted once" in result.stderr
    # --strict: one line, exit 1.
    strict = run(["fleet", "top", str(root), "--strict", "--scheduler", cluster.address])
    assert strict.exit_code == 1
    lines = strict.stderr.strip().splitlines()
    assert lines[-1].startswith("pageowner: ") and "--strict" in lines[-1]


def test_export_reads_back_with_the_same_totals(fleet: Path, cluster: Cluster, tmp_path: Path,
                                               fleet_top_text: str) -> None:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    out = tmp_path / "out"
    result = run(["fleet", "export", str(fleet / "round-2"), "-o", str(out),
                  "--scheduler", cluster.address])
    assert result.exit_code == 0, result.stderr
    top = json.loads(fleet_top_text)
    rows = ds.dataset(out / "groups", format="parquet", partitioning="hive").to_table()
    assert sum(rows.column("pages").to_pylist()) == top["total_pages"]
    assert len(set(rows.column("host").to_pylist())) == HOSTS
    by_release: Counter[str] = Counter()
    for release, pages in zip(rows.column("release").to_pylist(),
                              rows.column("pages").to_pylist(), strict=True):
        by_release[release] += pages
    assert dict(by_release) == {c["name"]: c["pages"] for c in top["columns"]}  # type: ignore[attr-defined]
    partitions = sorted(p.name for p in (out / "groups").iterdir())
    assert partitions == sorted(f"release={c['name']}" for c in top["columns"])  # type: ignore[attr-defined]
    duckdb = pytest.importorskip("duckdb")
    # The query the README shows: hive partitions are found without being named.
    query = f"SELECT release, sum(pages) FROM '{out}/groups/*/*.parquet' GROUP BY ALL"
    assert dict(duckdb.sql(query).fetchall()) == dict(by_release)
    stacks = pq.read_table(out / "stacks.parquet")
    assert set(rows.column("stack_id").to_pylist()) <= set(stacks.column("stack_id").to_pylist())
    # One part per host, written by the worker that read it; no temporary file left.
    parts = sorted(p.name for p in (out / "groups").rglob("*") if p.is_file())
    assert [name.split("-", 2)[2] for name in parts] == \
        sorted(f"host-{i:04d}.parquet" for i in range(HOSTS))
    # Never over an existing folder.
    again = run(["fleet", "export", str(fleet / "round-2"), "-o", str(out),
                 "--scheduler", cluster.address])
    assert again.exit_code == 1 and "already exists" in again.stderr


def _archive(fleet: Path, target: Path) -> Path:
    """Pack round 2 (dumps and sidecars) into a zip or tar file."""
    files = sorted(p for p in (fleet / "round-2").rglob("*") if p.is_file())
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w") as archive:
            for path in files:
                archive.write(path, path.relative_to(fleet).as_posix())
    else:
        with tarfile.open(target, "w") as archive:
            for path in files:
                archive.add(path, path.relative_to(fleet).as_posix())
    return target


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_an_fsspec_url_reads_as_the_folder(fleet: Path, cluster: Cluster, tmp_path: Path,
                                           fleet_top_text: str, kind: str) -> None:
    """Round 2 packed, read through fsspec's chained URL by the two workers: same bytes."""
    archive = _archive(fleet, tmp_path / f"fleet.{kind}")
    result = run(["fleet", "top", f"{kind}://round-2::file://{archive}", *TOP_ARGS,
                  "--scheduler", cluster.address])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == fleet_top_text
    assert result.stderr == ""


def test_a_url_without_its_filesystem_is_one_line() -> None:
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed here")
    result = run(["fleet", "top", "s3://fleet-bucket/captures/"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "s3://fleet-bucket/captures/" in result.stderr and "s3fs" in result.stderr


def test_simulate_is_seeded(cluster: Cluster, tmp_path: Path) -> None:
    """The cluster's fleet is the one simulated here in one process."""
    result = run(["fleet", "simulate", "--hosts", "3", "--mem", "128M", "--seed", "5",
                  "-o", str(tmp_path / "a"), "--scheduler", cluster.address])
    assert result.exit_code == 0, result.stderr
    options = SimulateOptions(hosts=3, seed=5, mem_mib=128)
    for plan in plan_fleet(options):
        simulate_host(plan.to_json(), str(tmp_path / "b"), 1)
    outputs = [sorted((tmp_path / name).rglob("*")) for name in ("a", "b")]
    first = [p.relative_to(tmp_path / "a") for p in outputs[0]]
    assert first == [p.relative_to(tmp_path / "b") for p in outputs[1]]
    dumps = [p for p in outputs[0] if p.name == "page_owner.txt"]
    assert len(dumps) == 3
    for dump in dumps:
        twin = tmp_path / "b" / dump.relative_to(tmp_path / "a")
        assert dump.read_bytes() == twin.read_bytes()
    hosts = {json.loads(Path(f"{d}.meta.json").read_text())["hostname"] for d in dumps}
    assert hosts == {"host-0000", "host-0001", "host-0002"}


def test_without_the_extra_fleet_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    for args in (["fleet"], ["fleet", "top", "somewhere"]):
        result = run(args)
        assert result.exit_code == 1
        assert result.stderr.strip().count("\n") == 0
        assert "pip install 'pageowner[fleet]'" in result.stderr
    monkeypatch.undo()
    assert "simulate" in run(["fleet"]).stdout


def test_host_from_names_hosts_without_sidecars(fleet: Path, tmp_path: Path) -> None:
    for dump in captures_in(fleet / "round-1")[:2]:
        target = tmp_path / dump.parent.name / "dump.txt"
        target.parent.mkdir()
        shutil.copy(dump, target)
    found = discover([str(tmp_path)], host_from="{host}/dump.txt")
    assert [c.host for c in found.captures] == ["host-0000", "host-0001"]
    assert found.skipped == []
    unnamed = discover([str(tmp_path)])
    assert unnamed.captures == [] and len(unnamed.skipped) == 2


def test_a_worker_killed_mid_job_changes_nothing(fleet: Path, cluster: Cluster, fleet_top_text: str) -> None:
    """Runs last: it leaves the module's cluster one worker short."""
    options = JobOptions(chunk_bytes=1 << 20, fan_in=2)
    engine = Engine(scheduler=cluster.address)
    victim = cluster.workers[0]
    seen: list[tuple[int, int]] = []

    def kill_once(done: int, total: int) -> None:
        seen.append((done, total))
        if done == 2 and victim.poll() is None:
            os.kill(victim.pid, signal.SIGKILL)

    (table,) = read_fleet([[str(fleet / "round-2")]], options, engine, on_progress=kill_once)
    assert victim.wait(timeout=10) == -signal.SIGKILL
    assert seen[-1][0] == seen[-1][1] > 2 * HOSTS  # the kill came mid-job
    assert cluster.alive_workers() == 1
    report = fleet_top_report(fleet_top(table, top=0, group_by="release"), 4096)
    out = io.StringIO()
    render_report(report, out, "json")
    assert out.getvalue() == fleet_top_text


class _Inline:
    """Run the job's task functions in this process, as a client would on workers."""

    def submit(self, function: Any, *args: Any, **_options: Any) -> Any:
        return function(*args)


def test_a_host_on_one_side_still_counts_in_diff(fleet: Path) -> None:
    """host-0000 captured only after, host-0003 only before: both count in the totals."""
    from pageowner.fleet.job import _submit_host, merge_tables, pair_hosts
    from pageowner.fleet.results import fleet_diff
    from pageowner.fleet.table import decode_tables
    from pageowner.kernel.frames import StackInterner

    before = discover([str(fleet / "round-1")]).captures[1:]
    after = discover([str(fleet / "round-2")]).captures[:-1]
    pairs = pair_hosts([before, after])
    assert [(host, [c is not None for c in sides]) for host, sides in pairs] == [
        ("host-0000", [False, True]), ("host-0001", [True, True]),
        ("host-0002", [True, True]), ("host-0003", [True, False])]
    payloads = [_submit_host(_Inline(), i, host, sides, JobOptions(), None)[0]
                for i, (host, sides) in enumerate(pairs)]
    old, new = decode_tables(merge_tables(*payloads), StackInterner())
    result = fleet_diff(old, new, top=0)
    old_sum, old_total, _ = _per_host_sum(captures_in(fleet / "round-1")[1:])
    new_sum, new_total, _ = _per_host_sum(captures_in(fleet / "round-2")[:-1])
    assert (result.before_hosts, result.after_hosts) == (3, 3)
    assert (result.before_pages, result.after_pages) == (old_total, new_total)
    got: Counter[tuple[object, ...]] = Counter()
    for entry in result.entries:
        got[_stack_key(list(entry.stack))] += entry.delta
    assert {k: v for k, v in got.items() if v} == \
        {k: new_sum[k] - old_sum[k] for k in {*old_sum, *new_sum} if new_sum[k] != old_sum[k]}
    # Where host-0000 is among the hosts that grew most, it grew by all its pages.
    own = _json(["top", str(captures_in(fleet / "round-2")[0]), "--top", "0", "--format",
                 "json", "-j", "1"])
    pages = Counter({_stack_key(e["stack"]): e["pages"] for e in own["entries"]})  # type: ignore[attr-defined]
    named = [(entry, delta) for entry in result.entries for host, delta in entry.top_hosts
             if host == "host-0000"]
    assert named
    for entry, delta in named:
        assert delta == pages[_stack_key(list(entry.stack))]
