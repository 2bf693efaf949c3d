"""RTP that never comes, stops, or changes source: decisions from per-stream activity (sans-IO).

The media plane reports, per live track, how many packets were accepted, when the last one
arrived, which address it is latched to and which addresses were refused
(:class:`~srs.media.track.StreamActivity`). This module turns successive reports and the times
streams were answered into events for the composition root:

* :class:`NoMedia`: a stream the SBC should send on (sendonly/sendrecv) has had no accepted packet
  ``no_media_after`` seconds after its answer. It names the address srs listens on and any address
  that sent to the port but was refused: the usual NAT or wrong-source diagnosis.
* :class:`RtpTimeout`: no packet on any stream expected to send for ``timeout`` seconds (0 turns it
  off). Held or inactive streams do not count, and a call with none expected never times out:
  a BYE that was lost should not leave a call recording silence for a day, a call on hold should
  not be cut.
* :class:`SourceChanged`: a track moved to another source address (allowed by the signalling).

Reports may be late (a worker answers once per poll), so every decision uses the time the report
was taken, never the current time: a stale report can delay an event, not invent one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from srs.media.track import ActivityTuple, StreamActivity


@dataclass(frozen=True, slots=True)
class WatchedStream:
    """One answered m-line as the watch sees it."""

    port: int
    label: str
    expects_media: bool
    """The SBC's direction says it sends (sendonly/sendrecv) and the stream is not refused."""
    since: float
    """When the current track started expecting media (the answer that set it up or re-activated it)."""
    listen: str
    """``host:port`` srs answered for this stream (where the SBC should send)."""


@dataclass(frozen=True, slots=True)
class NoMedia:
    key: str
    label: str
    listen: str
    waited: float
    refused: tuple[tuple[str, int], ...]
    """(address, packets) that sent to the port but were not accepted as this stream's source."""

    def message(self) -> str:
        text = (
            f"stream {self.label}: no RTP {self.waited:.0f} s after the answer (srs listens on {self.listen})"
        )
        if self.refused:
            senders = ", ".join(f"{address} ({count} packets)" for address, count in self.refused)
            text += f"; refused packets from {senders}: not the address the SDP or SIP peer allows"
        return text


@dataclass(frozen=True, slots=True)
class SourceChanged:
    key: str
    label: str
    previous: str | None
    current: str
    changes: int

    def message(self) -> str:
        return f"stream {self.label}: RTP source changed from {self.previous} to {self.current}"


@dataclass(frozen=True, slots=True)
class RtpTimeout:
    key: str
    idle: float
    """The silence measured (read from activity reports up to a second old, so above ``timeout``)."""
    timeout: float

    def reason(self) -> str:
        """Names the configured timeout, which the operator set and looks for, not the measurement."""
        return f"rtp timeout: no RTP for {self.timeout:g} s"


WatchEvent = NoMedia | SourceChanged | RtpTimeout


@dataclass
class _StreamState:
    stream: WatchedStream
    warned: bool = False
    changes: int = 0
    source: str | None = None


@dataclass
class _SessionState:
    streams: dict[int, _StreamState] = field(default_factory=dict)
    timed_out: bool = False


class MediaWatch:
    """Per-session deadlines for media, fed by activity reports; holds nothing but small per-stream state."""

    def __init__(self, no_media_after: float, timeout: float) -> None:
        self.no_media_after = no_media_after
        self.timeout = timeout
        self._sessions: dict[str, _SessionState] = {}

    def __len__(self) -> int:
        return len(self._sessions)

    def arm(self, key: str, streams: Sequence[WatchedStream]) -> None:
        """The session's streams after an answer; a stream keeps its state while its track lives on."""
        state = self._sessions.setdefault(key, _SessionState())
        old = state.streams
        state.streams = {}
        for stream in streams:
            previous = old.get(stream.port)
            if previous is not None and previous.stream.since == stream.since:
                previous.stream = stream
                state.streams[stream.port] = previous
            else:
                state.streams[stream.port] = _StreamState(stream)

    def forget(self, key: str) -> dict[str, int]:
        """Stop watching ``key``; returns the source changes already reported, by stream label
        (changes in the last second of a call are only seen in its final statistics)."""
        state = self._sessions.pop(key, None)
        if state is None:
            return {}
        return {entry.stream.label: entry.changes for entry in state.streams.values()}

    def check(self, taken_at: float, activity: Mapping[str, Mapping[int, ActivityTuple]]) -> list[WatchEvent]:
        """Events due by a report taken at ``taken_at``; each is raised once."""
        events: list[WatchEvent] = []
        for key, state in self._sessions.items():
            tracks = activity.get(key, {})
            last_heard: float | None = None
            for port, entry in state.streams.items():
                stream = entry.stream
                raw = tracks.get(port)
                seen = StreamActivity._make(raw) if raw is not None else None
                if seen is not None and seen.source_changes > entry.changes and seen.source is not None:
                    # one change since the last report: the track knows what it replaced; several:
                    # the last source a report showed is the one the call moved away from
                    single = seen.source_changes == entry.changes + 1 or entry.source is None
                    previous = seen.previous_source if single else entry.source
                    events.append(
                        SourceChanged(key, stream.label, previous, seen.source, seen.source_changes)
                    )
                    entry.changes = seen.source_changes
                if seen is not None and seen.source is not None:
                    entry.source = seen.source
                if not stream.expects_media or taken_at < stream.since:
                    continue  # the report predates this stream's answer: it cannot tell
                received = seen.packets_received if seen is not None else 0
                if (
                    not entry.warned
                    and received == 0
                    and self.no_media_after > 0
                    and taken_at - stream.since >= self.no_media_after
                ):
                    entry.warned = True
                    refused = seen.rejected_sources if seen is not None else ()
                    events.append(NoMedia(key, stream.label, stream.listen, taken_at - stream.since, refused))
                heard = stream.since
                if seen is not None and seen.last_packet_at is not None:
                    heard = max(heard, seen.last_packet_at)
                last_heard = heard if last_heard is None else max(last_heard, heard)
            if (
                self.timeout > 0
                and not state.timed_out
                and last_heard is not None
                and taken_at - last_heard >= self.timeout
            ):
                state.timed_out = True
                events.append(RtpTimeout(key, taken_at - last_heard, self.timeout))
        return events
