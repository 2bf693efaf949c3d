"""Streaming RIFF/WAVE PCM16 writer whose header is valid after every block.

The sizes in the header are patched after each write, so a process killed
mid-recording leaves a file every player opens, holding everything written up
to the last completed block. :func:`repair_wav` covers the remaining window (a
kill between a data write and its header patch) at the next start.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from srs.errors import ParseError

HEADER_SIZE = 44
_MAX_DATA = 0xFFFFFFFF - (HEADER_SIZE - 8)
_SIZE = struct.Struct("<I")


class WavFormatError(ParseError):
    """A file that is not a PCM WAV this module can repair."""


def _header(sample_rate: int, channels: int, data_size: int) -> bytes:
    block_align = 2 * channels
    return (
        b"RIFF"
        + _SIZE.pack(36 + data_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, 16)
        + b"data"
        + _SIZE.pack(data_size)
    )


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class WavWriter:
    """Append-only PCM16 WAV file; OSError from the disk propagates to the caller."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int = 8000,
        channels: int = 1,
        *,
        append: bool = False,
    ) -> None:
        """``append`` continues an existing file of this module's layout (a recording resumed after
        its writer died): its header is repaired first, then audio is added after what it holds."""
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self._data_size = 0
        if append:
            repaired = repair_wav(self.path)
            self._fd: int | None = os.open(self.path, os.O_WRONLY)
            self._data_size = repaired.data_size
            expected = _header(sample_rate, channels, repaired.data_size)
            with open(self.path, "rb") as handle:
                found = handle.read(HEADER_SIZE)
            if found != expected or os.lseek(self._fd, 0, os.SEEK_END) != HEADER_SIZE + repaired.data_size:
                os.close(self._fd)
                self._fd = None
                raise WavFormatError(f"{self.path}: not a {sample_rate} Hz {channels}-channel WAV of srs")
            return
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            _write_all(self._fd, _header(sample_rate, channels, 0))
        except OSError:
            os.close(self._fd)
            self._fd = None
            raise

    @property
    def frames(self) -> int:
        """Sample frames written so far (samples per channel)."""
        return self._data_size // (2 * self.channels)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def write(self, samples: NDArray[np.int16]) -> None:
        """Append int16 samples (shape (n,) or (n, channels) interleaved) and re-validate the header."""
        if self._fd is None:
            raise ValueError("write to a closed WavWriter")
        # the array's own memory goes to the file (no intermediate bytes copy)
        data = np.ascontiguousarray(samples, dtype="<i2").data.cast("B")
        size = data.nbytes
        if not size:
            return
        if size % (2 * self.channels):
            raise ValueError(f"{size // 2} samples do not fill whole {self.channels}-channel frames")
        if self._data_size + size > _MAX_DATA:
            raise OSError(errno.EFBIG, "WAV data would exceed the 4 GiB RIFF limit", self.path)
        _write_all(self._fd, data)
        self._data_size += size
        # both sizes in one write (the constant fmt chunk between them is rewritten as it is)
        os.pwrite(self._fd, _header(self.sample_rate, self.channels, self._data_size)[4:], 4)

    def close(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        os.close(fd)

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class RepairResult:
    path: str
    changed: bool
    header_data_size: int
    """What the header claimed before the repair."""
    data_size: int
    """Bytes of audio the header now declares."""
    trimmed_bytes: int
    """Bytes cut from the end to leave whole sample frames."""
    byte_rate: int = 0
    """Audio bytes per second, from the fmt chunk (0: the file has none): what a duration is computed from."""

    @property
    def duration_ms(self) -> int:
        """How much audio the repaired file holds, in its own format (0 when it names none)."""
        return self.data_size * 1000 // self.byte_rate if self.byte_rate > 0 else 0


def repair_wav(path: str | os.PathLike[str]) -> RepairResult:
    """Make the header sizes match the file after a crash; trims a trailing partial frame."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        head = os.pread(fd, 4096, 0)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise WavFormatError(f"{path}: not a RIFF/WAVE file")
        offset = 12
        block_align = 2
        byte_rate = 0
        while True:
            if offset + 8 > len(head):
                raise WavFormatError(f"{path}: no data chunk in the first {len(head)} bytes")
            chunk_id = head[offset : offset + 4]
            (chunk_size,) = _SIZE.unpack_from(head, offset + 4)
            if chunk_id == b"fmt ":
                if chunk_size < 16 or offset + 24 > len(head):
                    raise WavFormatError(f"{path}: truncated fmt chunk")
                (byte_rate, block_align) = struct.unpack_from("<IH", head, offset + 16)
                block_align = max(block_align, 1)
            elif chunk_id == b"data":
                break
            offset += 8 + chunk_size + (chunk_size & 1)
        data_offset = offset + 8
        if data_offset > size:
            raise WavFormatError(f"{path}: file ends inside the data chunk header")
        (claimed,) = _SIZE.unpack_from(head, offset + 4)
        available = min(size - data_offset, 0xFFFFFFFF - (data_offset - 8))
        data_size = available - available % block_align
        trimmed = size - data_offset - data_size
        riff_size = data_offset - 8 + data_size
        (claimed_riff,) = _SIZE.unpack_from(head, 4)
        changed = trimmed != 0 or claimed != data_size or claimed_riff != riff_size
        if changed:
            if trimmed:
                os.ftruncate(fd, data_offset + data_size)
            os.pwrite(fd, _SIZE.pack(riff_size), 4)
            os.pwrite(fd, _SIZE.pack(data_size), offset + 4)
        return RepairResult(path, changed, claimed, data_size, trimmed, byte_rate)
    finally:
        os.close(fd)
