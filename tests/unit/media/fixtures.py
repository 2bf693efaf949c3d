"""Shared fixtures: a real G.711 µ-law table, RTP packet builders and a decoder factory."""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import NDArray

from srs.media.rendering import Decoder, PayloadFormat
from srs.media.track import StreamTrack


def ulaw_table() -> NDArray[np.int16]:
    """ITU-T G.711 µ-law expansion for all 256 codes."""
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


ULAW = ulaw_table()
SRC = ("192.0.2.10", 40000)
OTHER = ("198.51.100.7", 50000)
RATE = 8000
_HEADER = struct.Struct("!BBHII")


class UlawDecoder:
    clock_rate = 8000

    def __init__(self) -> None:
        self.calls = 0

    def decode(self, payload: bytes) -> NDArray[np.int16]:
        self.calls += 1
        return ULAW.take(np.frombuffer(payload, dtype=np.uint8).astype(np.intp))


class WideDecoder:
    """A stand-in for a frame codec at a 16 kHz RTP clock: each payload byte becomes 10 samples."""

    clock_rate = 16000

    def decode(self, payload: bytes) -> NDArray[np.int16]:
        return np.repeat(np.frombuffer(payload, dtype=np.uint8).astype(np.int16) * 100, 10)


DECODERS: list[UlawDecoder] = []


def factory(encoding: str, clock_rate: int, channels: int = 1, fmtp: str | None = None) -> Decoder:
    if encoding.upper() == "PCMU" and clock_rate == 8000:
        decoder = UlawDecoder()
        DECODERS.append(decoder)
        return decoder
    if encoding.upper() == "X-WIDE" and clock_rate == 16000:
        return WideDecoder()
    raise ValueError(f"unsupported codec {encoding}/{clock_rate}")


FORMATS = {
    0: PayloadFormat("PCMU", 8000),
    101: PayloadFormat("telephone-event", 8000, fmtp="0-16"),
    13: PayloadFormat("CN", 8000),
    96: PayloadFormat("X-WIDE", 16000),
    97: PayloadFormat("opus", 48000, 2),
}


def make_track(start: float = 0.0, **kwargs: object) -> StreamTrack:
    return StreamTrack(FORMATS, start=start, decoder_factory=factory, **kwargs)  # type: ignore[arg-type]


def payload_for(n: int, size: int = 160) -> bytes:
    """Distinct, never-silent µ-law bytes so a misplaced packet shows up in the output."""
    return bytes(((n * 37 + i) % 0x7E) + 1 for i in range(size))


def rtp(
    seq: int,
    ts: int,
    payload: bytes | None = None,
    *,
    ssrc: int = 0x11223344,
    pt: int = 0,
    marker: bool = False,
) -> bytes:
    body = payload_for(seq) if payload is None else payload
    return (
        struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + body
    )


def expected(placements: list[tuple[int, bytes]], length: int) -> NDArray[np.int16]:
    """The exact output for µ-law payloads placed at sample positions."""
    out = np.zeros(length, dtype=np.int16)
    for pos, payload in placements:
        pcm = ULAW[np.frombuffer(payload, dtype=np.uint8)]
        end = min(length, pos + len(pcm))
        out[pos:end] = pcm[: end - pos]
    return out


class PartsOnlyTrack(StreamTrack):
    """The reference for the inlined fast paths: every datagram goes through the pipeline of parts
    (latch, sequence tracker, placement, renderer), never through ``push``'s inline copy of them."""

    def push(self, data: bytes, source: tuple[str, int], arrival: float) -> None:
        try:
            b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
        except struct.error:
            self.malformed += 1
            return
        self._push_general(data, source, arrival, b0, b1, seq, ts, ssrc)

    def push_run(self, *args: object, **kwargs: object) -> bool:
        return False  # the caller pushes the run one datagram at a time
