"""What a live listener is told about a call, from the daemon's state of its session."""

from __future__ import annotations

from collections.abc import Iterable

from srs.daemon.recordings import LiveSession
from srs.media.channels import stereo_groups
from srs.service.live_formats import CallInfo


def session_labels(session: LiveSession) -> tuple[str, ...]:
    labels = []
    for i, slot in enumerate(session.slots):
        stream = slot.negotiated
        if stream is None or stream.refused:
            continue
        labels.append(stream.label if stream.label is not None else str(i + 1))
    return tuple(labels)


def call_info(session: LiveSession, source: str = "") -> CallInfo:
    labels = session_labels(session)
    meta = session.metadata
    participants = tuple(meta.participants) if meta is not None else ()
    left, right = stereo_groups(labels, participants or None)
    return CallInfo(
        key=session.session_id,
        recording_id=session.recording_id,
        call_recording_id=meta.call_recording_id if meta is not None else None,
        sip_call_id=session.call_id,
        source=source,
        labels=labels,
        participants=tuple(
            {"id": p.id, "aor": p.aor, "name": p.name, "send": list(p.send)} for p in participants
        ),
        sides=(tuple(labels[i] for i in left), tuple(labels[i] for i in right)),
        extensions=tuple(f"{name}:{value}" for name, value in meta.extensions) if meta is not None else (),
    )


def find_session(sessions: Iterable[LiveSession], wanted: str) -> LiveSession | None:
    """An opened session by recording id or call-recording-id."""
    for session in sessions:
        if not session.opened:
            continue
        meta = session.metadata
        if session.recording_id == wanted or (meta is not None and meta.call_recording_id == wanted):
            return session
    return None
