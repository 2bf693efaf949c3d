"""The index writer process: commits the daemon's queued index writes, in order, many to a transaction.

Why a process and not a thread: a thread commits SQLite rows under the daemon's GIL, and at a few
hundred call setups per second that alone took a fifth of the SIP loop's time. Here the loop pays
one pickle and one ``send`` per write.

Protocol on one ``AF_UNIX`` stream (each message a 4-byte length and a pickle):

* daemon → writer: ``("w", [(seq, what, write), ...])`` (the writes of one loop turn, numbered
  from 1 without gaps), ``("flush",)`` (someone waits: commit now),
  ``("close",)`` (commit everything, then exit). End of file means the same as close.
* writer → daemon: ``("ready", seq)`` (committed up to ``seq`` before it started), ``("error",
  seq, what, text)`` for a write given up, ``("done", seq)`` once everything up to ``seq`` is
  committed or given up, ``("index", reachable, text)`` when the database stops or starts
  answering.

A database that cannot be reached (PostgreSQL down or restarting, the network gone) is not a
reason to give a write up: the writer keeps the batch, tries it again with a growing pause (at
most :data:`DOWN_PAUSE_MAX_S`) for as long as it takes, and says so to the daemon, which refuses
new calls meanwhile. While it waits it reads no more writes: the socket fills, then the daemon
keeps the rest (see :mod:`srs.storage.write_behind` for the bound). When idle, the writer asks
the database every :data:`PROBE_INTERVAL_S` whether it still answers, so an outage is known
before the next call needs the index.

Each transaction also records the last ``seq`` it holds (table ``index_writer_progress``, keyed by
the daemon run), so a writer started again after a crash skips what is already committed: every
write lands exactly once.
"""

from __future__ import annotations

import contextlib
import pickle
import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from srs.storage import writes
from srs.storage.backend import Connection
from srs.storage.db import Database

FRAME = struct.Struct("!I")
MAX_FRAME = 64 << 20
"""A write is at most one metadata document (1 MiB by the parser's limit) plus its row."""

PROGRESS_KEPT_S = 7 * 86400
"""Progress rows of daemon runs that ended without closing are dropped after this long."""

PROBE_INTERVAL_S = 1.0
DOWN_PAUSE_MAX_S = 2.0

Report = Callable[[int, str, BaseException], None]
Status = Callable[[bool, str], None]
Queued = tuple[int, str, writes.Write]


class FrameError(ValueError):
    """A frame longer than any write can be: the stream is not ours or is corrupt."""


def encode(message: tuple[Any, ...]) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(body)) + body


