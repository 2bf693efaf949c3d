"""The SQLite engine of the index: one connection in WAL mode, shared by the process's threads.

WAL lets readers in other processes run while the daemon writes; ``busy_timeout`` turns the rare
writer/writer collision into a short wait instead of an error. Writes use ``BEGIN IMMEDIATE`` so a
transaction takes the write lock up front and never fails half-way on lock upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from srs.storage.backend import IndexUrl

BUSY_TIMEOUT_MS = 10_000

_TRANSIENT_CODES = frozenset({5, 6, 10, 13})
"""SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL: worth another try, the data is still good."""


def transient(exc: BaseException) -> bool:
    if not isinstance(exc, sqlite3.Error):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return isinstance(exc, sqlite3.OperationalError)
    return (int(code) & 0xFF) in _TRANSIENT_CODES


class SqliteEngine:
    def __init__(self, url: IndexUrl) -> None:
        self.url = url
        path = url.target
        if path != ":memory:":
            resolved = Path(path)
            resolved.parent.mkdir(parents=True, exist_ok=True)
            _create_private(resolved)
            self.key = str(resolved.resolve())
        else:
            self.key = f":memory:{id(self)}"
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def transaction(self, *, read_only: bool) -> Iterator[sqlite3.Connection]:
        """Commits on success, rolls back on any exception (a failed COMMIT too)."""
        with self._lock:
            self._conn.execute("BEGIN" if read_only else "BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def ping(self) -> None:
        with self._lock:
            self._conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _create_private(path: Path) -> None:
    """Create the index file 0640 before SQLite does (it would use 0644 less the umask); SQLite then
    gives its -wal and -shm files the same mode as the database file."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    except FileExistsError:
        return
    os.close(fd)
