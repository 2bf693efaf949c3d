"""Output options: stereo by participant, one file per stream, FLAC — each from a real SIPp call.

siprec_basic.xml's metadata says Alice sends stream 1 (440 Hz) and Bob stream 2 (1000 Hz).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.e2e.conftest import SippResult, SrsDaemon, read_wav, segment, tone_level_dbfs, wait_recording
from tests.e2e.recording_checks import LEVEL_DBFS, record_call

pytestmark = pytest.mark.e2e
RunSipp = Callable[..., SippResult]


def _call(srs: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str) -> dict[str, object]:
    _, rec, _ = record_call(
        srs, run_sipp, "siprec_basic.xml", crid, {"two_tone_pcmu.pcap": pcaps["pcmu_2s"]}, "-d", "2000"
    )
    return rec


def test_stereo_puts_each_participant_on_its_own_side(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    srs = start_srs('[media]\noutput = "stereo"\n')
    rec = _call(srs, run_sipp, pcaps, crid)
    file = rec["file"]
    assert isinstance(file, dict) and file["channels"] == 2
    wav = read_wav(file["path"])
    assert (wav.sample_rate, wav.channels) == (8000, 2)
    frames = wav.samples.reshape(-1, 2)
    left, right = segment_pair(frames, 0.4, 1.6)
    assert abs(tone_level_dbfs(left, 440.0) - LEVEL_DBFS) < 1.0
    assert tone_level_dbfs(left, 1000.0) < -60.0
    assert abs(tone_level_dbfs(right, 1000.0) - LEVEL_DBFS) < 1.0
    assert tone_level_dbfs(right, 440.0) < -60.0


def segment_pair(frames: np.ndarray, start_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    part = frames[int(start_s * 8000) : int(end_s * 8000)]
    return part[:, 0], part[:, 1]


def test_per_stream_files_line_up_with_the_mix(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    srs = start_srs('[media]\noutput = "per-stream"\n')
    rec = _call(srs, run_sipp, pcaps, crid)
    file = rec["file"]
    assert isinstance(file, dict)
    mix_path = Path(str(file["path"]))
    mix = read_wav(mix_path)
    one = read_wav(mix_path.with_name(f"{mix_path.stem}.1.wav"))
    two = read_wav(mix_path.with_name(f"{mix_path.stem}.2.wav"))
    assert len(one.samples) == len(two.samples) == len(mix.samples)
    summed = np.clip(one.samples.astype(np.int32) + two.samples.astype(np.int32), -32768, 32767)
    assert np.array_equal(summed.astype(np.int16), mix.samples)
    middle = (0.4, 1.6)
    assert tone_level_dbfs(segment(one, *middle), 1000.0) < -60.0
    assert abs(tone_level_dbfs(segment(two, *middle), 1000.0) - LEVEL_DBFS) < 1.0


def test_flac_is_lossless_and_indexed_as_flac(
    start_srs: Callable[..., SrsDaemon], run_sipp: RunSipp, pcaps: dict[str, Path], crid: str
) -> None:
    srs = start_srs('[media]\nformat = "flac"\n')
    result = run_sipp(
        "siprec_basic.xml", "-d", "2000", "-set", "crid", crid,
        target=srs.sip_target, pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
    )  # fmt: skip
    assert result.returncode == 0, result.describe()
    rec = wait_recording(crid, srs.data_dir, "available", within=1.0)
    file = rec["file"]
    assert isinstance(file, dict)
    assert file["format"] == "flac" and file["content_type"] == "audio/flac"
    assert str(file["path"]).endswith(".flac") and Path(str(file["path"])).stat().st_size == file["size"]
    data, rate = soundfile.read(str(file["path"]), dtype="int16")
    assert rate == 8000 and data.ndim == 1
    part = data[int(0.4 * 8000) : int(1.6 * 8000)]
    assert abs(tone_level_dbfs(part, 440.0) - LEVEL_DBFS) < 1.0
    assert abs(tone_level_dbfs(part, 1000.0) - LEVEL_DBFS) < 1.0
