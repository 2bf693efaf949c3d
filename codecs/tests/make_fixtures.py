"""Regenerate the reference encodes in data/ (needs PyAV with encoders, and libbcg729 for G.729).

Tests never run this: they read the committed files. Each file holds RTP payloads
as a sequence of (2-byte big-endian length, payload) records.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from codecs_tests_support import reference_tone, write_payloads

DATA = Path(__file__).parent / "data"


def _encode_pyav(codec: str, rate: int, signal: np.ndarray, bit_rate: int | None = None) -> list[bytes]:
    ctx = av.CodecContext.create(codec, "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate = rate
    ctx.layout = "mono"
    ctx.format = av.AudioFormat("s16")
    ctx.time_base = Fraction(1, rate)
    if bit_rate:
        ctx.bit_rate = bit_rate
    ctx.open()
    size = ctx.frame_size
    packets: list[bytes] = []
    for start in range(0, len(signal) - size + 1, size):
        frame = av.AudioFrame.from_ndarray(signal[None, start : start + size], format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        packets += [bytes(p) for p in ctx.encode(frame)]
    packets += [bytes(p) for p in ctx.encode(None)]
    return packets


def _encode_g729(signal: np.ndarray, vad: bool) -> list[bytes]:
    """One entry per 10 ms frame: 10 bytes speech, 2 bytes SID, or empty (not transmitted)."""
    lib = ctypes.CDLL(ctypes.util.find_library("bcg729") or "libbcg729.so.0")
    lib.initBcg729EncoderChannel.restype = ctypes.c_void_p
    lib.bcg729Encoder.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    channel = lib.initBcg729EncoderChannel(ctypes.c_uint8(1 if vad else 0))
    frames = []
    out = (ctypes.c_uint8 * 10)()
    length = ctypes.c_uint8(0)
    for start in range(0, len(signal) - 79, 80):
        block = np.ascontiguousarray(signal[start : start + 80], dtype=np.int16)
        lib.bcg729Encoder(ctypes.c_void_p(channel), block.ctypes.data, out, ctypes.byref(length))
        frames.append(bytes(out[: length.value]))
    return frames


def main() -> None:
    tone8 = reference_tone(8000)
    tone16 = reference_tone(16000)
    tone48 = reference_tone(48000)
    write_payloads(DATA / "g722_1khz.pkts", _encode_pyav("g722", 16000, tone16))
    write_payloads(DATA / "opus_1khz.pkts", _encode_pyav("libopus", 48000, tone48, bit_rate=32000))
    amr = _encode_pyav("libopencore_amrnb", 8000, tone8, bit_rate=12200)
    write_payloads(DATA / "amrnb_1khz_storage.pkts", amr)
    write_payloads(DATA / "g729_1khz_frames.pkts", _encode_g729(tone8, vad=False))
    half_silent = tone8.copy()
    half_silent[len(half_silent) // 2 :] = 0
    write_payloads(DATA / "g729b_dtx_frames.pkts", _encode_g729(half_silent, vad=True))


if __name__ == "__main__":
    main()
