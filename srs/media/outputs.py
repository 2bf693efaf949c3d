"""The files a recording is written to: PCM WAV by default, FLAC, Ogg Opus or MP3 on request.

WAV goes through our own writer, whose header is valid after every block, so a
killed process leaves a playable file. The encoded formats go through
libsndfile, which completes its headers (FLAC STREAMINFO, Ogg page granules,
MP3 frame headers) as it goes and finalises them on close: after a crash an
encoded file may be truncated mid-frame or lack its total length and some
players refuse it. Choose WAV when a crash must leave a playable file.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import soundfile
from numpy.typing import NDArray

from srs.media.wavfile import WavWriter

OutputFormat = Literal["wav", "flac", "ogg-opus", "mp3"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = ("wav", "flac", "ogg-opus", "mp3")

_SOUNDFILE: dict[str, tuple[str, str, str]] = {
    # format name -> (libsndfile major format, subtype, file extension)
    "flac": ("FLAC", "PCM_16", ".flac"),
    "ogg-opus": ("OGG", "OPUS", ".opus"),
    "mp3": ("MP3", "MPEG_LAYER_III", ".mp3"),
}
_OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class OutputFile:
    """One file a recording wrote; ``label`` is None for the mix, the stream's label otherwise."""

    path: str
    format: OutputFormat
    channels: int
    sample_rate: int
    size: int
    """Bytes on disk when the recording closed."""
    frames: int
    label: str | None = None


def extension(output_format: OutputFormat) -> str:
    """The file name extension (with the dot) a format is written with."""
    return ".wav" if output_format == "wav" else _SOUNDFILE[output_format][2]


def check_output_format(output_format: str, sample_rate: int = 8000) -> OutputFormat:
    """The format as an :data:`OutputFormat`; ValueError when unknown or this libsndfile cannot write it."""
    if output_format == "wav":
        return "wav"
    if output_format not in _SOUNDFILE:
        raise ValueError(f"output format {output_format!r} is not one of {', '.join(OUTPUT_FORMATS)}")
    major, subtype, _ = _SOUNDFILE[output_format]
    if major not in soundfile.available_formats() or subtype not in soundfile.available_subtypes(major):
        raise ValueError(
            f"output format {output_format!r} needs libsndfile with {major}/{subtype}; "
            f"libsndfile {soundfile.__libsndfile_version__} here lacks it"
        )
    if output_format == "ogg-opus" and sample_rate not in _OPUS_RATES:
        raise ValueError(f"Opus cannot encode {sample_rate} Hz audio")
    checked: OutputFormat = output_format  # type: ignore[assignment]
    return checked


def with_extension(path: str | os.PathLike[str], output_format: OutputFormat) -> str:
    """``path`` with its extension replaced by the format's (``rec.wav`` -> ``rec.flac``)."""
    root, ext = os.path.splitext(os.fspath(path))
    wanted = extension(output_format)
    return root + wanted if ext.lower() != wanted else os.fspath(path)


def stream_file_labels(labels: Sequence[str]) -> list[str]:
    """File-name-safe, distinct names for streams: the label with unsafe runs as ``_``,
    ``stream<n>`` (1-based) for an empty label, ``-<n>`` appended to a name already taken."""
    names: list[str] = []
    for number, label in enumerate(labels, 1):
        name = _UNSAFE.sub("_", label).strip("_") or f"stream{number}"
        if name in names:
            name = f"{name}-{number}"
        names.append(name)
    return names


def stream_file_path(base: str | os.PathLike[str], name: str, output_format: OutputFormat) -> str:
    """``<base without extension>.<name><ext>`` for one stream's own file."""
    root, _ = os.path.splitext(os.fspath(base))
    return f"{root}.{name}{extension(output_format)}"


class AudioSink(Protocol):
    """An append-only audio file."""

    @property
    def path(self) -> str: ...

    @property
    def frames(self) -> int: ...

    def write(self, samples: NDArray[np.int16]) -> None: ...

    def close(self) -> None: ...


def _io_error(exc: Exception, path: str) -> OSError:
    """libsndfile failures as the OSError a disk problem is everywhere else in the recorder."""
    return OSError(errno.EIO, f"libsndfile: {exc}", path)


class SoundFileSink:
    """Append-only encoded file through libsndfile; created exclusively like :class:`WavWriter`.

    libsndfile's own errors (disk full, unwritable directory) are raised as OSError.
    """

    def __init__(self, path: str, output_format: OutputFormat, sample_rate: int, channels: int) -> None:
        major, subtype, _ = _SOUNDFILE[output_format]
        self.path = path
        self.channels = channels
        self._frames = 0
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)  # FileExistsError as for WAV
        try:
            self._file: soundfile.SoundFile | None = soundfile.SoundFile(
                fd, mode="w", samplerate=sample_rate, channels=channels, format=major, subtype=subtype
            )
        except soundfile.SoundFileError as exc:
            os.close(fd)
            raise _io_error(exc, path) from exc

    @property
    def frames(self) -> int:
        return self._frames

    def write(self, samples: NDArray[np.int16]) -> None:
        if self._file is None:
            raise ValueError("write to a closed SoundFileSink")
        if len(samples) == 0:
            return
        try:
            self._file.write(np.ascontiguousarray(samples, dtype=np.int16))
        except soundfile.SoundFileError as exc:
            raise _io_error(exc, self.path) from exc
        self._frames += len(samples)

    def close(self) -> None:
        if self._file is None:
            return
        file, self._file = self._file, None
        try:
            file.close()
        except soundfile.SoundFileError as exc:
            raise _io_error(exc, self.path) from exc


def open_sink(path: str, output_format: OutputFormat, sample_rate: int, channels: int) -> AudioSink:
    """A new file (never overwriting one) in the given format."""
    if output_format == "wav":
        return WavWriter(path, sample_rate, channels)
    return SoundFileSink(path, output_format, sample_rate, channels)


def described(
    sink: AudioSink, output_format: OutputFormat, sample_rate: int, channels: int, label: str | None
) -> OutputFile:
    """The :class:`OutputFile` of a closed sink."""
    try:
        size = os.path.getsize(sink.path)
    except OSError:
        size = 0
    return OutputFile(sink.path, output_format, channels, sample_rate, size, sink.frames, label)
