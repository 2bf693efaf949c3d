"""The live tap's jitter buffer, decoding and wrapping, with real G.711 decoders and real RTP bytes."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import srs_codecs

from srs.media.rendering import PayloadFormat
from srs.mediaplane.live_tap import LiveTaps, StreamTap
from srs.service.live_formats import ulaw_decode, ulaw_encode

FORMATS = {0: PayloadFormat("PCMU", 8000), 101: PayloadFormat("telephone-event", 8000)}


def rtp(seq: int, ts: int, payload: bytes, pt: int = 0) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234) + payload


def payload(level: int) -> bytes:
    return ulaw_encode(np.full(160, level, dtype=np.int16))


def make_tap(out: list[tuple[Any, ...]], hold: float = 0.04) -> StreamTap:
    return StreamTap("k", 4000, "1", FORMATS, srs_codecs.get_decoder, out.append, hold)


def levels(out: list[tuple[Any, ...]]) -> list[int]:
    return [int(np.frombuffer(f[5], dtype="<i2")[-1]) for f in out if f[3] != "dtmf"]


def test_in_order_packets_leave_at_once_decoded_with_the_codec() -> None:
    out: list[tuple[Any, ...]] = []
    tap = make_tap(out)
    for i in range(3):
        tap.push(rtp(100 + i, 1000 + 160 * i, payload(1000 * (i + 1))), arrival=1.0 + 0.02 * i)
        assert len(out) == i + 1  # no waiting for an in-order packet
    assert [f[3] for f in out] == [100, 101, 102]
    assert levels(out) == [int(ulaw_decode(payload(1000 * (i + 1)))[0]) for i in range(3)]


def test_a_reordered_packet_is_put_back_in_place() -> None:
    out: list[tuple[Any, ...]] = []
    tap = make_tap(out)
    tap.push(rtp(1, 0, payload(1000)), 1.0)
    tap.push(rtp(3, 320, payload(3000)), 1.04)
    assert [f[3] for f in out] == [1]  # 3 waits for 2
    tap.push(rtp(2, 160, payload(2000)), 1.045)
    assert [f[3] for f in out] == [1, 2, 3]
    assert all(len(f[5]) == 320 for f in out)


def test_a_lost_packet_is_waited_for_hold_then_filled_with_silence() -> None:
    out: list[tuple[Any, ...]] = []
    tap = make_tap(out, hold=0.04)
    tap.push(rtp(10, 0, payload(1000)), 1.0)
    tap.push(rtp(12, 320, payload(3000)), 1.04)
    tap.tick(1.07)
    assert [f[3] for f in out] == [10]
    tap.tick(1.081)
    assert [f[3] for f in out] == [10, 12]
    pcm = np.frombuffer(out[1][5], dtype="<i2")
    assert len(pcm) == 320 and not pcm[:160].any() and pcm[160:].all()  # 20 ms of silence, then 12
    tap.push(rtp(11, 160, payload(2000)), 1.09)  # too late: the listener has moved on
    assert len(out) == 2 and tap.late == 1


def test_sequence_wraps_and_dtmf_is_reported_once() -> None:
    out: list[tuple[Any, ...]] = []
    tap = make_tap(out)
    tap.push(rtp(0xFFFF, 0, payload(1000)), 1.0)
    tap.push(rtp(0, 160, payload(1000)), 1.02)
    event = struct.pack("!BBH", 5, 0x80 | 10, 800)
    for seq in (1, 2, 3):
        tap.push(rtp(seq, 320, event, pt=101), 1.04)
    assert [f[3] for f in out] == [0xFFFF, 0, "dtmf"] and out[2][4] == "5"


def test_only_subscribed_keys_are_tapped_and_the_recording_is_fed_first() -> None:
    taps = LiveTaps(srs_codecs.get_decoder)
    calls: list[str] = []

    def track_push(data: bytes, addr: Any, arrival: float) -> None:
        calls.append("track")

    sink = taps.stream("k", 4000, "1", FORMATS, track_push)
    assert sink is track_push  # nobody listens: the port keeps the track's own push, no cost
    sinks = taps.subscribe("k", True)
    tapped = sinks[4000]
    assert tapped is not None and tapped is not track_push
    tapped(rtp(1, 0, payload(500)), ("127.0.0.1", 1), 1.0)
    assert calls == ["track"] and len(taps.take(1.0)) == 1
    assert list(taps.tapped) == [4000]  # what a poll's tick visits
    assert taps.subscribe("k", False)[4000] is track_push
    assert taps.tapped == {}
    assert taps.subscribe("other", True) == {}
