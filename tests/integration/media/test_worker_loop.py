"""The media worker's loop in this process, on real loopback sockets: which datagrams take the
direct route to a track, when a flush first empties the socket queues, and that a latched stream
still drops (and counts) datagrams from any other source."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from srs.media.track import PayloadFormat
from srs.mediaplane import journal
from srs.mediaplane.contract import RecorderSpec, StreamSpec
from srs.mediaplane.journal_state import journal_path
from srs.mediaplane.recordings import NO_LANE, JournalPolicy
from srs.mediaplane.worker_loop import WorkerLoop

PCMU = {0: PayloadFormat("PCMU", 8000)}
KEY = "call"
# an AES_CM_128_HMAC_SHA1_80 key (RFC 4568 §9.1 example)
SRTP = ("AES_CM_128_HMAC_SHA1_80", "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz")


def _packet(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([0x55]) * 160


class Harness:
    def __init__(self, tmp_path: Path, journal: JournalPolicy | None = None) -> None:
        self.control, self.daemon = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.loop = WorkerLoop(self.control, journal=journal)
        self.start = time.monotonic()
        self.path = tmp_path / "call.wav"
        self.loop._command(("open", KEY, RecorderSpec(str(self.path), self.start)), [])
        self.ports: list[tuple[int, socket.socket, socket.socket]] = []

    def attach(self) -> tuple[int, socket.socket]:
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        rtp.setblocking(False)
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtcp.bind(("127.0.0.1", 0))
        port = rtp.getsockname()[1]
        self.loop._command(("attach", KEY, port), [rtp.detach(), rtcp.detach()])
        entry = self.loop.by_port[port]
        return port, entry.rtp

    def stream(self, port: int, srtp: tuple[str, str] | None = None) -> None:
        spec = StreamSpec(PCMU, "1", srtp=srtp)
        self.loop._command(("stream", KEY, port, spec, self.start), [])

    def close(self) -> None:
        self.loop.recordings.abort_all()
        for entry in list(self.loop.by_port.values()):
            self.loop._detach(entry.port)
        self.loop.epoll.close()
        self.control.close()
        self.daemon.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.close()


def _wait_readable(sock: socket.socket) -> None:
    import select

    select.select([sock], [], [], 2.0)


def test_a_plain_stream_is_routed_straight_to_its_track(harness: Harness) -> None:
    port, sock = harness.attach()
    assert sock.fileno() not in harness.loop.fast  # no stream yet: datagrams wait as early ones
    harness.stream(port)
    _recvfrom, push, lane = harness.loop.fast[sock.fileno()]
    track = harness.loop.recordings.track(KEY, port)
    assert track is not None and push == track.push
    assert lane is NO_LANE  # no journal asked for
    harness.loop._command(("stream", KEY, port, None, harness.start), [])
    assert sock.fileno() not in harness.loop.fast  # stream ended: the general path drops its datagrams


def test_an_srtp_stream_takes_the_general_path(harness: Harness) -> None:
    port, sock = harness.attach()
    harness.stream(port, SRTP)
    assert sock.fileno() not in harness.loop.fast
    assert harness.loop.by_port[port].filter is not None


def test_detach_removes_the_direct_route(harness: Harness) -> None:
    port, sock = harness.attach()
    fd = sock.fileno()
    harness.stream(port)
    harness.loop._detach(port)
    assert fd not in harness.loop.fast and fd not in harness.loop.by_fd


def test_a_flush_first_takes_what_waits_on_its_ports_and_skips_idle_ones(harness: Harness) -> None:
    """After a stall a socket may hold datagrams older than the reorder window: they are taken
    before their stretch is written. A port with nothing queued is not read at all (a failing
    receive per port and flush would cost more than the packets)."""
    busy, busy_sock = harness.attach()
    idle, _idle_sock = harness.attach()
    harness.stream(busy)
    harness.stream(idle)
    reads: list[int] = []
    for port in (busy, idle):
        entry = harness.loop.by_port[port]
        real = entry.recvfrom

        def counting(size: int, real: Callable[[int], tuple[bytes, Any]] = real, port: int = port) -> Any:
            reads.append(port)
            return real(size)

        entry.recvfrom = counting
    track = harness.loop.recordings.track(KEY, busy)
    assert track is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in range(5):
            tx.sendto(_packet(seq), ("127.0.0.1", busy))
    _wait_readable(busy_sock)
    time.sleep(0.05)
    harness.loop._flush_slice(0, time.monotonic())
    assert track.packets_received == 5
    assert reads == [busy] * 6  # five datagrams and the receive that found the queue empty


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
        import pickle

        harness.daemon.send(pickle.dumps(("stop",)))
        thread.join(5)
    assert not thread.is_alive()
    assert received == 30


def _run_briefly(harness: Harness, send: Callable[[], None], settle: float = 0.2) -> None:
    import pickle
    import threading

    thread = threading.Thread(target=harness.loop.run)
    thread.start()
    try:
        send()
        time.sleep(settle)
    finally:
        harness.daemon.send(pickle.dumps(("stop",)))
        thread.join(5)
    assert not thread.is_alive()


def test_every_datagram_of_the_direct_route_is_journaled(tmp_path: Path) -> None:
    """With a journal the loop appends each datagram before the track takes it; a worker that stops
    with the recording open leaves the journal for the next start."""
    harness = Harness(tmp_path, JournalPolicy())
    try:
        port, sock = harness.attach()
        harness.stream(port)
        assert harness.loop.fast[sock.fileno()][2] is not NO_LANE
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
        harness.loop._command(("close", KEY, time.monotonic()), [])
        assert harness.loop.fast[sock.fileno()][2] is NO_LANE
        assert not Path(journal_path(harness.path)).exists()
    finally:
        harness.close()


def test_packet_counters_are_reported_once_per_flush_cycle(harness: Harness) -> None:
    import pickle

    port, _sock = harness.attach()
    harness.stream(port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in (0, 1, 2, 4, 5):  # 3 is lost
            tx.sendto(_packet(seq), ("127.0.0.1", port))
    time.sleep(0.05)
    harness.loop._drain(harness.loop.by_port[port])
    for slice_no in range(harness.loop.slices):
        harness.loop._flush_slice(slice_no, time.monotonic())
    message = pickle.loads(harness.daemon.recv(1 << 16))
    assert message == ("counters", {KEY: {port: (5, 1)}})


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
        state = Path(str(harness.path) + ".journal.json").read_text()
        assert "inline:" not in state and SRTP[1].split(":")[1] not in state
    finally:
        harness.close()
