"""The watch store: schema and version, stacks stored once, atomic snapshots."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pageowner.errors import StateError
from pageowner.live.store import SCHEMA_VERSION, StackSample, Store
from tests.live_trees import real_stacks


def _samples(pages: list[int]) -> list[StackSample]:
    return [StackSample(stack, n) for stack, n in zip(real_stacks(), pages, strict=False)]


def test_new_store_has_the_schema_and_its_version(tmp_path: Path) -> None:
    # GIVEN a new store
    path = tmp_path / "s.db"
    Store.open(str(path), create=True).close()
    # WHEN it is inspected with plain sqlite3
    db = sqlite3.connect(path)
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'"
                                        " AND name NOT LIKE 'sqlite_%'")}
    # THEN it has the normalized tables, indexes, version, WAL journal and an owner mark
    assert tables == {"meta", "stacks", "snapshots", "samples"}
    assert indexes == {"samples_by_stack", "snapshots_by_time"}
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT value FROM meta WHERE key='application'").fetchone() == (
        "pageowner-watch",)


def test_stacks_are_stored_once_across_snapshots(tmp_path: Path) -> None:
    # GIVEN ten snapshots of the same five stacks
    with Store.open(str(tmp_path / "s.db"), create=True) as store:
        for step in range(10):
            store.add_snapshot(60.0 * step, "show_stacks", _samples([step, 2, 3, 4, 5]),
                               bytes_read=100, read_seconds=0.01)
    # WHEN the store is reopened
    with Store.open(str(tmp_path / "s.db")) as store:
        stacks = store.stacks()
        samples = list(store.samples())
        snapshots = store.snapshots()
    # THEN each stack is one row, with its frames intact, and each snapshot has its counts
    assert [row.frames for row in stacks.values()] == list(real_stacks()[:5])
    assert len(samples) == 50
    assert [s.nr_base_pages for s in snapshots] == [step + 14 for step in range(10)]
    assert [s.nr_stacks for s in snapshots] == [5] * 10


def test_an_interrupted_snapshot_leaves_nothing(tmp_path: Path) -> None:
    # GIVEN a store with one snapshot
    path = str(tmp_path / "s.db")
    with Store.open(path, create=True) as store:
        store.add_snapshot(0.0, "show_stacks", _samples([1, 2]), bytes_read=1, read_seconds=0)

    def interrupted() -> Iterator[StackSample]:
        yield from _samples([5, 6, 7])
        raise KeyboardInterrupt

    # WHEN Ctrl-C arrives while the next snapshot's samples are being written
    with Store.open(path) as store, pytest.raises(KeyboardInterrupt):
        store.add_snapshot(60.0, "show_stacks", interrupted(), bytes_read=1, read_seconds=0)
    # THEN the store holds the first snapshot only, and its stacks only
    with Store.open(path) as store:
        assert len(store.snapshots()) == 1
        assert len(store.stacks()) == 2


def test_a_kill_mid_transaction_is_rolled_back(tmp_path: Path) -> None:
    # GIVEN a snapshot written but never committed (the process died)
    path = str(tmp_path / "s.db")
    Store.open(path, create=True).close()
    killed = subprocess.run([sys.executable, "-c", (
        "import os, sqlite3\n"
        f"db = sqlite3.connect({path!r}, isolation_level=None)\n"
        "db.execute('BEGIN')\n"
        "db.execute(\"INSERT INTO snapshots VALUES (1, 0, 'show_stacks', 0, 0, 0, 0, NULL, NULL)\")\n"
        "os._exit(9)\n"
    )], check=False)  # fmt: skip
    assert killed.returncode == 9
    # WHEN the store is opened again
    with Store.open(path) as store:
        # THEN the half snapshot is not there and the store works
        assert store.snapshots() == []
        store.add_snapshot(0.0, "show_stacks", _samples([1]), bytes_read=1, read_seconds=0)
        assert len(store.snapshots()) == 1


def test_missing_store(tmp_path: Path) -> None:
    path = tmp_path / "none.db"
    with pytest.raises(StateError) as caught:
        Store.open(str(path))
    assert str(caught.value) == (
        f"{path}: no such store; make one with `pageowner watch --into {path}`")


def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n")
    with pytest.raises(StateError, match="not a pageowner store \\(not an SQLite database\\)"):
        Store.open(str(path), create=True)
    assert path.read_text() == "my notes, not a database\n"


def test_another_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="an SQLite database, but not a pageowner watch store"):
        Store.open(str(path), create=True)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    # GIVEN a store written by a future pageowner
    path = tmp_path / "s.db"
    Store.open(str(path), create=True).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    # WHEN this one opens it
    with pytest.raises(StateError) as caught:
        Store.open(str(path))
    # THEN it says which versions are involved and leaves the file alone
    assert str(caught.value) == (
        f"{path}: store schema version 3, written by a newer pageowner; "
        "this one reads version 2")
    assert path.exists()


def _version_1_store(path: Path) -> None:
    """Write a store as pageowner wrote schema version 1: no uptime column."""
    Store.open(str(path), create=True).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE snapshots DROP COLUMN uptime")
    db.execute("ALTER TABLE snapshots DROP COLUMN boot_id")
    db.execute("INSERT INTO snapshots (taken_at, source, bytes_read, read_seconds, nr_stacks,"
               " nr_base_pages) VALUES (60, 'show_stacks', 10, 0.5, 0, 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()


def test_a_version_1_store_is_upgraded_and_keeps_its_snapshots(tmp_path: Path) -> None:
    # GIVEN a store written before snapshots carried the machine's uptime
    path = tmp_path / "s.db"
    _version_1_store(path)
    # WHEN a reader (trend) opens it
    before = path.read_bytes()
    with Store.open(str(path)) as store:
        assert [(s.taken_at, s.uptime) for s in store.snapshots()] == [(60.0, None)]
    # THEN the file is left as it is (an older pageowner may still be adding to it)
    assert path.read_bytes() == before
    # WHEN a writer (watch) opens it and adds a snapshot with an uptime
    with Store.open(str(path), create=True) as store:
        assert store.schema_version == SCHEMA_VERSION
        store.add_snapshot(120.0, "show_stacks", _samples([1]), bytes_read=10,
                           read_seconds=0.5, uptime=3600.5, boot_id="b00t")
        snapshots = store.snapshots()
    # THEN the old snapshot has no uptime, the new one has its own, and its boot's id
    assert [(s.taken_at, s.uptime, s.boot_id) for s in snapshots] == [
        (60.0, None, None), (120.0, 3600.5, "b00t")]


def test_a_read_only_version_1_store_is_still_read(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a version 1 store that cannot be written (opened read-only: file modes do not
    # stop root, who runs CI)
    path = tmp_path / "s.db"
    _version_1_store(path)
    before = path.read_bytes()
    original = sqlite3.connect

    def read_only(database: str, **kwargs: object) -> sqlite3.Connection:
        return original(f"file:{database}?mode=ro", uri=True, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite3, "connect", read_only)
    # WHEN it is opened by a writer
    with Store.open(str(path), create=True) as store:
        snapshots = store.snapshots()
    # THEN its snapshots read, without uptimes, and the file is as it was
    assert [(s.taken_at, s.uptime) for s in snapshots] == [(60.0, None)]
    assert path.read_bytes() == before


def test_meta_is_updated_in_place(tmp_path: Path) -> None:
    with Store.open(str(tmp_path / "s.db"), create=True) as store:
        store.set_meta({"kernel_release": "6.12.1", "source": "show_stacks"})
        store.set_meta({"kernel_release": "6.12.2"})
        assert store.meta() == {"application": "pageowner-watch", "kernel_release": "6.12.2",
                                "source": "show_stacks"}
        assert store.schema_version == SCHEMA_VERSION
