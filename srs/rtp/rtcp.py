"""Compound RTCP parsing (RFC 3550 §6), enough to read sender reports.

A sender report ties an RTP timestamp to the sender's NTP wall clock, which
lets streams be aligned by their senders' clocks. Other packet types are kept
as opaque bodies; reduced-size RTCP (RFC 5506) is accepted, so the first
packet need not be SR or RR.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from srs.errors import RtpError

_HEADER = struct.Struct("!BBH")
_SR = struct.Struct("!IIIIII")
_REPORT = struct.Struct("!IIIIII")

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
NTP_UNIX_OFFSET = 2_208_988_800
"""Seconds from 1900-01-01 (NTP era 0) to 1970-01-01."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int


@dataclass(frozen=True, slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    """64-bit NTP timestamp: seconds since 1900 in the high word, fraction in the low word."""
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...]

    @property
    def ntp_unix_time(self) -> float:
        return (self.ntp_timestamp >> 32) - NTP_UNIX_OFFSET + (self.ntp_timestamp & 0xFFFFFFFF) / 2**32


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    ssrc: int
    reports: tuple[ReportBlock, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    ssrcs: tuple[int, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class OtherRtcp:
    packet_type: int
    count: int
    body: bytes


RtcpPacket = SenderReport | ReceiverReport | Bye | OtherRtcp


def _report_blocks(body: bytes, offset: int, count: int) -> tuple[ReportBlock, ...]:
    if offset + 24 * count > len(body):
        raise RtpError(f"RTCP report count {count} needs more bytes than the packet length gives")
    blocks = []
    for i in range(count):
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT.unpack_from(body, offset + 24 * i)
        cumulative = lost_word & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        blocks.append(ReportBlock(ssrc, lost_word >> 24, cumulative, highest, jitter, lsr, dlsr))
    return tuple(blocks)


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket:
    if packet_type == SR:
        if len(body) < 24:
            raise RtpError(f"RTCP SR body of {len(body)} bytes, expected at least 24")
        ssrc, msw, lsw, rtp_ts, packets, octets = _SR.unpack_from(body)
        return SenderReport(ssrc, (msw << 32) | lsw, rtp_ts, packets, octets, _report_blocks(body, 24, count))
    if packet_type == RR:
        if len(body) < 4:
            raise RtpError("RTCP RR without a sender SSRC")
        (ssrc,) = struct.unpack_from("!I", body)
        return ReceiverReport(ssrc, _report_blocks(body, 4, count))
    if packet_type == BYE:
        if len(body) < 4 * count:
            raise RtpError(f"RTCP BYE source count {count} exceeds its length")
        ssrcs = struct.unpack_from(f"!{count}I", body)
        reason = ""
        rest = body[4 * count :]
        if rest:
            reason = rest[1 : 1 + rest[0]].decode("utf-8", "replace")
        return Bye(ssrcs, reason)
    return OtherRtcp(packet_type, count, bytes(body))


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split and decode a compound RTCP packet; malformed input raises :class:`RtpError`."""
    packets: list[RtcpPacket] = []
    offset = 0
    size = len(data)
    if size < 4:
        raise RtpError(f"RTCP packet of {size} bytes is shorter than its 4-byte header")
    while offset < size:
        if offset + 4 > size:
            raise RtpError(f"{size - offset} trailing bytes after the last RTCP packet")
        b0, packet_type, words = _HEADER.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        if not 192 <= packet_type <= 223:
            raise RtpError(f"RTCP packet type {packet_type} is outside 192-223 (is this RTP?)")
        end = offset + 4 * (words + 1)
        if end > size:
            raise RtpError(f"RTCP length of {words + 1} words runs past the end of the datagram")
        body_end = end
        if b0 & 0x20:
            pad = data[end - 1]
            if pad == 0 or pad > end - offset - 4:
                raise RtpError(f"RTCP padding count {pad} is invalid")
            body_end -= pad
        packets.append(_parse_one(packet_type, b0 & 0x1F, data[offset + 4 : body_end]))
        offset = end
    return packets
