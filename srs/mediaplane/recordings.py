"""The recorders of one plane (or one worker process), by key: the only I/O is their files.

With a :class:`JournalPolicy` every recording also keeps a crash journal
(:mod:`srs.mediaplane.journal`) beside its file: the worker appends each datagram through the
port's :class:`JournalLane`, each flush lets the journal forget what the file now holds, and a
recording opened with ``RecorderSpec.resume`` continues its file from what the journal kept.
"""

from __future__ import annotations

import contextlib
import dataclasses
import struct
from dataclasses import dataclass, field
from typing import Literal

from srs.errors import ParseError
from srs.media.recorder import Recorder
from srs.media.rendering import DecoderFactory
from srs.media.result import RecordingResult
from srs.media.track import ActivityTuple, StreamTrack
from srs.media.wavfile import repair_wav
from srs.mediaplane import journal as journal_file
from srs.mediaplane.contract import RecorderSpec, StreamSpec
from srs.mediaplane.journal import DATAGRAM, PLACED, PLACEMENT, Journal, JournalContents, JournalRecord
from srs.mediaplane.journal_state import JournalState, journal_path, remove_files, save_state, state_path

REPLAY_MARGIN_S = 2.0
"""Datagrams are kept this long past the written place's time: a track places packets up to its
jump threshold (2 s) later than they arrived (its first packet came late), so a datagram that
arrived before the written place may still belong after it."""
_RTP = struct.Struct("!xxHII")


@dataclass(frozen=True, slots=True)
class JournalPolicy:
    """Keep crash journals; ``fsync_interval`` None leaves write-back to the kernel."""

    fsync_interval: float | None = None


class JournalLane:
    """Where one port's datagrams are journaled: ``record`` takes one datagram (the worker's general
    path); runs of the fast path go to ``journal_runs`` straight from the receive buffer."""

    __slots__ = ("journal", "port")

    def __init__(self, journal: Journal | None, port: int) -> None:
        self.journal = journal
        self.port = port

    def record(self, data: bytes, arrival: float) -> None:
        journal = self.journal
        if journal is not None:
            journal.append(self.port, arrival, data)


NO_LANE = JournalLane(None, 0)


@dataclass
class Resumed:
    """What a resumed recording took over from its journal."""

    written_from: int
    """Timeline sample the file stood at."""
    replayed: int
    """Datagrams replayed from the journal."""
    last_arrival: float | None
    torn: bool


@dataclass
class _Recording:
    recorder: Recorder
    tracks: dict[int, int] = field(default_factory=dict)
    """RTP port -> track index in the recorder."""
    failure: str | None = None
    journal: Journal | None = None
    state: JournalState | None = None
    replay: dict[int, list[JournalRecord]] = field(default_factory=dict)
    """Journaled datagrams by port, pushed into the port's track when its stream is set."""
    placements: dict[int, tuple[int, int, int, int, int, int]] = field(default_factory=dict)
    """Port -> the lost track's newest placement (see :meth:`StreamTrack.placement`) and counters."""
    carried: dict[int, tuple[int, int]] = field(default_factory=dict)
    """Track index -> (received, lost) the lost track had counted that the new one does not."""
    resumed: Resumed | None = None


