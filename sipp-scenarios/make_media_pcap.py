#!/usr/bin/env python3
"""Write a libpcap capture of two RTP streams in any codec srs records, for SIPp's ``play_pcap_audio``.

The same capture layout as ``make_pcap.py`` (Ethernet/IPv4/UDP, stream i to base port + 2i, 20 ms
packets interleaved in time order), with more to say:

* codecs: PCMU, PCMA, G.722, G.729 (needs libbcg729), Opus, AMR octet-aligned and
  bandwidth-efficient, AMR-WB (needs FFmpeg's libvo_amrwbenc), L16 at 8 and 16 kHz.  The lossy
  ones are encoded with the encoders bundled in PyAV; a codec whose encoder is missing exits with
  status 3 and says why on stderr.
* RFC 4733 DTMF on stream 1 (``--dtmf 1@0.5,5@1.2,#@2.0``), sent beside the audio under the
  audio's SSRC and sequence space, with the usual three end packets.
* clicks instead of tones (``--pulses 0.5,1.5``): one sample of 16000 on stream 1 and of 8000 on
  stream 2 at each instant (they sum to 24000 without clipping), to measure stream alignment.
* RTCP sender reports (``--rtcp-sr``) every 0.5 s to port + 1 of each stream, both stamped from one
  NTP clock, so a recorder can align the streams by the sender's clock rather than by arrival.
* SRTP (``--srtp-key BASE64``): both streams (and their SRTCP) protected with AES_CM_128_HMAC_SHA1_80.

Usage::

    make_media_pcap.py OUT.pcap --codec g722 --seconds 3 [--tones 440,1000] [--level-dbfs -12]
        [--pt N] [--dtmf DIGIT@SECONDS,...] [--pulses SECONDS,...] [--rtcp-sr] [--srtp-key BASE64]
        [--skew-us 1000]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import random
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_pcap import LINKTYPE_ETHERNET, PCAP_MAGIC, rtp_packet, udp_frame
from make_pcap import encode as encode_g711

PACKET_MS = 20
EXIT_NO_ENCODER = 3
DTMF_PT = 101
NTP_UNIX_OFFSET = 2_208_988_800
SR_INTERVAL_S = 0.5
PULSE_HEIGHTS = (16000, 8000)  # stream 1, stream 2 (further streams use the second)
DTMF_EVENTS = {d: i for i, d in enumerate("0123456789*#ABCD")}
# speech bits per frame type (3GPP TS 26.101 / TS 26.201 table 1a), SID included; the rest carry none
AMR_NB_FRAME_BITS = (95, 103, 118, 134, 148, 159, 204, 244, 39, 0, 0, 0, 0, 0, 0, 0)
AMR_WB_FRAME_BITS = (132, 177, 253, 285, 317, 365, 397, 461, 477, 40, 0, 0, 0, 0, 0, 0)


class EncoderMissing(RuntimeError):
    """The machine has no encoder for the codec asked for."""


@dataclass(frozen=True)
class CodecSpec:
    """How one codec is sampled, clocked and named on the wire."""

    name: str
    encoding: str  # SDP rtpmap encoding name
    sample_rate: int  # rate of the PCM fed to the encoder
    rtp_clock: int
    payload_type: int
    sdp_rtpmap: str
    fmtp: str | None


CODECS: dict[str, CodecSpec] = {
    "pcmu": CodecSpec("pcmu", "PCMU", 8000, 8000, 0, "PCMU/8000", None),
    "pcma": CodecSpec("pcma", "PCMA", 8000, 8000, 8, "PCMA/8000", None),
    "g722": CodecSpec("g722", "G722", 16000, 8000, 9, "G722/8000", None),
    "g729": CodecSpec("g729", "G729", 8000, 8000, 18, "G729/8000", "annexb=no"),
    "opus": CodecSpec("opus", "opus", 48000, 48000, 111, "opus/48000/2", "useinbandfec=0"),
    "amr-oa": CodecSpec("amr-oa", "AMR", 8000, 8000, 97, "AMR/8000", "octet-align=1"),
    "amr-be": CodecSpec("amr-be", "AMR", 8000, 8000, 98, "AMR/8000", "octet-align=0"),
    "amr-wb": CodecSpec("amr-wb", "AMR-WB", 16000, 16000, 104, "AMR-WB/16000", "octet-align=1"),
    "l16-8000": CodecSpec("l16-8000", "L16", 8000, 8000, 100, "L16/8000", None),
    "l16-16000": CodecSpec("l16-16000", "L16", 16000, 16000, 102, "L16/16000", None),
}


# ---------------------------------------------------------------------------------------------
# signals


def tone(frequency: float, seconds: float, level_dbfs: float, rate: int) -> np.ndarray:
    n = round(seconds * rate)
    amplitude = 32767.0 * 10.0 ** (level_dbfs / 20.0)
    pcm: np.ndarray = np.round(amplitude * np.sin(2 * np.pi * frequency * np.arange(n) / rate)).astype(
        np.int16
    )
    return pcm


def clicks(instants: Sequence[float], height: int, seconds: float, rate: int) -> np.ndarray:
    """Silence with one sample of ``height`` at each instant: a sharp mark to find after mixing."""
    pcm = np.zeros(round(seconds * rate), dtype=np.int16)
    for at in instants:
        index = round(at * rate)
        if 0 <= index < len(pcm):
            pcm[index] = height
    return pcm


# ---------------------------------------------------------------------------------------------
# encoders: PCM (int16, spec.sample_rate) -> one payload per 20 ms packet


def _pyav_frames(codec: str, rate: int, pcm: np.ndarray, bit_rate: int | None) -> list[bytes]:
    """Encoder packets of ``codec`` for ``pcm``, one per encoder frame, the encoder's delay flushed."""
    try:
        import av
    except ImportError as exc:
        raise EncoderMissing("PyAV is not installed") from exc
    try:
        ctx = av.CodecContext.create(codec, "w")
    except (av.FFmpegError, ValueError) as exc:
        raise EncoderMissing(f"PyAV has no {codec} encoder: {exc}") from exc
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = av.AudioFormat("s16")
    ctx.time_base = Fraction(1, rate)
    if bit_rate:
        ctx.bit_rate = bit_rate
    ctx.open()
    size = ctx.frame_size or rate * PACKET_MS // 1000
    packets: list[bytes] = []
    for start in range(0, len(pcm) - size + 1, size):
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm[None, start : start + size]), format="s16", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = start
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def _g729_frames(pcm: np.ndarray) -> list[bytes]:
    """10-byte G.729 frames (10 ms each), VAD off, from libbcg729 through ctypes."""
    name = ctypes.util.find_library("bcg729") or "libbcg729.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise EncoderMissing(f"no G.729 encoder: libbcg729 not loadable ({exc})") from exc
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    lib.bcg729Encoder.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    lib.closeBcg729EncoderChannel.argtypes = [ctypes.c_void_p]
    channel = lib.initBcg729EncoderChannel(ctypes.c_uint8(0))
    out = (ctypes.c_uint8 * 10)()
    length = ctypes.c_uint8(0)
    frames = []
    for start in range(0, len(pcm) - 79, 80):
        block = np.ascontiguousarray(pcm[start : start + 80], dtype=np.int16)
        lib.bcg729Encoder(ctypes.c_void_p(channel), block.ctypes.data, out, ctypes.byref(length))
        frames.append(bytes(out[: length.value]))
    lib.closeBcg729EncoderChannel(ctypes.c_void_p(channel))
    return frames


