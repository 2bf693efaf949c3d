"""One recording: its streams, pauses and the files they are written to.

``flush`` is called about once a second and writes everything older than the
reorder window, so the file on disk trails the call by one or two seconds and
is playable at any moment. In ``silence`` mode a paused stretch is kept as
zeros so the file's length equals the call's wall-clock length; in ``cut``
mode it is left out. DTMF pressed during a pause is dropped with the audio.

The mix is always written (mono, or stereo with the two sides on left and
right); ``per_stream`` adds one mono file per stream beside it, all on the same
timeline, so stream files and the mix line up sample for sample. When streams
carry RTCP sender reports from one NTP clock, they are aligned by that clock
before each block is rendered (see :meth:`StreamTrack.sender_lag`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Literal

import numpy as np

from srs.media.mixer import Pcm, mix_mono, mix_stereo
from srs.media.outputs import (
    AudioSink,
    OutputFormat,
    check_output_format,
    described,
    open_sink,
    stream_file_labels,
    stream_file_path,
    with_extension,
)
from srs.media.report import stream_warnings
from srs.media.result import RecordingResult
from srs.media.track import StreamTrack
from srs.media.wavfile import WavWriter
from srs.rtp.dtmf import DtmfEvent

PauseMode = Literal["silence", "cut"]

_ZERO_CHUNK = 60 * 8000
_ALIGN_WINDOW = 1.0
"""Sender-report lags further apart than this come from different clocks."""


class Recorder:
    """Owns a recording's files; the media edge pushes datagrams into ``tracks[i]`` directly.

    ``sample_rate`` is the rate decoders deliver (8 kHz); tracks must be built with the same
    ``start`` and ``sample_rate``. With ``stereo=(left, right)`` track indexes are mixed per
    channel; a track in neither list goes to both (:func:`srs.media.channels.stereo_groups`
    derives the lists from metadata).

    ``output_format`` is ``wav`` (our crash-safe writer), ``flac``, ``ogg-opus`` or ``mp3``
    (libsndfile; ValueError here when it cannot write the format); for an encoded format the
    extension of ``path`` is replaced by the format's. ``per_stream`` also writes each stream
    to ``<path without extension>.<label><ext>``. ``rtcp_alignment`` lets sender reports
    move streams into line with each other. ``conceal_loss`` switches on loss concealment
    in every track added (a track built with it keeps it either way).
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
        output_format: str = "wav",
        per_stream: bool = False,
        rtcp_alignment: bool = True,
        conceal_loss: bool = False,
        resume_written: int | None = None,
    ) -> None:
        """``resume_written`` continues the existing WAV at ``path`` (its writer died) as if
        ``resume_written`` timeline samples had been written; only a WAV mix can be continued."""
        if pause_mode not in ("silence", "cut"):
            raise ValueError(f"pause_mode must be 'silence' or 'cut', not {pause_mode!r}")
        self.output_format: OutputFormat = check_output_format(output_format, sample_rate)
        self.per_stream = per_stream
        self.rtcp_alignment = rtcp_alignment
        self.conceal_loss = conceal_loss
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
        self._channels = 2 if stereo is not None else 1
        if self.output_format != "wav":
            path = with_extension(path, self.output_format)
        if resume_written is not None:
            if self.output_format != "wav" or per_stream:
                raise ValueError("only a WAV mix without per-stream files can be resumed")
            self._wav: AudioSink = WavWriter(path, sample_rate, self._channels, append=True)
            self._written = max(0, resume_written)
        else:
            self._wav = open_sink(os.fspath(path), self.output_format, sample_rate, self._channels)
        self._stream_sinks: list[AudioSink | None] = []
        try:
            for track in tracks:
                self.add_track(track)
        except BaseException:
            self.abort()
            raise

    @property
    def path(self) -> str:
        """The mix's file."""
        return self._wav.path

    @property
    def stream_paths(self) -> list[str]:
        """Per-stream files in track order (empty without ``per_stream``)."""
        return [sink.path for sink in self._stream_sinks if sink is not None]

    @property
    def tracks(self) -> list[StreamTrack]:
        return list(self._tracks)

    @property
    def written_until(self) -> int:
        return self._written

    @property
    def frames(self) -> int:
        """Sample frames in the mix file so far."""
        return self._wav.frames

    @property
    def paused(self) -> bool:
        return bool(self._pauses) and self._pauses[-1][1] < 0

    def set_stereo(self, left: Sequence[int], right: Sequence[int]) -> None:
        """New channel groups (metadata naming the participants arrived later), from the next block on.

        Only a recording opened with ``stereo`` has two channels to assign.
        """
        if self._stereo is None:
            raise ValueError("the recording was opened mono; channel groups need stereo=")
        self._stereo = (list(left), list(right))

    def _sample(self, t: float) -> int:
        return max(0, round((t - self.start) * self.sample_rate))

    def add_track(self, track: StreamTrack) -> int:
        """Add a stream (also mid-call: it is silent before its first packet); returns its index."""
        if track.sample_rate != self.sample_rate or track.start != self.start:
            raise ValueError("track timeline (start, sample_rate) differs from the recording's")
        if self.conceal_loss:
            track.conceal_loss = True
        sink = None
        if self.per_stream:
            name = stream_file_labels([t.label for t in self._tracks] + [track.label])[-1]
            path = stream_file_path(self._wav.path, name, self.output_format)
            sink = open_sink(path, self.output_format, self.sample_rate, 1)
            try:
                # the stream's file starts where the mix does: silence until it joined
                for done in range(0, self._wav.frames, _ZERO_CHUNK):
                    sink.write(np.zeros(min(_ZERO_CHUNK, self._wav.frames - done), dtype=np.int16))
            except BaseException:
                sink.close()
                raise
        self._tracks.append(track)
        self._ends.append(None)
        self._stream_sinks.append(sink)
        # catch up with the file a minute at a time (a track added hours into a call, or one that
        # continues a recording after a crash, must not render its whole past in one buffer)
        for done in range(track.rendered_until, self._written, _ZERO_CHUNK):
            track.render(done, min(done + _ZERO_CHUNK, self._written))
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

    def _align(self) -> None:
        """Move streams stamped by one NTP clock into line with the earliest-placed of them.

        Arrival anchoring can only place a stream late (its first packet was delayed), never
        early, so streams only move earlier, and only within a cluster of lags under a second
        apart: a lag further off belongs to a sender with its own clock. A stream moved earlier
        by ``shift`` has its packets arrive ``shift`` after their place, so a shift of more than
        half the reorder window (which would make them late) is not made.
        """
        lags = [(i, t.sender_lag()) for i, t in enumerate(self._tracks) if self._ends[i] is None]
        known = [(i, lag) for i, lag in lags if lag is not None]
        if len(known) < 2:
            return
        cluster: list[tuple[int, float]] = []
        for _, low in known:
            candidate = [(i, lag) for i, lag in known if low <= lag <= low + _ALIGN_WINDOW]
            if len(candidate) > len(cluster):
                cluster = candidate
        if len(cluster) < 2:
            return
        reference = min(lag for _, lag in cluster)
        least = max(1, self.sample_rate // 1000)
        most = self.reorder_window * self.sample_rate / 2
        for i, lag in cluster:
            shift = round((lag - reference) * self.sample_rate)
            if least <= shift <= most:
                self._tracks[i].shift_earlier(shift)

    def _apply_pauses(self, samples: Pcm, paused: list[tuple[int, int]]) -> Pcm:
        if not paused:
            return samples
        if self.pause_mode == "silence":
            samples = samples.copy()
            for lo, hi in paused:
                samples[lo:hi] = 0
            return samples
        keep = np.ones(len(samples), dtype=np.bool_)
        for lo, hi in paused:
            keep[lo:hi] = False
        return samples[keep]

    def _write_until(self, target: int) -> int:
        if self._closed:
            raise ValueError("recording already closed")
        a, b = self._written, target
        if b <= a:
            return 0
        if self.rtcp_alignment:
            self._align()
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
        mixed = self._apply_pauses(mixed, paused)
        self._written = b
        self._wav.write(mixed)
        for sink, block in zip(self._stream_sinks, blocks, strict=True):
            if sink is not None:
                sink.write(self._apply_pauses(block, paused))
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
        with contextlib.suppress(OSError):
            self._close_files()

    def _close_files(self) -> None:
        """Close every file, the mix last; the first error is raised after all were tried."""
        error: BaseException | None = None
        for sink in [*self._stream_sinks, self._wav]:
            if sink is None:
                continue
            try:
                sink.close()
            except Exception as exc:  # a full disk on one file must not leave the others open
                error = error or exc
        if error is not None:
            raise error

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
        self._close_files()
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
            warnings.extend(stream_warnings(index, stats))
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
        fmt, channels = self.output_format, self._channels
        files = [described(self._wav, fmt, rate, channels, None)]
        for track, sink in zip(self._tracks, self._stream_sinks, strict=True):
            if sink is not None:
                files.append(described(sink, fmt, rate, 1, track.label))
        return RecordingResult(
            path=self._wav.path,
            duration_ms=frames * 1000 // rate,
            samples=frames,
            paused_ms=paused * 1000 // rate,
            streams=tuple(streams),
            dtmf=tuple(dtmf),
            warnings=tuple(warnings),
            files=tuple(files),
            pauses=self._pause_spans(),
        )

    def _pause_spans(self) -> tuple[tuple[int, int], ...]:
        """Each pause as (offset_ms on the file, length_ms); a cut pause sits where the file skips it."""
        rate = self.sample_rate
        spans = []
        cut = 0
        for p0, p1 in self._pauses:
            length = (p1 if p1 >= 0 else self._written) - p0
            spans.append(((p0 - cut) * 1000 // rate, length * 1000 // rate))
            if self.pause_mode == "cut":
                cut += length
        return tuple(spans)
