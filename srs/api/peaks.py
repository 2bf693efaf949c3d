"""Waveform peaks: the min and max sample of each of ``width`` equal slices of a recording.

A browser cannot be asked to download and decode a one-hour file to draw its outline, so the API
reduces it with numpy (a WAV is memory-mapped, never read whole into Python objects) and keeps
the answer on disk keyed by the file's sha256 and the width: a file never changes once available,
so a cached answer never goes stale, and a second viewer gets it without touching the audio.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

MIN_WIDTH = 16
MAX_WIDTH = 8192
DEFAULT_WIDTH = 1024


class PeaksError(ValueError):
    """The file cannot be reduced (not audio this module reads)."""


def _wav_data(path: Path) -> tuple[int, int, int, int]:
    """(sample_rate, channels, data offset, data bytes) of a PCM16 WAV, from its chunks."""
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise PeaksError("not a RIFF/WAVE file")
        rate = channels = bits = fmt_tag = 0
        size = path.stat().st_size
        while True:
            chunk = handle.read(8)
            if len(chunk) < 8:
                raise PeaksError("WAV file has no data chunk")
            name, length = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if name == b"fmt ":
                body = handle.read(length)
                fmt_tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
                handle.seek(length % 2, os.SEEK_CUR)
            elif name == b"data":
                if fmt_tag not in (1, 0xFFFE) or bits != 16 or channels < 1:
                    raise PeaksError("only 16-bit PCM WAV files are reduced")
                offset = handle.tell()
                return rate, channels, offset, min(length, size - offset)
            else:
                handle.seek(length + length % 2, os.SEEK_CUR)


def _samples(path: Path) -> tuple[NDArray[np.int16], int]:
    """Frames × channels int16 (memory-mapped for WAV), and the sample rate."""
    if path.suffix.lower() == ".wav":
        rate, channels, offset, length = _wav_data(path)
        frames = length // (2 * channels)
        if frames == 0:
            return np.zeros((0, channels), dtype=np.int16), rate
        data = np.memmap(path, dtype="<i2", mode="r", offset=offset, shape=(frames, channels))
        return data, rate
    import soundfile

    try:
        read, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise PeaksError(f"cannot decode {path.suffix} file: {exc}") from exc
    return read, int(rate)


def compute_peaks(path: Path, width: int) -> dict[str, Any]:
    """Min/max per slice over all channels; a slice with no samples (short file) is 0/0."""
    samples, rate = _samples(path)
    frames = int(samples.shape[0])
    lows = np.zeros(width, dtype=np.int32)
    highs = np.zeros(width, dtype=np.int32)
    if frames:
        per_frame_min = samples.min(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        per_frame_max = samples.max(axis=1) if samples.shape[1] > 1 else samples[:, 0]
        edges = (np.arange(width + 1, dtype=np.int64) * frames) // width
        starts, ends = edges[:-1], edges[1:]
        filled = ends > starts
        at = np.minimum(starts, frames - 1)
        lows = np.where(filled, np.minimum.reduceat(per_frame_min, at), 0).astype(np.int32)
        highs = np.where(filled, np.maximum.reduceat(per_frame_max, at), 0).astype(np.int32)
    return {
        "width": width,
        "sample_rate": rate,
        "channels": int(samples.shape[1]),
        "frames": frames,
        "duration_ms": frames * 1000 // rate if rate else 0,
        "min": lows.tolist(),
        "max": highs.tolist(),
    }


class PeaksCache:
    """``<dir>/<sha256>-<width>.json``; written atomically, so a reader never sees half a file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.hits = 0
        self.misses = 0

    def _path(self, sha256: str, width: int) -> Path | None:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            return None
        return self.directory / f"{sha256}-{width}.json"

    def get(self, path: Path, sha256: str | None, width: int) -> dict[str, Any]:
        """The peaks of ``path``; from the cache when its sha256 and width were reduced before."""
        cached = self._path(sha256, width) if sha256 else None
        if cached is not None:
            try:
                found: dict[str, Any] = json.loads(cached.read_text())
            except (OSError, ValueError):
                pass
            else:
                self.hits += 1
                return found
        self.misses += 1
        peaks = compute_peaks(path, width)
        if cached is not None:
            with contextlib.suppress(OSError):
                self._store(cached, peaks)
        return peaks

    def _store(self, target: Path, peaks: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".peaks-")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(peaks, handle, separators=(",", ":"))
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
