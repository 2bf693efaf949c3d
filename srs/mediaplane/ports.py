"""RTP/RTCP ports: one model of a bound port pair, and their allocation.

Each recorded stream owns an even RTP port P and P+1 for RTCP; a call's streams
sit on consecutive even ports P, P+2, P+4 … (SIPp's pcap play keeps the pcap's
port offsets, and it costs nothing).  Ports that cannot be bound are skipped.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from srs.wire_clock import enable_timestamps

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
    """Hands out runs of consecutive even ports from [low, high], skipping those in use or unbindable."""

    def __init__(self, low: int, high: int, bind_host: str = "0.0.0.0") -> None:
        self.low = low + (low % 2)
        self.high = high
        self.bind_host = bind_host
        self._next = self.low
        self._in_use: set[int] = set()

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def _try_bind(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.bind_host else socket.AF_INET
        bound: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                sock = socket.socket(family, socket.SOCK_DGRAM)
                bound.append(sock)
                sock.setblocking(False)
                sock.bind((self.bind_host, p))
                enable_timestamps(sock)  # every datagram carries its arrival (srs.wire_clock)
        except OSError:
            for sock in bound:
                sock.close()
            return None
        bound[0].setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        return bound[0], bound[1]

    def allocate(self, count: int) -> list[RtpPort] | None:
        """``count`` ports P, P+2 … bound now; None when the range has no such run."""
        if count <= 0:
            return []
        span = 2 * count
        size = self.high - self.low + 1
        attempts = max(1, size // 2)
        start = self._next
        for _ in range(attempts):
            if start + span - 1 > self.high:
                start = self.low
            run = self._bind_run(start, count)
            if run is not None:
                self._next = start + span
                return run
            start += 2
        return None

    def _bind_run(self, start: int, count: int) -> list[RtpPort] | None:
        ports: list[RtpPort] = []
        for i in range(count):
            port = start + 2 * i
            pair = None if port in self._in_use else self._try_bind(port)
            if pair is None:
                for allocated in ports:
                    self._close(allocated)
                return None
            ports.append(RtpPort(port, pair[0], pair[1]))
            self._in_use.add(port)
        return ports

    def _close(self, rtp_port: RtpPort) -> None:
        rtp_port.rtp.close()
        rtp_port.rtcp.close()
        self._in_use.discard(rtp_port.port)

    def release(self, rtp_port: RtpPort) -> None:
        self._close(rtp_port)
