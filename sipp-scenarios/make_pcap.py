#!/usr/bin/env python3
"""Write a libpcap capture of two RTP streams for SIPp's ``play_pcap_audio``.

SIPp replays a capture keeping each packet's destination-port offset from the lowest
destination port in the file, so a capture with streams to ports B and B+2 feeds the
first and second m-line of the recorder's answer when those sit on consecutive even
ports.  Each stream carries a different tone, which lets a test tell, after mixing,
that both streams reached the recording at the level they were sent.

Usage::

    make_pcap.py OUT.pcap --seconds 5 --tones 440,1000 --level-dbfs -12 [--codec pcmu|pcma]

The capture uses the Ethernet link type with IPv4/UDP from 127.0.0.1 to 127.0.0.1;
SIPp rewrites addresses and ports when it plays it.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 8000
PACKET_MS = 20
SAMPLES_PER_PACKET = SAMPLE_RATE * PACKET_MS // 1000
PAYLOAD_TYPES = {"pcmu": 0, "pcma": 8}
LINKTYPE_ETHERNET = 1
PCAP_MAGIC = 0xA1B2C3D4


def _encode_ulaw_fallback(pcm: np.ndarray) -> bytes:
    """G.711 mu-law (ITU-T G.711 table, bias 0x84), block-wise in numpy."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def _encode_alaw_fallback(pcm: np.ndarray) -> bytes:
    """G.711 A-law (segment search on the 13-bit magnitude), block-wise in numpy."""
    x = pcm.astype(np.int32) >> 3
    mask = np.where(x >= 0, 0xD5, 0x55)
    magnitude = np.where(x >= 0, x, -x - 1)
    segment_ends = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
    segment = np.searchsorted(segment_ends, magnitude, side="left")
    shift = np.where(segment < 2, 1, segment)
    value = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F)
    value = np.where(segment >= 8, 0x7F, value)
    return ((value ^ mask) & 0xFF).astype(np.uint8).tobytes()


def encode(pcm: np.ndarray, codec: str) -> bytes:
    """Prefer the project's codec package when installed; the fallback keeps the script standalone."""
    try:
        from srs_codecs import g711

        return bytes(g711.encode_ulaw(pcm) if codec == "pcmu" else g711.encode_alaw(pcm))
    except (ImportError, AttributeError):
        return _encode_ulaw_fallback(pcm) if codec == "pcmu" else _encode_alaw_fallback(pcm)


def tone(frequency: float, seconds: float, level_dbfs: float) -> np.ndarray:
    """A sine whose peak is ``level_dbfs`` relative to int16 full scale."""
    n = round(seconds * SAMPLE_RATE)
    amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    t = np.arange(n) / SAMPLE_RATE
    pcm: np.ndarray = np.round(amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
    return pcm


def _ip_checksum(header: bytes) -> int:
    words = np.frombuffer(header, dtype=">u2").astype(np.uint32)
    total = int(words.sum())
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(src_port: int, dst_port: int, payload: bytes, ip_id: int) -> bytes:
    """Ethernet + IPv4 + UDP around ``payload``, loopback addresses (SIPp rewrites them)."""
    loopback = bytes([127, 0, 0, 1])
    udp = struct.pack("!HHHH", src_port, dst_port, 8 + len(payload), 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), ip_id & 0xFFFF, 0x4000, 64, 17, 0, loopback, loopback
    )
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ethernet = b"\x00\x00\x00\x00\x00\x02" + b"\x00\x00\x00\x00\x00\x01" + b"\x08\x00"
    return ethernet + ip + udp


def rtp_packet(payload_type: int, seq: int, timestamp: int, ssrc: int, payload: bytes, marker: bool) -> bytes:
    return (
        struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc
        )
        + payload
    )


@dataclass(frozen=True)
class _Stream:
    payload: bytes
    ssrc: int
    seq: int
    ts: int
    port: int


def build_pcap(
    seconds: float,
    tones: Sequence[float],
    level_dbfs: float,
    codec: str,
    base_port: int = 20000,
    seed: int = 7366,
) -> bytes:
    """Capture bytes: stream i goes to ``base_port + 2*i``, packets interleaved in time order."""
    rng = random.Random(seed)
    payload_type = PAYLOAD_TYPES[codec]
    packets_per_stream = round(seconds * 1000 / PACKET_MS)
    streams: list[_Stream] = []
    for index, frequency in enumerate(tones):
        pcm = tone(frequency, packets_per_stream * PACKET_MS / 1000, level_dbfs)
        streams.append(
            _Stream(
                payload=encode(pcm, codec),
                ssrc=rng.getrandbits(32),
                seq=rng.getrandbits(16),
                ts=rng.getrandbits(32),
                port=base_port + 2 * index,
            )
        )
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    start_usec = 1_700_000_000 * 1_000_000
    ip_id = 1
    for k in range(packets_per_stream):
        for index, s in enumerate(streams):
            chunk = s.payload[k * SAMPLES_PER_PACKET : (k + 1) * SAMPLES_PER_PACKET]
            rtp = rtp_packet(
                payload_type, s.seq + k, s.ts + k * SAMPLES_PER_PACKET, s.ssrc, chunk, marker=k == 0
            )
            frame = udp_frame(s.port, s.port, rtp, ip_id)
            ip_id += 1
            # Both streams share the packet clock; the second is 1 ms later so order is unambiguous.
            when = start_usec + k * PACKET_MS * 1000 + index * 1000
            out.append(struct.pack("<IIII", when // 1_000_000, when % 1_000_000, len(frame), len(frame)))
            out.append(frame)
    return b"".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--tones", default="440,1000", help="comma-separated Hz, one stream per tone")
    parser.add_argument("--level-dbfs", type=float, default=-12.0, help="peak level of each tone")
    parser.add_argument("--codec", choices=sorted(PAYLOAD_TYPES), default="pcmu")
    parser.add_argument("--base-port", type=int, default=20000, help="destination port of stream 1")
    parser.add_argument("--seed", type=int, default=7366, help="seeds SSRCs and initial seq/timestamp")
    args = parser.parse_args(argv)
    tones = [float(t) for t in args.tones.split(",") if t.strip()]
    if not tones or args.seconds <= 0:
        parser.error("need at least one tone and a positive duration")
    args.out.parent.mkdir(parents=True, exist_ok=True)  # `pcap/` is not in the repository
    args.out.write_bytes(
        build_pcap(args.seconds, tones, args.level_dbfs, args.codec, args.base_port, args.seed)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
