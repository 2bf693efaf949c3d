"""The media worker processes (daemon side): each recording handed whole to one worker.

Commands travel as pickled tuples over a ``SOCK_SEQPACKET`` socket pair, bound RTP sockets ride
along as ``SCM_RIGHTS``; the only reply is the result of a close (or a write failure). The child
side is :mod:`srs.mediaplane.worker_loop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import select
import socket
import subprocess
import sys
import time
from typing import Any

from srs.media.recorder import RecordingResult
from srs.mediaplane.contract import MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.ports import RtpPort
from srs.mediaplane.worker_loop import _MAX_BATCH, _MAX_BATCH_FDS, _MAX_COMMAND, _close_all

_STOP_WAIT_S = 10.0
_SEND_WAIT_S = 5.0


class _Worker:
    def __init__(self, index: int, flush_interval: float, options: tuple[str, ...] = ()) -> None:
        self.index = index
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _MAX_COMMAND)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _MAX_COMMAND)
        self.sock = ours
        self.sock.setblocking(False)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "srs.mediaplane.worker_loop",
                str(theirs.fileno()),
                str(flush_interval),
                *options,
            ],
            pass_fds=[theirs.fileno()],
            close_fds=True,
        )
        theirs.close()
        self.keys: set[str] = set()
        self.alive = True
        self.outbox: list[tuple[tuple[Any, ...], int]] = []
        self.outbox_fds: list[int] = []

    def queue(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        """Keep a command for :meth:`flush`; the descriptors are duplicated, so the caller may close
        its own before the batch leaves."""
        if not self.alive:
            raise OSError("media worker is not running")
        if (fds and len(self.outbox_fds) + len(fds) > _MAX_BATCH_FDS) or len(self.outbox) >= _MAX_BATCH:
            self.flush()
        copies = [os.dup(fd) for fd in fds or ()]
        self.outbox.append((message, len(copies)))
        self.outbox_fds.extend(copies)

    def flush(self) -> None:
        """Everything queued as one datagram: a call's open, attach and stream commands cost one
        pickle and one system call instead of one each."""
        if not self.outbox:
            return
        batch, fds = self.outbox, self.outbox_fds
        self.outbox, self.outbox_fds = [], []
        try:
            self.send(("batch", batch), fds)
        finally:
            _close_all(fds)

    def send(self, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        if not self.alive:
            raise OSError("media worker is not running")
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        deadline = time.monotonic() + _SEND_WAIT_S
        while True:
            try:
                if fds:
                    socket.send_fds(self.sock, [data], fds)
                else:
                    self.sock.send(data)
                return
            except BlockingIOError:
                # the worker is behind by megabytes of commands: wait a little, then call it dead
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.alive = False
                    raise OSError("media worker does not take commands") from None
                select.select([], [self.sock], [], remaining)
            except OSError:
                self.alive = False
                raise


class WorkerPlane(MediaPlane):
    """Recordings spread over ``workers`` processes (each recording lives in one of them)."""

    def __init__(
        self,
        workers: int = 1,
        *,
        flush_interval: float = 1.0,
        log: Any = None,
        worker_options: tuple[str, ...] = (),
    ) -> None:
        """``worker_options`` go to each worker's command line (see ``worker_main``)."""
        self.count = max(1, workers)
        self.flush_interval = flush_interval
        self.worker_options = worker_options
        self.log = log
        self.workers: list[_Worker] = []
        self._route: dict[str, _Worker] = {}
        self._pending: dict[str, asyncio.Future[RecordingResult]] = {}
        self._failed: list[str] = []
        self._dropped: dict[str, dict[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.workers = [self._spawn(i) for i in range(self.count)]

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def _spawn(self, index: int) -> _Worker:
        worker = _Worker(index, self.flush_interval, self.worker_options)
        assert self._loop is not None
        self._loop.add_reader(worker.sock.fileno(), self._on_readable, worker)
        return worker

    def _on_readable(self, worker: _Worker) -> None:
        while True:
            try:
                data = worker.sock.recv(_MAX_COMMAND, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._lost(worker)
                return
            message = pickle.loads(data)
            if message[0] == "closed":
                _, key, result, error, dropped = message
                if dropped:
                    self._dropped[key] = dropped
                future = self._pending.pop(key, None)
                if future is not None and not future.done():
                    if result is not None:
                        future.set_result(result)
                    else:
                        future.set_exception(OSError(error or "recording could not be closed"))
            elif message[0] == "failed":
                self._failed.append(message[1])
            elif message[0] == "error" and self.log is not None:
                self.log.error("media_worker_error", worker=worker.index, error=message[1])

    def _lost(self, worker: _Worker) -> None:
        """A worker died: its recordings fail (the daemon hangs them up); a new worker takes its place."""
        assert self._loop is not None
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(worker.sock.fileno())
        worker.alive = False
        worker.sock.close()
        _close_all(worker.outbox_fds)
        worker.outbox, worker.outbox_fds = [], []
        with contextlib.suppress(OSError):
            worker.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(1.0)
        if self.log is not None:
            self.log.error(
                "media_worker_exited",
                worker=worker.index,
                code=worker.process.returncode,
                recordings=len(worker.keys),
            )
        for key in worker.keys:
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(OSError("media worker exited"))
            else:
                self._failed.append(key)
        if worker in self.workers:
            self.workers[self.workers.index(worker)] = self._spawn(worker.index)

    def _worker(self, key: str) -> _Worker:
        return self._route[key]

    def _send(self, key: str, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        worker = self._route.get(key)
        if worker is None:
            return
        with contextlib.suppress(OSError):  # a lost worker fails its recordings in _lost
            self._queue(worker, message, fds)

    def _queue(self, worker: _Worker, message: tuple[Any, ...], fds: list[int] | None = None) -> None:
        """Commands leave once per loop iteration, in order, as one batch per worker."""
        try:
            worker.queue(message, fds)
        except OSError:
            if worker.alive is False and worker in self.workers:
                self._lost(worker)
            raise
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_batches)

    def _flush_batches(self) -> None:
        self._flush_scheduled = False
        for worker in list(self.workers):
            try:
                worker.flush()
            except OSError:
                if worker.alive is False and worker in self.workers:
                    self._lost(worker)

    # -------------------------------------------------------------- MediaPlane
    def _assign(self, key: str) -> None:
        """A recording's worker is chosen at its first port (the least loaded one) and kept."""
        if key in self._route:
            return
        live = [w for w in self.workers if w.alive]
        if not live:
            raise OSError("no media worker is running")
        worker = min(live, key=lambda w: len(w.keys))
        worker.keys.add(key)
        self._route[key] = worker

    def open(self, key: str, spec: RecorderSpec) -> None:
        self._assign(key)
        self._send(key, ("open", key, spec))

    def attach(self, key: str, port: RtpPort) -> None:
        self._assign(key)
        self._send(key, ("attach", key, port.port), [port.rtp.fileno(), port.rtcp.fileno()])

    def detach(self, key: str, port: RtpPort) -> None:
        self._send(key, ("detach", key, port.port))

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        self._send(key, ("stream", key, port, spec, at))

    def relatch(self, key: str, port: int) -> None:
        self._send(key, ("relatch", key, port))

    def pause(self, key: str, at: float) -> None:
        self._send(key, ("pause", key, at))

    def resume(self, key: str, at: float) -> None:
        self._send(key, ("resume", key, at))

    def packets_received(self, key: str, port: int) -> int:
        return 0

    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
        assert self._loop is not None
        future: asyncio.Future[RecordingResult] = self._loop.create_future()
        worker = self._route.pop(key, None)
        if worker is None or not worker.alive:
            future.set_exception(OSError("media worker exited"))
            return future
        worker.keys.discard(key)
        self._pending[key] = future
        try:
            self._queue(worker, ("close", key, at))
        except OSError:
            self._pending.pop(key, None)
            if not future.done():
                future.set_exception(OSError("media worker exited"))
        return future

    def abort(self, key: str) -> None:
        self._send(key, ("abort", key))
        worker = self._route.pop(key, None)
        if worker is not None:
            worker.keys.discard(key)

    def srtp_dropped(self, key: str) -> dict[int, int]:
        return self._dropped.pop(key, {})

    def flush(self, now: float) -> list[str]:
        failed, self._failed = self._failed, []
        return failed

    def stop(self) -> None:
        """Ask every worker to close its files and exit; kill what has not exited in time."""
        workers, self.workers = self.workers, []
        for worker in workers:
            if self._loop is not None:
                with contextlib.suppress(ValueError, OSError):
                    self._loop.remove_reader(worker.sock.fileno())
            with contextlib.suppress(OSError):
                worker.flush()
                worker.send(("stop",))
        deadline = time.monotonic() + _STOP_WAIT_S
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.sock.close()

