"""The media worker's loop in this process, on real loopback sockets: which datagrams take the
direct route to a track, that a receive round takes what every port holds, that a latched stream
still drops (and counts) datagrams from any other source, and that datagrams read late keep their
arrival. Every test runs with both receive engines (native, where built, and pure Python)."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from srs.media.rendering import PayloadFormat
from srs.mediaplane import journal
from srs.mediaplane.batch_receiver import native_engine
from srs.mediaplane.contract import RecorderSpec, StreamSpec
from srs.mediaplane.journal_state import journal_path
from srs.mediaplane.protocol import (
    Attach,
    Batch,
    Close,
    Command,
    Counters,
    OpenRecording,
    Pause,
    PollActivity,
    Resume,
    SetStream,
    Stop,
    decode,
    encode,
)
from srs.mediaplane.recordings import NO_LANE, JournalPolicy
from srs.mediaplane.worker_loop import WorkerLoop

PCMU = {0: PayloadFormat("PCMU", 8000)}
KEY = "call"
# an AES_CM_128_HMAC_SHA1_80 key (RFC 4568 §9.1 example)
SRTP = ("AES_CM_128_HMAC_SHA1_80", "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")


def _packet(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([0x55]) * 160


ENGINES = [False, True] if native_engine() is not None else [False]


class Harness:
    def __init__(self, tmp_path: Path, journal: JournalPolicy | None = None, native: bool = False) -> None:
        self.control, self.daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.loop = WorkerLoop(self.control, journal=journal, native=native)
        assert self.loop.receiver.native == native
        self.start = time.monotonic()
        self.path = tmp_path / "call.wav"
        self.loop._command(OpenRecording(KEY, RecorderSpec(str(self.path), self.start)), [])
        self.ports: list[tuple[int, socket.socket, socket.socket]] = []

    def attach(self) -> tuple[int, socket.socket]:
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        rtp.setblocking(False)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        self.loop._command(Attach(KEY, port), [rtp.detach(), rtcp.detach()])
        entry = self.loop.by_port[port]
        return port, entry.rtp

    def slot(self, port: int) -> int:
        return self.loop.by_port[port].slot

    def stream(self, port: int, srtp: tuple[str, str] | None = None) -> None:
        spec = StreamSpec(PCMU, "1", srtp=srtp)
        self.loop._command(SetStream(KEY, port, spec, self.start), [])

    def close(self) -> None:
        self.loop.recordings.abort_all()
        for entry in list(self.loop.by_port.values()):
            self.loop._detach(entry.port)
        self.loop.receiver.close()
        self.control.close()
        self.daemon.close()


@pytest.fixture(params=ENGINES, ids=lambda native: "native" if native else "python")
def harness(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Harness]:
    h = Harness(tmp_path, native=request.param)
    yield h
    h.close()


def _wait_readable(sock: socket.socket) -> None:
    import select

    select.select([sock], [], [], 2.0)


def test_a_plain_stream_is_routed_straight_to_its_track(harness: Harness) -> None:
    port, _sock = harness.attach()
    slot = harness.slot(port)
    assert slot not in harness.loop.fast  # no stream yet: datagrams wait as early ones
    harness.stream(port)
    track = harness.loop.recordings.track(KEY, port)
    assert track is not None and harness.loop.fast[slot] is track
    assert harness.loop.by_port[port].lane is NO_LANE  # no journal asked for
    harness.loop._command(SetStream(KEY, port, None, harness.start), [])
    assert slot not in harness.loop.fast  # stream ended: the general path drops its datagrams


def test_an_srtp_stream_takes_the_general_path(harness: Harness) -> None:
    port, _sock = harness.attach()
    harness.stream(port, SRTP)
    assert harness.slot(port) not in harness.loop.fast
    assert harness.loop.by_port[port].filter is not None


def test_detach_removes_the_direct_route_and_frees_the_slot(harness: Harness) -> None:
    port, _sock = harness.attach()
    slot = harness.slot(port)
    harness.stream(port)
    harness.loop._detach(port)
    assert slot not in harness.loop.fast and port not in harness.loop.by_port
    again, _sock = harness.attach()
    assert harness.slot(again) == slot  # reused


def test_a_round_takes_what_every_port_holds_in_runs(harness: Harness) -> None:
    """One receive round reads every port with something queued; a port's in-order packets reach
    its track as one run (one pending entry after the latching packet)."""
    busy, busy_sock = harness.attach()
    other, other_sock = harness.attach()
    idle, _idle_sock = harness.attach()
    for port in (busy, other, idle):
        harness.stream(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in range(6):
            tx.sendto(_packet(seq), ("127.0.0.1", busy))
            tx.sendto(_packet(seq, 0x99), ("127.0.0.1", other))
    _wait_readable(busy_sock)
    _wait_readable(other_sock)
    time.sleep(0.05)
    assert harness.loop._round(harness.control.fileno()) == (False, False)
    for port in (busy, other):
        track = harness.loop.recordings.track(KEY, port)
        assert track is not None and track.packets_received == 6
        assert track.pending_packets == 2
    idle_track = harness.loop.recordings.track(KEY, idle)
    assert idle_track is not None and idle_track.packets_received == 0


def test_datagrams_from_another_source_are_dropped_and_counted(harness: Harness) -> None:
    port, sock = harness.attach()
    harness.stream(port)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second,
    ):
        first.sendto(_packet(1), ("127.0.0.1", port))
        second.sendto(_packet(2), ("127.0.0.1", port))
        first.sendto(_packet(3), ("127.0.0.1", port))
        _wait_readable(sock)
        time.sleep(0.05)
        harness.loop._drain(harness.loop.by_port[port])
    result = harness.loop.recordings.close(KEY, time.monotonic())
    (stats,) = result.streams
    assert (stats.packets_received, stats.packets_dropped_source, stats.packets_lost) == (2, 1, 1)


def test_the_loop_runs_until_stopped_and_records_what_arrived(harness: Harness) -> None:
    """The whole loop: poll, the direct route, a batch pause, then ``stop`` from the daemon."""
    import threading

    port, _sock = harness.attach()
    harness.stream(port)
    thread = threading.Thread(target=harness.loop.run)
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for seq in range(30):
                tx.sendto(_packet(seq), ("127.0.0.1", port))
                time.sleep(0.005)
        time.sleep(0.2)
        track = harness.loop.recordings.track(KEY, port)
        assert track is not None
        received = track.packets_received
    finally:
        harness.daemon.send(encode(Stop()))
        thread.join(5)
    assert not thread.is_alive()
    assert received == 30


def _run_briefly(harness: Harness, send: Callable[[], None], settle: float = 0.2) -> None:
    import threading

    thread = threading.Thread(target=harness.loop.run)
    thread.start()
    try:
        send()
        time.sleep(settle)
    finally:
        harness.daemon.send(encode(Stop()))
        thread.join(5)
    assert not thread.is_alive()


def test_every_datagram_of_the_direct_route_is_journaled(tmp_path: Path) -> None:
    """With a journal the loop appends each datagram before the track takes it; a worker that stops
    with the recording open leaves the journal for the next start."""
    harness = Harness(tmp_path, JournalPolicy())
    try:
        port, _sock = harness.attach()
        harness.stream(port)
        assert harness.loop.by_port[port].lane is not NO_LANE
        sent = [_packet(seq) for seq in range(40)]

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                for data in sent:
                    tx.sendto(data, ("127.0.0.1", port))
                    time.sleep(0.002)

        _run_briefly(harness, send)
        records = [r for r in journal.read(journal_path(harness.path)).records if r.kind == journal.DATAGRAM]
        assert [r.data for r in records] == sent
        assert {r.port for r in records} == {port}
        assert all(harness.start <= r.arrival <= time.monotonic() for r in records)
    finally:
        harness.close()


def test_early_datagrams_are_journaled_when_their_stream_is_set(tmp_path: Path) -> None:
    harness = Harness(tmp_path, JournalPolicy())
    try:
        port, sock = harness.attach()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for seq in range(3):
                tx.sendto(_packet(seq), ("127.0.0.1", port))
        _wait_readable(sock)
        time.sleep(0.05)
        harness.loop._drain(harness.loop.by_port[port])  # no stream yet: kept as early datagrams
        assert journal.read(journal_path(harness.path)).records == ()
        harness.stream(port)
        assert [r.data for r in journal.read(journal_path(harness.path)).records] == [
            _packet(seq) for seq in range(3)
        ]
        # a close stops the journaling of its ports and removes the journal
        harness.loop._command(Close(KEY, time.monotonic()), [])
        assert port not in harness.loop.by_port or harness.loop.by_port[port].lane is NO_LANE
        assert not Path(journal_path(harness.path)).exists()
    finally:
        harness.close()


def test_packet_counters_are_reported_once_per_flush_cycle(harness: Harness) -> None:

    port, _sock = harness.attach()
    harness.stream(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in (0, 1, 2, 4, 5):  # 3 is lost
            tx.sendto(_packet(seq), ("127.0.0.1", port))
    time.sleep(0.05)
    harness.loop._drain(harness.loop.by_port[port])
    for slice_no in range(harness.loop.slices):
        harness.loop._flush_slice(slice_no, time.monotonic())
    message = decode(harness.daemon.recv(1 << 16))
    assert message == Counters({KEY: {port: (5, 1)}})


def test_an_srtp_stream_is_journaled_decrypted(tmp_path: Path) -> None:
    """The journal holds what the track got (the key is not needed to replay it, nor kept)."""
    from srs.rtp.srtp import SrtpOutbound

    harness = Harness(tmp_path, JournalPolicy())
    try:
        port, sock = harness.attach()
        harness.stream(port, SRTP)
        sender = SrtpOutbound(*SRTP)
        plain = [_packet(seq) for seq in range(5)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for data in plain:
                tx.sendto(sender.protect(data), ("127.0.0.1", port))
            tx.sendto(b"\x80" + bytes(40), ("127.0.0.1", port))  # fails authentication: not journaled
        _wait_readable(sock)
        time.sleep(0.05)
        harness.loop._drain(harness.loop.by_port[port])
        records = journal.read(journal_path(harness.path)).records
        assert [r.data for r in records] == plain
        harness.loop._commands()  # the states the commands changed are written after their batch
        state = Path(str(harness.path) + ".journal.json").read_text()
        assert "inline:" not in state and SRTP[1].split(":")[1] not in state
    finally:
        harness.close()


def test_datagrams_read_late_are_placed_at_their_kernel_arrival(harness: Harness) -> None:
    """RTP waiting in the socket before its stream is set up (the early buffer), and RTP waiting
    while the loop is held up (a drain): each keeps the time it arrived, not the time it was read."""
    early_port, early_sock = harness.attach()
    late_port, late_sock = harness.attach()
    harness.stream(late_port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        sent = []
        for port in (early_port, late_port):
            before = time.monotonic()
            tx.sendto(_packet(1), ("127.0.0.1", port))
            sent.append((before, time.monotonic()))
        time.sleep(0.3)
        _wait_readable(early_sock)
        _wait_readable(late_sock)
        harness.loop._drain(harness.loop.by_port[early_port])  # no stream yet: kept as an early datagram
        harness.loop._drain(harness.loop.by_port[late_port])
        time.sleep(0.1)
        harness.stream(early_port)  # the early datagram goes to the new track
    for port, (before, after) in zip((early_port, late_port), sent, strict=True):
        track = harness.loop.recordings.track(KEY, port)
        assert track is not None and track.packets_received == 1
        first = track.stats().first_packet_at
        assert first is not None and before - 0.0005 <= first <= after + 0.0005, (port, before, first, after)


def test_commands_wake_the_loop_between_receive_rounds(harness: Harness) -> None:
    """Between rounds only the command socket wakes the worker: a command is not held back until
    the next round (a burst of closes must not wait a round each)."""
    import threading

    harness.loop.receive_interval = 30.0
    harness.loop.flush_interval = 300.0
    thread = threading.Thread(target=harness.loop.run)
    thread.start()
    try:
        time.sleep(0.2)  # the loop is waiting for its next round
        began = time.monotonic()
        harness.daemon.send(encode(Stop()))
        thread.join(5)
        assert not thread.is_alive()
        assert time.monotonic() - began < 2.0
    finally:
        if thread.is_alive():
            harness.daemon.send(encode(Stop()))
            thread.join(5)


def test_a_batch_of_commands_writes_each_journal_state_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call set up by one batch (open, two streams) writes its journal state once, after the
    batch and before the next receive round (each write is a new file: a burst of new calls made
    thousands of them and held up the rounds); what it writes is the final state."""
    from srs.mediaplane import recordings
    from srs.mediaplane.journal_state import load_state, state_path

    writes: list[str] = []
    real = recordings.save_state

    def counting(path: str, state: object) -> None:
        writes.append(path)
        real(path, state)  # type: ignore[arg-type]

    monkeypatch.setattr(recordings, "save_state", counting)
    control, daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    loop = WorkerLoop(control, journal=JournalPolicy())
    try:
        start = time.monotonic()
        path = str(tmp_path / "b.wav")
        spec = StreamSpec(PCMU, "1")
        items: list[tuple[Command, int]] = [(OpenRecording("b", RecorderSpec(path, start)), 0)]
        items += [(SetStream("b", port, spec, start), 0) for port in (40000, 40002)]
        daemon.send(encode(Batch(tuple(items))))
        loop._commands()
        assert writes == [state_path(path)]
        state = load_state(state_path(path))
        assert state is not None and sorted(state.streams) == [40000, 40002]
        # a later command (a pause) is written after its own batch
        daemon.send(encode(Pause("b", start + 1.0)))
        loop._commands()
        assert len(writes) == 2
        state = load_state(state_path(path))
        assert state is not None and state.pauses == [("pause", start + 1.0)]
        # a recording closed in the batch that changed it writes nothing (its files are gone)
        last: tuple[tuple[Command, int], ...] = ((Resume("b", start + 2.0), 0), (Close("b", start + 3.0), 0))
        daemon.send(encode(Batch(last)))
        loop._commands()
        assert len(writes) == 2 and not Path(state_path(path)).exists()
    finally:
        loop.recordings.abort_all()
        loop.receiver.close()
        control.close()
        daemon.close()


