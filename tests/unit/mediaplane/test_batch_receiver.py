"""The batch receiver on real loopback sockets: the native engine (recvmmsg) and the pure-Python
reference (recvmsg) take the same datagrams, into the same slots, with the same sources and the
kernel's arrival times, whatever the sizes, interleaving, stalls and batch capacity."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.mediaplane.batch_receiver import BatchReceiver, native_engine, source_key
from srs.mediaplane.wire_clock import SUPPORTED

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="kernel receive stamps are Linux's")
SLACK_NS = 500_000
KINDS = [False, True] if native_engine() is not None else [False]


class Rig:
    """Three receiving sockets in one receiver, a watched socket pair, two senders."""

    def __init__(self, native: bool, capacity: int) -> None:
        self.batch = BatchReceiver(capacity, 512, native=native, per_socket=5)
        self.rx = []
        for slot in range(3):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.batch.add(sock.fileno(), 10 + slot)
            self.rx.append(sock)
        self.tx = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        for sock in self.tx:
            sock.bind(("127.0.0.1", 0))
        self.control, self.peer = socket.socketpair()
        self.batch.watch(self.control.fileno())

    def send(self, rx: int, tx: int, data: bytes) -> tuple[int, int]:
        before = time.monotonic_ns()
        self.tx[tx].sendto(data, self.rx[rx].getsockname())
        return before, time.monotonic_ns()

    def take_all(self) -> list[tuple[int, bytes, int, int]]:
        """(slot, data, sender index, arrival ns) of everything queued, batch after batch."""
        out = []
        ports = [sock.getsockname()[1] for sock in self.tx]
        empty = 0
        for _ in range(1000):
            self.batch.wait(0.05)
            batch = self.batch
            # an empty batch may only have finished the last poll's sockets: done after a fresh
            # poll finds nothing too
            empty = empty + 1 if batch.count == 0 else 0
            if empty == 2:
                return out
            for i in range(batch.count):
                source = batch.source(i)
                assert int(batch.sources[i]) == source_key(source)
                assert int(batch.offsets[i]) == i * batch.stride
                out.append(
                    (int(batch.slots[i]), batch.datagram(i), ports.index(source[1]), int(batch.arrivals[i]))
                )
        raise AssertionError("the receiver never ran dry")

    def close(self) -> None:
        self.batch.close()
        for sock in (*self.rx, *self.tx, self.control, self.peer):
            sock.close()


@pytest.fixture(params=KINDS, ids=lambda native: "native" if native else "python")
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    r = Rig(request.param, 8)
    yield r
    r.close()


_DATAGRAM = st.tuples(
    st.integers(0, 2), st.integers(0, 1), st.integers(2, 600), st.sampled_from([0.0] * 9 + [0.02])
)


@settings(max_examples=25, deadline=None)
@given(st.lists(_DATAGRAM, min_size=1, max_size=40), st.integers(1, 12))
def test_both_engines_take_the_same_datagrams_at_their_arrival(
    script: list[tuple[int, int, int, float]], capacity: int
) -> None:
    rigs = [Rig(native, capacity) for native in KINDS]
    try:
        sent: list[list[tuple[int, bytes, int, tuple[int, int]]]] = [[] for _ in rigs]
        for n, (rx, tx, size, stall) in enumerate(script):
            data = n.to_bytes(2, "big") * (size // 2 + 1)  # unique: it starts with its number
            for rig, log in zip(rigs, sent, strict=True):
                log.append((10 + rx, data[:size], tx, rig.send(rx, tx, data[:size])))
            if stall:
                time.sleep(stall)
        for rig, log in zip(rigs, sent, strict=True):
            got = rig.take_all()
            for slot in (10, 11, 12):
                mine = [(d, t) for s, d, t, _ in got if s == slot]
                # stride 512: longer datagrams are cut to the row
                assert mine == [(d[:512], t) for s, d, t, _ in log if s == slot]
            by_data = {(s, d): a for s, d, _t, a in got}
            for slot, data, _tx, (before, after) in log:
                arrival = by_data[(slot, data[:512])]
                assert before - SLACK_NS <= arrival <= after + SLACK_NS
    finally:
        for rig in rigs:
            rig.close()


def test_a_batch_read_300_ms_late_keeps_every_arrival(rig: Rig) -> None:
    times = [rig.send(n % 3, n % 2, bytes([n]) * 40) for n in range(6)]
    time.sleep(0.3)
    got = rig.take_all()
    assert sorted(d[0] for _s, d, _t, _a in got) == list(range(6))
    for _slot, data, _tx, arrival in got:
        before, after = times[data[0]]
        assert before - SLACK_NS <= arrival <= after + SLACK_NS
        assert time.monotonic_ns() - arrival >= 290_000_000


def test_watched_descriptors_are_reported_not_read(rig: Rig) -> None:
    rig.peer.send(b"command")
    rig.send(0, 0, b"rtp")
    watched = rig.batch.wait(0.5)
    assert watched == [rig.control.fileno()]
    assert rig.batch.count == 1
    assert rig.control.recv(100) == b"command"  # still there for its owner


def test_drain_reads_one_socket_now_and_remove_stops_reading(rig: Rig) -> None:
    for n in range(3):
        rig.send(0, 0, bytes([n]) * 20)
        rig.send(1, 0, bytes([n]) * 20)
    time.sleep(0.02)
    assert rig.batch.drain(rig.rx[0].fileno(), 10) == 3
    assert [rig.batch.datagram(i)[0] for i in range(3)] == [0, 1, 2]
    assert rig.batch.drain(rig.rx[0].fileno(), 10) == 0
    rig.batch.remove(rig.rx[1].fileno())
    rig.batch.wait(0.05)
    assert rig.batch.count == 0
    assert len(rig.rx[1].recv(100)) == 20  # untouched


def test_one_flooded_socket_does_not_fill_a_batch_alone(rig: Rig) -> None:
    """``per_socket`` (5 here) bounds what one socket gives per wait; the rest waits for the next."""
    for n in range(7):
        rig.send(0, 0, bytes([n]) * 20)
    rig.send(1, 1, b"other" * 4)
    time.sleep(0.02)
    rig.batch.wait(0.05)
    slots = sorted(int(s) for s in rig.batch.slots[: rig.batch.count])
    assert slots == [10] * 5 + [11]


def test_a_round_drains_each_ready_socket_once_across_full_batches(rig: Rig) -> None:
    """Capacity 8: a round that finds 3 sockets with 4 datagrams each takes two batches, without a
    new poll in between; what a drained socket receives meanwhile waits for the next round."""
    for n in range(4):
        for rx in range(3):
            rig.send(rx, 0, bytes([rx, n]) * 10)
    time.sleep(0.02)
    rig.batch.wait(0.05)
    first = rig.batch.count
    assert first == 8 and rig.batch.pending > 0
    rig.send(0, 0, bytes([0, 9]) * 10)  # socket 0 was drained already in this round
    time.sleep(0.01)
    rig.batch.wait(0)
    second = [rig.batch.datagram(i)[:2] for i in range(rig.batch.count)]
    assert rig.batch.count == 4 and rig.batch.pending == 0
    assert bytes([0, 9]) not in second
    rig.batch.wait(0.05)  # the next round
    assert [rig.batch.datagram(i)[:2] for i in range(rig.batch.count)] == [bytes([0, 9])]


def test_a_removed_socket_is_not_drained_later_in_the_round(rig: Rig) -> None:
    for n in range(4):
        for rx in range(3):
            rig.send(rx, 0, bytes([rx, n]) * 10)
    time.sleep(0.02)
    rig.batch.wait(0.05)
    assert rig.batch.count == 8
    taken = {rig.batch.datagram(i)[0] for i in range(8)}
    left = ({0, 1, 2} - taken) or {int(rig.batch.slots[7]) - 10}
    for rx in left:
        rig.batch.remove(rig.rx[rx].fileno())
    rig.batch.wait(0)
    assert {int(s) - 10 for s in rig.batch.slots[: rig.batch.count]}.isdisjoint(left)
