"""Finalization: what a recording's index row says once its file is closed, failed or repaired.

Three outcomes, one builder each: a finished call (:func:`finalized`, its per-stream figures
through :class:`srs.media.report.StreamRecord`), a failed one (:func:`failed_record`), and one a
crash interrupted (:func:`repair_unfinished`, at the next start, its duration read from the
file's own format header).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srs.errors import SrsError
from srs.media.rendering import DecoderFactory
from srs.media.report import StreamRecord
from srs.media.result import RecordingResult
from srs.media.statistics import StreamStats
from srs.media.wavfile import repair_wav
from srs.mediaplane.recovery import recover_recording
from srs.mediaplane.watch import SourceChanged
from srs.storage.errors import InvalidStateTransition
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import DtmfEvent, FinalizedRecording, State, StreamInfo

RESTART_REASON = "srs stopped while recording; file repaired at restart"


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def failed_record(reason: str | None, ended_at: float) -> FinalizedRecording:
    """The row of a recording that has no file to show: state failed, with why."""
    return FinalizedRecording(
        ended_at=ended_at,
        duration_ms=0,
        file_path=None,
        file_size=None,
        sha256=None,
        incomplete=True,
        incomplete_reason=reason,
        state=State.FAILED,
    )


@dataclass(frozen=True, slots=True)
class Finalized:
    """A closed recording: its final row (hash still to compute), its streams' figures, and the
    stream rows to write before it."""

    record: FinalizedRecording
    streams: tuple[StreamRecord, ...]
    infos: list[StreamInfo]


@dataclass(frozen=True, slots=True)
class Output:
    """How the daemon writes files (``[media] format`` and ``output``)."""

    file_format: str = "wav"
    channels: int = 1


def finalized(
    result: RecordingResult,
    *,
    warnings: Sequence[str],
    ended_wall: float,
    end_reason: str,
    srtp_by_label: Mapping[str, int],
    interruptions: Sequence[dict[str, Any]],
    output: Output,
) -> Finalized:
    """The row of a recording whose file the media plane closed."""
    notes = list(warnings) + list(result.warnings)
    notes.extend(_interruption_warning(gap) for gap in interruptions)
    streams = tuple(StreamRecord(stats, srtp_by_label.get(stats.label, 0)) for stats in result.streams)
    for stream in streams:
        notes.extend(stream.warnings())
    labels = [stats.label for stats in result.streams]
    dtmf = [
        DtmfEvent(labels[i] if i < len(labels) else str(i), e.digit, e.offset_ms, e.duration_ms)
        for i, e in result.dtmf
    ]
    by_label = {stream.label: stream.to_json() for stream in streams}
    infos = [
        StreamInfo(
            label=s.label, packets_received=s.stats.packets_received, packets_lost=s.stats.packets_lost,
            stats=by_label[s.label],
        )
        for s in streams
    ]
    record = FinalizedRecording(
        ended_at=ended_wall,
        duration_ms=result.duration_ms,
        file_path=result.path,
        file_size=os.path.getsize(result.path),
        sha256=None,
        warnings=notes,
        completeness={
            "end_reason": end_reason,
            "paused_ms": result.paused_ms,
            "pauses": [list(p) for p in result.pauses],
            "streams": by_label,
            **({"interruptions": list(interruptions)} if interruptions else {}),
        },
        dtmf=dtmf,
        file_format=output.file_format,
        channels=output.channels,
    )
    return Finalized(record, streams, infos)


def late_source_changes(
    key: str, streams: Sequence[StreamStats], reported: Mapping[str, int]
) -> tuple[SourceChanged, ...]:
    """Source changes the final statistics show that no activity report had shown (the call
    ended within a second or two of them): ``reported`` is how many the watch announced per label."""
    return tuple(
        SourceChanged(
            key,
            stats.label,
            stats.sources[-2] if len(stats.sources) > 1 else None,
            stats.source,
            stats.relatches,
        )
        for stats in streams
        if stats.source is not None and stats.relatches > reported.get(stats.label, 0)
    )


def _interruption_warning(gap: Mapping[str, Any]) -> str:
    resumed = f" at {gap['resumed_at_ms'] / 1000:.1f} s" if "resumed_at_ms" in gap else ""
    return (
        f"{gap['reason']} at {gap['at_ms'] / 1000:.1f} s;"
        f" the recording went on from its crash journal{resumed}"
    )


def repair_unfinished(
    index: RecordingIndex,
    layout: DataLayout,
    node: str,
    log: Any,
    decoder_factory: DecoderFactory,
    wall_clock: Callable[[], float] = time.time,
) -> int:
    """Recordings a crash left in starting/recording/stopping become available, marked incomplete.

    Only this node's: on a shared index the other nodes' running calls are theirs.
    """
    repaired = 0
    for recording_id in index.unfinished(node=node):
        row = index.get(recording_id) or {}
        started = float(row.get("started_at") or wall_clock())
        path = layout.recording_path(recording_id, started)
        if path.exists():
            final = repaired_record(recording_id, path, started, log, decoder_factory, wall_clock)
        else:
            final = failed_record("srs stopped before any audio was written", wall_clock())
        try:
            index.finalize(recording_id, final)
        except InvalidStateTransition as exc:
            # finished meanwhile by the index writer of the daemon that died (it commits what it
            # was sent before it exits): that outcome is the true one, keep it
            log.info("repair_skipped", recording=recording_id, reason=str(exc))
            continue
        repaired += 1
    return repaired


def repaired_record(
    recording_id: str,
    path: Path,
    started: float,
    log: Any,
    decoder_factory: DecoderFactory,
    wall_clock: Callable[[], float] = time.time,
) -> FinalizedRecording:
    """Replay the crash journal into the file, fix its header, and describe what it now holds.

    The duration comes from the file's own format (its byte rate): a stereo or wide-band file
    holds fewer seconds per byte than 8 kHz mono.
    """
    reason = RESTART_REASON
    try:
        recovered = recover_recording(path, decoder_factory)
    except (OSError, ValueError, SrsError) as exc:  # the file is repaired as it is
        log.warning("journal_replay_failed", recording=recording_id, error=str(exc))
        recovered = None
    if recovered is not None:
        reason += f"; {recovered.recovered_ms} ms replayed from the crash journal"
        log.info(
            "journal_replayed",
            recording=recording_id,
            packets=recovered.replayed,
            recovered_ms=recovered.recovered_ms,
            torn=recovered.torn,
        )
    try:
        result = repair_wav(path)
    except (OSError, ValueError) as exc:
        return failed_record(f"repair failed after restart: {exc}", wall_clock())
    duration_ms = result.duration_ms
    return FinalizedRecording(
        ended_at=started + duration_ms / 1000,
        duration_ms=duration_ms,
        file_path=str(path),
        file_size=path.stat().st_size,
        sha256=file_sha256(path),
        incomplete=True,
        incomplete_reason=reason,
        warnings=["recording interrupted by a restart"],
    )
