"""Plain values passed into and out of the recording index."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class State(enum.StrEnum):
    STARTING = "starting"
    RECORDING = "recording"
    STOPPING = "stopping"
    AVAILABLE = "available"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (State.AVAILABLE, State.FAILED)


_ORDER = {State.STARTING: 0, State.RECORDING: 1, State.STOPPING: 2, State.AVAILABLE: 3}
UNFINISHED_STATES = (State.STARTING, State.RECORDING, State.STOPPING)


def transition_allowed(current: State, requested: State) -> bool:
    """Forward only: starting → recording → stopping → available (steps may be skipped), or → failed
    from any non-final state. Re-asserting the current state is a no-op and allowed."""
    if current == requested:
        return True
    if current.is_final:
        return False
    if requested == State.FAILED:
        return True
    return _ORDER[requested] > _ORDER[current]


@dataclass(frozen=True)
class NewRecording:
    started_at: float
    sip_call_id: str | None = None
    source: str | None = None
    call_recording_id: str | None = None
    tenant: str | None = None
    state: State = State.STARTING
    file_format: str = "wav"
    sample_rate: int = 8000
    channels: int = 1


@dataclass(frozen=True)
class Participant:
    participant_id: str
    aor: str | None = None
    name: str | None = None
    send: Sequence[str] = ()
    recv: Sequence[str] = ()


@dataclass(frozen=True)
class SessionInfo:
    """One recorded communication session of the metadata (RFC 7865 section 6.3)."""

    session_id: str
    sip_session_ids: Sequence[str] = ()
    start_time: str | None = None
    stop_time: str | None = None
    group_id: str | None = None


@dataclass(frozen=True)
class StreamInfo:
    label: str
    stream_id: str | None = None
    codec: str | None = None
    packets_received: int = 0
    packets_lost: int = 0
    stats: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DtmfEvent:
    label: str
    digit: str
    offset_ms: int
    duration_ms: int


@dataclass(frozen=True)
class FinalizedRecording:
    ended_at: float
    duration_ms: int
    file_path: str | None
    file_size: int | None
    sha256: str | None
    file_format: str = "wav"
    sample_rate: int = 8000
    channels: int = 1
    incomplete: bool = False
    incomplete_reason: str | None = None
    warnings: Sequence[str] = ()
    completeness: Mapping[str, Any] = field(default_factory=dict)
    dtmf: Sequence[DtmfEvent] = ()
    state: State = State.AVAILABLE


@dataclass(frozen=True)
class RecordingFilter:
    """Every field narrows the result; ``None`` means "any".

    ``start``/``end`` bound ``started_at`` as [start, end). ``participant`` is a substring of a
    participant's AOR or name. Durations are in milliseconds. ``extensions`` are exact key=value pairs,
    all of which must match.
    """

    state: State | None = None
    start: float | None = None
    end: float | None = None
    call_recording_id: str | None = None
    participant: str | None = None
    sip_call_id: str | None = None
    source: str | None = None
    node: str | None = None
    min_duration_ms: int | None = None
    max_duration_ms: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()
    ids: tuple[str, ...] | None = None
    oldest_first: bool = False


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    pages: int
    current: int
    max: int | None