def _bits(value: int, width: int) -> np.ndarray:
    return np.array([(value >> (width - 1 - i)) & 1 for i in range(width)], dtype=np.uint8)


def amr_payload(storage_frame: bytes, octet_aligned: bool, wideband: bool = False) -> bytes:
    """RFC 4867 §4.3 (bandwidth-efficient) or §4.4 (octet-aligned) payload of one storage-format frame.

    Written here rather than borrowed from the recorder's codec package, so a packing bug there
    cannot cancel out against the same bug here.
    """
    header = storage_frame[0]
    frame_type, quality = (header >> 3) & 0x0F, (header >> 2) & 1
    speech = storage_frame[1:]
    cmr = 15
    if octet_aligned:
        return bytes([cmr << 4, frame_type << 3 | quality << 2]) + speech
    speech_bits = (AMR_WB_FRAME_BITS if wideband else AMR_NB_FRAME_BITS)[frame_type]
    bits = np.concatenate(
        [
            _bits(cmr, 4),
            _bits(0, 1),  # F: last (only) frame
            _bits(frame_type, 4),
            _bits(quality, 1),
            np.unpackbits(np.frombuffer(speech, dtype=np.uint8))[:speech_bits],
        ]
    )
    return np.packbits(bits).tobytes()


def encode_packets(spec: CodecSpec, pcm: np.ndarray) -> list[bytes]:
    """One RTP payload per 20 ms of ``pcm``."""
    per_packet = spec.sample_rate * PACKET_MS // 1000
    count = len(pcm) // per_packet
    name = spec.name
    if name in ("pcmu", "pcma"):
        data = encode_g711(pcm, name)
        return [data[i * per_packet : (i + 1) * per_packet] for i in range(count)]
    if name.startswith("l16"):
        data = pcm.astype(">i2").tobytes()
        return [data[2 * i * per_packet : 2 * (i + 1) * per_packet] for i in range(count)]
    if name == "g729":
        frames = _g729_frames(pcm)
        return [frames[2 * i] + frames[2 * i + 1] for i in range(count)]
    if name == "g722":
        frames = _pyav_frames("g722", 16000, pcm, None)
        return _pad(frames, count, b"\x00" * 160)
    if name == "opus":
        frames = _pyav_frames("libopus", 48000, pcm, 32000)
        return _pad(frames, count, frames[-1])
    if name == "amr-wb":
        frames = _pyav_frames("libvo_amrwbenc", 16000, pcm, 23850)
        payloads = [amr_payload(f, octet_aligned=True, wideband=True) for f in frames]
        return _pad(payloads, count, payloads[-1])
    if name.startswith("amr"):
        frames = _pyav_frames("libopencore_amrnb", 8000, pcm, 12200)
        payloads = [amr_payload(f, name == "amr-oa") for f in frames]  # one 20 ms frame per packet
        return _pad(payloads, count, payloads[-1])
    raise ValueError(f"unknown codec {name}")


