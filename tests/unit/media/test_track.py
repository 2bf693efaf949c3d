"""StreamTrack: every packet sequence ends in a sample-exact block on the recording timeline.

Packets are 20 ms of PCMU (160 samples). Unless a test says otherwise, packet ``i`` carries
sequence ``i`` and timestamp ``160 * i`` and arrives at ``1 + i/50`` s, so it belongs at sample
``8000 + 160 * i`` of a recording that started at 0.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from srs_codecs.plc import HISTORY, PitchRepeatConcealer

from srs.media.rendering import PayloadFormat
from srs.media.track import StreamTrack
from srs.rtp.dtmf import DtmfEvent
from tests.unit.media.fixtures import (
    FORMATS,
    OTHER,
    SRC,
    ULAW,
    expected,
    factory,
    make_track,
    payload_for,
    rtp,
)

N = 50
END = 8000 + N * 160 + 800


def arrival(i: float) -> float:
    return (50 + i) / 50


def base(indexes: range | list[int] = range(N)) -> np.ndarray:
    return expected([(8000 + 160 * i, payload_for(i)) for i in indexes], END)


def feed(track: StreamTrack, indexes: list[int] | range, *, seq0: int = 0, ts0: int = 0) -> None:
    for i in indexes:
        track.push(rtp(seq0 + i, ts0 + 160 * i, payload_for(i)), SRC, arrival(i))


def test_in_order_stream_is_placed_sample_exact() -> None:
    track = make_track()
    feed(track, range(N))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_received, stats.packets_lost, stats.packets_late, stats.packets_duplicate) == (
        N,
        0,
        0,
        0,
    )
    assert (stats.expected_ms, stats.captured_ms, stats.gaps) == (N * 20, N * 20, ())
    assert (stats.first_packet_at, stats.last_packet_at) == (1.0, arrival(N - 1))
    assert stats.completeness == 1.0 and not stats.silent
    assert track.pending_packets == 0


def test_render_before_any_packet_is_silence() -> None:
    track = make_track()
    np.testing.assert_array_equal(track.render(0, 4000), np.zeros(4000, dtype=np.int16))
    assert track.stats().silent


def test_loss_leaves_exact_silence_and_is_counted() -> None:
    track = make_track()
    kept = [i for i in range(N) if i not in (10, 11, 30)]
    feed(track, kept)
    np.testing.assert_array_equal(track.render(0, END), base(kept))
    stats = track.stats()
    assert stats.packets_lost == 3
    assert stats.gaps == ((1200, 40), (1600, 20))
    assert (stats.expected_ms, stats.captured_ms) == (1000, 940)
    assert stats.completeness == pytest.approx(0.94)


def test_reordered_packets_land_in_place() -> None:
    order = [0, 2, 1, 3, 7, 4, 5, 6, *range(8, 40), 45, *range(40, 45), *range(46, N)]
    track = make_track()
    for k, i in enumerate(order):
        track.push(rtp(i, 160 * i), SRC, arrival(k))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_lost, stats.packets_duplicate, stats.packets_late) == (0, 0, 0)


def test_packet_older_than_the_first_one_is_placed_before_it() -> None:
    track = make_track()
    track.push(rtp(1, 160), SRC, arrival(1))
    track.push(rtp(0, 0), SRC, arrival(1.5))
    feed(track, range(2, N))
    np.testing.assert_array_equal(track.render(0, END), base())
    assert track.stats().packets_lost == 0


def test_duplicates_are_dropped_and_counted() -> None:
    track = make_track()
    for i in range(N):
        track.push(rtp(i, 160 * i), SRC, arrival(i))
        track.push(rtp(i, 160 * i), SRC, arrival(i))
        if i >= 3:
            track.push(rtp(i - 3, 160 * (i - 3)), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert stats.packets_duplicate == N + N - 3
    assert stats.packets_received == 3 * N - 3
    assert stats.packets_lost == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 0.3), min_size=N - 1, max_size=N - 1), st.sampled_from([0.02, 0.1, 0.37]))
def test_jitter_within_the_window_changes_nothing(delays: list[float], flush_every: float) -> None:
    """Packets delayed by up to 300 ms arrive in any order; rendering what is 500 ms old loses none."""
    deliveries = sorted([(arrival(0), 0)] + [(arrival(i) + d, i) for i, d in enumerate(delays, 1)])
    track = make_track()
    out = []
    next_flush = flush_every
    for at, i in deliveries:
        while next_flush < at:
            written = track.rendered_until
            target = max(written, round((next_flush - 0.5) * 8000))
            out.append(track.render(written, target))
            next_flush += flush_every
        track.push(rtp(i, 160 * i), SRC, at)
    out.append(track.render(track.rendered_until, END))
    np.testing.assert_array_equal(np.concatenate(out), base())
    assert track.stats().packets_late == 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 3000), min_size=1, max_size=12))
def test_block_boundaries_do_not_change_the_output(cuts: list[int]) -> None:
    track = make_track()
    feed(track, range(N))
    bounds = sorted({min(END, c * 7) for c in cuts} | {END})
    pieces, at = [], 0
    for b in bounds:
        pieces.append(track.render(at, b))
        at = b
    np.testing.assert_array_equal(np.concatenate(pieces), base())


def test_sequence_and_timestamp_wrap() -> None:
    seq0, ts0 = 65536 - 20, 2**32 - 160 * 25
    order = [*range(0, 18), 21, 18, 19, 20, *range(22, N)]  # reordered across the sequence wrap
    track = make_track()
    for k, i in enumerate(order):
        track.push(rtp((seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, payload_for(i)), SRC, arrival(k))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_lost, stats.reanchors, stats.packets_duplicate) == (0, 0, 0)


def test_ssrc_change_reanchors_by_arrival() -> None:
    track = make_track()
    for i in range(N):
        if i < 25:
            data = rtp(i, 160 * i, ssrc=0xA)
        else:
            data = rtp(9000 + i, 123_456_789 + 160 * i, payload_for(i), ssrc=0xB)
        track.push(data, SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.ssrc_changes, stats.ssrcs, stats.packets_lost, stats.reanchors) == (1, (0xA, 0xB), 0, 0)


def test_old_ssrc_packets_after_the_change_do_not_break_the_new_one() -> None:
    track = make_track()
    feed(track, range(10))
    for i in range(10, 20):
        track.push(rtp(500 + i, 9_999 + 160 * i, payload_for(i), ssrc=0xB), SRC, arrival(i))
    assert track.stats().ssrc_changes == 1
    np.testing.assert_array_equal(track.render(0, END), base(range(20)))


def test_forward_timestamp_jump_reanchors_by_arrival() -> None:
    track = make_track()
    for i in range(N):
        ts = 160 * i + (10_000_000 if i >= 25 else 0)
        track.push(rtp(i, ts), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.reanchors, stats.packets_lost) == (1, 0)


def test_backward_timestamp_slip_is_late_then_reanchored() -> None:
    """The sender's clock falls 1.5 s behind: its packets land in already written time until
    one second of them has been dropped, then the stream is re-anchored where it arrives."""
    track = make_track()
    out = []
    total = 150
    end = 8000 + total * 160
    for i in range(total):
        ts = 160 * i - (12_000 if i >= 25 else 0)
        track.push(rtp(i, ts), SRC, arrival(i))
        written = track.rendered_until
        target = max(written, round((arrival(i) - 0.5) * 8000))
        out.append(track.render(written, target))
    out.append(track.render(track.rendered_until, end))
    kept = [*range(25), *range(75, total)]
    want = expected([(8000 + 160 * i, payload_for(i)) for i in kept], end)
    np.testing.assert_array_equal(np.concatenate(out), want)
    stats = track.stats()
    assert (stats.packets_late, stats.reanchors, stats.packets_lost) == (50, 1, 0)


def test_sequence_restart_without_ssrc_change() -> None:
    track = make_track()
    for i in range(N):
        seq = i if i < 25 else 40_000 + i
        ts = 160 * i if i < 25 else 77_777 + 160 * i
        track.push(rtp(seq, ts, payload_for(i)), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_lost, stats.reanchors, stats.ssrc_changes) == (0, 0, 0)


def test_stream_starting_late_is_silent_before_its_first_packet() -> None:
    track = make_track()
    for i in range(10):
        track.push(rtp(i, 160 * i), SRC, 3.0 + i / 50)
    want = expected([(24000 + 160 * i, payload_for(i)) for i in range(10)], 26000)
    np.testing.assert_array_equal(track.render(0, 26000), want)


def test_packet_after_its_place_was_written_is_late() -> None:
    track = make_track()
    feed(track, [i for i in range(N) if i != 20])
    first = track.render(0, 8000 + 30 * 160)
    track.push(rtp(20, 160 * 20), SRC, arrival(N))
    second = track.render(8000 + 30 * 160, END)
    np.testing.assert_array_equal(np.concatenate([first, second]), base([i for i in range(N) if i != 20]))
    stats = track.stats()
    assert (stats.packets_late, stats.packets_lost) == (1, 0)
    assert stats.gaps == ((1400, 20),)


def test_packet_straddling_a_written_block_is_kept_whole() -> None:
    track = make_track()
    feed(track, range(3))
    a = track.render(0, 8000 + 80)  # the middle of packet 0
    b = track.render(8000 + 80, END)
    np.testing.assert_array_equal(np.concatenate([a, b]), base(range(3)))


def test_other_source_is_dropped_until_relatch() -> None:
    track = make_track()
    for i in range(N):
        if i == 30:
            track.relatch()
        if i < 30:
            track.push(rtp(i, 160 * i), SRC, arrival(i))
            track.push(rtp(i, 160 * i, ssrc=0xBAD, payload=b"\x01" * 160), OTHER, arrival(i))
        else:
            track.push(rtp(i, 160 * i), OTHER, arrival(i))
            track.push(rtp(i, 160 * i, ssrc=0xBAD, payload=b"\x01" * 160), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_dropped_source, stats.relatches, stats.packets_received) == (N, 1, N)


def test_new_port_of_the_latched_host_is_latched_after_one_second_of_silence() -> None:
    """The SBC reopened its RTP socket (or its NAT rebound): same host, new port."""
    moved = (SRC[0], SRC[1] + 10)
    track = make_track()
    feed(track, range(10))
    track.push(rtp(10, 1600), moved, arrival(9) + 0.9)  # still within a second: dropped
    for i in range(60, N + 20):
        track.push(rtp(i, 160 * i), moved, arrival(i))
    stats = track.stats()
    assert (stats.packets_dropped_source, stats.relatches) == (1, 1)
    want = expected(
        [(8000 + 160 * i, payload_for(i)) for i in [*range(10), *range(60, N + 20)]], 8000 + 160 * 80
    )
    np.testing.assert_array_equal(track.render(0, 8000 + 160 * 80), want)


def te(event: int, duration: int, end: bool) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | 10, duration)


def test_dtmf_events_are_collected_not_mixed() -> None:
    """Packets 0-9 and 10-49 of audio, with a '5' of 150 ms between (own sequence numbers)."""
    track = make_track()
    feed(track, range(10))
    seq = 10
    for k, (duration, end) in enumerate(
        [(400, False), (800, False), (1200, True), (1200, True), (1200, True)]
    ):
        track.push(rtp(seq, 1600, te(5, duration, end), pt=101), SRC, arrival(9.5 + k / 10))
        seq += 1
    for i in range(10, N):
        track.push(rtp(seq, 160 * i, payload_for(i)), SRC, arrival(i))
        seq += 1
    np.testing.assert_array_equal(track.render(0, END), base())
    track.finish()
    stats = track.stats()
    assert stats.dtmf == (DtmfEvent("5", 1200, 150),)
    assert stats.packets_lost == 0


def test_dtmf_without_end_packet_reported_on_finish() -> None:
    track = make_track()
    feed(track, range(5))
    track.push(rtp(5, 800, te(11, 320, False), pt=101), SRC, arrival(5))
    assert track.stats().dtmf == ()
    track.finish()
    assert track.stats().dtmf == (DtmfEvent("#", 1100, 40),)


def test_malformed_packets_are_counted() -> None:
    track = make_track()
    for bad in (b"", b"\x80\x00", bytes([0x40]) + rtp(1, 0)[1:], bytes([0xA0]) + rtp(1, 0)[1:-1] + b"\xff"):
        track.push(bad, SRC, 1.0)
    track.push(rtp(1, 0, b"\x01", pt=101), SRC, 1.0)  # telephone-event shorter than 4 bytes
    stats = track.stats()
    assert stats.malformed == 5
    assert track.pending_packets == 0


def test_comfort_noise_silence_is_not_a_gap() -> None:
    track = make_track()
    feed(track, range(10))
    track.push(rtp(10, 1600, b"\x40", pt=13), SRC, arrival(10))
    for i in range(40, N):
        track.push(rtp(i - 29, 160 * i, payload_for(i)), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), base([*range(10), *range(40, N)]))
    stats = track.stats()
    assert (stats.gaps, stats.packets_comfort_noise, stats.packets_lost) == ((), 1, 0)
    assert (stats.expected_ms, stats.captured_ms) == (400, 400)


def test_unknown_payload_type_is_counted_and_dropped() -> None:
    track = make_track()
    feed(track, range(5))
    track.push(rtp(5, 800, pt=18), SRC, arrival(5))
    assert track.stats().packets_unknown_pt == 1
    np.testing.assert_array_equal(track.render(0, END), base(range(5)))


def test_undecodable_codec_counts_decoder_errors() -> None:
    track = StreamTrack({8: PayloadFormat("PCMA", 8000)}, start=0.0, decoder_factory=factory)
    for i in range(5):
        track.push(rtp(i, 160 * i, pt=8), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), np.zeros(END, dtype=np.int16))
    stats = track.stats()
    assert (stats.decoder_errors, stats.captured_ms) == (5, 0)
    assert stats.silent


def wide_payload(i: int) -> bytes:
    return bytes((i * 3 + k) % 200 + 1 for k in range(16))


def wide_pcm(i: int) -> np.ndarray:
    return np.repeat(np.frombuffer(wide_payload(i), dtype=np.uint8).astype(np.int16) * 100, 10)


def test_other_clock_rate_is_scaled_to_the_timeline() -> None:
    track = StreamTrack({96: FORMATS[96]}, start=0.0, decoder_factory=factory)
    for i in [0, 1, 3, 2, 4, 5]:
        track.push(rtp(i, 320 * i, wide_payload(i), pt=96), SRC, arrival(i))
    want = np.zeros(10000, dtype=np.int16)
    for i in range(6):
        want[8000 + 160 * i : 8160 + 160 * i] = wide_pcm(i)
    np.testing.assert_array_equal(track.render(0, 10000), want)


def test_codec_switch_mid_stream() -> None:
    track = make_track()
    feed(track, range(10))
    for i in range(10, 20):
        track.push(rtp(i, 999_000 + 320 * i, wide_payload(i), pt=96), SRC, arrival(i))
    want = base(range(10))
    for i in range(10, 20):
        want[8000 + 160 * i : 8160 + 160 * i] = wide_pcm(i)
    np.testing.assert_array_equal(track.render(0, END), want)
    assert track.stats().packets_lost == 0


def test_silent_audio_is_flagged() -> None:
    track = make_track()
    for i in range(10):
        track.push(rtp(i, 160 * i, b"\xff" * 160), SRC, arrival(i))
    track.render(0, END)
    stats = track.stats()
    assert stats.captured_ms == 200 and stats.silent


def test_slow_sender_clock_is_followed_without_late_packets() -> None:
    """The sender's 20 ms takes 20.2 ms of our clock (1 % slow): every 2 s the placement is
    moved later once even the earliest packet lags 250 ms, so nothing reaches the reorder window."""
    track = make_track()
    total = 3000  # one minute
    out = []
    for i in range(total):
        at = 1.0 + i * 0.0202
        track.push(rtp(i, 160 * i), SRC, at)
        if i % 50 == 49:
            written = track.rendered_until
            out.append(track.render(written, max(written, round((at - 0.5) * 8000))))
    stats = track.stats()
    assert stats.packets_late == 0
    assert stats.clock_adjustments >= 2
    assert stats.reanchors == 0
    assert stats.captured_ms >= 58_000


def test_fast_sender_clock_is_not_pulled_earlier() -> None:
    track = make_track()
    for i in range(500):
        at = 1.0 + i * 0.0198
        track.push(rtp(i, 160 * i), SRC, at)
        if i % 50 == 49:
            written = track.rendered_until
            track.render(written, max(written, round((at - 0.5) * 8000)))
    stats = track.stats()
    assert (stats.clock_adjustments, stats.packets_late, stats.gaps) == (0, 0, ())


def test_with_the_codecs_package_decoder() -> None:
    srs_codecs = pytest.importorskip("srs_codecs")
    track = StreamTrack(
        {0: PayloadFormat("PCMU", 8000), 8: PayloadFormat("PCMA", 8000)},
        start=0.0,
        decoder_factory=srs_codecs.get_decoder,
    )
    feed(track, range(N))
    np.testing.assert_array_equal(track.render(0, END), base())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 2), st.floats(0, 0.3)), min_size=N, max_size=N),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
)
def test_loss_duplication_and_reordering_together(
    plan: list[tuple[bool, int, float]], seq0: int, ts0: int
) -> None:
    """Any mix of lost, repeated and delayed packets gives exactly the received audio in place."""
    kept = [i for i, (lost, _, _) in enumerate(plan) if not lost]
    if not kept:
        return
    first = kept[0]
    deliveries = []
    for i in kept:
        delay = 0.0 if i == first else plan[i][2]
        deliveries += [(arrival(i) + delay + 0.001 * k, i) for k in range(1 + plan[i][1])]
    deliveries.sort()
    track = make_track()
    for at, i in deliveries:
        track.push(rtp((seq0 + i) & 0xFFFF, (ts0 + 160 * i) & 0xFFFFFFFF, payload_for(i)), SRC, at)
    np.testing.assert_array_equal(track.render(0, END), base(kept))
    stats = track.stats()
    assert stats.packets_lost == (kept[-1] - kept[0] + 1) - len(kept)
    assert stats.packets_duplicate == sum(plan[i][1] for i in kept)
    assert stats.packets_late == 0


class OrderRecordingDecoder:
    """A frame codec whose state depends on decode order: it records the order it is fed."""

    clock_rate = 8000

    def __init__(self) -> None:
        self.order: list[int] = []

    def decode(self, payload: bytes) -> np.ndarray:
        self.order.append(payload[0])
        return np.full(160, payload[0], dtype=np.int16)


def test_frame_codec_is_fed_in_sequence_order_across_blocks() -> None:
    decoder = OrderRecordingDecoder()
    track = StreamTrack({111: PayloadFormat("opus", 8000)}, start=0.0, decoder_factory=lambda *args: decoder)
    order = [0, 1, 3, 2, 4, 7, 5, 6, 8, 9]
    for k, i in enumerate(order):
        track.push(rtp(i, 160 * i, bytes([i + 1]) * 3, pt=111), SRC, arrival(k))
    first = track.render(0, 8000 + 160 * 5 + 10)
    second = track.render(8000 + 160 * 5 + 10, END)
    assert decoder.order == list(range(1, 11))
    want = np.zeros(END, dtype=np.int16)
    for i in range(10):
        want[8000 + 160 * i : 8160 + 160 * i] = i + 1
    np.testing.assert_array_equal(np.concatenate([first, second]), want)


def test_rtcp_on_the_rtp_port_is_set_aside() -> None:
    sr = struct.pack("!BBHIIIIII", 0x80, 200, 6, 0x11223344, 0xE8F1C2A0, 0, 1600, 10, 1600)
    track = make_track()
    feed(track, range(5))
    track.push(sr, SRC, arrival(5))
    feed(track, range(5, N))
    np.testing.assert_array_equal(track.render(0, END), base())
    stats = track.stats()
    assert (stats.packets_rtcp, stats.ssrc_changes, stats.malformed) == (1, 0, 0)


# ---------------------------------------------------------------------------------------- concealment

PERIOD = 80  # 100 Hz: inside the concealer's pitch search range
TONE_CODES = bytes(((i * 16) // PERIOD) | (0x80 if i < PERIOD // 2 else 0) for i in range(PERIOD)) * 2


def tone_track(conceal: bool, missing: set[int], cn_at: int | None = None) -> np.ndarray:
    track = make_track(0.0, conceal_loss=conceal)
    for i in range(25):
        if i == cn_at:
            track.push(rtp(i, 160 * i, b"\x40", pt=13), SRC, i / 50)
        elif i not in missing:
            track.push(rtp(i, 160 * i, TONE_CODES), SRC, i / 50)
    return np.concatenate([track.render(0, 2400), track.render(2400, 4000)])


def test_loss_is_silence_by_default_and_concealed_on_request() -> None:
    tone = ULAW[np.frombuffer(TONE_CODES, dtype=np.uint8)]
    plain = tone_track(False, {5, 6})
    np.testing.assert_array_equal(plain[800:1120], np.zeros(320, dtype=np.int16))
    concealed = tone_track(True, {5, 6})
    history = concealed[800 - HISTORY : 800]
    concealer = PitchRepeatConcealer()
    concealer.observe(history.copy())
    np.testing.assert_array_equal(concealed[800:1120], concealer.conceal(320))
    # the first 10 ms continue the waveform exactly; the rest fades to zero by 60 ms
    np.testing.assert_array_equal(concealed[800:880], tone[:80])
    assert 0 < np.abs(concealed[1040:1120]).max() < np.abs(concealed[800:880]).max()
    # received audio is untouched
    np.testing.assert_array_equal(concealed[:800], plain[:800])
    np.testing.assert_array_equal(concealed[1120:], plain[1120:])


def test_concealment_across_a_block_boundary_uses_the_previous_block() -> None:
    # packet 15 (samples 2400-2560) is lost; the hole starts exactly at the second block
    concealed = tone_track(True, {15})
    concealer = PitchRepeatConcealer()
    concealer.observe(concealed[2400 - HISTORY : 2400].copy())
    np.testing.assert_array_equal(concealed[2400:2560], concealer.conceal(160))
    assert concealed[2400:2560].any()


def test_no_concealment_for_comfort_noise_or_before_the_first_packet() -> None:
    concealed = tone_track(True, {0, 1, 7, 8}, cn_at=6)
    assert not concealed[:320].any()
    assert not concealed[960:1440].any()  # after CN the sender meant silence


def test_concealed_samples_do_not_count_as_captured() -> None:
    a, b = make_track(0.0), make_track(0.0, conceal_loss=True)
    for track in (a, b):
        for i in range(25):
            if i != 5:
                track.push(rtp(i, 160 * i, TONE_CODES), SRC, i / 50)
        track.render(0, 4000)
    assert a.stats().gaps == b.stats().gaps == ((100, 20),)
    assert a.stats().captured_ms == b.stats().captured_ms == 480
    assert (a.concealed_samples, b.concealed_samples) == (0, 160)


def test_a_receiver_stall_longer_than_the_jump_threshold_keeps_every_packet_in_place() -> None:
    """The receiving process stalls 2.5 s (a blocked disk write): what queued in the socket meanwhile
    is read in one burst, long after it was sent, but its place is not written yet, so it goes
    where its timestamp says: no re-anchor, no gap, nothing late."""
    track = make_track()
    total = 300
    stall = range(100, 225)
    for i in range(total):
        at = arrival(i)
        if i in stall:
            at = arrival(stall.stop) + 0.001 * (i - stall.start) / len(stall)
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, at)
    end = 8000 + total * 160
    want = expected([(8000 + 160 * i, payload_for(i)) for i in range(total)], end)
    np.testing.assert_array_equal(track.render(0, end), want)
    stats = track.stats()
    assert (stats.reanchors, stats.packets_late, stats.packets_lost, stats.gaps) == (0, 0, 0, ())


def test_a_stall_does_not_read_as_a_slow_clock() -> None:
    """Every packet of more than a resync window (2 s) read 300 ms late (the receiver fell behind),
    rendered as it goes: the placement stays, because the next window is on time again."""
    track = make_track()
    out = []
    behind_until = 1.0 + 300 * 0.02 + 0.3
    for i in range(600):
        at = 1.0 + i * 0.02
        if 100 <= i < 300:
            at += 0.3
        elif i >= 300:
            at = max(at, behind_until + 0.0001 * (i - 299))  # the backlog clears
        track.push(rtp(i, 160 * i), SRC, at)
        if i % 25 == 24:
            written = track.rendered_until
            out.append(track.render(written, max(written, round((at - 0.9) * 8000))))
    stats = track.stats()
    assert stats.clock_adjustments == 0
    assert (stats.reanchors, stats.packets_late, stats.gaps) == (0, 0, ())


def test_a_sender_that_pauses_without_advancing_its_timestamps_is_re_anchored() -> None:
    """Timestamps continue from where the sender paused 4 s ago, but that stretch of the recording
    is already written: real time passed, so the audio goes where it arrived."""
    track = make_track()
    for i in range(50):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    track.render(0, 8000 + 50 * 160 + 8000)  # one second of silence after the last packet is written
    late_start = arrival(50) + 4.0
    for i in range(50, 100):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, late_start + (i - 50) / 50)
    stats = track.stats()
    assert stats.reanchors == 1 and stats.packets_late == 0
    rest = track.render(8000 + 50 * 160 + 8000, round((late_start + 1.0) * 8000) + 800)
    first = round(late_start * 8000) - (8000 + 50 * 160 + 8000)
    np.testing.assert_array_equal(rest[first : first + 160], expected([(0, payload_for(50))], 160))
