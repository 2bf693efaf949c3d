"""RTP port allocation on real loopback sockets: random, never a scan, consecutive when it is cheap.

The attacks: a sender that predicts the next call's ports (sequential allocation) and races the
SBC to them; an INVITE with many m-lines on a fragmented range making the allocator scan (and bind)
its way through the whole range while the event loop waits.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import socket
import time

from srs.mediaplane.ports import PortAllocator, RtpPort
from tests.integration.mediaplane.test_media_plane import _free_range


def _release(allocator: PortAllocator, ports: list[RtpPort]) -> None:
    for port in ports:
        allocator.release(port)


def test_ports_are_not_handed_out_in_order() -> None:
    low, high = _free_range(2000)
    allocator = PortAllocator(low, high, "127.0.0.1")
    calls = [allocator.allocate(1) for _ in range(40)]
    ports = [c[0].port for c in calls if c]
    try:
        assert len(ports) == 40 and len(set(ports)) == 40
        assert all(low <= p < high and p % 2 == 0 for p in ports)
        steps = {b - a for a, b in itertools.pairwise(ports)}
        assert steps != {2}, "sequential: the next call's port is predictable"
        # 40 draws from 1000 even ports: an ascending sequence has probability 1/40!
        assert ports != sorted(ports)
    finally:
        for c in calls:
            _release(allocator, c or [])


def test_a_calls_streams_get_consecutive_ports_when_the_range_has_room() -> None:
    """SIPp's play_pcap_audio keeps the pcap's port offsets: P and P+2 for a two-stream capture."""
    low, high = _free_range(400)
    allocator = PortAllocator(low, high, "127.0.0.1")
    for _ in range(20):
        ports = allocator.allocate(2)
        assert ports is not None
        assert ports[1].port == ports[0].port + 2
        _release(allocator, ports)
    assert allocator.in_use == 0 and allocator.free == 200


def test_many_m_lines_on_a_fragmented_range_cost_no_scan() -> None:
    """Every 20th even port held by another program: no run of 100 exists anywhere. The allocator
    must not bind its way through the range (the old scan: ~20 000 binds, seconds of blocked loop)."""
    low = random.Random().randrange(20000, 56000) & ~1
    high = low + 3999  # ports other programs hold here only fragment the range further
    held: list[socket.socket] = []
    for port in range(low, high, 40):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            held.append(s)
            continue
        s.close()
    allocator = PortAllocator(low, high, "127.0.0.1")
    binds = 0
    real_bind = allocator._try_bind

    def counting(port: int) -> tuple[socket.socket, socket.socket] | None:
        nonlocal binds
        binds += 1
        return real_bind(port)

    allocator._try_bind = counting  # type: ignore[method-assign]
    try:
        started = time.perf_counter()
        ports = allocator.allocate(100)
        elapsed = time.perf_counter() - started
        assert ports is not None and len({p.port for p in ports}) == 100
        held_ports = {s.getsockname()[1] for s in held}
        assert not held_ports & {p.port for p in ports}
        assert binds <= 100 + PortAllocator.RUN_TRIES * 20 + PortAllocator.BIND_TRIES + 100, binds
        assert elapsed < 1.0, f"allocation took {elapsed:.2f} s"
        _release(allocator, ports)
    finally:
        for s in held:
            s.close()


def test_an_unbindable_port_is_not_retried_in_a_loop() -> None:
    low, high = _free_range(8)  # four even ports
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", low))
    try:
        allocator = PortAllocator(low, high, "127.0.0.1")
        got = [allocator.allocate(1) for _ in range(3)]
        assert all(g is not None for g in got)
        assert low not in {g[0].port for g in got if g}
        assert allocator.allocate(1) is None  # only the held port is left
        for g in got:
            _release(allocator, g or [])
    finally:
        blocker.close()
