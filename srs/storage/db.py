"""One SQLite connection in WAL mode, shared by the daemon's threads and safe next to CLI processes.

WAL lets readers in other processes run while the daemon writes; ``busy_timeout`` turns the rare
writer/writer collision into a short wait instead of an error. Writes use ``BEGIN IMMEDIATE`` so a
transaction takes the write lock up front and never fails half-way on lock upgrade.

:class:`WriteBehind` takes the daemon's per-call writes off its event loop: one thread runs them in
the order they were queued, many to a transaction. Every read or write through any
:class:`Database` of the same file in this process first waits for the writes queued before it,
so the API and the webhooks never see an older state than the daemon has already reported.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from srs.storage.errors import StorageError
from srs.storage.schema import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000
SETTLE_TIMEOUT_S = BUSY_TIMEOUT_MS / 1000
"""The longest a reader waits for queued writes; past it, it reads what is committed."""

Operation = Callable[[sqlite3.Connection], None]
ErrorHandler = Callable[[str, BaseException], None]

_TRANSIENT_CODES = frozenset({5, 6, 10, 13})
"""SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL: worth another try, the data is still good."""


class Database:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
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


_WRITERS: dict[str, weakref.WeakSet[WriteBehind]] = {}
_ROLE = threading.local()
"""``writer`` is set on writer threads: they never wait for each other."""
_WRITERS_LOCK = threading.Lock()


class WriteBehind:
    """A queue of write operations and the one thread that commits them, in order, in batches.

    An operation is a function of the connection, run inside a transaction. A batch that fails is
    rolled back and its operations are run again one transaction each, so one bad operation costs
    only itself. Busy, locked, I/O and disk-full errors are retried (with a growing pause, for up
    to ``retry_for`` seconds) before the operation is given up; every operation given up goes to
    ``on_error`` with the description it was queued with. Nothing queued is ever silently dropped.
    """

    def __init__(
        self,
        db: Database,
        on_error: ErrorHandler,
        *,
        retry_for: float = 30.0,
        max_batch: int = 1000,
        linger: float = 0.01,
        name: str = "index-writer",
    ) -> None:
        self.db = db
        self.on_error = on_error
        self.retry_for = retry_for
        self.max_batch = max_batch
        self.linger = linger
        """How long the writer lets a batch fill once there is work (unless someone waits for it)."""
        self._queue: deque[tuple[str, Operation]] = deque()
        self._changed = threading.Condition(threading.Lock())
        self._queued = 0
        self._done = 0
        self._waiting = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        with _WRITERS_LOCK:
            _WRITERS.setdefault(db._key, weakref.WeakSet()).add(self)
        self._thread.start()

    @property
    def pending(self) -> int:
        with self._changed:
            return self._queued - self._done

    def submit(self, what: str, operation: Operation) -> None:
        """Queue ``operation``; ``what`` names it in the error report if it has to be given up."""
        with self._changed:
            if self._closing:
                raise StorageError("the index writer is closed")
            self._queue.append((what, operation))
            self._queued += 1
            if len(self._queue) == 1 or len(self._queue) >= self.max_batch:
                self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is committed or given up (False on timeout)."""
        if threading.current_thread() is self._thread:
            return True
        with self._changed:
            target = self._queued
            if self._done >= target:
                return True
            self._waiting += 1
            self._changed.notify_all()
            try:
                return self._changed.wait_for(lambda: self._done >= target, timeout)
            finally:
                self._waiting -= 1

    def close(self) -> None:
        """Run what is queued, then stop the thread."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if threading.current_thread() is not self._thread:
            self._thread.join()
        with _WRITERS_LOCK:
            writers = _WRITERS.get(self.db._key)
            if writers is not None:
                writers.discard(self)
                if not writers:
                    del _WRITERS[self.db._key]

    def _run(self) -> None:
        _ROLE.writer = True
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._queue) or self._closing)
                if not self._queue:
                    return
                # Let the batch fill: one transaction (and one wake-up) for many writes.
                self._changed.wait_for(self._batch_due, self.linger)
                batch = [self._queue.popleft() for _ in range(min(len(self._queue), self.max_batch))]
            try:
                self._commit(batch)
            finally:
                with self._changed:
                    self._done += len(batch)
                    self._changed.notify_all()

    def _batch_due(self) -> bool:
        return self._closing or self._waiting > 0 or len(self._queue) >= self.max_batch

    def _commit(self, batch: list[tuple[str, Operation]]) -> None:
        try:
            with self.db.write() as conn:
                for _, operation in batch:
                    operation(conn)
            return
        except Exception:
            pass  # rolled back; found out below, one operation at a time
        for what, operation in batch:
            self._one(what, operation)

    def _one(self, what: str, operation: Operation) -> None:
        pause = 0.01
        give_up_at = time.monotonic() + self.retry_for
        while True:
            try:
                with self.db.write() as conn:
                    operation(conn)
                return
            except sqlite3.Error as exc:
                if not _transient(exc) or time.monotonic() + pause > give_up_at:
                    self._report(what, exc)
                    return
            except Exception as exc:  # reported, never raised into the thread's loop
                self._report(what, exc)
                return
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _report(self, what: str, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # a broken error handler must not stop the writer
            self.on_error(what, exc)


def _transient(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return isinstance(exc, sqlite3.OperationalError)
    return (int(code) & 0xFF) in _TRANSIENT_CODES


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
