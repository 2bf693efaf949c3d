"""The PostgreSQL engine of the index: a small pool of psycopg 3 connections.

Why the synchronous psycopg API (with :mod:`psycopg_pool`) and not its async one: every caller of
the index is synchronous already. The daemon's writes go to the index writer process (a blocking
loop of its own), the API, webhooks, retention and exports reach the index through
``asyncio.to_thread`` worker threads, and the CLI is a plain process. A thread-safe pool of
blocking connections serves all of them as they are; the async API would need an event loop in
each of those threads and processes and would buy nothing, since no index query runs on the
daemon's event loop.

Each transaction takes one connection from the pool for its whole duration; queries use ``?``
placeholders (rewritten once per distinct statement) and rows answer to both ``row[0]`` and
``row["name"]``, like ``sqlite3.Row``, so the index code is the same for both engines.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool, PoolTimeout

from srs.storage.backend import IndexUrl, to_pyformat
from srs.storage.errors import IndexUnavailable

_T = TypeVar("_T")

POOL_MAX = 8
"""Connections per process: the API's worker threads share them (each query is short)."""
CONNECT_TIMEOUT_S = 5
POOL_WAIT_S = 5.0
PING_WAIT_S = 1.0
"""How long a caller waits for a connection (or for the server to come back) before failing."""

_TRANSIENT = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
    pg_errors.AdminShutdown,
    pg_errors.CannotConnectNow,
    pg_errors.TooManyConnections,
    pg_errors.DiskFull,
    pg_errors.QueryCanceled,
)


class Row(tuple[Any, ...]):
    """A result row readable by position and by column name, and convertible with ``dict(row)``."""

    __slots__ = ()
    _names: dict[str, int]

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> RowMaker[Row]:
    description = cursor.description
    if description is None:
        return lambda values: Row(values)
    names = {column.name: i for i, column in enumerate(description)}
    cls = type("Row", (Row,), {"__slots__": (), "_names": names})
    return lambda values: cls(values)


class PgConnection:
    """One pooled connection inside a transaction, speaking the ``?`` placeholder style.

    The transaction's BEGIN is not a round trip of its own: it leaves in one pipeline with the
    first statement. A read that knows all its statements (:meth:`fetch_each` with ``last``) also
    sends its COMMIT along, so a whole lookup costs one round trip to the server. A connection
    the server dropped (restart, idle timeout) fails that first exchange; it is then swapped for
    a fresh one and the exchange sent again (nothing of the transaction had happened yet).
    """

    __slots__ = ("_begin", "_deferred", "_fresh", "counts_locked", "finished", "raw", "started")

    def __init__(
        self, raw: psycopg.Connection[Row], begin: str, fresh: Callable[[psycopg.Connection[Row]], Any]
    ) -> None:
        self.raw = raw
        self._begin = begin
        self._fresh = fresh
        self.started = False
        """BEGIN has been sent."""
        self.finished = False
        """COMMIT has been sent with the last statements."""
        self._deferred: list[Callable[[], None]] | None = None
        self.counts_locked = False
        """See :func:`srs.storage.writes.lock_counts`."""

    def defer(self, check: Callable[[], None]) -> None:
        """See :func:`srs.storage.writes.then`: inside :meth:`batch`, after it; else now."""
        if self._deferred is None:
            check()
        else:
            self._deferred.append(check)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every statement of the block in one pipeline (one round trip for a batch of writes);
        the writes' checks run once their results are back, and raise as they would have."""
        self._begun()
        self._deferred = []
        try:
            with self.raw.pipeline():
                yield
            checks = self._deferred
        finally:
            self._deferred = None
        for check in checks:
            check()

    def _first(self, exchange: Callable[[], _T]) -> _T:
        if self.started:
            return exchange()
        try:
            result = exchange()
        except psycopg.OperationalError:
            if not self.raw.broken:
                raise
            self.raw = self._fresh(self.raw)
            result = exchange()
        self.started = True
        return result

    def _begun(self) -> None:
        if not self.started:
            self._first(lambda: self.raw.execute(self._begin))

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Row]:
        query, args = to_pyformat(sql), tuple(parameters)
        if self.started:
            return self.raw.execute(query, args)  # type: ignore[arg-type]

        def exchange() -> psycopg.Cursor[Row]:
            with self.raw.pipeline():
                self.raw.execute(self._begin)
                cursor = self.raw.execute(query, args)  # type: ignore[arg-type]
            return cursor

        return self._first(exchange)

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Row]:
        self._begun()
        cursor = self.raw.cursor()
        rows = [tuple(p) for p in parameters]
        if rows:
            cursor.executemany(to_pyformat(sql), rows)  # type: ignore[arg-type]
        return cursor

    def script(self, statement: str) -> None:
        """DDL with no parameters, sent as written (a ``%`` in a function body stays as it is)."""
        self._begun()
        self.raw.execute(statement.encode())

    def fetch_each(
        self, queries: Sequence[tuple[str, Sequence[Any]]], *, last: bool = False
    ) -> list[list[Row]]:
        """The rows of several SELECTs in one round trip (pipeline mode); with ``last``, the
        transaction's COMMIT goes in the same round trip (nothing may follow in it)."""

        alone = last and not self.started and len(queries) == 1  # its own snapshot: no BEGIN/COMMIT

        def exchange() -> list[psycopg.Cursor[Row]]:
            if alone:
                sql, params = queries[0]
                return [self.raw.execute(to_pyformat(sql), tuple(params))]  # type: ignore[arg-type]
            with self.raw.pipeline():
                if not self.started:
                    self.raw.execute(self._begin)
                cursors = [
                    self.raw.execute(to_pyformat(sql), tuple(params))  # type: ignore[arg-type]
                    for sql, params in queries
                ]
                if last:
                    self.raw.execute("COMMIT")  # (alone: nothing to commit)
            return cursors

        cursors = self._first(exchange)
        self.finished = last
        return [cursor.fetchall() for cursor in cursors]


