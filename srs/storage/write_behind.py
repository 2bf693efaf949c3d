"""The daemon's side of the index writer process: a write is queued in microseconds, on the loop.

:class:`WriteBehind` numbers each write, sends it to the index writer (:mod:`srs.storage.index_writer`,
a child in the daemon's process group) and keeps it until the writer says it is committed. A thread of its own
hears those acknowledgements, reports writes the writer gave up, and wakes readers waiting for
the queue (see :mod:`srs.storage.db`). If the writer dies it is started again and sent every
unacknowledged write; the writer skips what its predecessor had already committed. A writer that
keeps dying is given up: what is left is committed here, and so is every write after it.

Writes queued in one turn of the daemon's loop leave together, as one pickle and one ``send``,
after the turn (``soon`` is the loop's ``call_soon``); without ``soon`` each leaves at once. The
loop never blocks on the writer: what the socket cannot take now waits in memory and leaves when
the writer has read some.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from srs.storage import writes
from srs.storage.db import Database, mark_writer_thread, register_writer, unregister_writer
from srs.storage.errors import StorageError
from srs.storage.index_writer import Committer, FrameReader, encode

ErrorHandler = Callable[[str, BaseException], None]
Soon = Callable[[Callable[[], None]], object]
Queued = tuple[int, str, writes.Write]

SOCKET_BUFFER = 4 << 20
MAX_BACKLOG = 200_000
"""Unacknowledged writes past which the daemon refuses new calls (the index is not keeping up)."""
CLOSE_TIMEOUT_S = 30.0
TARGET_ENV = "SRS_INDEX_WRITER_TARGET"
"""How the writer process learns which index to open (not argv: a URL may carry a password)."""
MAX_RESTARTS = 3
RESTART_WINDOW_S = 60.0
"""More than ``MAX_RESTARTS`` deaths in this many seconds and the writer is not started again."""


class IndexWriteError(StorageError):
    """A queued write the writer gave up, or the writer itself failing; the text says what."""


class WriteBehind:
    def __init__(
        self,
        db: Database,
        on_error: ErrorHandler,
        *,
        soon: Soon | None = None,
        retry_for: float = 30.0,
        linger: float = 0.01,
        spool_dir: Path | None = None,
        close_timeout: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self.db = db
        self.spool_dir = spool_dir
        self.close_timeout = close_timeout
        self.reachable = True
        """False while the writer cannot reach the index database."""
        self.unreachable_detail = ""
        self.soon = soon
        self.on_error = on_error
        self.retry_for = retry_for
        self.linger = linger
        self.run = f"{time.time_ns():x}-{id(self):x}"
        self._lock = threading.Lock()
        """Guards the numbering, the socket and what is not yet sent or acknowledged."""
        self._acked = threading.Condition(threading.Lock())
        self._seq = 0
        self._done = 0
        self._unacked: deque[Queued] = deque()
        self._outbox: list[Queued] = []
        """Queued this loop turn, not yet encoded."""
        self._unsent = bytearray()
        self._closing = False
        self._closed = False
        self._in_place: Committer | None = None
        self._deaths: deque[float] = deque()
        self.restarts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        if db.in_memory:  # nothing another process could open
            self._in_place = Committer(db, self.run, self._report_in_place, retry_for=retry_for)
        else:
            self._sock, self.process = self._spawn()
        register_writer(db, self)
        self._thread = threading.Thread(target=self._listen, name="index-writer-acks", daemon=True)
        self._thread.start()

    # ---- the loop's side ---------------------------------------------------------------------

    def submit(self, what: str, write: writes.Write) -> None:
        """Queue ``write``; ``what`` names it in the error report if it has to be given up."""
        with self._lock:
            if self._closing:
                raise StorageError("the index writer is closed")
            self._seq += 1
            seq = self._seq
            if self._in_place is not None:
                self._in_place.commit([(seq, what, write)])
                self._mark_done(seq)
                return
            item = (seq, what, write)
            self._unacked.append(item)
            self._outbox.append(item)
            if len(self._outbox) > 1:
                return
        if self.soon is None:
            self._send_outbox()
        else:
            self.soon(self._send_outbox)

    def _send_outbox(self) -> None:
        with self._lock:
            self._encode_outbox()
            self._push()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything queued before this call is committed or given up (False on timeout)."""
        if threading.current_thread() is self._thread or self._in_place is not None:
            return True  # (in place, every write was committed before submit returned)
        with self._lock:
            target = self._seq
            if self._done >= target:
                return True
            if self._in_place is None:
                self._encode_outbox()
                self._unsent += encode(("flush",))
                self._push()
        with self._acked:
            return self._acked.wait_for(lambda: self._done >= target, timeout)

    @property
    def backlog(self) -> int:
        """Writes queued and not yet acknowledged by the writer."""
        return len(self._unacked)

    def close(self) -> None:
        """Commit what is queued, stop the writer and the listener. Writes still waiting for an
        unreachable database after ``close_timeout`` are spooled to ``spool_dir`` (if given)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._in_place is None:
                self._encode_outbox()
                self._unsent += encode(("close",))
                self._push()
        self._thread.join(self.close_timeout)
        if self._thread.is_alive() and self.spool_dir is not None and self.process is not None:
            with self._lock:
                self._spool()
                self.process.kill()
            self._thread.join()
        else:
            self._thread.join()
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._sock is not None:
            self._sock.close()
        unregister_writer(self.db, self)

    # ---- sending (with self._lock held) --------------------------------------------------------

    def _encode_outbox(self) -> None:
        if self._outbox:
            self._unsent += encode(("w", self._outbox))
            self._outbox = []

    def _push(self) -> None:
        if not self._unsent:
            return
        assert self._sock is not None
        try:
            sent = self._sock.send(self._unsent)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # the writer is gone: the listener starts another and sends everything again
        del self._unsent[:sent]

    # ---- the listener thread -----------------------------------------------------------------

    def _listen(self) -> None:
        mark_writer_thread()
        if self._in_place is not None:
            return
        try:
            self._listen_to_writers()
        except Exception as exc:  # never leave queued writes without anyone to hear of them
            self._report("index writer listener", IndexWriteError(f"{type(exc).__name__}: {exc}"))
            with self._lock:
                if self._in_place is None:
                    self._commit_here("its listener failed")

    def _listen_to_writers(self) -> None:
        sock: socket.socket | None = None
        reader = FrameReader()
        poller = select.poll()
        while not self._closed:
            with self._lock:
                if self._sock is not sock:  # the first writer, or one started again: listen to it
                    sock = self._sock
                    assert sock is not None
                    poller = select.poll()
                    poller.register(sock, select.POLLIN)
                    reader = FrameReader()
                self._push()
                wants_out = bool(self._unsent)
            assert sock is not None
            poller.modify(sock, select.POLLIN | (select.POLLOUT if wants_out else 0))
            events = poller.poll(100)
            if not any(mask & (select.POLLIN | select.POLLHUP | select.POLLERR) for _, mask in events):
                continue
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if data:
                for message in reader.feed(data):
                    self._handle(message)
            elif not self._writer_ended():
                return

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind in ("ready", "done", "closed"):
            seq = int(message[1])
            with self._lock:
                while self._unacked and self._unacked[0][0] <= seq:
                    self._unacked.popleft()
                self._mark_done(seq)
            if kind == "closed":
                self._closed = True
        elif kind == "error":
            _, _seq, what, text = message
            self._report(what, IndexWriteError(text))
        elif kind == "index":
            self.unreachable_detail = "" if message[1] else str(message[2])
            self.reachable = bool(message[1])

    def _mark_done(self, seq: int) -> None:
        with self._acked:
            if seq > self._done:
                self._done = seq
                self._acked.notify_all()

    def _writer_ended(self) -> bool:
        """The writer's end of the stream closed: start another (True), or finish here (False)."""
        assert self.process is not None
        try:
            status = self.process.wait(30)
        except subprocess.TimeoutExpired:  # closed its end but lives on: not a writer to trust
            self.process.kill()
            status = self.process.wait()
        with self._lock:
            if self._closing and not self._unacked:
                self._closed = True
                return False
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - RESTART_WINDOW_S:
                self._deaths.popleft()
            if self._closing or len(self._deaths) > MAX_RESTARTS:
                self._commit_here(f"exited with status {status} too often")
                return False
            self.restarts += 1
            self._report(
                "index writer process",
                IndexWriteError(
                    f"exited with status {status}; started again, {len(self._unacked)} writes resent"
                ),
            )
            assert self._sock is not None
            self._sock.close()
            self._sock, self.process = self._spawn()
            self._outbox = []
            self._unsent = bytearray(encode(("w", list(self._unacked))) + encode(("flush",)))
            self._push()
            return True

    def _spool(self) -> None:
        """With ``self._lock``: keep the unacknowledged writes on disk for the next start."""
        assert self.spool_dir is not None
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        target = self.spool_dir / f"{self.run}.spool"
        partial = target.with_suffix(".partial")
        with open(partial, "wb") as handle:
            pickle.dump((self.run, list(self._unacked)), handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        self._report(
            "index writer process",
            IndexWriteError(f"index unreachable at stop: {len(self._unacked)} writes spooled to {target}"),
        )
        self._unacked.clear()
        self._mark_done(self._seq)
        self._closed = True

    def _commit_here(self, why: str) -> None:
        """With ``self._lock``: no more writer processes; what is left, and all after, is written here."""
        committer = Committer(self.db, self.run, self._report_in_place, retry_for=self.retry_for)
        if not self._closing:
            self._report(
                "index writer process", IndexWriteError(f"{why}; the daemon writes the index itself")
            )
        committed = committer.committed()
        committer.commit([item for item in self._unacked if item[0] > committed])
        self._unacked.clear()
        self._outbox = []
        self._unsent.clear()
        self._in_place = committer
        self._mark_done(self._seq)
        self._closed = True

    def _report_in_place(self, seq: int, what: str, exc: BaseException) -> None:
        self._report(what, exc)

    def _report(self, what: str, exc: BaseException) -> None:
        with contextlib.suppress(Exception):  # a broken error handler must not stop the writer
            self.on_error(what, exc)

    def _spawn(self) -> tuple[socket.socket, subprocess.Popen[bytes]]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        process = subprocess.Popen(
            [
                sys.executable, "-m", "srs.storage.writer_process", str(theirs.fileno()), "-",
                self.run, str(self.retry_for), str(self.linger),
            ],
            pass_fds=[theirs.fileno()],
            close_fds=True,
            env={**os.environ, TARGET_ENV: self.db.key},
        )  # fmt: skip
        theirs.close()
        ours.setblocking(False)
        return ours, process


def replay_spool(db: Database, spool_dir: Path, on_error: ErrorHandler) -> int:
    """Commit the writes a daemon stopped with while the index was unreachable; returns how many
    spool files were committed (each exactly once: the run's progress row skips what is in)."""
    if not spool_dir.is_dir():
        return 0
    replayed = 0
    for path in sorted(spool_dir.glob("*.spool")):
        with open(path, "rb") as handle:
            run, items = pickle.load(handle)
        committer = Committer(db, str(run), lambda seq, what, exc: on_error(what, exc))
        done = committer.committed()
        committer.commit([item for item in items if item[0] > done])
        committer.forget_run()
        path.unlink()
        replayed += 1
    return replayed
