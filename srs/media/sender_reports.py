"""RTCP sender reports of one stream: which RTP timestamp each sender's NTP clock put where.

Only a credible mapping is kept: the first report of an SSRC fixes how far its NTP time is from
our arrival time, and a later one more than :data:`TOLERANCE` away from that (the sender's wall
clock jumped, or the report is forged) is ignored. At most :data:`MAX_SSRCS` senders are
remembered, so a stream of made-up SSRCs cannot grow the table.
"""

from __future__ import annotations

from srs.errors import RtpError
from srs.rtp.rtcp import SenderReport, parse_rtcp

TOLERANCE = 1.0
"""Seconds a sender report may disagree with arrival times before it is distrusted."""
MAX_SSRCS = 16


class SenderReports:
    """The latest credible sender report of each SSRC."""

    __slots__ = ("accepted", "dropped_source", "latest", "offsets", "received")

    def __init__(self) -> None:
        self.received = 0
        """RTCP datagrams taken (from allowed hosts), well-formed or not."""
        self.dropped_source = 0
        """RTCP datagrams from hosts not allowed to send the stream (ignored)."""
        self.latest: dict[int, tuple[int, float, float]] = {}
        """SSRC -> (RTP timestamp, NTP time, arrival) of its latest credible report."""
        self.offsets: dict[int, float] = {}
        """SSRC -> NTP time minus arrival of its first report."""
        self.accepted = 0

    def push(self, data: bytes, arrival: float) -> bool:
        """Take one RTCP datagram from an allowed host; False when it is malformed."""
        self.received += 1
        try:
            packets = parse_rtcp(data)
        except RtpError:
            return False
        for packet in packets:
            if isinstance(packet, SenderReport):
                self.add(packet, arrival)
        return True

    def add(self, report: SenderReport, arrival: float) -> bool:
        """Keep ``report`` when it is credible; True when it was kept."""
        ntp = report.ntp_unix_time
        first = self.offsets.get(report.ssrc)
        if first is None:
            if len(self.offsets) >= MAX_SSRCS:
                return False
            self.offsets[report.ssrc] = ntp - arrival
        elif abs(ntp - arrival - first) > TOLERANCE:
            return False
        self.latest[report.ssrc] = (report.rtp_timestamp, ntp, arrival)
        self.accepted += 1
        return True
