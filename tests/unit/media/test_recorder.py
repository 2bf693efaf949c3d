"""Recorder: streams mixed into one WAV, written in blocks, with pauses, late and removed streams."""

from __future__ import annotations

import errno
import itertools
import struct
import tempfile
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.media.recorder import Recorder
from srs.media.track import StreamTrack
from srs.rtp.dtmf import DtmfEvent
from tests.unit.media.fixtures import SRC, expected, make_track, payload_for, rtp

START = 1000.0  # the recording's start on the caller's clock
RATE = 8000


def stream_pcm(first_at: float, count: int, length: int, salt: int = 0) -> np.ndarray:
    """Exact samples of ``count`` 20 ms packets whose first arrives ``first_at`` s into the recording."""
    pos0 = round(first_at * RATE)
    return expected([(pos0 + 160 * i, payload_for(i + salt)) for i in range(count)], length)


def push_stream(track: StreamTrack, first_at: float, indexes: range, salt: int = 0) -> None:
    for i in indexes:
        track.push(rtp(i, 160 * i, payload_for(i + salt), ssrc=salt), SRC, START + first_at + i / 50)


def read_samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return (
            np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, w.getnchannels()).squeeze()
        )


def run_call(
    recorder: Recorder,
    tracks: list[StreamTrack],
    starts: list[float],
    seconds: int,
    check: Path | None = None,
) -> None:
    """Feed each track 50 packets/s, flushing once per simulated second."""
    for second in range(seconds):
        for k, (track, first_at) in enumerate(zip(tracks, starts, strict=True)):
            lo = max(0, round((second - first_at) * 50))
            hi = max(0, round((second + 1 - first_at) * 50))
            push_stream(track, first_at, range(lo, hi), salt=k * 1000)
        recorder.flush(START + second + 1)
        if check is not None:
            samples = read_samples(check)
            assert len(samples) == recorder.written_until


