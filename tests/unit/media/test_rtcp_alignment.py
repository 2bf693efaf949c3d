"""RTCP sender reports (RFC 3550 §6.4.1) align streams stamped by one NTP clock.

Stream A's packets arrive on time; stream B was sent at the same moments but
every packet of it arrives 80 ms later (a slower leg). Arrival anchoring puts
B 80 ms late; sender reports mapping both streams' RTP timestamps onto one NTP
clock say they started together, and the recording must say so too.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from srs.media.recorder import Recorder
from srs.media.track import StreamTrack
from srs.rtp.rtcp import NTP_UNIX_OFFSET
from tests.unit.media.fixtures import OTHER, SRC, make_track, payload_for, rtp
from tests.unit.media.test_recorder import START, read_samples, stream_pcm

RATE = 8000
WALL0 = 1_790_000_000.25
"""The senders' NTP (Unix) time when both streams' first packets were sent; START + 0.2 on our clock."""
SSRC_A, SSRC_B = 0xA, 0xB
TS_A, TS_B = 1000, 7_000_000
DELAY_B = 0.08
PACKETS = 100
LENGTH = 3 * RATE
TRUE_A = stream_pcm(0.2, PACKETS, LENGTH)
TRUE_B = stream_pcm(0.2, PACKETS, LENGTH, salt=1000)
LATE_B = stream_pcm(0.2 + DELAY_B, PACKETS, LENGTH, salt=1000)


def sender_report(ssrc: int, rtp_ts: int, unix_time: float, rtcp_pt: int = 200) -> bytes:
    ntp = round((unix_time + NTP_UNIX_OFFSET) * 2**32)
    return struct.pack("!BBH", 0x80, rtcp_pt, 6) + struct.pack(
        "!IIIIII", ssrc, ntp >> 32, ntp & 0xFFFFFFFF, rtp_ts & 0xFFFFFFFF, 50, 8000
    )


def push_packets(track: StreamTrack, ssrc: int, ts0: int, salt: int, delay: float, indexes: range) -> None:
    for i in indexes:
        track.push(rtp(i, ts0 + 160 * i, payload_for(i + salt), ssrc=ssrc), SRC, START + 0.2 + delay + i / 50)


def report_pair(a: StreamTrack, b: StreamTrack, k: int, *, wall_b: float = WALL0, ts_b: int = TS_B) -> None:
    """Both senders report packet ``k``'s sampling instant on their (shared) NTP clock."""
    a.push_rtcp(sender_report(SSRC_A, TS_A + 160 * k, WALL0 + k / 50), OTHER, START + 0.21 + k / 50)
    b.push_rtcp(sender_report(SSRC_B, ts_b + 160 * k, wall_b + k / 50), OTHER, START + 0.29 + k / 50)


def call(
    tmp_path: Path, *, reports_at: int | None, **options: object
) -> tuple[Recorder, StreamTrack, StreamTrack]:
    """Three seconds of both streams, flushed each second; sender reports after packet ``reports_at``."""
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True, **options)  # type: ignore[arg-type]
    for second in range(3):
        lo, hi = second * 50, min(PACKETS, (second + 1) * 50)
        push_packets(a, SSRC_A, TS_A, 0, 0.0, range(lo, hi))
        push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(lo, hi))
        if reports_at is not None and lo <= reports_at < hi:
            report_pair(a, b, reports_at)
        recorder.flush(START + second + 1)
    return recorder, a, b


def streams(tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_samples(tmp_path / "call.a.wav"), read_samples(tmp_path / "call.b.wav")


def offset_ms(got: np.ndarray, reference: np.ndarray) -> float:
    """Where ``got`` lies relative to ``reference``, by the first non-zero sample."""
    return float(np.flatnonzero(got)[0] - np.flatnonzero(reference)[0]) * 1000 / RATE


def test_without_reports_streams_stay_where_they_arrived(tmp_path: Path) -> None:
    recorder, _, _ = call(tmp_path, reports_at=None)
    result = recorder.close(START + 3)
    a, b = streams(tmp_path)
    np.testing.assert_array_equal(a, TRUE_A)
    np.testing.assert_array_equal(b, LATE_B)
    assert offset_ms(b, a) == 80.0
    assert result.streams[1].sender_clock_shift_ms == 0


def test_reports_before_the_first_write_align_the_late_stream_exactly(tmp_path: Path) -> None:
    recorder, _, _ = call(tmp_path, reports_at=10)
    result = recorder.close(START + 3)
    a, b = streams(tmp_path)
    assert abs(offset_ms(b, a)) <= 1.0
    np.testing.assert_array_equal(a, TRUE_A)
    np.testing.assert_array_equal(b, TRUE_B)
    np.testing.assert_array_equal(
        read_samples(tmp_path / "call.wav"),
        np.clip(TRUE_A.astype(np.int32) + TRUE_B, -32768, 32767).astype(np.int16),
    )
    assert [(s.sender_reports, s.sender_clock_shift_ms, s.packets_rtcp) for s in result.streams] == [
        (1, 0, 1),
        (1, 80, 1),
    ]
    assert result.streams[1].packets_late == 0


def test_reports_mid_call_align_everything_not_yet_written(tmp_path: Path) -> None:
    """Written audio stays; from the write position on, B is where its sender put it."""
    recorder, _, _ = call(tmp_path, reports_at=60)  # reported 1.4 s in, when 0.5 s was written
    result = recorder.close(START + 3)
    _, b = streams(tmp_path)
    written = int(0.5 * RATE)
    assert result.streams[1].sender_clock_shift_ms == 80
    np.testing.assert_array_equal(b[:written], LATE_B[:written])
    np.testing.assert_array_equal(b[written:], TRUE_B[written:])


def test_reports_muxed_on_the_rtp_port_count_too(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    push_packets(a, SSRC_A, TS_A, 0, 0.0, range(PACKETS))
    push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(PACKETS))
    a.push(sender_report(SSRC_A, TS_A + 1600, WALL0 + 0.2), SRC, START + 0.41)
    b.push(sender_report(SSRC_B, TS_B + 1600, WALL0 + 0.2), SRC, START + 0.49)
    recorder.close(START + 3)
    _, got_b = streams(tmp_path)
    np.testing.assert_array_equal(got_b, TRUE_B)


def test_alignment_can_be_switched_off(tmp_path: Path) -> None:
    recorder, _, _ = call(tmp_path, reports_at=10, rtcp_alignment=False)
    recorder.close(START + 3)
    np.testing.assert_array_equal(streams(tmp_path)[1], LATE_B)


@pytest.mark.parametrize(
    ("wall_b", "ts_b", "why"),
    [
        (WALL0 + 5.0, TS_B, "B's sender has its own clock, 5 s off A's"),
        (WALL0, TS_B + 8000 * 30, "B's report maps a timestamp 30 s away from where its media is"),
    ],
)
def test_disagreeing_reports_are_ignored(tmp_path: Path, wall_b: float, ts_b: int, why: str) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    push_packets(a, SSRC_A, TS_A, 0, 0.0, range(PACKETS))
    push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(PACKETS))
    report_pair(a, b, 10, wall_b=wall_b, ts_b=ts_b)
    recorder.close(START + 3)
    np.testing.assert_array_equal(streams(tmp_path)[1], LATE_B, err_msg=why)