class FrameReader:
    """Bytes in, messages out: frames may arrive split or many to a read."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[Any, ...]]:
        self._buffer += data
        messages: list[tuple[Any, ...]] = []
        offset = 0
        buffer = self._buffer
        while len(buffer) - offset >= FRAME.size:
            (length,) = FRAME.unpack_from(buffer, offset)
            if length > MAX_FRAME:
                raise FrameError(f"frame of {length} bytes exceeds {MAX_FRAME}")
            end = offset + FRAME.size + length
            if end > len(buffer):
                break
            messages.append(pickle.loads(memoryview(buffer)[offset + FRAME.size : end]))
            offset = end
        del buffer[:offset]
        return messages


class Committer:
    """Commits queued writes in order. A batch that fails is rolled back and its writes run again
    one transaction each, so one bad write costs only itself; busy, locked, I/O and disk-full
    errors are retried with a growing pause for up to ``retry_for`` seconds before a write is
    given up and reported. Nothing is dropped without a report. An unreachable database is
    waited for without limit (``status`` hears when it goes and comes back)."""

    def __init__(
        self,
        db: Database,
        run: str,
        report: Report,
        *,
        retry_for: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        status: Status | None = None,
    ) -> None:
        self.db = db
        self.run = run
        self.report = report
        self.retry_for = retry_for
        self.sleep = sleep
        self.clock = clock
        self.status = status
        self.reachable = True
        self._down_pause = 0.05

    def _up(self) -> None:
        self._down_pause = 0.05
        if not self.reachable:
            self.reachable = True
            if self.status is not None:
                self.status(True, "")

    def _down(self, exc: BaseException) -> None:
        """The database did not answer: say so once, then wait a little longer each time."""
        if self.reachable:
            self.reachable = False
            if self.status is not None:
                self.status(False, f"{type(exc).__name__}: {exc}".strip()[:300])
        self.sleep(self._down_pause)
        self._down_pause = min(self._down_pause * 2, DOWN_PAUSE_MAX_S)

    def probe(self) -> bool:
        """Does the database answer now? (For the idle writer: an outage is known before it matters.)"""
        try:
            self.db.ping()
        except Exception as exc:
            if not self.db.unreachable(exc):
                return True  # answered, if badly: the next write finds out what is wrong
            if self.reachable:
                self.reachable = False
                if self.status is not None:
                    self.status(False, f"{type(exc).__name__}: {exc}".strip()[:300])
            return False
        self._up()
        return True

    def _until_reachable(self, action: Callable[[], Any]) -> Any:
        """``action()``, tried again for as long as the database cannot be reached."""
        while True:
            try:
                result = action()
            except Exception as exc:
                if not self.db.unreachable(exc):
                    raise
                self._down(exc)
                continue
            self._up()
            return result

    def committed(self) -> int:
        """The last ``seq`` of this run already in the index (0 for a new run); drops old runs' rows."""
        result: int = self._until_reachable(self._committed)
        return result

    def _committed(self) -> int:
        with self.db.write() as conn:
            conn.execute(
                "DELETE FROM index_writer_progress WHERE run != ? AND updated_at < ?",
                (self.run, time.time() - PROGRESS_KEPT_S),
            )
            row = conn.execute("SELECT seq FROM index_writer_progress WHERE run = ?", (self.run,)).fetchone()
        return int(row[0]) if row else 0

    def forget_run(self) -> None:
        """The run closed cleanly: nobody will resend its writes."""

        def forget() -> None:
            with self.db.write() as conn:
                conn.execute("DELETE FROM index_writer_progress WHERE run = ?", (self.run,))

        self._until_reachable(forget)

    def commit(self, batch: list[Queued]) -> None:
        if not batch:
            return
        while True:
            try:
                with self.db.write() as conn, _batch(conn):
                    for _, _, write in batch:
                        writes.run(conn, write)
                    self._progress(conn, batch[-1][0])
            except Exception as exc:
                if self.db.unreachable(exc):
                    self._down(exc)  # the whole batch waits for the database, then goes in as one
                    continue
                break  # rolled back; found out below, one write at a time
            self._up()
            return
        for item in batch:
            self._one(item)

    def _one(self, item: Queued) -> None:
        seq, what, write = item
        pause = 0.01
        give_up_at = self.clock() + self.retry_for
        while True:
            try:
                with self.db.write() as conn:
                    writes.run(conn, write)
                    self._progress(conn, seq)
                self._up()
                return
            except Exception as exc:  # reported, never raised into the writer's loop
                if self.db.unreachable(exc):
                    self._down(exc)
                    give_up_at = self.clock() + self.retry_for  # waiting for the server is not trying
                    continue
                if not self.db.transient(exc) or self.clock() + pause > give_up_at:
                    self._give_up(seq, what, exc)
                    return
            self.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _give_up(self, seq: int, what: str, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # a broken report must not stop the writer
            self.report(seq, what, exc)
        with contextlib.suppress(Exception), self.db.write() as conn:
            self._progress(conn, seq)

    def _progress(self, conn: Connection, seq: int) -> None:
        conn.execute(
            "INSERT INTO index_writer_progress (run, seq, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT (run) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            (self.run, seq, time.time()),
        )


def _batch(conn: Any) -> contextlib.AbstractContextManager[Any]:
    """On PostgreSQL, a batch's statements leave in one pipeline (see ``PgConnection.batch``)."""
    batch = getattr(conn, "batch", None)
    return batch() if batch is not None else contextlib.nullcontext()


class WriterLoop:
    """Reads the daemon's stream, lets a batch fill for ``linger`` seconds, commits, acknowledges."""

    def __init__(
        self,
        sock: socket.socket,
        db: Database,
        run: str,
        *,
        retry_for: float = 30.0,
        linger: float = 0.01,
        max_batch: int = 1000,
    ) -> None:
        self.sock = sock
        self.committer = Committer(db, run, self._report, retry_for=retry_for, status=self._status)
        self.linger = linger
        self.max_batch = max_batch
        self.reader = FrameReader()
        self.pending: list[Queued] = []
        self.done = 0
        self.urgent = False
        self.closing = False
        self.peer_gone = False

    def run(self) -> int:
        self.done = self.committer.committed()
        self._send(("ready", self.done))
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        due = 0.0
        while True:
            now = time.monotonic()
            full = len(self.pending) >= self.max_batch
            if self.pending and (self.urgent or self.closing or full or now >= due):
                self._commit()
                continue
            if self.closing:
                if not self.peer_gone:
                    self.committer.forget_run()
                    self._send(("closed", self.done))
                return 0
            idle = int(PROBE_INTERVAL_S * 1000)
            timeout = idle if not self.pending else max(0, int((due - now) * 1000) + 1)
            if not poller.poll(timeout):
                if not self.pending:
                    self.committer.probe()
                continue
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                # the daemon is gone (or closed without a word): commit what it sent, then leave
                self.closing = self.peer_gone = True
                continue
            had = bool(self.pending)
            self._take(self.reader.feed(data))
            if self.pending and not had:
                due = time.monotonic() + self.linger

    def _take(self, messages: list[tuple[Any, ...]]) -> None:
        for message in messages:
            kind = message[0]
            if kind == "w":
                done = self.done
                self.pending.extend(item for item in message[1] if item[0] > done)
            elif kind == "flush":
                self.urgent = True
            elif kind == "close":
                self.closing = True

    def _commit(self) -> None:
        batch = self.pending[: self.max_batch]
        del self.pending[: self.max_batch]
        self.committer.commit(batch)
        self.done = batch[-1][0]
        if not self.pending:
            self.urgent = False
        self._send(("done", self.done))

    def _status(self, reachable: bool, text: str) -> None:
        self._send(("index", reachable, text))

    def _report(self, seq: int, what: str, exc: BaseException) -> None:
        self._send(("error", seq, what, f"{type(exc).__name__}: {exc}"))

    def _send(self, message: tuple[Any, ...]) -> None:
        if self.peer_gone:
            return
        try:
            self.sock.sendall(encode(message))
        except OSError:
            self.peer_gone = True
