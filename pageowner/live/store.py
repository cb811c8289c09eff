"""The watch store: an SQLite database of snapshots, each a count of pages per stack.

Stacks are stored once (by a digest of their frame text) and every snapshot refers to
them, so an hour of snapshots costs little more than its page counts. Each snapshot is
one transaction in WAL mode: a kill or Ctrl-C never leaves a half-written snapshot.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from pageowner.errors import StateError

__all__ = [
    "SCHEMA_VERSION",
    "SnapshotRow",
    "StackRow",
    "StackSample",
    "Store",
    "stack_digest",
]

# Version 2 added snapshots.uptime and boot_id; watch upgrades a version 1 store in place.
SCHEMA_VERSION = 2
_APPLICATION = "pageowner-watch"

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE stacks (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,  -- blake2b of the frame lines, see stack_digest()
    frames TEXT NOT NULL,         -- the frame lines as the kernel prints them, one a line
    handle INTEGER                -- the stackdepot handle when show_handles gave one (6.19+)
);
CREATE TABLE snapshots (
    id INTEGER PRIMARY KEY,
    taken_at REAL NOT NULL,       -- seconds since the epoch (the watch's clock)
    source TEXT NOT NULL,         -- show_handles, show_stacks or page_owner
    bytes_read INTEGER NOT NULL,
    read_seconds REAL NOT NULL,
    nr_stacks INTEGER NOT NULL,
    nr_base_pages INTEGER NOT NULL,
    uptime REAL,                  -- the watched machine's /proc/uptime (NULL: unreadable)
    boot_id TEXT                  -- its /proc/sys/kernel/random/boot_id (NULL: unreadable)
);
CREATE TABLE samples (
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,
    stack_id INTEGER NOT NULL REFERENCES stacks(id),
    nr_base_pages INTEGER NOT NULL,
    PRIMARY KEY (snapshot_id, stack_id)
) WITHOUT ROWID;
CREATE INDEX samples_by_stack ON samples(stack_id, snapshot_id);
CREATE INDEX snapshots_by_time ON snapshots(taken_at);
"""

_TABLES = ("meta", "samples", "snapshots", "stacks")


def stack_digest(frames: Sequence[str]) -> str:
    """Return the key a stack is stored under: a digest of its frame lines.

    >>> stack_digest([" post_alloc_hook+0x177/0x1a0"])[:12]
    '05a2c852bc1d'
    """
    text = "\n".join(frames).encode("utf-8", "surrogateescape")
    return hashlib.blake2b(text, digest_size=16).hexdigest()


@dataclass(frozen=True)
class StackSample:
    """One stack in one snapshot: its frame lines, its pages and its handle when known."""

    frames: tuple[str, ...]
    nr_base_pages: int
    handle: int | None = None


@dataclass(frozen=True)
class SnapshotRow:
    """A stored snapshot's header."""

    id: int
    taken_at: float
    source: str
    bytes_read: int
    read_seconds: float
    nr_stacks: int
    nr_base_pages: int
    uptime: float | None = None
    boot_id: str | None = None


@dataclass(frozen=True)
class StackRow:
    """A stored stack."""

    id: int
    frames: tuple[str, ...]
    handle: int | None


