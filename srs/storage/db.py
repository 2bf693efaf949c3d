"""The index database, SQLite or PostgreSQL by its URL, shared by the daemon's threads and safe next
to CLI processes and other nodes.

:class:`Database` gives transactions (``write()``, ``read()``) on either engine
(:mod:`srs.storage.sqlite`, :mod:`srs.storage.postgres`) and brings the schema up to date on open.

:class:`srs.storage.write_behind.WriteBehind` takes the daemon's per-call writes off its event loop
(to the index writer process). It registers here, so every read or write through any
:class:`Database` of the same index in this process first waits for the writes queued before it:
the API and the webhooks never see an older state than the daemon has already reported.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from srs.storage.backend import Engine, IndexUrl, dialect_of
from srs.storage.errors import StorageError
from srs.storage.schema import MIGRATIONS, SCHEMA_VERSION, split_statements
from srs.storage.sqlite import BUSY_TIMEOUT_MS, SqliteEngine
from srs.storage.sqlite import transient as sqlite_transient

SETTLE_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
"""The longest a reader waits for queued writes; past it, it reads what is committed."""
MIGRATION_LOCK = 0x5352_5349_4458
"""PostgreSQL advisory lock key held while migrating, so nodes starting together migrate once."""


class Database:
    """``target``: a path or ``sqlite:///PATH`` (SQLite), or ``postgresql://…``."""

    def __init__(self, target: Path | str) -> None:
        self.url = IndexUrl.parse(target)
        self.dialect = dialect_of(self.url.engine)
        self._depth = threading.local()
        self._engine: Any
        if self.url.engine is Engine.POSTGRESQL:
            from srs.storage.postgres import PostgresEngine

            self._engine = PostgresEngine(self.url)
        else:
            self._engine = SqliteEngine(self.url)
        self._key: str = self._engine.key
        try:
            self._migrate()
        except BaseException:
            self._engine.close()
            raise

    @property
    def path(self) -> Path | None:
        """The SQLite file (None for PostgreSQL)."""
        return Path(self.url.target) if self.url.engine is Engine.SQLITE else None

    @property
    def in_memory(self) -> bool:
        """Nothing another process could open (SQLite ``:memory:``)."""
        return self.url.engine is Engine.SQLITE and self.url.target == ":memory:"

    @property
    def key(self) -> str:
        """What names this index to another process: the resolved file path or the URL."""
        return self._key

    def transient(self, exc: BaseException) -> bool:
        """Worth another try: the database is busy, restarting or unreachable; the write is good."""
        if self.url.engine is Engine.POSTGRESQL:
            from srs.storage.postgres import transient

            return transient(exc)
        return sqlite_transient(exc)

    def unreachable(self, exc: BaseException) -> bool:
        """The server cannot be reached at all: wait for it, however long it takes."""
        if self.url.engine is Engine.POSTGRESQL:
            from srs.storage.postgres import unreachable

            return unreachable(exc)
        return False

    def ping(self) -> None:
        """Raises when the database cannot answer now."""
        self._engine.ping()

    def _migrate(self) -> None:
        postgres = self.url.engine is Engine.POSTGRESQL
        with self.write() as conn:
            if postgres:
                conn.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
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
                for statement in split_statements(MIGRATIONS[version]):
                    for sql in self.dialect.migration(statement):
                        if postgres:
                            conn.script(sql)
                        else:
                            conn.execute(sql)
            if current != SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @contextmanager
    def write(self) -> Iterator[Any]:
        """A write transaction; commits on success, rolls back on any exception (a failed COMMIT too)."""
        self._settle()
        with self._held(), self._engine.transaction(read_only=False) as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Any]:
        """A consistent snapshot for multi-statement reads."""
        self._settle()
        with self._held(), self._engine.transaction(read_only=True) as conn:
            yield conn

    def close(self) -> None:
        self._engine.close()

    @contextmanager
    def _held(self) -> Iterator[None]:
        self._depth.value = getattr(self._depth, "value", 0) + 1
        try:
            yield
        finally:
            self._depth.value -= 1

    def _settle(self) -> None:
        """Wait for this process's queued writes to the same index (never inside a transaction of ours)."""
        if getattr(self._depth, "value", 0) or getattr(_ROLE, "writer", False):
            return
        for writer in list(_WRITERS.get(self._key, ())):
            if getattr(writer, "reachable", True):  # an unreachable index: nothing to wait for
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