def unreachable(exc: BaseException) -> bool:
    """The server cannot be reached (down, restarting, network): the data is fine, wait and retry."""
    if isinstance(exc, IndexUnavailable | PoolTimeout):
        return True
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CannotConnectNow):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg_errors.QueryCanceled)


def transient(exc: BaseException) -> bool:
    """Worth another try of the same write: lost connection, lock conflicts, server restarting."""
    return unreachable(exc) or isinstance(exc, _TRANSIENT)


class PostgresEngine:
    def __init__(self, url: IndexUrl, *, max_size: int = POOL_MAX) -> None:
        self.url = url
        self.key = url.target
        self._pool = ConnectionPool(
            url.target,
            min_size=1,
            max_size=max_size,
            timeout=POOL_WAIT_S,
            kwargs={"autocommit": True, "row_factory": _row_factory, "connect_timeout": CONNECT_TIMEOUT_S},
            reconnect_timeout=0,
            name="srs-index",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=POOL_WAIT_S)
        except PoolTimeout as exc:
            self._pool.close()
            raise IndexUnavailable(f"cannot connect to the index at {url.shown}") from exc

    @contextmanager
    def transaction(self, *, read_only: bool, wait: float = POOL_WAIT_S) -> Iterator[PgConnection]:
        """A read is one REPEATABLE READ snapshot. Pooled connections are not pinged before use
        (a round trip on every transaction): see :class:`PgConnection` for a dropped one."""
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY" if read_only else "BEGIN"
        conn = PgConnection(self._get(wait), begin, lambda broken: self._fresh(broken, wait))
        try:
            yield conn
            if conn.started and not conn.finished:
                conn.raw.execute("COMMIT")
        except BaseException as exc:
            if conn.started and not conn.finished and not conn.raw.broken:
                with contextlib.suppress(Exception):
                    conn.raw.execute("ROLLBACK")
            if conn.raw.broken and isinstance(exc, psycopg.OperationalError):
                raise IndexUnavailable(f"lost the index at {self.url.shown}: {exc}") from exc
            raise
        finally:
            self._pool.putconn(conn.raw)

    def _get(self, wait: float = POOL_WAIT_S) -> psycopg.Connection[Row]:
        try:
            raw: psycopg.Connection[Row] = self._pool.getconn(timeout=wait)  # type: ignore[assignment]
        except PoolTimeout as exc:
            raise IndexUnavailable(f"no connection to the index at {self.url.shown}: {exc}") from exc
        return raw

    def _fresh(self, broken: psycopg.Connection[Row], wait: float) -> psycopg.Connection[Row]:
        self._pool.putconn(broken)  # the pool drops a broken connection
        return self._get(wait)

    def ping(self) -> None:
        """Does the server answer within a second? (The idle index writer asks once a second.)"""
        with self.transaction(read_only=True, wait=PING_WAIT_S) as conn:
            conn.execute("SELECT 1").fetchone()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.close(timeout=2.0)
