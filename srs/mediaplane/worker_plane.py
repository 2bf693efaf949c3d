"""The media worker processes (daemon side): each recording handed whole to one worker.

Commands travel as the pickled dataclasses of :mod:`srs.mediaplane.protocol` over a
``SOCK_SEQPACKET`` socket pair, bound RTP sockets ride along as ``SCM_RIGHTS``; replies are the
result of a close, a write failure, per-port packet counters (once per flush cycle), the take-over
of a resumed recording, and per-stream activity when asked (:meth:`WorkerPlane.poll_activity`).
The child side is :mod:`srs.mediaplane.worker_loop`.

A worker that dies does not end its calls when recordings keep crash journals: the daemon still
holds every port's socket (datagrams wait in its buffer), so a replacement worker is started and
told each recording's state again (open with ``resume``, the ports, the streams, the pauses, a
close already asked for); it continues the same files from their journals. The interruption is
reported with the recording (:meth:`WorkerPlane.interruptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from srs.media.result import RecordingResult
from srs.media.track import ActivityTuple
from srs.mediaplane.contract import Activity, MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.ports import RtpPort
from srs.mediaplane.protocol import (
    Abort,
    ActivityReport,
    Attach,
    Batch,
    Close,
    Closed,
    Command,
    Counters,
    Detach,
    Error,
    Failed,
    Live,
    LiveFrames,
    OpenRecording,
    Pause,
    PollActivity,
    Ready,
    Relatch,
    Resume,
    Resumed,
    SetStream,
    Stop,
    decode,
    encode,
)
from srs.mediaplane.recordings import JournalPolicy, journal_supported
from srs.mediaplane.worker_loop import _MAX_BATCH, _MAX_BATCH_FDS, _MAX_COMMAND, _close_all, journal_arg

_STOP_WAIT_S = 10.0
_GROUP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_SEND_WAIT_S = 5.0
_READY_WAIT_S = 10.0
MAX_RESUMES = 3
"""A recording whose worker died this often fails (something in it may be killing workers)."""


@dataclass
class _Kept:
    """What the daemon told a worker about one recording: enough to tell a replacement again."""

    spec: RecorderSpec
    ports: dict[int, RtpPort] = field(default_factory=dict)
    streams: dict[int, tuple[StreamSpec | None, float]] = field(default_factory=dict)
    pauses: list[Pause | Resume] = field(default_factory=list)
    closing_at: float | None = None
    counters: dict[int, tuple[int, int]] = field(default_factory=dict)
    """RTP port -> (received, lost) as last reported (a replacement worker carries on the dead
    one's counts from its journal)."""
    interruptions: list[dict[str, Any]] = field(default_factory=list)


class _Worker:
    def __init__(
        self, index: int, flush_interval: float, journal: str = "off", options: tuple[str, ...] = ()
    ) -> None:
        self.index = index
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (ours, theirs):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _MAX_COMMAND)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _MAX_COMMAND)
        self.sock = ours
        self.sock.setblocking(False)
        # The child starts with SIGINT/SIGTERM blocked and unblocks them once it has its own
        # handlers: a signal sent to the process group (Ctrl-C, `kill -TERM -PGID`) while its
        # interpreter is still starting would otherwise kill it before it can ignore it.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _GROUP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "srs.mediaplane.worker_loop", str(theirs.fileno()),
                 str(flush_interval), journal, *options],
                pass_fds=[theirs.fileno()],
                close_fds=True,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        theirs.close()
        self.keys: set[str] = set()
        self.alive = True
        self.outbox: list[tuple[Command, int]] = []
        self.outbox_fds: list[int] = []

    def queue(self, message: Command, fds: list[int] | None = None) -> None:
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
            self.send(Batch(tuple(batch)), fds)
        finally:
            _close_all(fds)

    def send(self, message: Command | Batch, fds: list[int] | None = None) -> None:
        if not self.alive:
            raise OSError("media worker is not running")
        data = encode(message)
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
        journal: JournalPolicy | None = None,
        worker_options: tuple[str, ...] = (),
    ) -> None:
        """``worker_options`` go to each worker's command line (see ``worker_main``)."""
        self.count = max(1, workers)
        self.flush_interval = flush_interval
        self.worker_options = worker_options
        self.log = log
        self.journal = journal
        self._kept: dict[str, _Kept] = {}
        self._closing_on: dict[str, _Worker] = {}
        """Recordings whose close was sent, by the worker it was sent to."""
        self._interrupted: dict[str, list[dict[str, Any]]] = {}
        self.workers: list[_Worker] = []
        self._route: dict[str, _Worker] = {}
        self._pending: dict[str, asyncio.Future[RecordingResult]] = {}
        self._failed: list[str] = []
        self._dropped: dict[str, dict[int, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flush_scheduled = False
        self._activity: dict[int, Activity] = {}
        """The latest activity reply of each worker, by worker index."""
        self.on_live: Any = None
        """``(frames, dropped)`` callback for live frames (see :mod:`srs.mediaplane.live_tap`)."""

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the workers and wait until each is ready (or ``_READY_WAIT_S`` passed): a call
        answered while its worker still imports would have its first packets read late, and its
        stream placed that much after the others' arrival for the rest of the call."""
        self._loop = loop
        self.workers = [self._spawn(i) for i in range(self.count)]
        deadline = time.monotonic() + _READY_WAIT_S
        for worker in self.workers:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                select.select([worker.sock], [], [], remaining)
            self._on_readable(worker)

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers]

    def _spawn(self, index: int) -> _Worker:
        worker = _Worker(index, self.flush_interval, journal_arg(self.journal), self.worker_options)
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
            try:
                message = decode(data)
            except Exception as exc:  # a worker that sends garbage is logged, not obeyed
                self._on_error(worker, Error(f"undecodable report: {exc!r}"))
                continue
            handler = _REPORT_HANDLERS.get(type(message))
            if handler is None:
                self._on_error(worker, Error(f"unknown report {type(message).__name__}"))
                continue
            handler(self, worker, message)

    def _on_live(self, worker: _Worker, report: LiveFrames) -> None:
        if self.on_live is not None:
            self.on_live(report.frames, report.dropped, worker.index)

    def _on_closed(self, worker: _Worker, report: Closed) -> None:
        key = report.key
        if report.dropped:
            self._dropped[key] = dict(report.dropped)
        self._closing_on.pop(key, None)
        kept = self._kept.get(key)
        if kept is not None and kept.closing_at is not None:
            self._kept.pop(key, None)
            if kept.interruptions:
                self._interrupted[key] = kept.interruptions
        future = self._pending.pop(key, None)
        if future is not None and not future.done():
            if report.result is not None:
                future.set_result(report.result)
            else:
                future.set_exception(OSError(report.error or "recording could not be closed"))

    def _on_failed(self, worker: _Worker, report: Failed) -> None:
        self._failed.append(report.key)

    def _on_activity(self, worker: _Worker, report: ActivityReport) -> None:
        self._activity[worker.index] = (report.taken_at, report.tracks)

    def _on_ready(self, worker: _Worker, report: Ready) -> None:
        pass

    def _on_error(self, worker: _Worker, report: Error) -> None:
        if self.log is not None:
            self.log.error("media_worker_error", worker=worker.index, error=report.error)

    def _on_counters(self, worker: _Worker, report: Counters) -> None:
        for key, ports in report.counters.items():
            kept = self._kept.get(key)
            if kept is None:
                continue
            kept.counters.update(ports)

    def _on_resumed(self, worker: _Worker, report: Resumed) -> None:
        key, written_from, replayed = report.key, report.written_from, report.replayed
        kept = self._kept.get(key)
        if kept is None or not kept.interruptions:
            return
        assert self._loop is not None
        gap = kept.interruptions[-1]
        gap["resumed_at_ms"] = round((self._loop.time() - kept.spec.start) * 1000)
        gap["replayed_packets"] = replayed
        gap["file_written_ms"] = written_from * 1000 // 8000
        if self.log is not None:
            self.log.warning("recording_resumed", session=key, replayed=replayed, at_ms=gap["at_ms"])

    def _lost(self, worker: _Worker) -> None:
        """A worker died: a new worker takes its place and, with journals, its recordings (else they
        fail and the daemon hangs them up)."""
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
        died = self._loop.time()
        code = worker.process.returncode
        if self.log is not None:
            # Error level only when something was lost: a worker without recordings stopped by a
            # signal to the process group (an operator stopping srs) is part of a normal shutdown.
            if worker.keys:
                report = self.log.error
            elif code is not None and -code in _GROUP_SIGNALS:
                report = self.log.info
            else:
                report = self.log.warning
            report("media_worker_exited", worker=worker.index, code=code, recordings=len(worker.keys))
        replacement: _Worker | None = None
        if worker in self.workers:
            replacement = self._spawn(worker.index)
            self.workers[self.workers.index(worker)] = replacement
        closing = [key for key, future in self._pending.items() if self._closing_on.get(key) is worker]
        for key in [*worker.keys, *closing]:
            self._closing_on.pop(key, None)
            if replacement is not None and self._resume(key, replacement, died, code):
                continue
            self._kept.pop(key, None)
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                future.set_exception(OSError("media worker exited"))
            else:
                self._failed.append(key)
        worker.keys.clear()

    def _resume(self, key: str, worker: _Worker, died: float, code: int | None) -> bool:
        """Tell ``worker`` everything about ``key`` again so it continues the file from its journal."""
        kept = self._kept.get(key)
        if self.journal is None or kept is None or len(kept.interruptions) >= MAX_RESUMES:
            return False
        if not kept.spec.path and kept.closing_at is None:
            # offered, not answered yet: no file; the new worker just takes the ports
            worker.keys.add(key)
            self._route[key] = worker
            try:
                for port in kept.ports.values():
                    self._queue(worker, Attach(key, port.port), [port.rtp.fileno(), port.rtcp.fileno()])
            except OSError:
                return False
            return True
        if not kept.spec.path or not journal_supported(kept.spec):
            return False  # a format that cannot be continued
        reason = f"media worker exited ({'signal ' + str(-code) if code is not None and code < 0 else code})"
        kept.interruptions.append({"at_ms": round((died - kept.spec.start) * 1000), "reason": reason})
        if kept.closing_at is None:
            worker.keys.add(key)
            self._route[key] = worker
        else:
            self._closing_on[key] = worker
        try:
            self._queue(worker, OpenRecording(key, replace(kept.spec, resume=True)))
            for port in kept.ports.values():
                self._queue(worker, Attach(key, port.port), [port.rtp.fileno(), port.rtcp.fileno()])
            for port_no, (spec, at) in kept.streams.items():
                self._queue(worker, SetStream(key, port_no, spec, at))
            for pause in kept.pauses:
                self._queue(worker, pause)
            if kept.closing_at is not None:
                self._queue(worker, Close(key, kept.closing_at))
        except OSError:
            return False
        return True

    def _worker(self, key: str) -> _Worker:
        return self._route[key]

    def _send(self, key: str, message: Command, fds: list[int] | None = None) -> None:
        worker = self._route.get(key)
        if worker is None:
            return
        with contextlib.suppress(OSError):  # a lost worker fails its recordings in _lost
            self._queue(worker, message, fds)

    def _queue(self, worker: _Worker, message: Command, fds: list[int] | None = None) -> None:
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
        ports = self._kept[key].ports if key in self._kept else {}
        self._kept[key] = _Kept(spec, ports=ports)
        self._send(key, OpenRecording(key, spec))

    def attach(self, key: str, port: RtpPort) -> None:
        self._assign(key)
        # ports are attached at the offer, before the answer opens the file
        self._kept.setdefault(key, _Kept(RecorderSpec("", 0.0))).ports[port.port] = port
        self._send(key, Attach(key, port.port), [port.rtp.fileno(), port.rtcp.fileno()])

    def detach(self, key: str, port: RtpPort) -> None:
        kept = self._kept.get(key)
        if kept is not None:
            kept.ports.pop(port.port, None)
            if not kept.ports and not kept.spec.path:
                del self._kept[key]  # a call that ended before its answer: nothing more comes
        self._send(key, Detach(key, port.port))

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> None:
        kept = self._kept.get(key)
        if kept is not None:
            kept.streams[port] = (spec, at)
        self._send(key, SetStream(key, port, spec, at))

    def relatch(self, key: str, port: int, sources: tuple[str, ...] | None) -> None:
        """Sent at once, not with the loop turn's batch: it must reach the worker before the SBC
        has the answer that moves its media (the answer leaves later in this turn). The kept spec
        takes the new allowed hosts: a replacement worker must hold the stream to them too."""
        kept = self._kept.get(key)
        if kept is not None:
            stream = kept.streams.get(port)
            if stream is not None and stream[0] is not None and stream[0].sources != sources:
                kept.streams[port] = (replace(stream[0], sources=sources), stream[1])
        self._send(key, Relatch(key, port, sources))
        worker = self._route.get(key)
        if worker is not None:
            try:
                worker.flush()
            except OSError:
                if worker.alive is False and worker in self.workers:
                    self._lost(worker)

    def poll_activity(self) -> None:
        for worker in list(self.workers):
            if worker.alive:
                with contextlib.suppress(OSError):
                    self._queue(worker, PollActivity())

    def activity(self) -> Activity:
        """Merged replies of all workers; taken at the oldest of them (so a check never trusts
        a snapshot newer than the data it holds). Before every worker answered: time 0, nothing."""
        replies = [self._activity.get(w.index) for w in self.workers]
        if not replies or any(r is None for r in replies):
            return 0.0, {}
        merged: dict[str, Mapping[int, ActivityTuple]] = {}
        for reply in replies:
            assert reply is not None
            merged.update(reply[1])
        return min(r[0] for r in replies if r is not None), merged

    def pause(self, key: str, at: float) -> None:
        kept = self._kept.get(key)
        if kept is not None:
            kept.pauses.append(Pause(key, at))
        self._send(key, Pause(key, at))

    def resume(self, key: str, at: float) -> None:
        kept = self._kept.get(key)
        if kept is not None:
            kept.pauses.append(Resume(key, at))
        self._send(key, Resume(key, at))

    def packets_received(self, key: str, port: int) -> int:
        """As the recording's worker last reported it (once per flush cycle)."""
        kept = self._kept.get(key)
        return kept.counters.get(port, (0, 0))[0] if kept is not None else 0

    def packets_lost(self, key: str, port: int) -> int:
        kept = self._kept.get(key)
        return kept.counters.get(port, (0, 0))[1] if kept is not None else 0

    def interruptions(self, key: str) -> list[dict[str, Any]]:
        """Worker deaths the recording lived through, once its close has completed."""
        return self._interrupted.pop(key, [])

    def live_subscribe(self, key: str, on: bool) -> bool:
        """Tap (or stop tapping) a recording's ports in its worker; False when it has no worker."""
        if key not in self._route:
            return False
        self._send(key, Live(key, on))
        return True

    def close(self, key: str, at: float) -> asyncio.Future[RecordingResult]:
        assert self._loop is not None
        future: asyncio.Future[RecordingResult] = self._loop.create_future()
        worker = self._route.pop(key, None)
        if worker is None or not worker.alive:
            self._kept.pop(key, None)
            future.set_exception(OSError("media worker exited"))
            return future
        worker.keys.discard(key)
        self._pending[key] = future
        kept = self._kept.get(key)
        if kept is not None:
            kept.closing_at = at
            kept.ports.clear()
        self._closing_on[key] = worker
        try:
            self._queue(worker, Close(key, at))
        except OSError:
            self._pending.pop(key, None)
            if not future.done():
                future.set_exception(OSError("media worker exited"))
        return future

    def abort(self, key: str) -> None:
        self._kept.pop(key, None)
        self._send(key, Abort(key))
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
                worker.send(Stop())
        deadline = time.monotonic() + _STOP_WAIT_S
        for worker in workers:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.sock.close()


_REPORT_HANDLERS: dict[type, Callable[[WorkerPlane, _Worker, Any], None]] = {
    LiveFrames: WorkerPlane._on_live,
    Closed: WorkerPlane._on_closed,
    Failed: WorkerPlane._on_failed,
    ActivityReport: WorkerPlane._on_activity,
    Counters: WorkerPlane._on_counters,
    Resumed: WorkerPlane._on_resumed,
    Ready: WorkerPlane._on_ready,
    Error: WorkerPlane._on_error,
}
"""Report type -> handler; every type of :data:`srs.mediaplane.protocol.REPORTS` has one."""
