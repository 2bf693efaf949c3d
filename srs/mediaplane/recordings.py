"""The recorders of one plane (or one worker process), by key: the only I/O is their files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from srs.media.recorder import Recorder, RecordingResult
from srs.media.track import ActivityTuple, DecoderFactory, StreamTrack
from srs.mediaplane.contract import RecorderSpec, StreamSpec


@dataclass
class _Recording:
    recorder: Recorder
    tracks: dict[int, int] = field(default_factory=dict)
    """RTP port -> track index in the recorder."""
    failure: str | None = None


class RecordingSet:
    """The recorders of one plane (or one worker), by key; no I/O besides the WAV files."""

    def __init__(self, decoder_factory: DecoderFactory) -> None:
        self.decoder_factory = decoder_factory
        self.recordings: dict[str, _Recording] = {}

    def open(self, key: str, spec: RecorderSpec) -> None:
        pause_mode: Literal["silence", "cut"] = "cut" if spec.pause_mode == "cut" else "silence"
        recorder = Recorder(
            spec.path,
            spec.start,
            reorder_window=spec.reorder_window,
            pause_mode=pause_mode,
            **dict(spec.extra),
        )
        self.recordings[key] = _Recording(recorder)

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> StreamTrack | None:
        """End the track fed from ``port`` (if any) at ``at`` and start a new one from ``spec``."""
        rec = self.recordings.get(key)
        if rec is None:
            return None
        old = rec.tracks.pop(port, None)
        if old is not None:
            rec.recorder.end_track(old, at)
        if spec is None:
            return None
        track = StreamTrack(
            dict(spec.formats),
            start=rec.recorder.start,
            sample_rate=rec.recorder.sample_rate,
            decoder_factory=self.decoder_factory,
            label=spec.label,
            relatch_after=spec.relatch_after,
            sources=spec.sources,
        )
        rec.tracks[port] = rec.recorder.add_track(track)
        return track

    def track(self, key: str, port: int) -> StreamTrack | None:
        rec = self.recordings.get(key)
        if rec is None or port not in rec.tracks:
            return None
        return rec.recorder.tracks[rec.tracks[port]]

    def activity(self) -> dict[str, dict[int, ActivityTuple]]:
        """Every live track's activity, by recording and RTP port."""
        return {
            key: {port: rec.recorder.tracks[index].activity() for port, index in rec.tracks.items()}
            for key, rec in self.recordings.items()
        }

    def pause(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.pause(at)

    def resume(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.resume(at)

    def flush_one(self, key: str, now: float) -> str | None:
        """Flush one recording; returns the failure reason when its file cannot be written."""
        rec = self.recordings.get(key)
        if rec is None or rec.failure is not None:
            return None
        try:
            rec.recorder.flush(now)
        except OSError as exc:
            rec.failure = f"write failed: {exc.strerror or exc}"
            return rec.failure
        return None

    def flush(self, now: float) -> list[str]:
        return [key for key in list(self.recordings) if self.flush_one(key, now) is not None]

    def close(self, key: str, at: float) -> RecordingResult:
        """Write up to ``at`` and finish the file; raises OSError when it cannot be written."""
        rec = self.recordings.pop(key)
        if rec.failure is not None:
            rec.recorder.abort()
            raise OSError(rec.failure)
        try:
            return rec.recorder.close(at)
        except OSError as exc:
            raise OSError(f"write failed: {exc.strerror or exc}") from exc

    def abort(self, key: str) -> None:
        rec = self.recordings.pop(key, None)
        if rec is not None:
            rec.recorder.abort()

    def abort_all(self) -> None:
        for key in list(self.recordings):
            self.abort(key)