class Store:
    """An open watch store; use `Store.open` and close it (or use it as a context manager)."""

    def __init__(self, path: str, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._stack_ids: dict[str, int] = {}
        # Frames -> id, so a stack seen in earlier snapshots costs one dict lookup.
        self._ids_by_frames: dict[tuple[str, ...], int] = {}
        # "NULL, NULL" in a version 1 store that is only read (or cannot be upgraded).
        self._clock_columns = "uptime, boot_id"

    @classmethod
    def open(cls, path: str, *, create: bool = False) -> Store:
        """Open a store, creating it when `create` is set and the file does not exist.

        `create` also says the store will be written (watch); without it, it is only read.
        """
        exists = os.path.exists(path)
        fresh = not exists or (os.path.isfile(path) and os.path.getsize(path) == 0)
        if not exists and not create:
            raise StateError(f"{path}: no such store; make one with "
                             f"`pageowner watch --into {path}`")
        if exists and os.path.isdir(path):
            raise StateError(f"{path}: is a directory, not a store")
        if exists:
            _check_sqlite_header(path)
        if fresh and not create:
            raise StateError(f"{path}: an empty file, not a pageowner store")
        try:
            connection = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StateError(f"{path}: cannot open the store: {exc}") from None
        store = cls(path, connection)
        try:
            store._prepare(create=fresh, writing=create)
        except (sqlite3.DatabaseError, StateError) as exc:
            connection.close()
            if fresh:
                _remove_store_files(path)
            if isinstance(exc, StateError):
                raise
            raise StateError(f"{path}: not a pageowner store ({exc})") from None
        return store

    def _prepare(self, *, create: bool, writing: bool) -> None:
        """Set durability pragmas; create the schema in a new file, else check its version.

        A version 1 store is upgraded only by a writer (watch): a reader (trend) leaves
        the file as it is, so an older pageowner can go on adding to it.
        """
        db = self._db
        db.execute("PRAGMA foreign_keys = ON")
        if create:
            db.execute("PRAGMA journal_mode = WAL")
            with self._transaction():
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("INSERT INTO meta VALUES ('application', ?)", (_APPLICATION,))
            return
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        application = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key='application'").fetchone()
            application = row[0] if row else None
        if application != _APPLICATION or not set(_TABLES) <= tables:
            raise StateError(f"{self.path}: an SQLite database, but not a pageowner watch store")
        if version == 1:
            if writing:
                self._upgrade_from_1()
            else:
                self._clock_columns = "NULL, NULL"
        elif version != SCHEMA_VERSION:
            newer = "a newer" if version > SCHEMA_VERSION else "an older"
            raise StateError(
                f"{self.path}: store schema version {version}, written by {newer} pageowner; "
                f"this one reads version {SCHEMA_VERSION}"
            )
        db.execute("PRAGMA journal_mode = WAL")

    def _upgrade_from_1(self) -> None:
        """Add the uptime column of version 2 (NULL in the snapshots taken before it).

        A store that cannot be written (a read-only copy) is still read, without uptimes.
        """
        try:
            with self._transaction():
                self._db.execute("ALTER TABLE snapshots ADD COLUMN uptime REAL")
                self._db.execute("ALTER TABLE snapshots ADD COLUMN boot_id TEXT")
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except sqlite3.OperationalError:
            self._clock_columns = "NULL, NULL"

    def _transaction(self) -> _Transaction:
        """Return a context manager running its body as one transaction."""
        return _Transaction(self._db)

    @contextlib.contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn SQLite's errors (a damaged file, a full disk, a lock) into StateError."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StateError(f"{self.path}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: the store is damaged ({exc})") from None
        except OverflowError:
            raise StateError(f"{self.path}: a page count does not fit in the store "
                             "(64-bit signed)") from None

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        """Return the schema version recorded in the file."""
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def set_meta(self, values: dict[str, str]) -> None:
        """Record facts about the watched machine (kernel release, host, debugfs...)."""
        with self._guard(), self._transaction():
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                sorted(values.items()),
            )

    def meta(self) -> dict[str, str]:
        """Return the recorded facts."""
        with self._guard():
            return dict(self._db.execute("SELECT key, value FROM meta ORDER BY key"))

    def add_snapshot(
        self,
        taken_at: float,
        source: str,
        samples: Iterable[StackSample],
        *,
        bytes_read: int,
        read_seconds: float,
        uptime: float | None = None,
        boot_id: str | None = None,
    ) -> int:
        """Store one snapshot and the stacks it introduces, atomically; return its id."""
        samples = list(samples)
        pages_by_stack: dict[int, int] = {}
        with self._guard(), self._transaction():
            for sample in samples:
                stack_id = self._stack_id(sample)
                pages_by_stack[stack_id] = pages_by_stack.get(stack_id, 0) + sample.nr_base_pages
            cursor = self._db.execute(
                "INSERT INTO snapshots (taken_at, source, bytes_read, read_seconds, nr_stacks,"
                " nr_base_pages, uptime, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (taken_at, source, bytes_read, read_seconds, len(pages_by_stack),
                 sum(pages_by_stack.values()), uptime, boot_id),
            )  # fmt: skip
            snapshot_id = int(cursor.lastrowid or 0)
            self._db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?)",
                ((snapshot_id, stack_id, pages) for stack_id, pages in pages_by_stack.items()),
            )
        return snapshot_id

    def _stack_id(self, sample: StackSample) -> int:
        """Return the id of a stack, inserting it the first time it is seen."""
        known = self._ids_by_frames.get(sample.frames)
        if known is not None and sample.handle is None:
            return known
        digest = stack_digest(sample.frames)
        stack_id = self._stack_ids.get(digest)
        if stack_id is None:
            row = self._db.execute("SELECT id FROM stacks WHERE digest=?", (digest,)).fetchone()
            if row is None:
                cursor = self._db.execute(
                    "INSERT INTO stacks (digest, frames, handle) VALUES (?, ?, ?)",
                    (digest, "\n".join(sample.frames), sample.handle),
                )
                stack_id = int(cursor.lastrowid or 0)
            else:
                stack_id = int(row[0])
            self._stack_ids[digest] = stack_id
            self._ids_by_frames[sample.frames] = stack_id
        if sample.handle is not None:
            self._db.execute("UPDATE stacks SET handle=? WHERE id=? AND handle IS NOT ?",
                             (sample.handle, stack_id, sample.handle))
        return stack_id

    def count_snapshots(self) -> int:
        """Return how many snapshots the store holds."""
        with self._guard():
            return int(self._db.execute("SELECT count(*) FROM snapshots").fetchone()[0])

    def snapshots(self) -> list[SnapshotRow]:
        """Return the snapshots in time order."""
        with self._guard():
            rows = self._db.execute(
                "SELECT id, taken_at, source, bytes_read, read_seconds, nr_stacks,"
                f" nr_base_pages, {self._clock_columns} FROM snapshots ORDER BY taken_at, id"
            )
            return [SnapshotRow(*row) for row in rows]

    def stacks(self) -> dict[int, StackRow]:
        """Return every stored stack by id."""
        with self._guard():
            rows = self._db.execute("SELECT id, frames, handle FROM stacks ORDER BY id")
            return {
                row[0]: StackRow(row[0], tuple(row[1].split("\n")) if row[1] else (), row[2])
                for row in rows
            }

    def samples(self) -> Iterable[tuple[int, int, int]]:
        """Yield (snapshot_id, stack_id, nr_base_pages) for every stored sample."""
        with self._guard():
            yield from self._db.execute(
                "SELECT snapshot_id, stack_id, nr_base_pages FROM samples")


class _Transaction:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (Ctrl-C included)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _remove_store_files(path: str) -> None:
    """Remove a store this process just failed to create, with its WAL files."""
    for name in (path, path + "-wal", path + "-shm"):
        with contextlib.suppress(OSError):
            os.remove(name)


def _check_sqlite_header(path: str) -> None:
    """Refuse a file that is not an SQLite database before sqlite3 touches it."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(16)
    except OSError as exc:
        raise StateError(f"{path}: cannot read the store: {exc.strerror or exc}") from None
    if header and header != b"SQLite format 3\x00":
        raise StateError(f"{path}: not a pageowner store (not an SQLite database)")
