"""The WAV header is valid after every block, and a crashed file can be repaired."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from srs.media.wavfile import WavFormatError, WavWriter, repair_wav


def read_wave(path: Path) -> tuple[int, int, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        frames = w.readframes(w.getnframes())
        return w.getframerate(), w.getnchannels(), np.frombuffer(frames, dtype="<i2")


def test_header_valid_after_every_block(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    rng = np.random.default_rng(7)
    written: list[np.ndarray] = []
    with WavWriter(path) as writer:
        assert read_wave(path)[2].size == 0
        for size in (8000, 1, 333, 8000):
            block = rng.integers(-32768, 32767, size, dtype=np.int16)
            writer.write(block)
            written.append(block)
            rate, channels, data = read_wave(path)  # as a crash right now would leave it
            assert (rate, channels) == (8000, 1)
            np.testing.assert_array_equal(data, np.concatenate(written))
            sf_data, sf_rate = soundfile.read(str(path), dtype="int16")
            assert sf_rate == 8000
            np.testing.assert_array_equal(sf_data, np.concatenate(written))
        assert writer.frames == 16334
    assert writer.closed
    assert os.path.getsize(path) == 44 + 2 * 16334


def test_stereo_frames(tmp_path: Path) -> None:
    path = tmp_path / "s.wav"
    block = np.array([[1, -1], [2, -2], [3, -3]], dtype=np.int16)
    with WavWriter(path, sample_rate=16000, channels=2) as writer:
        writer.write(block)
        with pytest.raises(ValueError, match="frames"):
            writer.write(np.zeros(3, dtype=np.int16))
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.frames) == (16000, 2, 3)
    data, _ = soundfile.read(str(path), dtype="int16")
    np.testing.assert_array_equal(data, block)


def test_write_after_close_and_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "c.wav"
    writer = WavWriter(path)
    writer.close()
    writer.close()
    with pytest.raises(ValueError):
        writer.write(np.zeros(1, dtype=np.int16))
    with pytest.raises(FileExistsError):
        WavWriter(path)


def test_disk_error_propagates(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        WavWriter(tmp_path / "missing-dir" / "x.wav")
    if os.path.exists("/dev/full"):
        writer = WavWriter.__new__(WavWriter)
        writer.path, writer.sample_rate, writer.channels = "/dev/full", 8000, 1
        writer._data_size = 0
        writer._fd = os.open("/dev/full", os.O_WRONLY)
        with pytest.raises(OSError):
            writer.write(np.ones(8000, dtype=np.int16))
        writer.close()


def crashed_file(tmp_path: Path, extra: bytes) -> tuple[Path, np.ndarray]:
    """A file whose last block (and maybe half a sample) never got its header patch."""
    path = tmp_path / "crash.wav"
    first = np.arange(100, dtype=np.int16)
    with WavWriter(path) as writer:
        writer.write(first)
    with open(path, "ab") as f:
        f.write(extra)
    return path, first


def test_repair_counts_unpatched_data_and_trims_odd_byte(tmp_path: Path) -> None:
    tail = np.arange(50, dtype=np.int16) - 25
    path, first = crashed_file(tmp_path, tail.astype("<i2").tobytes() + b"\x7f")
    result = repair_wav(path)
    assert result.changed
    assert (result.header_data_size, result.data_size, result.trimmed_bytes) == (200, 300, 1)
    _, _, data = read_wave(path)
    np.testing.assert_array_equal(data, np.concatenate([first, tail]))
    assert soundfile.info(str(path)).frames == 150
    assert not repair_wav(path).changed


def test_repair_of_valid_file_changes_nothing(tmp_path: Path) -> None:
    path, _ = crashed_file(tmp_path, b"")
    before = path.read_bytes()
    assert repair_wav(path).changed is False
    assert path.read_bytes() == before


def test_repair_header_only_file_with_zero_sizes(tmp_path: Path) -> None:
    path = tmp_path / "h.wav"
    WavWriter(path).close()
    with open(path, "r+b") as f:
        f.write(b"RIFF" + struct.pack("<I", 0))
        f.seek(0, 2)
        f.write(b"\x01\x00\x02\x00")
    result = repair_wav(path)
    assert result.data_size == 4
    assert read_wave(path)[2].tolist() == [1, 2]


@pytest.mark.parametrize("content", [b"", b"RIFF", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"OggS" + b"\x00" * 60])
def test_repair_rejects_non_wav(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(WavFormatError):
        repair_wav(path)


def test_repair_truncated_inside_header(tmp_path: Path) -> None:
    path = tmp_path / "t.wav"
    WavWriter(path).close()
    data = path.read_bytes()
    path.write_bytes(data[:40])
    with pytest.raises(WavFormatError):
        repair_wav(path)


def test_killed_writer_leaves_a_playable_file(tmp_path: Path) -> None:
    """A process killed with SIGKILL after three blocks leaves exactly those three blocks."""
    import signal
    import subprocess
    import sys

    path = tmp_path / "killed.wav"
    script = (
        "import os, signal, numpy as np\n"
        "from srs.media.wavfile import WavWriter\n"
        f"w = WavWriter({str(path)!r})\n"
        "for k in range(3):\n"
        "    w.write(np.full(8000, k + 1, dtype=np.int16))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).parents[3], check=False)
    assert done.returncode == -signal.SIGKILL
    _, _, data = read_wave(path)
    np.testing.assert_array_equal(data, np.repeat(np.array([1, 2, 3], dtype=np.int16), 8000))
    assert repair_wav(path).changed is False
