"""RTP/RTCP ports: one model of a bound port pair, and their allocation.

Each recorded stream owns an even RTP port P and P+1 for RTCP, chosen at random
from the range (see :class:`PortAllocator` for why, and when a call's streams sit
on consecutive ports P, P+2 …).  Ports that cannot be bound are skipped.
"""

from __future__ import annotations

import random
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from srs.mediaplane.wire_clock import enable_timestamps

Sink = Callable[[bytes, tuple[str, int], float], None]


@dataclass
class RtpCounters:
    packets: int = 0
    dropped_no_stream: int = 0
    dropped_srtp: int = 0
    rtcp_packets: int = 0
    receive_errors: int = 0


@dataclass
class RtpPort:
    """One bound RTP port and its RTCP companion; ``sink`` None drops (no stream yet, or ended)."""

    port: int
    rtp: socket.socket
    rtcp: socket.socket
    sink: Sink | None = None
    rtcp_sink: Sink | None = None
    filter: Callable[[bytes], bytes | None] | None = None
    counters: RtpCounters = field(default_factory=RtpCounters)


class PortAllocator:
    """Hands out even ports of [low, high] at random, without scanning.

    Why random: ports handed out in order tell a sender on the SBC's network which ports the next
    call will use, so it can race the SBC to them. The free even ports sit in a list (with each
    port's place in a dict): one random pick and a swap-remove cost O(1) however fragmented the
    range is, so an INVITE with a hundred m-lines never holds the event loop.

    A call's streams get consecutive ports P, P+2 … when a random start has them free (tried a
    bounded number of times; on a range that is not nearly full this is the normal outcome): SIPp's
    ``play_pcap_audio`` keeps the capture's port offsets, and an administrator reads the SDP more
    easily. Otherwise the streams get scattered random ports, which the SDP answer states per
    m-line just as well. A port that cannot be bound (another program holds it) leaves the free
    list and is offered again one allocation later at the earliest, so it is never retried in a loop.
    """

    RUN_TRIES = 16
    """Random starts tried for a run of consecutive ports before scattering the streams."""
    BIND_TRIES = 64
    """Bind failures one allocation tolerates beyond one per port asked for, before it gives up
    (the range is then mostly held by other programs)."""

    def __init__(
        self, low: int, high: int, bind_host: str = "0.0.0.0", rng: random.Random | None = None
    ) -> None:
        self.low = low + (low % 2)
        self.high = high
        self.bind_host = bind_host
        self._rng = rng if rng is not None else random.SystemRandom()
        self._free: list[int] = list(range(self.low, high, 2))
        self._where: dict[int, int] = {port: i for i, port in enumerate(self._free)}
        self._unbindable: deque[int] = deque()
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def free(self) -> int:
        """Even ports not in use and not found unbindable."""
        return len(self._free)

    def _take(self, port: int) -> None:
        """Remove ``port`` from the free list: swap with the last entry, drop the last (O(1))."""
        i = self._where.pop(port)
        last = self._free.pop()
        if last != port:
            self._free[i] = last
            self._where[last] = i

    def _give(self, port: int) -> None:
        if port not in self._where:
            self._where[port] = len(self._free)
            self._free.append(port)

    def _try_bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        bound: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                bound.append(sock)
                sock.setblocking(False)
                sock.bind((self.bind_host, p))
                enable_timestamps(sock)  # every datagram carries its arrival (srs.mediaplane.wire_clock)
        except OSError:
            for sock in bound:
                sock.close()
            return None
        bound[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return bound[0], bound[1]

    def _bind(self, port: int) -> RtpPort | None:
        """Bind a port taken from the free list; an unbindable one waits in ``_unbindable``."""
        pair = self._try_bind(port)
        if pair is None:
            self._unbindable.append(port)
            return None
        self._in_use.add(port)
        return RtpPort(port, pair[0], pair[1])

    def allocate(self, count: int) -> list[RtpPort] | None:
        """``count`` bound ports (consecutive when a random run is free); None when the range has too few."""
        if count <= 0:
            return []
        if self._unbindable:  # one earlier failure gets another chance (bounded work per call)
            self._give(self._unbindable.popleft())
        if count > len(self._free):
            return None
        run = self._random_run(count) if count > 1 else None
        if run is not None:
            return run
        ports: list[RtpPort] = []
        failures = 0
        while len(ports) < count:
            if not self._free or failures >= self.BIND_TRIES + count:
                for allocated in ports:
                    self.release(allocated)
                return None
            port = self._free[self._rng.randrange(len(self._free))]
            self._take(port)
            bound = self._bind(port)
            if bound is None:
                failures += 1
                continue
            ports.append(bound)
        return ports

    def _random_run(self, count: int) -> list[RtpPort] | None:
        """P, P+2 … P+2(count-1) from a random free P whose successors are free too, bound; or None."""
        where = self._where
        for _ in range(self.RUN_TRIES):
            start = self._free[self._rng.randrange(len(self._free))]
            run = range(start, start + 2 * count, 2)
            if run[-1] + 1 > self.high or not all(port in where for port in run):
                continue
            ports: list[RtpPort] = []
            for port in run:
                self._take(port)
                bound = self._bind(port)
                if bound is None:
                    for allocated in ports:
                        self.release(allocated)
                    break
                ports.append(bound)
            else:
                return ports
        return None

    def release(self, rtp_port: RtpPort) -> None:
        rtp_port.rtp.close()
        rtp_port.rtcp.close()
        if rtp_port.port in self._in_use:
            self._in_use.discard(rtp_port.port)
            self._give(rtp_port.port)
