"""The in-order fast path of ``StreamTrack.push`` must be invisible: every packet sequence gives the
same samples and the same statistics as the general path alone (RFC 3550 §A.1 bookkeeping, latching,
SSRC changes, marker bits, payload-type switches, DTMF, reordering, duplicates, late packets)."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.media.track import StreamTrack
from tests.unit.media.fixtures import FORMATS, OTHER, SRC, PartsOnlyTrack, factory, payload_for, rtp

_HEADER = struct.Struct("!BBHII")


def _pair(sources: list[str] | None = None) -> tuple[StreamTrack, StreamTrack]:
    fast = StreamTrack(FORMATS, start=0.0, decoder_factory=factory, sources=sources)
    general = PartsOnlyTrack(FORMATS, start=0.0, decoder_factory=factory, sources=sources)
    return fast, general


_MOVED = (SRC[0], SRC[1] + 2)
"""The allowed host from another port (an SBC that reopened its socket)."""


def _event(digit: int, end: bool) -> bytes:
    return bytes([digit, 0x80 if end else 0x0A, 0x03, 0x20])


# one step: (sequence delta, timestamp delta in frames, kind, source, other ssrc, render now)
_STEP = st.tuples(
    st.sampled_from([1, 1, 1, 1, 1, 2, 3, 0, -1, -2, -5, 4000]),
    st.sampled_from([1, 1, 1, 1, 2, 0, -1, 60000]),
    st.sampled_from(["audio", "audio", "audio", "marker", "dtmf", "cn", "wide", "unknown", "short", "csrc"]),
    st.sampled_from([SRC, SRC, OTHER, _MOVED]),
    st.sampled_from([False, False, False, False, True]),
    st.sampled_from([False, False, False, True]),
)


def _datagram(kind: str, seq: int, ts: int, ssrc: int) -> bytes:
    if kind == "marker":
        return rtp(seq, ts, ssrc=ssrc, marker=True)
    if kind == "dtmf":
        return rtp(seq, ts, _event(5, seq % 3 == 0), ssrc=ssrc, pt=101)
    if kind == "cn":
        return rtp(seq, ts, b"\x40", ssrc=ssrc, pt=13)
    if kind == "wide":
        return rtp(seq, ts, payload_for(seq, 32), ssrc=ssrc, pt=96)
    if kind == "unknown":
        return rtp(seq, ts, ssrc=ssrc, pt=55)
    if kind == "short":
        return rtp(seq, ts, ssrc=ssrc)[:9]
    if kind == "csrc":
        packet = rtp(seq, ts, ssrc=ssrc)
        return bytes([0x81]) + packet[1:12] + b"\x00\x00\x00\x07" + packet[12:]
    return rtp(seq, ts, ssrc=ssrc)


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=120), st.sampled_from([None, [SRC[0]], [OTHER[0]]]))
def test_fast_path_gives_the_same_samples_and_statistics(
    steps: list[tuple[int, int, str, tuple[str, int], bool, bool]], sources: list[str] | None
) -> None:
    fast, general = _pair(sources)
    seq, ts, now, rendered = 1000, 5000, 0.0, 0
    outputs: list[tuple[np.ndarray, np.ndarray]] = []
    for dseq, dts, kind, source, other_ssrc, render in steps:
        seq += dseq
        ts += dts * 160
        now += 0.02
        data = _datagram(kind, seq, ts, 0x5EED if other_ssrc else 0x11223344)
        fast.push(data, source, now)
        general.push(data, source, now)
        if render:
            end = int(now * 8000) - 800
            if end > rendered:
                outputs.append((fast.render(rendered, end), general.render(rendered, end)))
                rendered = end
    end = int(now * 8000) + 8000
    outputs.append((fast.render(rendered, end), general.render(rendered, end)))
    for a, b in outputs:
        assert np.array_equal(a, b)
    fast.finish()
    general.finish()
    assert fast.stats() == general.stats()


def test_in_order_packets_after_the_first_take_the_fast_path() -> None:
    """The property above holds trivially if the fast path is never taken; it is, for plain packets."""
    calls: list[int] = []

    class Counting(StreamTrack):
        def _push_general(self, *args: Any) -> None:
            calls.append(1)
            super()._push_general(*args)

    track = Counting(FORMATS, start=0.0, decoder_factory=factory)
    for n in range(50):
        track.push(rtp(100 + n, 800 + 160 * n), SRC, 0.02 * n)
    assert len(calls) == 1  # only the first packet (latching, SSRC anchor)
    track.push(rtp(150, 800 + 160 * 50), OTHER, 1.0)  # another source: the general path drops it
    track.push(rtp(151, 800 + 160 * 51, marker=True), SRC, 1.02)
    assert len(calls) == 3
    assert track.stats().packets_dropped_source == 1
    assert track.packets_received == 51
