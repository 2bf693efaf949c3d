"""What the SIPREC user agent tells the layer above it.

The user agent (:mod:`srs.siprec.agent`) is sans-IO: it turns received SIP
bytes and the current time into these events plus bytes to send.  The
composition root reacts to them (binds ports, starts and stops recorders,
writes the index) and calls back into the user agent with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass

from srs.sdp.answer import NegotiatedStream
from srs.sdp.model import SessionDescription
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.metadata import RecordingMetadata


@dataclass(frozen=True, slots=True)
class SessionOffered:
    """An offer needs local ports before it can be answered.

    The layer above binds ``ports_needed`` new RTP ports (random even ports,
    consecutive where cheaply possible) and calls ``accept(session_id, ports, now)``, or
    ``reject(...)`` when it cannot.  For re-offers ``ports_needed`` counts only
    the m-lines beyond those already allocated: existing streams keep their ports.
    """

    session_id: str
    call_id: str
    source: Address
    transport: Transport
    offer: SessionDescription
    ports_needed: int
    initial: bool
    metadata: RecordingMetadata | None
    warnings: tuple[str, ...]
    from_uri: str
    to_uri: str


@dataclass(frozen=True, slots=True)
class SessionAnswered:
    """srs answers with this SDP: for an initial offer ``at`` starts the recording's timeline.

    For an initial offer it comes after the 2xx; for a re-offer just before it, so the layer above
    applies the new SDP (a new allowed RTP source) before the SBC can act on the answer."""

    session_id: str
    at: float
    streams: tuple[NegotiatedStream, ...]
    initial: bool
    local_address: str = ""
    """The address srs's answer told the SBC to send RTP to (its c= line)."""


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    """A new metadata version arrived; ``merged`` already applies a partial update."""

    session_id: str
    at: float
    update: RecordingMetadata
    merged: RecordingMetadata


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The recording session is over at ``at`` (BYE either way, CANCEL, timeout, expiry)."""

    session_id: str
    at: float
    reason: str
    answered: bool


@dataclass(frozen=True, slots=True)
class RequestRefused:
    """srs answered a request with an error; kept for logs and counters."""

    method: str
    status: int
    reason: str
    detail: str
    source: Address
    call_id: str | None


@dataclass(frozen=True, slots=True)
class LimitReached:
    """A per-call or per-source bound stopped something (``limit`` names which, for metrics);
    the request itself is refused (a :class:`RequestRefused` follows) or, for metadata carried
    by a session refresh, only the metadata is left out."""

    limit: str
    detail: str
    source: Address
    call_id: str | None


@dataclass(frozen=True, slots=True)
class MessageDropped:
    """Bytes that could not be answered at all (unparseable, or a stray response)."""

    detail: str
    source: Address


UaEvent = (
    Outgoing
    | SessionOffered
    | SessionAnswered
    | MetadataReceived
    | SessionEnded
    | RequestRefused
    | LimitReached
    | MessageDropped
)