class RecordingSet:
    """The recorders of one plane (or one worker), by key; no I/O besides the WAV files (and journals)."""

    def __init__(
        self,
        decoder_factory: DecoderFactory,
        journal: JournalPolicy | None = None,
        *,
        defer_saves: bool = False,
    ) -> None:
        """``defer_saves``: journal states changed by commands are written by :meth:`save_pending`
        (the worker calls it after each batch of commands, before it receives again), so a call's
        open and its streams cost one state file, not one per command."""
        self.decoder_factory = decoder_factory
        self.journal_policy = journal
        self.recordings: dict[str, _Recording] = {}
        self.defer_saves = defer_saves
        self._unsaved: dict[int, _Recording] = {}

    def open(self, key: str, spec: RecorderSpec) -> None:
        """A new file, or with ``spec.resume`` the existing one continued from its journal
        (ValueError/ParseError/OSError when it cannot be)."""
        pause_mode: Literal["silence", "cut"] = "cut" if spec.pause_mode == "cut" else "silence"
        contents: JournalContents | None = None
        journal: Journal | None = None
        journaled = self.journal_policy is not None and journal_supported(spec)
        if spec.resume:
            contents, journal = self._resume_journal(spec, journaled)
        try:
            recorder = Recorder(
                spec.path,
                spec.start,
                reorder_window=spec.reorder_window,
                pause_mode=pause_mode,
                resume_written=_resume_point(spec, contents) if spec.resume else None,
                **dict(spec.extra),
            )
        except BaseException:
            if journal is not None:
                journal.close(remove=False)
            raise
        rec = _Recording(recorder)
        if contents is not None:
            rec.resumed, rec.replay, rec.placements = _pending_replay(contents)
        if journaled and journal is None:
            assert self.journal_policy is not None
            try:
                journal = Journal(journal_path(spec.path), fsync_interval=self.journal_policy.fsync_interval)
            except OSError:
                journal = None  # the recording goes on without one (a full disk shows in the file)
        if journal is not None:
            rec.journal = journal
            rec.state = JournalState(dataclasses.replace(spec, resume=False))
            self._save(rec)
        self.recordings[key] = rec

    def _resume_journal(
        self, spec: RecorderSpec, journaled: bool
    ) -> tuple[JournalContents | None, Journal | None]:
        path = journal_path(spec.path)
        try:
            if journaled:
                assert self.journal_policy is not None
                journal = Journal(path, fsync_interval=self.journal_policy.fsync_interval, resume=True)
                return journal.contents, journal
            return journal_file.read(path), None
        except (OSError, ParseError):
            return None, None

    def resumed(self, key: str) -> Resumed | None:
        rec = self.recordings.get(key)
        return rec.resumed if rec is not None else None

    def lane(self, key: str, port: int) -> JournalLane:
        """The port's journal lane (:data:`NO_LANE` when the recording keeps no journal)."""
        rec = self.recordings.get(key)
        if rec is None or rec.journal is None:
            return NO_LANE
        return JournalLane(rec.journal, port)

    def set_stream(self, key: str, port: int, spec: StreamSpec | None, at: float) -> StreamTrack | None:
        """End the track fed from ``port`` (if any) at ``at`` and start a new one from ``spec``; a
        resumed recording's journaled datagrams of the port go into the new track first."""
        rec = self.recordings.get(key)
        if rec is None:
            return None
        old = rec.tracks.pop(port, None)
        if old is not None:
            rec.recorder.end_track(old, at)
        if rec.state is not None:
            rec.state.streams[port] = None if spec is None else dataclasses.replace(spec, srtp=None)
            self._save(rec)
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
        replay = rec.replay.pop(port, None)
        carried = self._prime(rec, track, replay, rec.placements.pop(port, None)) if replay else None
        rec.tracks[port] = rec.recorder.add_track(track)
        if carried is not None:
            rec.carried[rec.tracks[port]] = carried
        return track

    @staticmethod
    def _prime(
        rec: _Recording,
        track: StreamTrack,
        replay: list[JournalRecord],
        placed: tuple[int, int, int, int, int, int] | None,
    ) -> tuple[int, int] | None:
        """Push a port's journaled datagrams into its new track (before it joins the recorder, so
        none is late; the recorder drops what lies before its file's end). With the lost track's
        newest placement, that packet goes first, arriving exactly at its place: the new track is
        anchored as the old one was. Without, only datagrams that arrived after the written place
        are pushed, placed by their arrival. They pass the stream's source policy
        (:meth:`StreamTrack.push_replayed`): the journal keeps no addresses, and the next live
        packet from an allowed host latches the new track.

        Returns what the lost track had counted and the new one will not: its counters at the note,
        less the replayed packets up to the anchor (which the new track counts again)."""
        recorder = rec.recorder
        anchor: JournalRecord | None = None
        carried: tuple[int, int] | None = None
        if placed is not None:
            ssrc, seq, ts, _position, received, lost = placed
            for record in reversed(replay):
                if len(record.data) >= 12 and _RTP.unpack_from(record.data) == (seq, ts, ssrc):
                    anchor = record
                    break
            again = sum(
                1
                for record in replay
                if len(record.data) >= 12
                and (header := _RTP.unpack_from(record.data))[2] == ssrc
                and ((header[0] - seq) & 0xFFFF == 0 or (header[0] - seq) & 0xFFFF >= 0x8000)
            )
            carried = (max(0, received - again), lost)
        if anchor is not None:
            assert placed is not None
            track.push_replayed(anchor.data, recorder.start + placed[3] / recorder.sample_rate)
        else:
            written_at = recorder.start + recorder.written_until / recorder.sample_rate
            replay = [record for record in replay if record.arrival >= written_at]
        for record in replay:
            if record is not anchor:
                track.push_replayed(record.data, record.arrival)
        return carried

    def track(self, key: str, port: int) -> StreamTrack | None:
        rec = self.recordings.get(key)
        if rec is None or port not in rec.tracks:
            return None
        return rec.recorder.tracks[rec.tracks[port]]

    def relatch(self, key: str, port: int, sources: tuple[str, ...] | None, *, allow: bool = True) -> None:
        """New SDP for the stream on ``port``: its track allows ``sources`` (unless ``allow`` is
        false: an old command without them) and may be taken over at once by another allowed
        address; the journal state keeps the allowed hosts, so a track resumed from it is held
        to them as well."""
        rec = self.recordings.get(key)
        if rec is None or port not in rec.tracks:
            return
        track = rec.recorder.tracks[rec.tracks[port]]
        if allow:
            track.allow(sources)
            if rec.state is not None:
                spec = rec.state.streams.get(port)
                if spec is not None and spec.sources != sources:
                    rec.state.streams[port] = dataclasses.replace(spec, sources=sources)
                    self._save(rec)
        track.relatch()

    def activity(self) -> dict[str, dict[int, ActivityTuple]]:
        """Every live track's activity, by recording and RTP port."""
        return {
            key: {port: rec.recorder.tracks[index].activity() for port, index in rec.tracks.items()}
            for key, rec in self.recordings.items()
        }

    def counters(self, key: str) -> dict[int, tuple[int, int]]:
        """RTP port -> (packets received, packets lost) of the tracks fed now (with what tracks
        lost with a dead worker had counted)."""
        rec = self.recordings.get(key)
        if rec is None:
            return {}
        tracks = rec.recorder.tracks
        return {port: self._counted(rec, i, tracks[i]) for port, i in rec.tracks.items()}

    @staticmethod
    def _counted(rec: _Recording, index: int, track: StreamTrack) -> tuple[int, int]:
        before = rec.carried.get(index, (0, 0))
        return before[0] + track.packets_received, before[1] + track.packets_lost

    def pause(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.pause(at)
            self._note(rec, "pause", at)

    def resume(self, key: str, at: float) -> None:
        rec = self.recordings.get(key)
        if rec is not None:
            rec.recorder.resume(at)
            self._note(rec, "resume", at)

    def _note(self, rec: _Recording, op: str, at: float) -> None:
        if rec.state is not None:
            rec.state.pauses.append((op, at))
            self._save(rec)

    def _save(self, rec: _Recording) -> None:
        if rec.state is None:
            return
        if self.defer_saves:
            self._unsaved[id(rec)] = rec
            return
        self._write_state(rec)

    def save_pending(self) -> None:
        """Write the journal states changed since the last call (with ``defer_saves``); a recording
        closed meanwhile has none to write (its files are gone)."""
        pending, self._unsaved = self._unsaved, {}
        for rec in pending.values():
            if rec.journal is not None:
                self._write_state(rec)

    @staticmethod
    def _write_state(rec: _Recording) -> None:
        if rec.state is None:
            return
        with contextlib.suppress(OSError):  # a full disk fails the recording's own writes soon enough
            save_state(state_path(rec.state.spec.path), rec.state)

    def flush_one(self, key: str, now: float) -> str | None:
        """Flush one recording; returns the failure reason when its file cannot be written."""
        rec = self.recordings.get(key)
        if rec is None or rec.failure is not None:
            return None
        recorder = rec.recorder
        try:
            recorder.flush(now)
        except OSError as exc:
            rec.failure = f"write failed: {exc.strerror or exc}"
            return rec.failure
        journal = rec.journal
        if journal is not None:
            written = recorder.written_until
            written_at = recorder.start + written / recorder.sample_rate
            journal.mark(written_at - REPLAY_MARGIN_S, written, recorder.frames)
            tracks = recorder.tracks
            for port, index in rec.tracks.items():
                track = tracks[index]
                placed = track.placement()
                if placed is not None:
                    received, lost = self._counted(rec, index, track)
                    journal.note(port, now, PLACED, PLACEMENT.pack(*placed, received, lost))
            with contextlib.suppress(OSError):
                journal.sync()
        return None

    def flush(self, now: float) -> list[str]:
        return [key for key in list(self.recordings) if self.flush_one(key, now) is not None]

    def close(self, key: str, at: float) -> RecordingResult:
        """Write up to ``at`` and finish the file; raises OSError when it cannot be written."""
        rec = self.recordings.pop(key)
        if rec.failure is not None:
            rec.recorder.abort()
            self._drop_journal(rec, keep=False)
            raise OSError(rec.failure)
        try:
            result = rec.recorder.close(at)
        except OSError as exc:
            self._drop_journal(rec, keep=False)
            raise OSError(f"write failed: {exc.strerror or exc}") from exc
        self._drop_journal(rec, keep=False)
        if rec.carried:
            streams = list(result.streams)
            for index, (received, lost) in rec.carried.items():
                stats = streams[index]
                streams[index] = dataclasses.replace(
                    stats,
                    packets_received=stats.packets_received + received,
                    packets_lost=stats.packets_lost + lost,
                )
            result = dataclasses.replace(result, streams=tuple(streams))
        return result

    def abort(self, key: str, *, keep_journal: bool = False) -> None:
        """Close the file as it is; ``keep_journal`` leaves the journal for a later replay."""
        rec = self.recordings.pop(key, None)
        if rec is not None:
            if keep_journal and self._unsaved.pop(id(rec), None) is not None:
                self._write_state(rec)
            rec.recorder.abort()
            self._drop_journal(rec, keep=keep_journal)

    def abort_all(self, *, keep_journal: bool = False) -> None:
        for key in list(self.recordings):
            self.abort(key, keep_journal=keep_journal)

    @staticmethod
    def _drop_journal(rec: _Recording, *, keep: bool) -> None:
        journal, rec.journal = rec.journal, None
        if journal is not None:
            journal.close(remove=False)
            if not keep:
                remove_files(rec.recorder.path)


def journal_supported(spec: RecorderSpec) -> bool:
    """Only a WAV mix can be continued after a crash (encoded formats cannot be appended to)."""
    extra = spec.extra
    return extra.get("output_format", "wav") == "wav" and not extra.get("per_stream", False)


def _resume_point(spec: RecorderSpec, contents: JournalContents | None) -> int:
    """Timeline samples the file holds: the journal's mark, plus frames written after it (a kill
    between a block's write and the journal's mark); without a journal, the file's frames."""
    channels = 2 if spec.extra.get("stereo") is not None else 1
    frames = repair_wav(spec.path).data_size // (2 * channels)
    if contents is None:
        return frames
    return contents.written + max(0, frames - contents.frames)


def _pending_replay(
    contents: JournalContents,
) -> tuple[Resumed, dict[int, list[JournalRecord]], dict[int, tuple[int, int, int, int, int, int]]]:
    """The journal's datagrams by port, and each port's newest placement note."""
    by_port: dict[int, list[JournalRecord]] = {}
    placements: dict[int, tuple[int, int, int, int, int, int]] = {}
    last: float | None = None
    count = 0
    for record in contents.records:
        if record.kind == PLACED:
            if len(record.data) == PLACEMENT.size:
                placements[record.port] = PLACEMENT.unpack(record.data)
            continue
        if record.kind != DATAGRAM:
            continue
        by_port.setdefault(record.port, []).append(record)
        last = record.arrival if last is None else max(last, record.arrival)
        count += 1
    return Resumed(contents.written, count, last, contents.torn), by_port, placements
