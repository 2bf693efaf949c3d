"""One SQLite connection in WAL mode, shared by the daemon's threads and safe next to CLI processes.

WAL lets readers in other processes run while the daemon writes; ``busy_timeout`` turns the rare
writer/writer collision into a short wait instead of an error. Writes use ``BEGIN IMMEDIATE`` so a
transaction takes the write lock up front and never fails half-way on lock upgrade.

:class:`srs.storage.write_behind.WriteBehind` takes the daemon's per-call writes off its event loop
(to the index writer process). It registers here, so every read or write through any
:class:`Database` of the same file in this process first waits for the writes queued before it:
the API and the webhooks never see an older state than the daemon has already reported.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from srs.storage.errors import StorageError
from srs.storage.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000
SETTLE_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
"""The longest a reader waits for queued writes; past it, it reads what is committed."""


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _create_private(self.path)
            self._key = str(self.path.resolve())
        else:
            self._key = f":memory:{id(self)}"
        self._lock = threading.RLock()
        self._depth = threading.local()
        self._conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        with self.write() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"index schema version {current} is newer than this srs understands ({SCHEMA_VERSION})"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in _split(MIGRATIONS[version]):
                    conn.execute(statement)
            conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; commits on success, rolls back on any exception (a failed COMMIT too)."""
        self._settle()
        with self._lock, self._held():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads."""
        self._settle()
        with self._lock, self._held():
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _held(self) -> Iterator[None]:
        self._depth.value = getattr(self._depth, "value", 0) + 1
        try:
            yield
        finally:
            self._depth.value -= 1

    def _settle(self) -> None:
        """Wait for this process's queued writes to the same file (never inside a transaction of ours)."""
        if getattr(self._depth, "value", 0) or getattr(_ROLE, "writer", False):
            return
        for writer in list(_WRITERS.get(self._key, ())):
            writer.wait(SETTLE_TIMEOUT_S)


class PendingWrites(Protocol):
    """Writes to this database queued in this process and not yet committed."""

    def wait(self, timeout: float | None = None) -> bool: ...


_WRITERS: dict[str, weakref.WeakSet[PendingWrites]] = {}
_ROLE = threading.local()
"""``writer`` is set on threads that commit queued writes: they never wait for the queue."""
_WRITERS_LOCK = threading.Lock()


def register_writer(db: Database, writer: PendingWrites) -> None:
    with _WRITERS_LOCK:
        _WRITERS.setdefault(db._key, weakref.WeakSet()).add(writer)


def unregister_writer(db: Database, writer: PendingWrites) -> None:
    with _WRITERS_LOCK:
        writers = _WRITERS.get(db._key)
        if writers is not None:
            writers.discard(writer)
            if not writers:
                del _WRITERS[db._key]


def mark_writer_thread() -> None:
    """This thread commits queued writes itself: its reads and writes must not wait for the queue."""
    _ROLE.writer = True


def _create_private(path: Path) -> None:
    """Create the index file 0640 before SQLite does (it would use 0644 less the umask); SQLite then
    gives its -wal and -shm files the same mode as the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    except FileExistsError:
        return
    os.close(fd)


def _split(script: str) -> list[str]:
    """Statements of a migration script; a trigger body's inner ``;`` does not end its statement."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending.strip())
    return statements
