"""What a live listener is told about a call, from the daemon's state of its session."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from srs.daemon.labels import stream_label
from srs.daemon.recordings import LiveSession
from srs.media.channels import stereo_groups
from srs.service.live_formats import CallInfo


def session_labels(session: LiveSession) -> tuple[str, ...]:
    labels = []
    for slot in session.slots:
        stream = slot.negotiated
        if stream is None or stream.refused:
            continue
        labels.append(stream_label(stream))
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


class CallDirectory:
    """The calls live listeners and push targets can ask for, described from the live sessions
    and the SBC address each came from (for ``[live] targets`` filters), until it ends."""

    def __init__(self, sessions: Mapping[str, LiveSession]) -> None:
        self.sessions = sessions
        self.sources: dict[str, str] = {}

    def info(self, session: LiveSession) -> CallInfo:
        return call_info(session, self.sources.get(session.session_id, ""))

    def describe(self, wanted: str) -> CallInfo | None:
        session = find_session(self.sessions.values(), wanted)
        return self.info(session) if session is not None else None

    def opened(self, session_id: str) -> CallInfo | None:
        session = self.sessions.get(session_id)
        return self.info(session) if session is not None and session.opened else None
