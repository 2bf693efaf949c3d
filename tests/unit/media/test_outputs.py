"""Output options: stereo sides, per-stream files, FLAC/Opus/MP3 through libsndfile, file list."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from srs.media.channels import stereo_groups
from srs.media.outputs import (
    OutputFile,
    check_output_format,
    stream_file_labels,
    stream_file_path,
    with_extension,
)
from srs.media.recorder import Recorder
from srs.siprec.metadata import parse_metadata
from tests.unit.media.fixtures import make_track
from tests.unit.media.test_recorder import START, push_stream, read_samples, run_call, stream_pcm

RATE = 8000
DATA = Path(__file__).resolve().parents[2] / "data"


def mixed(*streams: np.ndarray) -> np.ndarray:
    total = np.zeros(len(streams[0]), dtype=np.int32)
    for s in streams:
        total += s
    return np.clip(total, -32768, 32767).astype(np.int16)


def two_stream_call(tmp_path: Path, labels: tuple[str, str], **options: object) -> tuple[Recorder, list[str]]:
    a, b = make_track(START, label=labels[0]), make_track(START, label=labels[1])
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], **options)  # type: ignore[arg-type]
    run_call(recorder, [a, b], [0.5, 1.25], 3)
    return recorder, list(labels)


WANT_A = stream_pcm(0.5, 125, 3 * RATE)
WANT_B = stream_pcm(1.25, 88, 3 * RATE, salt=1000)


# ---------------------------------------------------------------------------------------- stereo


def test_stereo_sides_from_rfc7865_metadata(tmp_path: Path) -> None:
    """Stream 1 (label 97, sent by the first participant) only on the left, stream 2 only right."""
    metadata = parse_metadata((DATA / "rfc7865-8.1-complete.xml").read_bytes())
    groups = stereo_groups(["97", "98"], metadata.participants)
    assert groups == ([0], [1])
    recorder, _ = two_stream_call(tmp_path, ("97", "98"), stereo=groups)
    result = recorder.close(START + 3)
    with wave.open(str(tmp_path / "call.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (
            2,
            2,
            RATE,
            3 * RATE,
        )
    samples = read_samples(tmp_path / "call.wav")
    np.testing.assert_array_equal(samples[:, 0], WANT_A)
    np.testing.assert_array_equal(samples[:, 1], WANT_B)
    data, rate = soundfile.read(str(tmp_path / "call.wav"), dtype="int16")
    assert rate == RATE
    np.testing.assert_array_equal(data, samples)
    assert result.files == (
        OutputFile(str(tmp_path / "call.wav"), "wav", 2, RATE, 44 + 4 * 3 * RATE, 3 * RATE, None),
    )


def test_stereo_groups_follow_send_labels_not_mline_order() -> None:
    metadata = parse_metadata((DATA / "rfc7865-8.1-complete.xml").read_bytes())
    # first participant sends 97 and 96; the second 98 and 99
    assert stereo_groups(["98", "96", "99", "97"], metadata.participants) == ([1, 3], [0, 2])
    # a stream nobody sends goes to neither list (the recorder puts it on both sides)
    assert stereo_groups(["96", "98", "x"], metadata.participants) == ([0], [1])


def test_stereo_groups_fallbacks() -> None:
    metadata = parse_metadata((DATA / "rfc7865-8.1-complete.xml").read_bytes())
    assert stereo_groups(["a", "b", "c"], None) == ([0], [1])
    assert stereo_groups(["a", "b"], ()) == ([0], [1])
    assert stereo_groups(["only"], None) == ([0], [])
    assert stereo_groups([], None) == ([], [])
    # metadata naming none of the SDP labels is as good as none
    assert stereo_groups(["a", "b"], metadata.participants) == ([0], [1])
    # only the first participant's streams are known: everything else goes right
    first_only = metadata.participants[:1]
    assert stereo_groups(["98", "96", "99"], first_only) == ([1], [0, 2])


def test_stream_in_neither_group_is_on_both_sides(tmp_path: Path) -> None:
    recorder, _ = two_stream_call(tmp_path, ("a", "b"), stereo=([0], []))
    recorder.close(START + 3)
    samples = read_samples(tmp_path / "call.wav")
    np.testing.assert_array_equal(samples[:, 0], mixed(WANT_A, WANT_B))
    np.testing.assert_array_equal(samples[:, 1], WANT_B)


# ---------------------------------------------------------------------------------------- per-stream


def test_per_stream_files_beside_the_mix(tmp_path: Path) -> None:
    recorder, _ = two_stream_call(tmp_path, ("caller/1", ""), per_stream=True)
    late = make_track(START, label="caller/1")
    recorder.add_track(late)  # joins at 3 s of timeline, 2.5 s written: its file starts with silence
    result = recorder.close(START + 3)
    paths = [
        tmp_path / n for n in ("call.wav", "call.caller_1.wav", "call.stream2.wav", "call.caller_1-3.wav")
    ]
    assert recorder.stream_paths == [str(p) for p in paths[1:]]
    np.testing.assert_array_equal(read_samples(paths[0]), mixed(WANT_A, WANT_B))
    np.testing.assert_array_equal(read_samples(paths[1]), WANT_A)
    np.testing.assert_array_equal(read_samples(paths[2]), WANT_B)
    np.testing.assert_array_equal(read_samples(paths[3]), np.zeros(3 * RATE, dtype=np.int16))
    size = 44 + 2 * 3 * RATE
    assert result.files == (
        OutputFile(str(paths[0]), "wav", 1, RATE, size, 3 * RATE, None),
        OutputFile(str(paths[1]), "wav", 1, RATE, size, 3 * RATE, "caller/1"),
        OutputFile(str(paths[2]), "wav", 1, RATE, size, 3 * RATE, ""),
        OutputFile(str(paths[3]), "wav", 1, RATE, size, 3 * RATE, "caller/1"),
    )
    assert all(os.path.getsize(f.path) == f.size for f in result.files)


def test_per_stream_files_are_cut_like_the_mix(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True, pause_mode="cut")
    push_stream(a, 0.5, range(125))
    push_stream(b, 1.25, range(88), salt=1000)
    recorder.flush(START + 2.5)  # writes 0-2 s
    recorder.pause(START + 2.0)
    recorder.flush(START + 3.0)
    recorder.resume(START + 2.5)
    result = recorder.close(START + 3)
    keep = np.r_[0:16000, 20000:24000]
    assert result.samples == 20000 and result.paused_ms == 500
    np.testing.assert_array_equal(read_samples(tmp_path / "call.wav"), mixed(WANT_A, WANT_B)[keep])
    np.testing.assert_array_equal(read_samples(tmp_path / "call.a.wav"), WANT_A[keep])
    np.testing.assert_array_equal(read_samples(tmp_path / "call.b.wav"), WANT_B[keep])


def test_stream_file_names() -> None:
    assert stream_file_labels(["caller", "callee"]) == ["caller", "callee"]
    assert stream_file_labels(["../../etc/passwd", "a b", "", "ü"]) == [
        "etc_passwd",
        "a_b",
        "stream3",
        "stream4",
    ]
    assert stream_file_labels(["x", "x", "x/"]) == ["x", "x-2", "x-3"]
    assert stream_file_path("/r/2026/call.wav", "caller", "wav") == "/r/2026/call.caller.wav"
    assert stream_file_path("/r/call.wav", "caller", "flac") == "/r/call.caller.flac"


# ---------------------------------------------------------------------------------------- encoded


def test_flac_round_trip_is_lossless(tmp_path: Path) -> None:
    recorder, _ = two_stream_call(tmp_path, ("a", "b"), output_format="flac", per_stream=True)
    assert recorder.path == str(tmp_path / "call.flac")
    result = recorder.close(START + 3)
    assert result.path == str(tmp_path / "call.flac") and not (tmp_path / "call.wav").exists()
    for path, want in [
        ("call.flac", mixed(WANT_A, WANT_B)),
        ("call.a.flac", WANT_A),
        ("call.b.flac", WANT_B),
    ]:
        info = soundfile.info(str(tmp_path / path))
        assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_16", RATE, 1)
        data, _ = soundfile.read(str(tmp_path / path), dtype="int16")
        np.testing.assert_array_equal(data, want)
    assert [(f.format, f.label, f.frames) for f in result.files] == [
        ("flac", None, 3 * RATE),
        ("flac", "a", 3 * RATE),
        ("flac", "b", 3 * RATE),
    ]
    assert result.files[0].size == os.path.getsize(tmp_path / "call.flac") < 2 * 3 * RATE


def test_flac_stereo_round_trip(tmp_path: Path) -> None:
    recorder, _ = two_stream_call(tmp_path, ("a", "b"), output_format="flac", stereo=([0], [1]))
    recorder.close(START + 3)
    data, _ = soundfile.read(str(tmp_path / "call.flac"), dtype="int16")
    np.testing.assert_array_equal(data, np.stack([WANT_A, WANT_B], axis=1))


@pytest.mark.parametrize(("fmt", "ext", "major"), [("ogg-opus", ".opus", "OGG"), ("mp3", ".mp3", "MP3")])
def test_lossy_formats_are_readable(tmp_path: Path, fmt: str, ext: str, major: str) -> None:
    recorder, _ = two_stream_call(tmp_path, ("a", "b"), output_format=fmt, stereo=([0], [1]))
    result = recorder.close(START + 3)
    info = soundfile.info(result.path)
    assert result.path == str(tmp_path / f"call{ext}")
    assert (info.format, info.samplerate, info.channels) == (major, RATE, 2)
    data, _ = soundfile.read(result.path, dtype="int16")
    assert data.shape[1] == 2 and abs(len(data) - 3 * RATE) <= 2048
    # lossy, but the left channel carries stream 1's energy and is silent before it starts
    assert np.abs(data[: RATE // 4, 0]).max() < 200 < np.abs(data[RATE:, 0]).max()
    assert result.files[0].format == fmt and result.files[0].size == os.path.getsize(result.path)


def test_unknown_and_unsupported_formats_fail_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValueError, match="not one of wav, flac, ogg-opus, mp3"):
        Recorder(tmp_path / "call.wav", START, output_format="aac")
    with pytest.raises(ValueError, match="Opus cannot encode 11025 Hz"):
        check_output_format("ogg-opus", 11025)
    monkeypatch.setattr(soundfile, "available_subtypes", lambda major=None: {"VORBIS": "Vorbis"})
    with pytest.raises(ValueError, match="needs libsndfile with OGG/OPUS"):
        Recorder(tmp_path / "call.wav", START, output_format="ogg-opus")
    assert list(tmp_path.iterdir()) == []


def test_with_extension() -> None:
    assert with_extension("/r/call.wav", "flac") == "/r/call.flac"
    assert with_extension("/r/call.FLAC", "flac") == "/r/call.FLAC"
    assert with_extension("/r/call", "mp3") == "/r/call.mp3"
    assert with_extension("/r/call.wav", "wav") == "/r/call.wav"


def test_existing_stream_file_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "call.b.wav").write_bytes(b"keep")
    a, b = make_track(START, label="a"), make_track(START, label="b")
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "call.wav", START, [a, b], per_stream=True)
    assert (tmp_path / "call.b.wav").read_bytes() == b"keep"


def test_channel_groups_can_change_mid_call(tmp_path: Path) -> None:
    a, b = make_track(START, label="a"), make_track(START, label="b")
    recorder = Recorder(tmp_path / "call.wav", START, [a, b], stereo=([0], [1]))
    push_stream(a, 0.5, range(125))
    push_stream(b, 1.25, range(88), salt=1000)
    recorder.flush(START + 2.0)  # 1.5 s written with a left
    recorder.set_stereo([1], [0])
    recorder.close(START + 3)
    samples = read_samples(tmp_path / "call.wav")
    cut = int(1.5 * RATE)
    np.testing.assert_array_equal(samples[:cut, 0], WANT_A[:cut])
    np.testing.assert_array_equal(samples[:cut, 1], WANT_B[:cut])
    np.testing.assert_array_equal(samples[cut:, 0], WANT_B[cut:])
    np.testing.assert_array_equal(samples[cut:, 1], WANT_A[cut:])
    mono = Recorder(tmp_path / "mono.wav", START)
    with pytest.raises(ValueError, match="opened mono"):
        mono.set_stereo([0], [1])


def test_encoded_files_fail_like_wav_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Recorder(tmp_path / "missing-dir" / "call.wav", START, output_format="flac")
    (tmp_path / "call.flac").write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        Recorder(tmp_path / "call.wav", START, output_format="flac")
    assert (tmp_path / "call.flac").read_bytes() == b"keep"