def test_a_worker_that_stops_writes_the_states_it_has_not_written_yet(tmp_path: Path) -> None:
    """Recordings left open when the worker goes keep their journals for the next start: a state
    changed by a command not yet followed by the end of its batch is written then."""
    harness = Harness(tmp_path, JournalPolicy())
    try:
        port, _sock = harness.attach()
        harness.stream(port)  # straight to the command handler: its batch has not ended
        from srs.mediaplane.journal_state import load_state, state_path

        assert load_state(state_path(str(harness.path))) is None
        harness.loop.recordings.abort_all(keep_journal=True)
        state = load_state(state_path(str(harness.path)))
        assert state is not None and list(state.streams) == [port]
    finally:
        harness.close()


def test_audio_that_arrives_while_commands_run_long_is_read_before_the_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of new calls can keep the worker in its commands for a second or more; the flush
    that follows renders up to its reorder window before now, so whatever arrived meanwhile must be
    read first, or its places are written as silence and the packets come too late for them."""
    from srs.mediaplane import worker_loop

    original = worker_loop._HANDLERS[PollActivity]

    def slow(loop: WorkerLoop, command: PollActivity, fds: list[int]) -> None:
        time.sleep(1.2)  # as 600 calls set up at once
        original(loop, command, fds)

    monkeypatch.setitem(worker_loop._HANDLERS, PollActivity, slow)
    # a busy worker: the command is seen by a receive round, not while it waits between rounds
    monkeypatch.setattr(
        WorkerLoop, "_wait_for_commands", lambda loop, until: time.sleep(max(0.0, until - loop.clock()))
    )
    harness = Harness(tmp_path)
    port, _sock = harness.attach()
    harness.stream(port)
    track = harness.loop.recordings.track(KEY, port)
    assert track is not None
    runner = threading.Thread(target=harness.loop.run, daemon=True)
    runner.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            begin = time.monotonic()
            for seq in range(150):  # 3 s of one 20 ms stream, the slow command 1 s in
                if seq == 50:
                    harness.daemon.send(encode(PollActivity()))
                time.sleep(max(0.0, begin + seq * 0.02 - time.monotonic()))
                tx.sendto(_packet(seq), ("127.0.0.1", port))
        time.sleep(1.5)  # a flush of what was sent
        harness.daemon.send(encode(Stop()))
        runner.join(10)
        assert not runner.is_alive()
        stats = track.stats()
        assert stats.packets_received == 150
        assert stats.packets_late == 0, stats
        assert not stats.gaps, stats.gaps
    finally:
        harness.loop.running = False
        runner.join(5)
        harness.close()


@pytest.mark.parametrize("native", ENGINES, ids=lambda native: "native" if native else "python")
def test_a_round_that_finishes_an_earlier_poll_polls_again_before_it_counts_as_drained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    """A backlog larger than a round (1,000 calls set up at once left 3 s of audio queued) is
    read over several rounds, one poll's sockets after another: the socket read first has queued
    new audio by the time the poll's last socket is read. Counting that round as drained let the
    flush write over that audio (19 to 284 WAVs of a 1,000-call bench run had 20-180 ms gaps)."""
    from srs.mediaplane import worker_loop

    monkeypatch.setattr(worker_loop, "_BATCH_CAPACITY", 8)
    monkeypatch.setattr(worker_loop, "_MAX_BATCHES_PER_ROUND", 1)
    harness = Harness(tmp_path, native=native)
    try:
        ports = [harness.attach() for _ in range(2)]
        for port, _sock in ports:
            harness.stream(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for seq in range(6):  # the backlog: 12 datagrams, a round takes 8
                for port, _sock in ports:
                    tx.sendto(_packet(seq), ("127.0.0.1", port))
            for _port, sock in ports:
                _wait_readable(sock)
            time.sleep(0.05)
            control = harness.control.fileno()
            assert harness.loop._receive_round(control) is False
            for seq in range(6, 9):  # what arrives while the backlog is read
                for port, _sock in ports:
                    tx.sendto(_packet(seq), ("127.0.0.1", port))
            time.sleep(0.05)
            rounds = 1
            while not harness.loop._receive_round(control):
                rounds += 1
                assert rounds < 6
        for port, _sock in ports:
            track = harness.loop.recordings.track(KEY, port)
            assert track is not None and track.packets_received == 9, (rounds, track.packets_received)
    finally:
        harness.close()
