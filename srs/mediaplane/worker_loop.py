"""The media worker process (child side): an epoll loop that receives, places and writes its recordings.

The daemon keeps SIP, the index and the API; every recording is handed whole (all its streams)
to one worker. Commands travel as pickled tuples over a ``SOCK_SEQPACKET`` socket pair, bound RTP
sockets ride along as ``SCM_RIGHTS``; the only reply is the result of a close (or a write failure).
``CLOCK_MONOTONIC`` is shared by all processes, so the daemon's ``at`` times are valid here.

Why a process and not the daemon's loop: one packet through ``loop.add_reader`` costs several
microseconds of loop machinery; here it is one ``epoll`` result and one ``recvfrom``, handed
straight to the track's ``push`` for plain RTP ports. A poll that returns only a few events is
followed by a millisecond's pause so the next one returns a batch. Recorders are flushed a slice
at a time (every ``flush_interval / slices``) so no single pause of the loop holds up more than a
fraction of the calls' packets.

Lifetime: workers are children in the daemon's process group and ignore SIGINT/SIGTERM aimed at
the group (the daemon drains calls first); they exit on ``stop``, on end-of-file of the command
socket (daemon gone), or on their parent-death signal, closing every WAV so it stays valid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srs.collector import tune_collector
from srs.mediaplane.contract import PacketFilter, srtp_filter
from srs.mediaplane.recordings import RecordingSet
from srs.wire_clock import ANCILLARY_SIZE, enable_timestamps, realtime_offset, stamp_of, to_monotonic

_MAX_COMMAND = 1 << 22
_MAX_BATCH_FDS = 250
"""Descriptors one batch may carry (the kernel's SCM_MAX_FD is 253)."""
_MAX_BATCH = 256
_MAX_EARLY = 64
_COMMANDS_PER_ROUND = 32
_RECV_SIZE = 2048
_MAX_EVENTS = 4096
_PR_SET_PDEATHSIG = 1

Receive = Callable[[int, int], tuple[bytes, list[tuple[int, int, bytes]], int, Any]]
"""A socket's bound ``recvmsg``: (data, ancillary data, flags, address)."""


@dataclass(slots=True)
class _Port:
    port: int
    key: str
    rtp: socket.socket
    rtcp: socket.socket
    recvmsg: Receive
    sink: Callable[[bytes, Any, float], None] | None = None
    rtcp_sink: Callable[[bytes, Any, float], None] | None = None
    filter: PacketFilter | None = None
    packets: int = 0
    dropped_srtp: int = 0
    early: list[tuple[bytes, Any, float]] = field(default_factory=list)
    """Datagrams that arrived before the stream was set up (RTP may follow the 200 OK at once)."""
    fd: int = -1
    """The RTP socket's descriptor (kept: it is looked up on every flush)."""


@dataclass
class WorkerLoop:
    """The worker's state and loop; ``run`` returns when told to stop or when the daemon is gone."""

    control: socket.socket
    flush_interval: float = 1.0
    slices: int = 10
    clock: Callable[[], float] = time.monotonic
    recordings: RecordingSet = field(init=False)
    by_fd: dict[int, _Port] = field(default_factory=dict)
    rtcp_by_fd: dict[int, _Port] = field(default_factory=dict)
    by_port: dict[int, _Port] = field(default_factory=dict)
    by_key: dict[str, list[_Port]] = field(default_factory=dict)
    fast: dict[int, tuple[Receive, Callable[[bytes, Any, float], None]]] = field(default_factory=dict)
    """RTP fd -> (recvmsg, track push) of ports whose datagrams need nothing else."""
    batch_wait: float = 0.001
    batch_target: int = 64
    """Fewer events than this from one poll: sleep ``batch_wait`` before the next."""
    running: bool = True
    dropped: dict[str, dict[int, int]] = field(default_factory=dict)
    """SRTP authentication failures of detached ports, by recording, until its close is answered."""

    def __post_init__(self) -> None:
        import srs_codecs

        self.recordings = RecordingSet(srs_codecs.get_decoder)
        self.epoll = select.epoll()
        self.control.setblocking(False)
        self.epoll.register(self.control.fileno(), select.EPOLLIN)

    # -------------------------------------------------------------- commands
    def _reply(self, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self.control.setblocking(True)
            try:
                self.control.send(pickle.dumps(message, pickle.HIGHEST_PROTOCOL))
            finally:
                self.control.setblocking(False)

    def _commands(self) -> None:
        """A bounded batch of commands: a burst of new calls must not hold up the packets of running ones
        (the socket stays readable, the rest comes with the next poll)."""
        for _ in range(_COMMANDS_PER_ROUND):
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.control, _MAX_COMMAND, _MAX_BATCH_FDS)
            except BlockingIOError:
                return
            except OSError:
                self.running = False
                return
            if not data:
                self.running = False
                return
            try:
                message = pickle.loads(data)
            except Exception as exc:
                _close_all(fds)
                self._reply(("error", repr(exc)))
                continue
            if message[0] != "batch":
                self._guarded(message, fds)
                continue
            for item, count in message[1]:
                taken, fds = fds[:count], fds[count:]
                self._guarded(item, taken)
            _close_all(fds)

    def _guarded(self, message: tuple[Any, ...], fds: list[int]) -> None:
        try:
            self._command(message, fds)
        except Exception as exc:  # one bad command must not end every recording
            _close_all(fds)
            self._reply(("error", repr(exc)))

    def _command(self, message: tuple[Any, ...], fds: list[int]) -> None:
        op = message[0]
        if op == "attach":
            _, key, port_no = message
            rtp = socket.socket(fileno=fds[0])
            rtcp = socket.socket(fileno=fds[1])
            for sock in (rtp, rtcp):
                enable_timestamps(sock)  # the daemon's ports have it set already; any other port too
            entry = _Port(port_no, key, rtp, rtcp, rtp.recvmsg, fd=rtp.fileno())
            self.by_port[port_no] = entry
            self.by_key.setdefault(key, []).append(entry)
            self.by_fd[rtp.fileno()] = entry
            self.rtcp_by_fd[rtcp.fileno()] = entry
            for sock in (rtp, rtcp):
                self.epoll.register(sock.fileno(), select.EPOLLIN)
        elif op == "detach":
            self._detach(message[2])
        elif op == "open":
            _, key, spec = message
            try:
                self.recordings.open(key, spec)
            except OSError as exc:
                self._reply(("failed", key, f"cannot create file: {exc.strerror or exc}"))
        elif op == "stream":
            _, key, port_no, spec, at = message
            track = self.recordings.set_stream(key, port_no, spec, at)
            bound = self.by_port.get(port_no)
            if bound is not None:
                bound.sink = track.push if track is not None else None
                plain = spec is not None and spec.srtp is None
                bound.rtcp_sink = track.push_rtcp if track is not None and plain else None
                bound.filter = srtp_filter(spec.srtp) if spec is not None and spec.srtp is not None else None
                self._reroute(bound)
                early, bound.early = bound.early, []
                for data, addr, arrival in early:
                    self._deliver(bound, data, addr, arrival)
        elif op == "relatch":
            track = self.recordings.track(message[1], message[2])
            if track is not None:
                track.relatch()
        elif op == "pause":
            self.recordings.pause(message[1], message[2])
        elif op == "resume":
            self.recordings.resume(message[1], message[2])
        elif op == "close":
            _, key, at = message
            try:
                result = self.recordings.close(key, at)
            except (OSError, KeyError) as exc:
                self._reply(("closed", key, None, str(exc), self.dropped.pop(key, {})))
            else:
                self._reply(("closed", key, result, None, self.dropped.pop(key, {})))
        elif op == "abort":
            self.recordings.abort(message[1])
            self.dropped.pop(message[1], None)
        elif op == "stop":
            self.running = False

    def _detach(self, port_no: int) -> None:
        entry = self.by_port.pop(port_no, None)
        if entry is None:
            return
        self._drain(entry)
        if entry.dropped_srtp:
            self.dropped.setdefault(entry.key, {})[port_no] = entry.dropped_srtp
        siblings = self.by_key.get(entry.key, [])
        if entry in siblings:
            siblings.remove(entry)
        if not siblings:
            self.by_key.pop(entry.key, None)
        for sock in (entry.rtp, entry.rtcp):
            fd = sock.fileno()
            self.by_fd.pop(fd, None)
            self.fast.pop(fd, None)
            self.rtcp_by_fd.pop(fd, None)
            with contextlib.suppress(OSError):
                self.epoll.unregister(fd)
            sock.close()

    def _drain(self, entry: _Port) -> None:
        """Take what is still queued on a port that is about to close (sent before the BYE), each
        datagram at its kernel arrival."""
        offset = realtime_offset()
        read_at = self.clock()
        while True:
            try:
                data, ancdata, _flags, addr = entry.recvmsg(_RECV_SIZE, ANCILLARY_SIZE)
            except OSError:
                return
            self._deliver(entry, data, addr, to_monotonic(stamp_of(ancdata), offset, read_at))

    @staticmethod
    def _deliver(entry: _Port, data: bytes, addr: Any, arrival: float) -> None:
        """The general (slow) path of one datagram: early buffering, SRTP, the track."""
        if entry.sink is None:
            if len(entry.early) < _MAX_EARLY:
                entry.early.append((data, addr, arrival))
            return
        if entry.filter is not None:
            clear = entry.filter(data)
            if clear is None:
                entry.dropped_srtp += 1
                return
            data = clear
        entry.sink(data, addr, arrival)

    # -------------------------------------------------------------- loop
    def _reroute(self, entry: _Port) -> None:
        """Keep the fast table in step with a port's sink: plain RTP with a track goes straight
        to ``push``; early, SRTP and unbound ports take :meth:`_deliver`."""
        fd = entry.rtp.fileno()
        if entry.sink is not None and entry.filter is None:
            self.fast[fd] = (entry.recvmsg, entry.sink)
        else:
            self.fast.pop(fd, None)

    def run(self) -> None:
        control_fd = self.control.fileno()
        fast = self.fast
        by_fd = self.by_fd
        clock = self.clock
        sleep = time.sleep
        step = self.flush_interval / self.slices
        batch_wait = self.batch_wait
        batch_target = self.batch_target
        next_flush = clock() + step
        slice_no = 0
        poll = self.epoll.poll
        while self.running:
            timeout = next_flush - clock()
            try:
                events = poll(timeout if timeout > 0.0 else 0.0, _MAX_EVENTS)
            except InterruptedError:
                continue
            # every datagram is placed at its kernel arrival (srs.wire_clock), never at this read
            offset = realtime_offset()
            now = clock()
            commands = False
            for fd, _mask in events:
                route = fast.get(fd)
                if route is not None:
                    try:
                        data, ancdata, _flags, addr = route[0](_RECV_SIZE, ANCILLARY_SIZE)
                    except OSError:
                        continue
                    route[1](data, addr, to_monotonic(stamp_of(ancdata), offset, now))
                    continue
                entry = by_fd.get(fd)
                if entry is None:
                    commands = commands or fd == control_fd
                    self._other(fd, control_fd)
                    continue
                try:
                    data, ancdata, _flags, addr = entry.recvmsg(_RECV_SIZE, ANCILLARY_SIZE)
                except OSError:
                    continue
                self._deliver(entry, data, addr, to_monotonic(stamp_of(ancdata), offset, now))
            if now >= next_flush:
                self._flush_slice(slice_no, now)
                slice_no = (slice_no + 1) % self.slices
                next_flush += step
                if next_flush < now:
                    next_flush = now + step
            elif not commands and len(events) < batch_target and next_flush - now > batch_wait:
                # few datagrams per wake-up make the poll cost more than the packets: let some collect
                # (the reorder window is half a second, so a millisecond of latency is free); never
                # while commands come in (a burst of closes must not wait a millisecond per batch)
                sleep(batch_wait)
        self.recordings.abort_all()

    def _other(self, fd: int, control_fd: int) -> None:
        if fd == control_fd:
            self._commands()
            return
        entry = self.rtcp_by_fd.get(fd)
        if entry is None:
            return
        offset = realtime_offset()
        try:
            data, ancdata, _flags, addr = entry.rtcp.recvmsg(_RECV_SIZE, ANCILLARY_SIZE)
        except OSError:
            return
        if entry.rtcp_sink is not None:
            entry.rtcp_sink(data, addr, to_monotonic(stamp_of(ancdata), offset, self.clock()))

    def _flush_slice(self, slice_no: int, now: float) -> None:
        slices = self.slices
        # a port still readable now may hold datagrams of the stretch about to be written (after a
        # stall, or when the loop runs behind): take them first; the others cost nothing here
        queued = {fd for fd, _mask in self.epoll.poll(0, _MAX_EVENTS)}
        for i, key in enumerate(list(self.recordings.recordings)):
            if i % slices == slice_no:
                for entry in self.by_key.get(key, ()):
                    if entry.fd in queued:
                        self._drain(entry)
                failure = self.recordings.flush_one(key, now)
                if failure is not None:
                    self._reply(("failed", key, failure))


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _set_parent_death_signal(sig: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def worker_main(argv: list[str]) -> int:
    """Entry point of ``python -m srs.mediaplane.worker_loop FD [FLUSH_INTERVAL]``."""
    control = socket.socket(fileno=int(argv[0]))
    interval = float(argv[1]) if len(argv) > 1 else 1.0
    parent = os.getppid()
    loop = WorkerLoop(control, flush_interval=interval)

    def on_term(signum: int, frame: Any) -> None:
        if os.getppid() != parent:  # the daemon died (parent-death signal): close the files and go
            loop.running = False

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    _set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent:
        return 0
    tune_collector()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