def _pad(items: list[bytes], count: int, filler: bytes) -> list[bytes]:
    return (items + [filler] * count)[:count]


# ---------------------------------------------------------------------------------------------
# RFC 4733 events


def dtmf_packets(
    digit: str, start_s: float, duration_s: float, rtp_clock: int
) -> list[tuple[float, int, bytes, bool]]:
    """(send time s, RTP timestamp offset, payload, marker) for one key press.

    Every packet carries the event's start timestamp; the duration grows by one packet time; the
    end packet (E bit) goes out three times with the final duration (RFC 4733 §2.5.1.4).
    """
    event = DTMF_EVENTS[digit]
    start_ts = round(start_s * rtp_clock)
    step = rtp_clock * PACKET_MS // 1000
    updates = max(1, round(duration_s * 1000 / PACKET_MS))
    volume = 10
    out = []
    for k in range(1, updates + 1):
        payload = struct.pack("!BBH", event, volume, k * step)
        out.append((start_s + (k - 1) * PACKET_MS / 1000, start_ts, payload, k == 1))
    final = struct.pack("!BBH", event, 0x80 | volume, updates * step)
    for r in range(3):
        out.append((start_s + (updates - 1 + r) * PACKET_MS / 1000 + 0.005, start_ts, final, False))
    return out


