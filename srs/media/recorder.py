"""One recording: its streams, pauses and the WAV file they are mixed into.

``flush`` is called about once a second and writes everything older than the
reorder window, so the file on disk trails the call by one or two seconds and
is playable at any moment. In ``silence`` mode a paused stretch is kept as
zeros so the file's length equals the call's wall-clock length; in ``cut``
mode it is left out. DTMF pressed during a pause is dropped with the audio.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from srs.media.mixer import Pcm, mix_mono, mix_stereo
from srs.media.track import StreamStats, StreamTrack
from srs.media.wavfile import WavWriter
from srs.rtp.dtmf import DtmfEvent

PauseMode = Literal["silence", "cut"]


@dataclass(frozen=True, slots=True)
class RecordingResult:
    path: str
    duration_ms: int
    samples: int
    """Sample frames in the file."""
    paused_ms: int
    streams: tuple[StreamStats, ...]
    dtmf: tuple[tuple[int, DtmfEvent], ...]
    """(stream index, event) with offsets on the file's timeline, in order of offset."""
    warnings: tuple[str, ...]


class Recorder:
    """Owns one WAV file; the media edge pushes datagrams into ``tracks[i]`` directly.

    ``sample_rate`` is the rate decoders deliver (8 kHz); tracks must be built with the same
    ``start`` and ``sample_rate``. With ``stereo=(left, right)`` track indexes are mixed per
    channel; a track in neither list goes to both.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        start: float,
        tracks: Sequence[StreamTrack] = (),
        *,
        reorder_window: float = 0.5,
        pause_mode: PauseMode = "silence",
        sample_rate: int = 8000,
        stereo: tuple[Sequence[int], Sequence[int]] | None = None,
    ) -> None:
        if pause_mode not in ("silence", "cut"):
            raise ValueError(f"pause_mode must be 'silence' or 'cut', not {pause_mode!r}")
        self.start = start
        self.sample_rate = sample_rate
        self.reorder_window = reorder_window
        self.pause_mode: PauseMode = pause_mode
        self._stereo = (list(stereo[0]), list(stereo[1])) if stereo is not None else None
        self._tracks: list[StreamTrack] = []
        self._ends: list[int | None] = []
        self._written = 0
        """Timeline samples rendered so far (including paused ones)."""
        self._pauses: list[list[int]] = []
        """[start, end) timeline samples; end is -1 while the pause lasts."""
        self._closed = False
        self._wav = WavWriter(path, sample_rate, 2 if stereo is not None else 1)
        for track in tracks:
            self.add_track(track)

    @property
    def path(self) -> str:
        return self._wav.path

    @property
    def tracks(self) -> list[StreamTrack]:
        return list(self._tracks)

    @property
    def written_until(self) -> int:
        return self._written

    @property
    def paused(self) -> bool:
        return bool(self._pauses) and self._pauses[-1][1] < 0

    def _sample(self, t: float) -> int:
        return max(0, round((t - self.start) * self.sample_rate))

    def add_track(self, track: StreamTrack) -> int:
        """Add a stream (also mid-call: it is silent before its first packet); returns its index."""
        if track.sample_rate != self.sample_rate or track.start != self.start:
            raise ValueError("track timeline (start, sample_rate) differs from the recording's")
        self._tracks.append(track)
        self._ends.append(None)
        if self._written:
            track.render(track.rendered_until, self._written)
        return len(self._tracks) - 1

    def end_track(self, index: int, now: float) -> None:
        """The stream's m-line was removed: nothing of it is written after ``now``."""
        if self._ends[index] is None:
            self._ends[index] = max(self._sample(now), self._written)

    def pause(self, now: float) -> None:
        if not self.paused:
            self._pauses.append([max(self._sample(now), self._written), -1])

    def resume(self, now: float) -> None:
        if self.paused:
            self._pauses[-1][1] = max(self._sample(now), self._pauses[-1][0])

    def flush(self, now: float) -> int:
        """Write everything older than the reorder window; returns sample frames written."""
        return self._write_until(self._sample(now - self.reorder_window))

    def _render_track(self, index: int, a: int, b: int) -> Pcm:
        track, end = self._tracks[index], self._ends[index]
        if end is None or end >= b:
            return track.render(a, b)
        block = np.zeros(b - a, dtype=np.int16)
        if end > a:
            block[: end - a] = track.render(a, end)
        elif track.rendered_until < b:
            track.render(max(a, track.rendered_until), b)  # releases anything still queued
        return block

    def _paused_ranges(self, a: int, b: int) -> list[tuple[int, int]]:
        ranges = []
        for p0, p1 in self._pauses:
            lo, hi = max(a, p0), min(b, p1 if p1 >= 0 else b)
            if lo < hi:
                ranges.append((lo - a, hi - a))
        return ranges

    def _write_until(self, target: int) -> int:
        if self._closed:
            raise ValueError("recording already closed")
        a, b = self._written, target
        if b <= a:
            return 0
        blocks = [self._render_track(i, a, b) for i in range(len(self._tracks))]
        mixed: Pcm
        if self._stereo is None:
            mixed = mix_mono(blocks, b - a)
        else:
            left, right = self._stereo
            listed = set(left) | set(right)
            extra = [i for i in range(len(blocks)) if i not in listed]
            left_ok = [i for i in left if i < len(blocks)] + extra
            right_ok = [i for i in right if i < len(blocks)] + extra
            mixed = mix_stereo(blocks, left_ok, right_ok, b - a)
        paused = self._paused_ranges(a, b)
        if paused and self.pause_mode == "silence":
            for lo, hi in paused:
                mixed[lo:hi] = 0
        elif paused:
            keep = np.ones(b - a, dtype=np.bool_)
            for lo, hi in paused:
                keep[lo:hi] = False
            mixed = mixed[keep]
        self._written = b
        self._wav.write(mixed)
        return len(mixed)

    def _paused_before(self, sample: int) -> tuple[bool, int]:
        """Whether timeline ``sample`` is inside a pause, and paused samples before it."""
        before = 0
        for p0, p1 in self._pauses:
            hi = p1 if p1 >= 0 else self._written
            if p0 <= sample < hi:
                return True, before
            if hi <= sample:
                before += hi - p0
        return False, before

    def abort(self) -> None:
        """Close the file as it is (after a disk error); no more rendering."""
        self._closed = True
        self._wav.close()

    def close(self, end: float) -> RecordingResult:
        """Write everything up to ``end`` and finish the file."""
        try:
            self._write_until(self._sample(end))
        except BaseException:
            self.abort()
            raise
        if self.paused:
            self._pauses[-1][1] = self._written
        self._closed = True
        self._wav.close()
        return self._result()

    def _result(self) -> RecordingResult:
        rate = self.sample_rate
        streams = []
        dtmf: list[tuple[int, DtmfEvent]] = []
        warnings: list[str] = []
        for index, track in enumerate(self._tracks):
            track.finish()
            stats = track.stats()
            streams.append(stats)
            name = f"stream {index}" + (f" ({stats.label})" if stats.label else "")
            if stats.packets_received == 0:
                warnings.append(f"{name} received no RTP")
            elif stats.captured_ms == 0:
                warnings.append(f"{name} had no decodable audio")
            elif stats.silent:
                warnings.append(f"{name} is silent")
            elif stats.completeness < 0.95:
                warnings.append(f"{name} captured {stats.completeness:.0%} of its expected audio")
            if stats.packets_dropped_source:
                dropped = stats.packets_dropped_source
                warnings.append(f"{name} dropped {dropped} packets from unlatched sources")
            for event in stats.dtmf:
                inside, before = self._paused_before(event.offset_ms * rate // 1000)
                if inside:
                    continue
                if self.pause_mode == "cut":
                    event = DtmfEvent(event.digit, event.offset_ms - before * 1000 // rate, event.duration_ms)
                dtmf.append((index, event))
        dtmf.sort(key=lambda item: item[1].offset_ms)
        paused = sum((p1 if p1 >= 0 else self._written) - p0 for p0, p1 in self._pauses)
        frames = self._wav.frames
        return RecordingResult(
            path=self._wav.path,
            duration_ms=frames * 1000 // rate,
            samples=frames,
            paused_ms=paused * 1000 // rate,
            streams=tuple(streams),
            dtmf=tuple(dtmf),
            warnings=tuple(warnings),
        )
