"""RTP fixed header and payload extraction (RFC 3550 §5.1, §5.3.1).

Two entry points: :func:`parse_rtp` decodes every header field for tools and
tests; :func:`split_rtp` is the receiver's hot path and returns only what
placement needs, taking the slow route only when padding, CSRCs or an
extension are present.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from srs.errors import RtpError

FIXED_HEADER = struct.Struct("!BBHII")
"""Byte 0 (V/P/X/CC), byte 1 (M/PT), sequence, timestamp, SSRC."""

_HEADER_SIZE = 12
_EXT_HEADER = struct.Struct("!HH")


@dataclass(frozen=True, slots=True)
class RtpExtension:
    """A header extension: 16-bit profile word and the extension words as bytes."""

    profile: int
    data: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrcs: tuple[int, ...]
    extension: RtpExtension | None
    payload: bytes
    padding: int
    """Number of padding octets removed from the end (0 when the P bit is clear)."""


def _payload_bounds(data: bytes, b0: int) -> tuple[int, int, tuple[int, ...], RtpExtension | None]:
    """Return (payload start, payload end, CSRCs, extension) for a header with any V/P/X/CC."""
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, expected 2")
    size = len(data)
    start = _HEADER_SIZE
    cc = b0 & 0x0F
    if cc:
        start += 4 * cc
        if start > size:
            raise RtpError(f"RTP packet of {size} bytes too short for {cc} CSRC entries")
        csrcs = struct.unpack_from(f"!{cc}I", data, _HEADER_SIZE)
    else:
        csrcs = ()
    extension = None
    if b0 & 0x10:
        if start + 4 > size:
            raise RtpError("RTP header extension flag set but the extension header is missing")
        profile, words = _EXT_HEADER.unpack_from(data, start)
        ext_end = start + 4 + 4 * words
        if ext_end > size:
            raise RtpError(f"RTP header extension of {words} words runs past the end of the packet")
        extension = RtpExtension(profile, bytes(data[start + 4 : ext_end]))
        start = ext_end
    end = size
    if b0 & 0x20:
        if end <= start:
            raise RtpError("RTP padding flag set but the packet has no padding count")
        count = data[end - 1]
        if count == 0:
            raise RtpError("RTP padding count is zero")
        if count > end - start:
            raise RtpError(f"RTP padding count {count} exceeds the {end - start} bytes after the header")
        end -= count
    return start, end, csrcs, extension


def parse_rtp(data: bytes) -> RtpPacket:
    """Decode a whole RTP packet; malformed input raises :class:`RtpError`."""
    if len(data) < _HEADER_SIZE:
        raise RtpError(f"RTP packet of {len(data)} bytes is shorter than the 12-byte fixed header")
    b0, b1, seq, ts, ssrc = FIXED_HEADER.unpack_from(data)
    start, end, csrcs, extension = _payload_bounds(data, b0)
    return RtpPacket(
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        csrcs=csrcs,
        extension=extension,
        payload=bytes(data[start:end]),
        padding=len(data) - end,
    )


def split_rtp(data: bytes) -> tuple[int, int, int, int, bytes]:
    """Return (marker/PT byte, sequence, timestamp, SSRC, payload) as cheaply as possible.

    The common case (V=2, no padding, CSRC or extension) costs one unpack and one slice.
    """
    try:
        b0, b1, seq, ts, ssrc = FIXED_HEADER.unpack_from(data)
    except struct.error:
        raise RtpError(f"RTP packet of {len(data)} bytes is shorter than the 12-byte fixed header") from None
    if b0 == 0x80:
        return b1, seq, ts, ssrc, data[12:]
    start, end, _, _ = _payload_bounds(data, b0)
    return b1, seq, ts, ssrc, data[start:end]