def test_a_report_from_one_stream_alone_changes_nothing(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    push_packets(a, SSRC_A, TS_A, 0, 0.0, range(PACKETS))
    push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(PACKETS))
    b.push_rtcp(sender_report(SSRC_B, TS_B + 1600, WALL0 + 0.2), OTHER, START + 0.49)
    recorder.close(START + 3)
    np.testing.assert_array_equal(streams(tmp_path)[1], LATE_B)


def test_a_report_after_a_clock_jump_keeps_the_earlier_mapping(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    push_packets(a, SSRC_A, TS_A, 0, 0.0, range(PACKETS))
    push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(PACKETS))
    report_pair(a, b, 10)
    b.push_rtcp(sender_report(SSRC_B, TS_B + 3200, WALL0 + 3600.4), OTHER, START + 0.69)
    result = recorder.close(START + 3)
    np.testing.assert_array_equal(streams(tmp_path)[1], TRUE_B)
    assert result.streams[1].sender_reports == 1


def test_reports_for_another_ssrc_and_malformed_rtcp(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    push_packets(a, SSRC_A, TS_A, 0, 0.0, range(PACKETS))
    push_packets(b, SSRC_B, TS_B, 1000, DELAY_B, range(PACKETS))
    a.push_rtcp(sender_report(SSRC_A, TS_A + 1600, WALL0 + 0.2), OTHER, START + 0.41)
    b.push_rtcp(sender_report(0xDEAD, TS_B + 1600, WALL0 + 0.2), OTHER, START + 0.49)
    b.push_rtcp(sender_report(SSRC_B, TS_B, WALL0)[:-3], OTHER, START + 0.5)
    result = recorder.close(START + 3)
    np.testing.assert_array_equal(streams(tmp_path)[1], LATE_B)
    assert (result.streams[1].packets_rtcp, result.streams[1].malformed) == (2, 1)


def test_sender_lag_is_none_without_a_report() -> None:
    track = make_track(START)
    assert track.sender_lag() is None
    push_packets(track, SSRC_A, TS_A, 0, 0.0, range(5))
    assert track.sender_lag() is None
    track.push_rtcp(sender_report(SSRC_A, TS_A, WALL0), OTHER, START + 0.21)
    lag = track.sender_lag()
    assert lag is not None and lag == pytest.approx(0.2 - WALL0, abs=1e-6)


@pytest.mark.parametrize("window", [0.5, 1.0])
def test_a_large_alignment_is_not_undone_by_clock_tracking(tmp_path: Path, window: float) -> None:
    """B's leg is 300 ms slower throughout. With a 1 s reorder window B is aligned, and its packets,
    arriving 300 ms after their place, must not read as a slow sender clock to be corrected (and
    re-aligned). With 0.5 s they would arrive too late to be written, so B is left where it arrived."""
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True, reorder_window=window)
    packets = 400
    for second in range(8):
        lo, hi = second * 50, (second + 1) * 50
        push_packets(a, SSRC_A, TS_A, 0, 0.0, range(lo, hi))
        push_packets(b, SSRC_B, TS_B, 1000, 0.3, range(lo, hi))
        if second == 0:
            report_pair(a, b, 10)
        recorder.flush(START + second + 1)
    result = recorder.close(START + 8.6)
    _, got_b = streams(tmp_path)
    aligned = window == 1.0
    placed_at = 0.2 if aligned else 0.5
    np.testing.assert_array_equal(got_b, stream_pcm(placed_at, packets, len(got_b), salt=1000))
    stats = result.streams[1]
    assert (stats.sender_clock_shift_ms, stats.clock_adjustments) == ((300 if aligned else 0), 0)
    assert stats.packets_late == 0
