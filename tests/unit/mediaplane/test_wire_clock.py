"""The wire's clock on real loopback sockets: a datagram read late keeps the time it arrived.

On loopback the kernel delivers (and stamps) a datagram inside the sender's ``sendto``, so the
arrival of a datagram must lie between the monotonic times taken just before and just after that
call, however long it then waits in the socket before it is read.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from srs.mediaplane import wire_clock
from srs.mediaplane.inprocess import RtpReceiver
from srs.mediaplane.ports import PortAllocator, RtpPort
from srs.mediaplane.wire_clock import (
    ANCILLARY_SIZE,
    MAX_QUEUE_AGE,
    SUPPORTED,
    enable_timestamps,
    realtime_offset,
    receiver,
    stamp_of,
    to_monotonic,
)

pytestmark = pytest.mark.skipif(not SUPPORTED, reason="kernel receive stamps are Linux's")
LATE = 0.3
SLACK = 0.0005
"""Mapping error allowed on the stamp (the realtime-monotonic offset is taken at read time)."""


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield rx, tx
    rx.close()
    tx.close()


def _send(tx: socket.socket, rx: socket.socket, data: bytes) -> tuple[float, float]:
    before = time.monotonic()
    tx.sendto(data, rx.getsockname())
    return before, time.monotonic()


def test_a_datagram_read_300_ms_late_keeps_its_arrival(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    assert enable_timestamps(rx)
    sent = [_send(tx, rx, bytes([i]) * 20) for i in range(3)]
    time.sleep(LATE)
    read = receiver(rx, 2048)
    for i, (before, after) in enumerate(sent):
        data, address, arrival = read()
        read_at = time.monotonic()
        assert data == bytes([i]) * 20 and address[1] == tx.getsockname()[1]
        assert before - SLACK <= arrival <= after + SLACK, (before, arrival, after)
        assert read_at - arrival >= LATE - 0.01
    with pytest.raises(BlockingIOError):
        read()


def test_without_the_option_the_read_time_stands_in(pair: tuple[socket.socket, socket.socket]) -> None:
    rx, tx = pair
    before, _ = _send(tx, rx, b"x" * 20)
    time.sleep(0.05)
    _data, _address, arrival = receiver(rx, 2048)()
    assert arrival - before >= 0.05  # what the old code did for every datagram


def test_stamps_are_bounded_by_the_read_time() -> None:
    offset = realtime_offset()
    now = time.monotonic()
    now_ns = round(now * 1e9)
    assert to_monotonic(None, offset, now) == now
    assert to_monotonic(now_ns + offset + 5 * 10**9, offset, now) == now  # "arrived" in the future: a step
    assert to_monotonic(now_ns + offset - (int(MAX_QUEUE_AGE) + 1) * 10**9, offset, now) == now
    assert to_monotonic(now_ns + offset - 250_000_000, offset, now) == pytest.approx(now - 0.25, abs=1e-6)
    assert stamp_of([]) is None
    assert stamp_of([(socket.SOL_SOCKET, 99, b"\x00" * 16)]) is None
    stamp = stamp_of([(socket.SOL_SOCKET, 35, struct.pack("@qq", 1700000000, 500_000_001))])
    assert stamp == 1_700_000_000_500_000_001
    assert ANCILLARY_SIZE >= 16


def test_allocated_ports_are_stamped() -> None:
    allocator = PortAllocator(40000, 40999, "127.0.0.1")
    ports = allocator.allocate(1)
    assert ports
    (port,) = ports
    try:
        for sock in (port.rtp, port.rtcp):
            assert sock.getsockopt(socket.SOL_SOCKET, 35) == 1
    finally:
        allocator.release(port)


def test_the_in_process_receiver_hands_on_kernel_arrivals() -> None:
    """The daemon's loop busy for 300 ms while RTP and RTCP arrive: both keep their arrival."""
    allocator = PortAllocator(41000, 41999, "127.0.0.1")
    ports = allocator.allocate(1)
    assert ports
    port: RtpPort = ports[0]
    got: list[tuple[str, bytes, float]] = []
    port.sink = lambda data, source, arrival: got.append(("rtp", data, arrival))
    port.rtcp_sink = lambda data, source, arrival: got.append(("rtcp", data, arrival))

    async def main() -> list[tuple[float, float]]:
        loop = asyncio.get_running_loop()
        rtp_receiver = RtpReceiver(loop)
        rtp_receiver.watch(port)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            order = ((port.rtp, 97), (port.rtcp, 98), (port.rtp, 99))
            sent = [_send(tx, sock, bytes([c]) * 20) for sock, c in order]
            time.sleep(LATE)  # the loop is blocked: nothing can be read yet
            deadline = time.monotonic() + 2
            while len(got) < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
        rtp_receiver.unwatch(port)
        return sent

    try:
        sent = asyncio.run(main())
    finally:
        allocator.release(port)
    by_data = {data[:1]: (kind, arrival) for kind, data, arrival in got}
    assert set(by_data) == {b"a", b"b", b"c"}
    for (before, after), key in zip(sent, (b"a", b"b", b"c"), strict=True):
        arrival = by_data[key][1]
        assert before - SLACK <= arrival <= after + SLACK, (key, before, arrival, after)


def test_the_offset_ignores_a_read_preempted_between_the_two_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process preempted for 1 ms between its monotonic and realtime reads would take an offset
    1 ms wrong and place a whole batch 1 ms early; the bracketed read keeps the tight try."""
    true_offset = 1_700_000_000_000_000_000
    # (monotonic before, realtime, monotonic after) of three tries: preempted, preempted, tight
    reads = iter([(1_000, 1_000_000 + 1_000, 1_001_100), (2_000_000, 3_000_000 + 1_000, 3_000_200),
                  (5_000_000, 5_000_040, 5_000_080)])  # fmt: skip
    script: list[int] = []
    for before, real, after in reads:
        script += [before, real + true_offset, after]
    feed = iter(script)
    monkeypatch.setattr(wire_clock, "_monotonic_ns", lambda: next(feed))
    monkeypatch.setattr(wire_clock, "_realtime_ns", lambda: next(feed))
    assert wire_clock.realtime_offset() == true_offset