def test_two_streams_mixed_sample_exact_and_valid_after_each_flush(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    a, b = make_track(START, label="caller"), make_track(START, label="callee")
    recorder = Recorder(path, START, [a, b])
    run_call(recorder, [a, b], [0.5, 1.25], 5, check=path)
    result = recorder.close(START + 5)
    length = 5 * RATE
    want_a = stream_pcm(0.5, 225, length)
    want_b = stream_pcm(1.25, 188, length, salt=1000)  # the last one is cut by the end
    want = np.clip(want_a.astype(np.int32) + want_b, -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(read_samples(path), want)
    data, rate = soundfile.read(str(path), dtype="int16")
    assert rate == RATE and len(data) == length
    assert (result.samples, result.duration_ms, result.paused_ms) == (length, 5000, 0)
    assert [s.label for s in result.streams] == ["caller", "callee"]
    assert result.streams[0].expected_ms == result.streams[0].captured_ms == 4500
    assert result.warnings == ()


def test_length_is_wall_clock_even_without_packets(tmp_path: Path) -> None:
    track = make_track(START)
    recorder = Recorder(tmp_path / "empty.wav", START, [track])
    recorder.flush(START + 1.3)
    result = recorder.close(START + 2.5)
    assert result.samples == 20000
    assert not read_samples(tmp_path / "empty.wav").any()
    assert result.warnings == ("stream 1 empty: received no RTP",)


def test_silent_stream_is_flagged(tmp_path: Path) -> None:
    a, b = make_track(START), make_track(START, label="b")
    recorder = Recorder(tmp_path / "s.wav", START, [a, b])
    push_stream(a, 0.0, range(50))
    for i in range(50):
        b.push(rtp(i, 160 * i, b"\xff" * 160, ssrc=9), SRC, START + i / 50)
    result = recorder.close(START + 1.5)
    assert result.warnings == ("stream 2 (b) silent",)
    assert result.streams[1].silent and not result.streams[0].silent


@pytest.mark.parametrize("mode", ["silence", "cut"])
def test_pause_and_resume(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.wav"
    track = make_track(START)
    recorder = Recorder(path, START, [track], pause_mode=mode)  # type: ignore[arg-type]
    push_stream(track, 0.0, range(100))
    recorder.flush(START + 1.0)
    recorder.pause(START + 1.0)
    assert recorder.paused
    recorder.flush(START + 1.5)
    recorder.resume(START + 1.5)
    assert not recorder.paused
    result = recorder.close(START + 2.0)
    full = stream_pcm(0.0, 100, 2 * RATE)
    if mode == "silence":
        full[8000:12000] = 0
        want = full
    else:
        want = np.concatenate([full[:8000], full[12000:]])
    np.testing.assert_array_equal(read_samples(path), want)
    assert result.paused_ms == 500
    assert result.samples == len(want)


def dtmf_packets(track: StreamTrack, seq: int, ts: int, at: float, event: int) -> None:
    for k in range(3):
        body = struct.pack("!BBH", event, 0x8A, 800)
        track.push(rtp(seq + k, ts, body, ssrc=77, pt=101), SRC, START + at + k / 100)


@pytest.mark.parametrize("mode", ["silence", "cut"])
def test_dtmf_during_pause_is_dropped_and_later_offsets_follow_the_cut(tmp_path: Path, mode: str) -> None:
    track = make_track(START)
    recorder = Recorder(tmp_path / "d.wav", START, [track], pause_mode=mode)  # type: ignore[arg-type]
    dtmf_packets(track, 0, 0, 0.0, 1)  # '1' at 0 ms
    recorder.pause(START + 0.5)
    dtmf_packets(track, 10, 6000, 0.75, 2)  # '2' at 750 ms: paused
    recorder.resume(START + 1.0)
    dtmf_packets(track, 20, 12000, 1.5, 3)  # '3' at 1500 ms
    result = recorder.close(START + 2.0)
    later = 1000 if mode == "cut" else 1500
    assert result.dtmf == ((0, DtmfEvent("1", 0, 100)), (0, DtmfEvent("3", later, 100)))


def test_stream_added_mid_call_starts_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    a = make_track(START)
    recorder = Recorder(path, START, [a])
    push_stream(a, 0.0, range(50))
    recorder.flush(START + 1.5)
    b = make_track(START)
    assert recorder.add_track(b) == 1
    push_stream(b, 2.0, range(25), salt=1000)
    result = recorder.close(START + 3.0)
    want = stream_pcm(0.0, 50, 3 * RATE) + stream_pcm(2.0, 25, 3 * RATE, salt=1000)
    np.testing.assert_array_equal(read_samples(path), want)
    assert result.streams[1].first_packet_at == START + 2.0


def test_removed_stream_writes_nothing_after_its_end(tmp_path: Path) -> None:
    path = tmp_path / "end.wav"
    a, b = make_track(START), make_track(START)
    recorder = Recorder(path, START, [a, b])
    push_stream(a, 0.0, range(100))
    push_stream(b, 0.0, range(100), salt=1000)
    recorder.flush(START + 1.0)
    recorder.end_track(1, START + 1.2)
    result = recorder.close(START + 2.0)
    want_b = stream_pcm(0.0, 100, 2 * RATE, salt=1000)
    want_b[round(1.2 * RATE) :] = 0
    want = np.clip(stream_pcm(0.0, 100, 2 * RATE).astype(np.int32) + want_b, -32768, 32767).astype(np.int16)
    np.testing.assert_array_equal(read_samples(path), want)
    assert result.samples == 2 * RATE


def test_stereo_channel_groups(tmp_path: Path) -> None:
    path = tmp_path / "st.wav"
    a, b = make_track(START), make_track(START)
    recorder = Recorder(path, START, [a, b], stereo=([0], [1]))
    push_stream(a, 0.0, range(50))
    push_stream(b, 0.25, range(50), salt=1000)
    recorder.close(START + 1.5)
    samples = read_samples(path)
    assert samples.shape == (12000, 2)
    np.testing.assert_array_equal(samples[:, 0], stream_pcm(0.0, 50, 12000))
    np.testing.assert_array_equal(samples[:, 1], stream_pcm(0.25, 50, 12000, salt=1000))


def test_late_packets_beyond_the_window_are_counted(tmp_path: Path) -> None:
    track = make_track(START)
    recorder = Recorder(tmp_path / "w.wav", START, [track], reorder_window=0.5)
    push_stream(track, 0.0, [i for i in range(100) if i != 10])  # type: ignore[arg-type]
    recorder.flush(START + 1.0)  # writes up to 0.5 s: packet 10 (0.2 s) is now late
    track.push(rtp(10, 1600, payload_for(10), ssrc=0), SRC, START + 1.0)
    result = recorder.close(START + 2.0)
    stats = result.streams[0]
    assert (stats.packets_late, stats.packets_lost, stats.gaps) == (1, 0, ((200, 20),))
    assert "stream 1 captured" not in " ".join(result.warnings)


def test_track_with_another_timeline_is_refused(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path / "x.wav", START)
    with pytest.raises(ValueError):
        recorder.add_track(make_track(START + 1))
    with pytest.raises(ValueError):
        Recorder(tmp_path / "y.wav", START, pause_mode="skip")  # type: ignore[arg-type]
    recorder.close(START)


def test_disk_error_propagates_and_leaves_a_closed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    track = make_track(START)
    path = tmp_path / "full.wav"
    recorder = Recorder(path, START, [track])
    push_stream(track, 0.0, range(50))
    recorder.flush(START + 1.0)

    def disk_full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("srs.media.wavfile.os.write", disk_full)
    with pytest.raises(OSError):
        recorder.close(START + 2.0)
    monkeypatch.undo()
    assert len(read_samples(path)) == 4000
    with pytest.raises(ValueError):
        recorder.flush(START + 3.0)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.floats(0.01, 1.5), min_size=1, max_size=8),
    st.lists(st.floats(0, 0.3), min_size=150, max_size=150),
    st.integers(0, 3),
)
def test_any_flush_schedule_gives_the_same_file(
    flush_gaps: list[float], delays: list[float], salt: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.wav"
        track = make_track(START)
        recorder = Recorder(path, START, [track])
        delays[0] = 0.0
        deliveries = sorted((0.5 + i / 50 + d, i) for i, d in enumerate(delays))
        flushes = list(itertools.accumulate(flush_gaps))
        previous = np.zeros(0, dtype=np.int16)
        for at, i in deliveries:
            while flushes and flushes[0] < at:
                recorder.flush(START + flushes.pop(0))
                now = read_samples(path)
                np.testing.assert_array_equal(now[: len(previous)], previous)
                previous = now
            track.push(rtp(i, 160 * i, payload_for(i + salt), ssrc=1), SRC, START + at)
        result = recorder.close(START + 4.0)
        assert result.samples == 4 * RATE
        want = expected([(4000 + 160 * i, payload_for(i + salt)) for i in range(150)], 4 * RATE)
        np.testing.assert_array_equal(read_samples(path), want)
        assert result.streams[0].packets_late == 0


def test_conceal_loss_is_switched_on_for_every_track(tmp_path: Path) -> None:
    a, b = make_track(START), make_track(START)
    recorder = Recorder(tmp_path / "c.wav", START, [a], conceal_loss=True)
    recorder.add_track(b)
    assert a.conceal_loss and b.conceal_loss
    plain = Recorder(tmp_path / "p.wav", START, [make_track(START, conceal_loss=True), make_track(START)])
    assert [t.conceal_loss for t in plain.tracks] == [True, False]