def parse_dtmf(text: str) -> list[tuple[str, float]]:
    """``1@0.5,5@1.2,#@2.0`` -> [("1", 0.5), ...]."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        digit, _, at = item.partition("@")
        if digit.upper() not in DTMF_EVENTS or not at:
            raise ValueError(f"bad DTMF item {item!r}: want DIGIT@SECONDS")
        out.append((digit.upper(), float(at)))
    return out


# ---------------------------------------------------------------------------------------------
# RTCP


def sender_report(ssrc: int, unix_time: float, rtp_timestamp: int, packets: int, octets: int) -> bytes:
    """RTCP SR without report blocks (RFC 3550 §6.4.1)."""
    ntp = round((unix_time + NTP_UNIX_OFFSET) * 2**32)
    return struct.pack(
        "!BBHIIIIII",
        0x80,
        200,
        6,
        ssrc,
        ntp >> 32,
        ntp & 0xFFFFFFFF,
        rtp_timestamp & 0xFFFFFFFF,
        packets,
        octets,
    )


# ---------------------------------------------------------------------------------------------
# the capture


@dataclass(frozen=True)
class Options:
    codec: str = "pcmu"
    seconds: float = 3.0
    tones: tuple[float, ...] = (440.0, 1000.0)
    level_dbfs: float = -12.0
    payload_type: int | None = None
    dtmf: tuple[tuple[str, float], ...] = ()
    dtmf_seconds: float = 0.16
    pulses: tuple[float, ...] = ()
    rtcp_sr: bool = False
    srtp_key: str | None = None
    skew_us: int = 1000
    base_port: int = 20000
    seed: int = 7366


def build_pcap(opts: Options) -> bytes:
    spec = CODECS[opts.codec]
    pt = spec.payload_type if opts.payload_type is None else opts.payload_type
    rng = random.Random(opts.seed)
    count = round(opts.seconds * 1000 / PACKET_MS)
    seconds = count * PACKET_MS / 1000
    ts_step = spec.rtp_clock * PACKET_MS // 1000
    protect: Callable[[bytes], bytes] = lambda packet: packet  # noqa: E731
    protect_rtcp = protect
    if opts.srtp_key is not None:
        from srs.rtp.srtp import SrtpOutbound

        outbound = SrtpOutbound("AES_CM_128_HMAC_SHA1_80", f"inline:{opts.srtp_key}")
        protect, protect_rtcp = outbound.protect, outbound.protect_rtcp

    # every packet as (send time us, stream, timestamp offset, payload, marker, PT), then sorted in
    # send order and numbered per SSRC: DTMF shares the audio's SSRC and sequence space
    events: list[tuple[int, int, int, bytes, bool, int]] = []
    for index, frequency in enumerate(opts.tones):
        if opts.pulses:
            height = PULSE_HEIGHTS[min(index, 1)]
            pcm = clicks(opts.pulses, height, seconds, spec.sample_rate)
        else:
            pcm = tone(frequency, seconds, opts.level_dbfs, spec.sample_rate)
        for k, payload in enumerate(encode_packets(spec, pcm)):
            when = k * PACKET_MS * 1000 + index * opts.skew_us
            events.append((when, index, k * ts_step, payload, k == 0, pt))
    for digit, at in opts.dtmf:
        for send_s, ts_offset, payload, marker in dtmf_packets(digit, at, opts.dtmf_seconds, 8000):
            events.append((round(send_s * 1_000_000) + 2000, 0, ts_offset, payload, marker, DTMF_PT))
    events.sort(key=lambda e: (e[0], e[1]))

    ssrcs = [rng.getrandbits(32) for _ in opts.tones]
    seqs = [rng.getrandbits(16) for _ in opts.tones]
    ts_bases = [rng.getrandbits(32) for _ in opts.tones]
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    start_usec = 1_700_000_000 * 1_000_000
    sent = [(0, 0) for _ in opts.tones]  # (packets, octets) per stream, for the sender reports
    next_report = [0.01 * 1_000_000 + 3000 for _ in opts.tones] if opts.rtcp_sr else []
    ip_id = 0

    def add(when: int, port: int, data: bytes) -> None:
        nonlocal ip_id
        ip_id += 1
        frame = udp_frame(port, port, data, ip_id)
        at = start_usec + when
        out.append(struct.pack("<IIII", at // 1_000_000, at % 1_000_000, len(frame), len(frame)))
        out.append(frame)

    for when, index, ts_offset, payload, marker, payload_type in events:
        port = opts.base_port + 2 * index
        for stream, due in enumerate(next_report):
            if due <= when:
                # both streams' media clocks started at the same wall instant: stream 2's packets are
                # only delayed on the way (skew_us), which the reports let a recorder undo
                media_s = due / 1_000_000
                report = sender_report(
                    ssrcs[stream],
                    start_usec / 1_000_000 + due / 1_000_000,
                    ts_bases[stream] + round(media_s * spec.rtp_clock),
                    *sent[stream],
                )
                add(int(due), opts.base_port + 2 * stream + 1, protect_rtcp(report))
                next_report[stream] = due + SR_INTERVAL_S * 1_000_000
        rtp = rtp_packet(
            payload_type, seqs[index], ts_bases[index] + ts_offset, ssrcs[index], payload, marker
        )
        seqs[index] = (seqs[index] + 1) & 0xFFFF
        sent[index] = (sent[index][0] + 1, sent[index][1] + len(payload))
        add(when, port, protect(rtp))
    return b"".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--codec", choices=sorted(CODECS), default="pcmu")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--tones", default="440,1000", help="comma-separated Hz, one stream per tone")
    parser.add_argument("--level-dbfs", type=float, default=-12.0, help="peak level of each tone")
    parser.add_argument("--pt", type=int, default=None, help="RTP payload type (default: per codec)")
    parser.add_argument("--dtmf", default="", help="RFC 4733 digits on stream 1: DIGIT@SECONDS,...")
    parser.add_argument("--dtmf-seconds", type=float, default=0.16, help="length of each key press")
    parser.add_argument("--pulses", default="", help="clicks instead of tones, at these seconds")
    parser.add_argument("--rtcp-sr", action="store_true", help="send RTCP sender reports every 0.5 s")
    parser.add_argument("--srtp-key", default=None, help="base64 AES_CM_128_HMAC_SHA1_80 master key+salt")
    parser.add_argument("--skew-us", type=int, default=1000, help="send delay of stream 2 behind stream 1")
    parser.add_argument("--base-port", type=int, default=20000, help="destination port of stream 1")
    parser.add_argument("--seed", type=int, default=7366, help="seeds SSRCs and initial seq/timestamp")
    parser.add_argument("--sdp", action="store_true", help="print the codec's PT, rtpmap and fmtp and exit")
    args = parser.parse_args(argv)
    spec = CODECS[args.codec]
    if args.sdp:
        print(spec.payload_type if args.pt is None else args.pt, spec.sdp_rtpmap, spec.fmtp or "")
        return 0
    tones = tuple(float(t) for t in args.tones.split(",") if t.strip())
    if not tones or args.seconds <= 0:
        parser.error("need at least one tone and a positive duration")
    try:
        opts = Options(
            codec=args.codec,
            seconds=args.seconds,
            tones=tones,
            level_dbfs=args.level_dbfs,
            payload_type=args.pt,
            dtmf=tuple(parse_dtmf(args.dtmf)),
            dtmf_seconds=args.dtmf_seconds,
            pulses=tuple(float(p) for p in args.pulses.split(",") if p.strip()),
            rtcp_sr=args.rtcp_sr,
            srtp_key=args.srtp_key,
            skew_us=args.skew_us,
            base_port=args.base_port,
            seed=args.seed,
        )
    except ValueError as exc:
        parser.error(str(exc))
    try:
        data = build_pcap(opts)
    except EncoderMissing as exc:
        print(f"make_media_pcap: {exc}", file=sys.stderr)
        return EXIT_NO_ENCODER
    args.out.write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
