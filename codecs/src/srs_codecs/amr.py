"""RFC 4867 AMR / AMR-WB RTP payloads ↔ AMR storage-format frames (RFC 4867 §5).

Decoders consume the storage format (one header octet, then the speech bits
padded to an octet); RTP carries the same bits either octet-aligned or packed
back to back ("bandwidth-efficient", the default when the SDP has no
``octet-align=1``). Both directions live here so test and load generators
can produce exactly what SBCs send.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from srs_codecs.errors import DecodeError

# Speech bits per frame type (3GPP TS 26.101 table 1a, TS 26.201 table 1a).
NB_FRAME_BITS = (95, 103, 118, 134, 148, 159, 204, 244, 39, 43, 38, 37, 0, 0, 0, 0)
WB_FRAME_BITS = (132, 177, 253, 285, 317, 365, 397, 461, 477, 40, 0, 0, 0, 0, 0, 0)
NB_SID, NB_RESERVED = 8, range(12, 15)
WB_SID, WB_RESERVED = 9, range(10, 14)
NO_DATA = 15
SPEECH_LOST = 14  # AMR-WB only
MAX_FRAMES_PER_PACKET = 64


@dataclass(frozen=True, slots=True)
class AmrFrame:
    frame_type: int
    quality: bool
    speech: bytes  # speech bits, zero-padded to a whole octet

    def storage(self) -> bytes:
        """The frame in storage format: header octet ``0 FT Q 0 0`` then the speech octets."""
        return bytes([(self.frame_type << 3) | (int(self.quality) << 2)]) + self.speech

    def is_speech(self, wideband: bool) -> bool:
        return self.frame_type < (WB_SID if wideband else NB_SID)


def _frame_bits(frame_type: int, wideband: bool) -> int:
    reserved = WB_RESERVED if wideband else NB_RESERVED
    if frame_type in reserved:
        raise DecodeError(f"reserved AMR{'-WB' if wideband else ''} frame type {frame_type}")
    return (WB_FRAME_BITS if wideband else NB_FRAME_BITS)[frame_type]


def parse_payload(
    payload: bytes, *, wideband: bool, octet_aligned: bool, crc: bool = False
) -> list[AmrFrame]:
    """Split one RTP payload into frames; raises DecodeError when the ToC and the length disagree."""
    if not payload:
        raise DecodeError("empty AMR payload")
    if octet_aligned:
        return _parse_octet_aligned(payload, wideband, crc)
    return _parse_bandwidth_efficient(payload, wideband)


def _parse_octet_aligned(payload: bytes, wideband: bool, crc: bool) -> list[AmrFrame]:
    toc: list[tuple[int, bool]] = []
    pos = 1  # CMR octet
    while True:
        if pos >= len(payload):
            raise DecodeError("AMR table of contents runs past the payload")
        entry = payload[pos]
        pos += 1
        toc.append(((entry >> 3) & 0x0F, bool(entry & 0x04)))
        if not entry & 0x80:
            break
        if len(toc) >= MAX_FRAMES_PER_PACKET:
            raise DecodeError("AMR table of contents has no last entry")
    if crc:
        pos += sum(1 for frame_type, _ in toc if frame_type not in (NO_DATA, SPEECH_LOST))
    frames = []
    for frame_type, quality in toc:
        size = (_frame_bits(frame_type, wideband) + 7) // 8
        if pos + size > len(payload):
            raise DecodeError(f"AMR payload too short: frame type {frame_type} needs {size} octets")
        frames.append(AmrFrame(frame_type, quality, payload[pos : pos + size]))
        pos += size
    return frames


def _parse_bandwidth_efficient(payload: bytes, wideband: bool) -> list[AmrFrame]:
    bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
    toc: list[tuple[int, bool]] = []
    pos = 4  # CMR
    while True:
        if pos + 6 > len(bits):
            raise DecodeError("AMR table of contents runs past the payload")
        follow, quality = bits[pos], bits[pos + 5]
        frame_type = int(np.packbits(bits[pos + 1 : pos + 5])[0]) >> 4
        toc.append((frame_type, bool(quality)))
        pos += 6
        if not follow:
            break
        if len(toc) >= MAX_FRAMES_PER_PACKET:
            raise DecodeError("AMR table of contents has no last entry")
    frames = []
    for frame_type, quality in toc:
        n = _frame_bits(frame_type, wideband)
        if pos + n > len(bits):
            raise DecodeError(f"AMR payload too short: frame type {frame_type} needs {n} bits")
        frames.append(AmrFrame(frame_type, quality, np.packbits(bits[pos : pos + n]).tobytes()))
        pos += n
    if len(bits) - pos >= 8:
        raise DecodeError(f"{(len(bits) - pos) // 8} stray octets after the last AMR frame")
    return frames


def frame_from_storage(storage: bytes, *, wideband: bool) -> AmrFrame:
    if not storage:
        raise DecodeError("empty AMR storage frame")
    frame_type = (storage[0] >> 3) & 0x0F
    size = (_frame_bits(frame_type, wideband) + 7) // 8
    if len(storage) != 1 + size:
        raise DecodeError(
            f"AMR storage frame of type {frame_type} must be {1 + size} octets, got {len(storage)}"
        )
    return AmrFrame(frame_type, bool(storage[0] & 0x04), storage[1:])


def build_payload(
    frames: Sequence[AmrFrame], *, wideband: bool, octet_aligned: bool, cmr: int = 15
) -> bytes:
    """One RTP payload carrying ``frames`` (no interleaving, no CRC)."""
    if not frames:
        raise ValueError("an AMR payload carries at least one frame")
    if octet_aligned:
        toc = bytes(
            (0x80 if i < len(frames) - 1 else 0) | f.frame_type << 3 | int(f.quality) << 2
            for i, f in enumerate(frames)
        )
        return bytes([(cmr & 0x0F) << 4]) + toc + b"".join(f.speech for f in frames)
    parts = [np.unpackbits(np.array([cmr << 4], dtype=np.uint8))[:4]]
    for i, f in enumerate(frames):
        entry = (int(i < len(frames) - 1) << 5) | f.frame_type << 1 | int(f.quality)
        parts.append(np.unpackbits(np.array([entry << 2], dtype=np.uint8))[:6])
    for f in frames:
        n = _frame_bits(f.frame_type, wideband)
        parts.append(np.unpackbits(np.frombuffer(f.speech, dtype=np.uint8))[:n])
    return np.packbits(np.concatenate(parts)).tobytes()
