"""The media worker process (child side): a batch receive loop that places and writes its recordings.

The daemon keeps SIP, the index and the API; every recording is handed whole (all its streams)
to one worker. Commands and replies are the dataclasses of :mod:`srs.mediaplane.protocol`, pickled
over a ``SOCK_SEQPACKET`` socket pair and dispatched by a table from type to handler; bound RTP
sockets ride along as ``SCM_RIGHTS``. Replies are the result of a close, a write failure, the
packet counters of every recording (once per flush cycle), the take-over of a recording opened
with ``resume`` (its dead worker's crash journal replayed), once, that the worker is ready, and
per-stream activity when asked (the fields of :class:`~srs.media.track.StreamActivity`).
``CLOCK_MONOTONIC`` is shared by all processes, so the daemon's ``at`` times are valid here.

Receiving is per batch, not per datagram: every ``receive_interval`` the loop takes whatever its
ports hold in one call (:class:`~srs.mediaplane.batch_receiver.BatchReceiver`: epoll and
``recvmmsg`` in C, each datagram with its kernel arrival), cuts the batch into per-port runs (in
C too, :mod:`~srs.mediaplane.batch_delivery`) and hands each run of in-order RTP to its track in one
call. Waiting between rounds costs no accuracy, since a datagram's time is the kernel's, not the
read's; it is what makes one wake-up carry several packets of every stream, however few calls
there are. Between rounds only the command socket wakes the loop. Recorders are flushed a slice at
a time (every ``flush_interval / slices``) so no single pause holds up more than a fraction of the
calls.

Delivery goes through a few methods, one per kind of datagram: :meth:`WorkerLoop._deliver_batch`
(a whole batch, routed by slot; plain RTP of a port with a track goes to it in runs:
:func:`~srs.mediaplane.batch_delivery.push_runs`, then
:func:`~srs.mediaplane.batch_delivery.deliver_run` for the runs that are not the common case),
:meth:`WorkerLoop._deliver` (the general path: early buffering, SRTP, ports without a stream) and
:meth:`WorkerLoop._deliver_rtcp`.
With crash journals every datagram a track gets is first appended to its recording's journal through
the port's lane (see :mod:`srs.mediaplane.journal`): a run of the fast path in one call that copies
the records straight from the receive buffer (``journal_runs``: the runs of every journaled port of
a batch in one call), a datagram of the general path one at a time (``lane.record``). While a call has
live listeners the rounds come every 20 ms instead (the live tap's latency budget is 100 ms).

Lifetime: workers are children in the daemon's process group and ignore SIGINT/SIGTERM aimed at
the group (the daemon drains calls first); they exit on ``stop``, on end-of-file of the command
socket (daemon gone), or on their parent-death signal, closing every WAV so it stays valid.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from srs.errors import SrsError
from srs.media.track import StreamTrack
from srs.mediaplane.batch_delivery import Run, SourceNames, cut_runs, deliver_run, push_runs, run_arrivals
from srs.mediaplane.batch_receiver import BatchReceiver
from srs.mediaplane.collector import tune_collector
from srs.mediaplane.contract import PacketFilter, srtp_filter
from srs.mediaplane.journal import journal_runs
from srs.mediaplane.live_tap import LiveTaps
from srs.mediaplane.protocol import (
    ATTACH_FDS,
    Abort,
    ActivityReport,
    Attach,
    Batch,
    Close,
    Closed,
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
    Report,
    Resume,
    Resumed,
    SetStream,
    Stop,
    decode,
    encode,
)
from srs.mediaplane.recordings import NO_LANE, JournalLane, JournalPolicy, RecordingSet
from srs.mediaplane.wire_clock import enable_timestamps

_MAX_COMMAND = 1 << 22
_MAX_BATCH_FDS = 250
"""Descriptors one batch may carry (the kernel's SCM_MAX_FD is 253)."""
_MAX_BATCH = 256
"""Commands one batch message may carry."""
_MAX_EARLY = 64
_LIVE_INTERVAL = 0.02
"""Receive rounds while a call has live listeners (the tap's frames leave once per round)."""
_COMMANDS_PER_ROUND = 32
_DATAGRAM_SIZE = 2048
_BATCH_CAPACITY = 256
"""Datagrams per batch: 512 KB of rows, so a batch is still in the core's cache when it is cut
into runs and journaled (with 4 MB batches those passes read memory: 13 % of the worker's time
at 1,000 calls against 5 %); a round that fills it is followed by another at once."""
_MAX_BATCHES_PER_ROUND = 128
"""Full batches one round may take before it flushes (an endless queue must not starve writing):
32,768 datagrams, 4 of each of 8,000 streams."""
_PR_SET_PDEATHSIG = 1
RECEIVE_INTERVAL = 0.08
"""Seconds between receive rounds: four packets of every 20 ms stream per round, so the per-run
work is shared by four packets. What waits in a socket's queue is not yet in the crash journal,
so this is also what a kill -9 of the whole process group may lose: under the journal's 100 ms
promise with room for a round that comes late. A datagram read this much later is still placed
at its arrival, every flush comes right after a round (nothing queued is older than what it
writes), and an RTP socket's 1 MB receive buffer holds seconds of its stream."""


@dataclass(slots=True)
class _Port:
    port: int
    key: str
    rtp: socket.socket
    rtcp: socket.socket
    slot: int
    """The RTP socket's slot in the receiver; the RTCP socket's is ``slot + 1``."""
    sink: Callable[[bytes, Any, float], None] | None = None
    rtcp_sink: Callable[[bytes, Any, float], None] | None = None
    filter: PacketFilter | None = None
    track: StreamTrack | None = None
    """The track plain RTP goes to in runs (None: the general path)."""
    dropped_srtp: int = 0
    early: list[tuple[bytes, Any, float]] = field(default_factory=list)
    """Datagrams that arrived before the stream was set up (RTP may follow the 200 OK at once)."""
    lane: JournalLane = NO_LANE
    """Where the port's datagrams are journaled (a crash loses none that reached the worker)."""


@dataclass
class WorkerLoop:
    """The worker's state and loop; ``run`` returns when told to stop or when the daemon is gone."""

    control: socket.socket
    flush_interval: float = 1.0
    slices: int = 10
    clock: Callable[[], float] = time.monotonic
    receive_interval: float = RECEIVE_INTERVAL
    native: bool | None = None
    """Which receive engine: None the native one where built, False the pure-Python one."""
    receive_only: bool = False
    """Receive and discard (the bench's floor: what the receive loop alone costs)."""
    received: int = 0
    """Datagrams discarded in ``receive_only`` mode."""
    recordings: RecordingSet = field(init=False)
    by_port: dict[int, _Port] = field(default_factory=dict)
    by_key: dict[str, list[_Port]] = field(default_factory=dict)
    by_slot: list[_Port | None] = field(default_factory=list)
    """Port by ``slot // 2`` (RTP slots are even, RTCP slots odd)."""
    fast: dict[int, StreamTrack] = field(default_factory=dict)
    """RTP slot -> track, for ports whose datagrams need nothing else (plain RTP with a track)."""
    fast_states: dict[int, Any] = field(default_factory=dict)
    """The same slots -> each track's fast-path state (what the native batch path works on)."""
    journal_targets: dict[int, tuple[Any, Any, int]] = field(default_factory=dict)
    """RTP slot -> its journal's batch target (:meth:`Journal.target`), for the fast slots of
    journaled recordings: the runs of a whole batch are journaled in one call."""
    running: bool = True
    dropped: dict[str, dict[int, int]] = field(default_factory=dict)
    """SRTP authentication failures of detached ports, by recording, until its close is answered."""
    journal: JournalPolicy | None = None
    """Keep a crash journal per recording (None: none)."""

    def __post_init__(self) -> None:
        import srs_codecs

        self.recordings = RecordingSet(srs_codecs.get_decoder, self.journal, defer_saves=True)
        self.live = LiveTaps(srs_codecs.get_decoder)
        self.receiver = BatchReceiver(_BATCH_CAPACITY, _DATAGRAM_SIZE, native=self.native)
        self._free_slots: list[int] = []
        self._names = SourceNames()
        self.control.setblocking(False)
        self.receiver.watch(self.control.fileno())
        self._commands_ready = select.poll()
        self._commands_ready.register(self.control.fileno(), select.POLLIN)

    # -------------------------------------------------------------- commands
    def _reply(self, message: Report) -> None:
        with contextlib.suppress(OSError):
            self.control.setblocking(True)
            try:
                self.control.send(encode(message))
            finally:
                self.control.setblocking(False)

    def _commands(self) -> None:
        """A bounded batch of commands: a burst of new calls must not hold up the packets of running ones
        (the socket stays readable, the rest comes with the next poll). The journal states the batch
        changed are written once at its end, before the next receive (one file write per call set
        up, not one per command: each is a new file, and a burst of file creations is what slowed
        the rounds of a burst of new calls)."""
        try:
            self._command_batch()
        finally:
            self.recordings.save_pending()

    def _command_batch(self) -> None:
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
                message = decode(data)
            except Exception as exc:
                _close_all(fds)
                self._reply(Error(repr(exc)))
                continue
            if not isinstance(message, Batch):
                self._run_alone(message, fds)
                continue
            for item, count in message.items:
                taken, fds = fds[:count], fds[count:]
                self._run_alone(item, taken)
            _close_all(fds)

    def _run_alone(self, message: object, fds: list[int]) -> None:
        try:
            self._command(message, fds)
        except Exception as exc:  # one bad command must not end every recording
            _close_all(fds)
            self._reply(Error(repr(exc)))

    def _command(self, message: object, fds: list[int]) -> None:
        """Run one command through the handler table; anything else is answered with an
        :class:`~srs.mediaplane.protocol.Error` (the daemon logs it) and its descriptors closed."""
        handler = _HANDLERS.get(type(message))
        if handler is None:
            _close_all(fds)
            self._reply(Error(f"unknown command {type(message).__name__}"))
            return
        handler(self, message, fds)

    def _on_attach(self, command: Attach, fds: list[int]) -> None:
        if len(fds) != ATTACH_FDS:
            raise ValueError(f"attach carries {len(fds)} descriptors, not {ATTACH_FDS}")
        rtp = socket.socket(fileno=fds[0])
        rtcp = socket.socket(fileno=fds[1])
        for sock in (rtp, rtcp):
            sock.setblocking(False)
            enable_timestamps(sock)  # the daemon's ports have it set already; any other port too
        if self._free_slots:
            index = self._free_slots.pop()
        else:
            index = len(self.by_slot)
            self.by_slot.append(None)
        entry = _Port(command.port, command.key, rtp, rtcp, 2 * index)
        self.by_slot[index] = entry
        self.by_port[command.port] = entry
        self.by_key.setdefault(command.key, []).append(entry)
        self.receiver.add(rtp.fileno(), entry.slot)
        self.receiver.add(rtcp.fileno(), entry.slot + 1)

    def _on_detach(self, command: Detach, fds: list[int]) -> None:
        self._detach(command.port)

    def _on_open(self, command: OpenRecording, fds: list[int]) -> None:
        key = command.key
        try:
            self.recordings.open(key, command.spec)
        except OSError as exc:
            self._reply(Failed(key, f"cannot create file: {exc.strerror or exc}"))
            return
        except (ValueError, SrsError) as exc:  # a file that cannot be continued after a crash
            self._reply(Failed(key, f"cannot continue file: {exc}"))
            return
        resumed = self.recordings.resumed(key)
        if resumed is not None:
            self._reply(Resumed(key, resumed.written_from, resumed.replayed, resumed.last_arrival))

    def _on_stream(self, command: SetStream, fds: list[int]) -> None:
        key, port_no, spec = command.key, command.port, command.spec
        track = self.recordings.set_stream(key, port_no, spec, command.at)
        bound = self.by_port.get(port_no)
        if bound is None:
            return
        bound.sink = track.push if track is not None else None
        plain = spec is not None and spec.srtp is None
        bound.rtcp_sink = track.push_rtcp if track is not None and plain else None
        bound.filter = srtp_filter(spec.srtp) if spec is not None and spec.srtp is not None else None
        bound.lane = self.recordings.lane(key, port_no)
        bound.track = track if plain else None
        bound.sink = self.live.stream(
            key, port_no, spec.label if spec else "", spec.formats if spec else None, bound.sink
        )
        self._reroute(bound)
        early, bound.early = bound.early, []
        for data, addr, arrival in early:
            self._deliver(bound, data, addr, arrival)

    def _on_relatch(self, command: Relatch, fds: list[int]) -> None:
        self.recordings.relatch(command.key, command.port, command.sources)

    def _on_activity(self, command: PollActivity, fds: list[int]) -> None:
        # per-stream packets, last arrival and source, for the daemon's no-media/timeout checks
        self._reply(ActivityReport(self.clock(), self.recordings.activity()))

    def _on_pause(self, command: Pause, fds: list[int]) -> None:
        self.recordings.pause(command.key, command.at)

    def _on_resume(self, command: Resume, fds: list[int]) -> None:
        self.recordings.resume(command.key, command.at)

    def _on_close(self, command: Close, fds: list[int]) -> None:
        key = command.key
        self._unjournal(key)
        self.live.keys.discard(key)
        try:
            result = self.recordings.close(key, command.at)
        except (OSError, KeyError) as exc:
            self._reply(Closed(key, None, str(exc), self.dropped.pop(key, {})))
        else:
            self._reply(Closed(key, result, None, self.dropped.pop(key, {})))

    def _on_abort(self, command: Abort, fds: list[int]) -> None:
        self._unjournal(command.key)
        self.recordings.abort(command.key)
        self.dropped.pop(command.key, None)

    def _on_live(self, command: Live, fds: list[int]) -> None:
        """A listener came or went: (un)tap the call's ports."""
        for port_no, sink in self.live.subscribe(command.key, command.on).items():
            tapped = self.by_port.get(port_no)
            if tapped is not None:
                tapped.sink = sink
                self._reroute(tapped)

    def _on_stop(self, command: Stop, fds: list[int]) -> None:
        self.running = False

    def _unjournal(self, key: str) -> None:
        """The recording's journal is about to close: its ports (if still attached) stop writing to it."""
        for entry in self.by_key.get(key, ()):
            entry.lane = NO_LANE
            self._reroute(entry)

    def _report_counters(self) -> None:
        """Per-port packet counters of every recording, for the daemon's live index rows."""
        counters = {key: self.recordings.counters(key) for key in self.recordings.recordings}
        if counters:
            self._reply(Counters(counters))

    def _detach(self, port_no: int) -> None:
        entry = self.by_port.pop(port_no, None)
        if entry is None:
            return
        self._drain(entry)
        self.live.forget(port_no)
        if entry.dropped_srtp:
            self.dropped.setdefault(entry.key, {})[port_no] = entry.dropped_srtp
        siblings = self.by_key.get(entry.key, [])
        if entry in siblings:
            siblings.remove(entry)
        if not siblings:
            self.by_key.pop(entry.key, None)
        self.fast.pop(entry.slot, None)
        self.fast_states.pop(entry.slot, None)
        self.journal_targets.pop(entry.slot, None)
        index = entry.slot // 2
        if index < len(self.by_slot) and self.by_slot[index] is entry:
            self.by_slot[index] = None
            self._free_slots.append(index)
        for sock in (entry.rtp, entry.rtcp):
            self.receiver.remove(sock.fileno())
            sock.close()

    def _drain(self, entry: _Port) -> None:
        """Take what is still queued on a port that is about to close (sent before the BYE), each
        datagram at its kernel arrival. Only between batches: the receiver's arrays are reused."""
        for fd, slot in ((entry.rtp.fileno(), entry.slot), (entry.rtcp.fileno(), entry.slot + 1)):
            while self.receiver.drain(fd, slot):
                self._deliver_batch(self.receiver.count)

    # -------------------------------------------------------------- delivery
    def _deliver_batch(self, count: int) -> None:
        """Route the receiver's ``count`` datagrams by slot: the journaled ports' runs to their
        journals (one call for the batch: :data:`journal_runs`), runs of plain RTP to their track
        (whole: :func:`push_runs`, one call for the batch; or by :func:`deliver_run`), the rest one
        by one (:meth:`_deliver`, :meth:`_deliver_rtcp`)."""
        if self.receive_only:
            self.received += count
            return
        batch = self.receiver
        runs = cut_runs(batch, count)
        targets = self.journal_targets
        if targets:
            arrays = (batch.buffer, batch.offsets, batch.lengths, batch.arrivals)
            for r, start in journal_runs(targets, runs, *arrays):
                self._journal_rest(runs[r], start)
        fast = self.fast
        names = self._names
        for i in push_runs(batch.native, fast, self.fast_states, names.names, runs, batch):
            run = runs[i]
            track = fast.get(run[0])
            if track is None:
                self._deliver_each(run)
            else:
                deliver_run(track, batch, run, names)

    def _journal_rest(self, run: Run, start: int) -> None:
        """What of a run the batch writer could not fit: the journal makes room (or leaves out
        what cannot be kept, as for one record)."""
        entry = self.by_slot[run[0] >> 1]
        journal = entry.lane.journal if entry is not None else None
        if journal is not None:
            batch = self.receiver
            journal.append_batch(
                entry.lane.port, batch.buffer, batch.offsets, batch.lengths, batch.arrivals, start, run[2]  # type: ignore[union-attr]
            )

    def _deliver_each(self, run: Run) -> None:
        slot, a, b = run[0], run[1], run[2]
        index = slot >> 1
        entry = self.by_slot[index] if index < len(self.by_slot) else None
        if entry is None:
            return  # a port detached while its datagrams were on their way
        batch = self.receiver
        arrivals = run_arrivals(batch, run)
        deliver = self._deliver_rtcp if slot & 1 else self._deliver
        for i in range(a, b):
            deliver(entry, batch.datagram(i), batch.source(i), arrivals[i - a])

    @staticmethod
    def _deliver(entry: _Port, data: bytes, addr: Any, arrival: float) -> None:
        """The general (slow) path of one datagram: early buffering, SRTP, the journal, the track."""
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
        entry.lane.record(data, arrival)
        entry.sink(data, addr, arrival)

    @staticmethod
    def _deliver_rtcp(entry: _Port, data: bytes, addr: Any, arrival: float) -> None:
        if entry.rtcp_sink is not None:
            entry.rtcp_sink(data, addr, arrival)

    # -------------------------------------------------------------- loop
    def _reroute(self, entry: _Port) -> None:
        """Keep the fast table in step with a port's sink: plain RTP with a track goes to the track
        in runs; early, SRTP, live-tapped and unbound ports take :meth:`_deliver`."""
        track = entry.track
        if entry.sink is not None and entry.filter is None and track is not None and entry.sink == track.push:
            self.fast[entry.slot] = track
            self.fast_states[entry.slot] = track.fast_state
            journal = entry.lane.journal
            if journal is not None:
                self.journal_targets[entry.slot] = journal.target(entry.lane.port)
            else:
                self.journal_targets.pop(entry.slot, None)
        else:
            self.fast.pop(entry.slot, None)
            self.fast_states.pop(entry.slot, None)
            self.journal_targets.pop(entry.slot, None)

    def run(self) -> None:
        control_fd = self.control.fileno()
        clock = self.clock
        step = self.flush_interval / self.slices
        next_flush = clock() + step
        undrained_since: float | None = None
        slice_no = 0
        while self.running:
            started = clock()
            drained = self._receive_round(control_fd)
            now = clock()
            if drained:
                undrained_since = None
            elif undrained_since is None:
                undrained_since = now
            # a flush renders up to its reorder window before now: datagrams still queued in the
            # kernel (a round cut short by a long queue, e.g. after a burst of new calls held the
            # worker for seconds) would land on places already written, so it waits for a drained
            # round, unless rounds have not drained the queue for a whole flush interval
            overdue = undrained_since is not None and now - undrained_since >= self.flush_interval
            if now >= next_flush and (undrained_since is None or overdue):
                # the slices due since the last round (one, unless flushes come faster than rounds)
                due = min(self.slices, 1 + int((now - next_flush) / step))
                for _ in range(due):
                    self._flush_slice(slice_no, now)
                    slice_no = (slice_no + 1) % self.slices
                next_flush += due * step
                if next_flush < now:
                    next_flush = now + step
            # until the next round only commands wake the loop; what arrives meanwhile keeps its
            # kernel arrival, so waiting costs no accuracy and lets every stream bring a few packets
            # (flushes wait for the round: one that woke the loop on its own would read one packet
            # of every stream and halve the next round's runs)
            if self.live.keys:
                self._live_out(now)
            interval = min(self.receive_interval, _LIVE_INTERVAL) if self.live.keys else self.receive_interval
            self._wait_for_commands(started + interval)
        # recordings still open when the worker goes keep their journals: the next start replays them
        self.recordings.abort_all(keep_journal=True)

    def _live_out(self, now: float) -> None:
        """This round's live frames as one datagram; never blocks (a full socket drops them, counted)."""
        frames = self.live.take(now)
        if not frames:
            return
        data = encode(LiveFrames(frames, self.live.dropped))
        try:
            self.control.send(data, socket.MSG_DONTWAIT)
        except OSError:
            self.live.dropped += len(frames)

    def _receive_round(self, control_fd: int) -> bool:
        """Batches until every socket that was ready is drained (at most
        ``_MAX_BATCHES_PER_ROUND``); True when it was. Commands that ran in the round are followed
        by one more receive without commands: what arrived while they ran (a burst of new calls
        can take a second) is read before anything is flushed.

        Drained means a poll taken in this round was read to its end: a round that only finished
        an earlier round's poll (a backlog larger than one round, e.g. after a burst of new calls
        held the worker for seconds) polls again, since the sockets it read first have queued
        audio since, as old as that whole backlog's reading, which a flush would then write over."""
        fresh = self.receiver.pending == 0
        for _ in range(_MAX_BATCHES_PER_ROUND):
            more, commands_ran = self._round(control_fd)
            if not self.running:
                return True
            if commands_ran:
                if not more:
                    fresh = True
                more = self._round(-1)[0]
            if not more:
                if fresh:
                    return True
                fresh = True  # the earlier poll is read: the next batch polls anew
        return False

    def _round(self, control_fd: int) -> tuple[bool, bool]:
        """One batch of a receive round, then any commands (``control_fd`` -1: none): (sockets that
        were ready when the round began are still to be drained, commands ran)."""
        try:
            watched = self.receiver.wait(0)
        except InterruptedError:
            return False, False
        count = self.receiver.count
        if count:
            self._deliver_batch(count)
        commands_ran = control_fd in watched
        if commands_ran:
            self._commands()
        return self.receiver.pending > 0, commands_ran

    def _wait_for_commands(self, until: float) -> None:
        while self.running:
            remaining = until - self.clock()
            if remaining <= 0:
                return
            try:
                ready = self._commands_ready.poll(max(1, int(remaining * 1000 + 0.5)))
            except InterruptedError:
                continue
            if ready:
                self._commands()

    def _flush_slice(self, slice_no: int, now: float) -> None:
        """Write every ``slices``-th recording; the round just before took what the ports held."""
        slices = self.slices
        for i, key in enumerate(list(self.recordings.recordings)):
            if i % slices == slice_no:
                failure = self.recordings.flush_one(key, now)
                if failure is not None:
                    self._reply(Failed(key, failure))
        if slice_no == slices - 1:
            self._report_counters()


_HANDLERS: dict[type, Callable[[WorkerLoop, Any, list[int]], None]] = {
    OpenRecording: WorkerLoop._on_open,
    Attach: WorkerLoop._on_attach,
    Detach: WorkerLoop._on_detach,
    SetStream: WorkerLoop._on_stream,
    Relatch: WorkerLoop._on_relatch,
    PollActivity: WorkerLoop._on_activity,
    Pause: WorkerLoop._on_pause,
    Resume: WorkerLoop._on_resume,
    Close: WorkerLoop._on_close,
    Abort: WorkerLoop._on_abort,
    Live: WorkerLoop._on_live,
    Stop: WorkerLoop._on_stop,
}
"""Command type -> handler; every type of :data:`srs.mediaplane.protocol.COMMANDS` has one."""


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _set_parent_death_signal(sig: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)


def journal_arg(policy: JournalPolicy | None) -> str:
    if policy is None:
        return "off"
    return "on" if policy.fsync_interval is None else repr(policy.fsync_interval)


def parse_journal_arg(value: str) -> JournalPolicy | None:
    if value == "off":
        return None
    return JournalPolicy(None if value == "on" else float(value))


def worker_main(argv: list[str]) -> int:
    """Entry point of ``python -m srs.mediaplane.worker_loop FD [FLUSH_INTERVAL [JOURNAL]] [OPTION ...]``;
    JOURNAL is ``off``, ``on`` (write-back by the kernel) or an fsync interval in seconds; options:
    ``--python-receiver`` (the pure-Python engine even where the native one is built),
    ``--receive-only`` (discard every datagram: the bench's floor)."""
    control = socket.socket(fileno=int(argv[0]))
    interval = float(argv[1]) if len(argv) > 1 else 1.0
    rest = argv[2:]
    journal = parse_journal_arg(rest[0]) if rest and not rest[0].startswith("--") else None
    options = {arg for arg in rest if arg.startswith("--")}
    parent = os.getppid()
    loop = WorkerLoop(
        control,
        flush_interval=interval,
        journal=journal,
        native=False if "--python-receiver" in options else None,
        receive_only="--receive-only" in options,
    )

    def on_term(signum: int, frame: Any) -> None:
        if os.getppid() != parent:  # the daemon died (parent-death signal): close the files and go
            loop.running = False

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, on_term)
    _set_parent_death_signal(signal.SIGTERM)
    # the daemon starts us with both blocked (see WorkerPlane); from here on they are handled
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    if os.getppid() != parent:
        return 0
    tune_collector()
    loop._reply(Ready())
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
