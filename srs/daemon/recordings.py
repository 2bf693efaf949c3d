"""Live recordings: what happens to media, files and the index as sessions come and go.

The SIPREC user agent says *what* happened to a session (offered, answered,
new metadata, ended); this module turns that into bound RTP ports, stream
tracks, a :class:`~srs.media.recorder.Recorder`, and index rows that move
forward only: starting → recording → stopping → available (or failed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from srs.daemon.finalize import Finalized, Output, failed_record, finalized, late_source_changes
from srs.daemon.labels import stream_label
from srs.daemon.logs import get_logger
from srs.media.channels import stereo_groups
from srs.media.rendering import DecoderFactory, PayloadFormat
from srs.media.report import StreamRecord
from srs.media.result import RecordingResult
from srs.mediaplane.contract import MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.inprocess import InProcessPlane, RtpReceiver
from srs.mediaplane.ports import PortAllocator, RtpPort
from srs.mediaplane.watch import MediaWatch, RtpTimeout, SourceChanged, WatchedStream, WatchEvent
from srs.sdp.answer import NegotiatedStream
from srs.sdp.redact import redact_keys
from srs.siprec.events import MetadataReceived, SessionAnswered, SessionEnded, SessionOffered
from srs.siprec.metadata import RecordingMetadata
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import (
    FinalizedRecording,
    NewRecording,
    Participant,
    SessionInfo,
    State,
    StreamInfo,
)
from srs.storage.write_behind import Soon

_MAX_WATCH_WARNINGS = 64
"""Warnings a recording collects at most (a source flapping between two allowed hosts adds one each time)."""


def _usable_ip(address: str) -> bool:
    """An IP literal srs can match a source against (not a host name, not 0.0.0.0/:: on hold)."""
    try:
        return not ipaddress.ip_address(address).is_unspecified
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """Plain values from the media section of the configuration."""

    reorder_window: float = 0.5
    pause_mode: str = "silence"
    relatch_after: float = 1.0
    output: str = "mono"
    """"mono", "stereo" (sides by RFC 7865 participant, else m-line order) or "per-stream"."""
    file_format: str = "wav"
    rtp_source: str = "sdp-address"
    """Who may send a stream: "sdp-address" (the m-line's c= host), "sip-peer" (the host the SIP
    request came from) or "any" (the first sender latches)."""
    no_media_warning: float = 5.0
    rtp_timeout: float = 60.0


@dataclass
class _StreamSlot:
    """One m-line of a session: its port, and the track currently fed from it."""

    port: RtpPort
    negotiated: NegotiatedStream | None = None
    has_track: bool = False
    codec_key: tuple[Any, ...] = ()
    sources: tuple[str, ...] | None = None
    remote: tuple[str | None, int] = (None, 0)
    expecting_since: float | None = None
    """When the current track started expecting media (for the no-media and RTP timeout checks)."""


@dataclass
class LiveSession:
    session_id: str
    recording_id: str
    call_id: str
    started_wall: float
    slots: list[_StreamSlot] = field(default_factory=list)
    opened: bool = False
    paused: bool = False
    metadata: RecordingMetadata | None = None
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None
    peer_host: str = ""
    """The host the SIP peer sent the session's INVITE from."""
    counters: tuple[tuple[int, int], ...] = ()
    """(received, lost) per stream as last written to the index."""


@dataclass(frozen=True, slots=True)
class Finished:
    """A session whose file is closed; the index is finalized by :meth:`LiveRecordings.publish`."""

    recording_id: str
    final: FinalizedRecording | None
    failure: str | None
    source_changes: tuple[SourceChanged, ...] = ()
    """Source changes the final statistics show that no activity report had shown (the call
    ended within a second or two of them): announced when the recording is published."""
    streams: tuple[StreamRecord, ...] = ()
    """Each stream's final figures (empty for a recording without a file)."""


class LiveRecordings:
    def __init__(
        self,
        *,
        index: RecordingIndex,
        layout: DataLayout,
        allocator: PortAllocator,
        receiver: RtpReceiver,
        decoder_factory: DecoderFactory,
        options: MediaOptions,
        wall_clock: Callable[[], float] = time.time,
        log: Any = None,
        plane: MediaPlane | None = None,
        write_behind: bool = True,
        soon: Soon | None = None,
    ) -> None:
        self.index = index
        self.layout = layout
        self.allocator = allocator
        self.receiver = receiver
        self.decoder_factory = decoder_factory
        self.options = options
        self.wall_clock = wall_clock
        self.log = log
        self.plane: MediaPlane = plane if plane is not None else InProcessPlane(receiver, decoder_factory)
        self.sessions: dict[str, LiveSession] = {}
        self.watch = MediaWatch(options.no_media_warning, options.rtp_timeout)
        if write_behind:
            # The index rows of a call are written by the index writer process, batched, so SQLite
            # never holds up SIP on the loop (nor takes its interpreter lock).
            # ``soon`` (the loop's call_soon) sends a loop turn's writes as one message.
            index.start_write_behind(self._index_write_failed, soon)

    def _index_write_failed(self, what: str, exc: BaseException) -> None:
        """From the index writer's listener thread: a queued write that could not be committed."""
        log = self.log if self.log is not None else get_logger("srs")
        log.error("index_write_failed", write=what, error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------- offers
    def offered(self, event: SessionOffered, now: float) -> list[int] | None:
        """Bind ports for an offer; returns them, or None when none are free."""
        ports = self.allocator.allocate(event.ports_needed)
        if ports is None:
            return None
        if event.initial:
            started = self.wall_clock()
            recording_id = self.index.create_recording(
                NewRecording(
                    started_at=started,
                    sip_call_id=event.call_id,
                    source=str(event.source),
                    call_recording_id=event.metadata.call_recording_id if event.metadata else None,
                )
            )
            session = LiveSession(event.session_id, recording_id, event.call_id, started)
            session.warnings.extend(redact_keys(w) for w in event.warnings)
            self.sessions[event.session_id] = session
        else:
            session = self.sessions[event.session_id]
            session.warnings.extend(
                w for w in map(redact_keys, event.warnings) if w not in session.warnings
            )
        session.peer_host = event.source.host
        session.slots.extend(_StreamSlot(port) for port in ports)
        for port in ports:
            self.plane.attach(session.session_id, port)
        return [p.port for p in ports]

    # ------------------------------------------------------------- answers
    def answered(self, event: SessionAnswered) -> None:
        session = self.sessions.get(event.session_id)
        if session is None:
            return
        at = event.at
        key = session.session_id
        if event.initial and not session.opened:
            path = self.layout.new_recording_path(session.recording_id, session.started_wall)
            self.layout.make_dirs(path.parent)
            extra = self._recorder_extra(session, event)
            self.plane.open(
                key,
                RecorderSpec(
                    str(path),
                    at,
                    reorder_window=self.options.reorder_window,
                    pause_mode="cut" if self.options.pause_mode == "cut" else "silence",
                    extra=extra,
                ),
            )
            session.opened = True
            self.index.advance_state(session.recording_id, State.RECORDING)
        if not session.opened:
            return
        sending = False
        for stream in event.streams:
            if stream.index >= len(session.slots):
                continue
            slot = session.slots[stream.index]
            self._apply_stream(session, slot, stream, at)
            sending = sending or stream.receives
        if sending and session.paused:
            self.plane.resume(key, at)
            session.paused = False
        elif not sending and not session.paused:
            self.plane.pause(key, at)
            session.paused = True
        self.watch.arm(key, self._watched(session, event.local_address))
        self.index.update_streams(session.recording_id, self._stream_infos(session))

    def _watched(self, session: LiveSession, local_address: str) -> list[WatchedStream]:
        host = local_address or self.allocator.bind_host
        host = f"[{host}]" if ":" in host else host
        watched = []
        for slot in session.slots:
            stream = slot.negotiated
            if stream is None or slot.expecting_since is None:
                continue
            label = stream_label(stream)
            watched.append(
                WatchedStream(
                    slot.port.port, label, stream.receives, slot.expecting_since, f"{host}:{slot.port.port}"
                )
            )
        return watched

    def _allowed_sources(self, session: LiveSession, stream: NegotiatedStream) -> tuple[str, ...] | None:
        """The hosts that may send ``stream`` under ``rtp_source`` (None: the first sender latches).

        "sdp-address" matches the host of the m-line's c= address, not its port: the m= port says
        where the SBC receives, and RFC 4961 symmetric RTP, though usual, is not required (SRCs
        that send from another port are common). A c= that is not an IP address (a host name, or
        0.0.0.0 on hold) falls back to the SIP peer's host, with a warning.
        """
        mode = self.options.rtp_source
        if mode == "any":
            return None
        if mode == "sdp-address":
            address = stream.remote_address
            if address is not None and _usable_ip(address):
                return (address,)
            if address is not None and stream.receives:
                warning = (
                    f"stream {stream_label(stream)}: SDP address {address!r} is not a usable IP "
                    f"address; accepting RTP from the SIP peer {session.peer_host}"
                )
                if warning not in session.warnings:
                    session.warnings.append(warning)
        return (session.peer_host,) if session.peer_host else None

    def _apply_stream(
        self, session: LiveSession, slot: _StreamSlot, stream: NegotiatedStream, at: float
    ) -> None:
        previous = slot.negotiated
        slot.negotiated = stream
        key = session.session_id
        port = slot.port.port
        if stream.refused:
            if slot.has_track:
                self.plane.set_stream(key, port, None, at)
                slot.has_track = False
            slot.expecting_since = None
            return
        if not stream.receives:
            slot.expecting_since = None
        elif slot.expecting_since is None or previous is None or not previous.receives:
            slot.expecting_since = at
        sources = self._allowed_sources(session, stream)
        remote = (stream.remote_address, stream.remote_port)
        codec_key = (
            tuple(sorted((pt, c.encoding, c.clock_rate) for pt, c in stream.codecs.items())),
            stream.telephone_event_pt,
            stream.cn_pt,
            stream.crypto_offer.key_params if stream.crypto_offer else None,
        )
        if slot.has_track and codec_key == slot.codec_key:
            # the same track goes on; new SDP naming another address (an SBC failover) may move
            # its source, a refresh or hold/resume with the same address opens nothing
            if sources != slot.sources or remote != slot.remote:
                self.plane.relatch(key, port, sources)
                slot.sources, slot.remote = sources, remote
            return
        formats = {
            pt: PayloadFormat(c.encoding, c.clock_rate, c.channels, c.fmtp) for pt, c in stream.codecs.items()
        }
        if stream.telephone_event_pt is not None:
            formats[stream.telephone_event_pt] = PayloadFormat("telephone-event", 8000)
        if stream.cn_pt is not None:
            formats[stream.cn_pt] = PayloadFormat("CN", 8000)
        crypto = stream.crypto_offer
        spec = StreamSpec(
            formats,
            label=stream_label(stream),
            relatch_after=self.options.relatch_after,
            srtp=(crypto.suite, crypto.key_params) if crypto is not None else None,
            sources=sources,
        )
        self.plane.set_stream(key, port, spec, at)
        slot.has_track = True
        slot.codec_key = codec_key
        slot.sources, slot.remote = sources, remote
        if stream.receives:
            slot.expecting_since = at  # a new track: its own wait for a first packet

    def _recorder_extra(self, session: LiveSession, event: SessionAnswered) -> dict[str, Any]:
        """Output options for one recording; the stereo split needs its streams and metadata."""
        extra: dict[str, Any] = {}
        if self.options.file_format != "wav":
            extra["output_format"] = self.options.file_format
        if self.options.output == "per-stream":
            extra["per_stream"] = True
        elif self.options.output == "stereo":
            labels = [stream_label(s) for s in event.streams if not s.refused]
            participants = session.metadata.participants if session.metadata is not None else None
            extra["stereo"] = stereo_groups(labels, participants)
        return extra

    # ------------------------------------------------------------- metadata
    def metadata(self, event: MetadataReceived) -> None:
        session = self.sessions.get(event.session_id)
        if session is None:
            return
        session.metadata = event.merged
        merged = event.merged
        self.index.add_metadata_version(session.recording_id, self.wall_clock(), event.update.raw)
        self.index.set_metadata(
            session.recording_id,
            merged.call_recording_id,
            [Participant(p.id, p.aor, p.name, tuple(p.send), tuple(p.recv)) for p in merged.participants],
            self._stream_infos(session),
            list(merged.extensions),
            [
                SessionInfo(s.id, tuple(s.sip_session_ids), s.start_time, s.stop_time, s.group)
                for s in merged.sessions
            ],
        )
        for warning in event.update.warnings:
            if warning not in session.warnings:
                session.warnings.append(warning)

    def _stream_infos(self, session: LiveSession) -> list[StreamInfo]:
        infos: list[StreamInfo] = []
        ids = {}
        if session.metadata is not None:
            ids = {s.label: s.id for s in session.metadata.streams if s.label is not None}
        for slot in session.slots:
            stream = slot.negotiated
            if stream is None or stream.refused:
                continue
            label = stream_label(stream)
            codec = next(iter(stream.codecs.values()), None)
            received = lost = 0
            if slot.has_track:
                received = self.plane.packets_received(session.session_id, slot.port.port)
                lost = self.plane.packets_lost(session.session_id, slot.port.port)
            infos.append(
                StreamInfo(
                    label=label,
                    stream_id=ids.get(label),
                    codec=codec.encoding if codec else None,
                    packets_received=received,
                    packets_lost=lost,
                )
            )
        return infos

    # ------------------------------------------------------------- media watch
    def check_media(self) -> list[WatchEvent]:
        """Events due by the plane's latest activity report (no media, RTP timeout, source change);
        each also becomes a warning of the recording."""
        taken_at, activity = self.plane.activity()
        events = self.watch.check(taken_at, activity)
        for event in events:
            session = self.sessions.get(event.key)
            if session is None:
                continue
            warning = event.reason() if isinstance(event, RtpTimeout) else event.message()
            if warning not in session.warnings and len(session.warnings) < _MAX_WATCH_WARNINGS:
                session.warnings.append(warning)
        return events

    def refresh_counters(self) -> int:
        """Write the live calls' packet counters to the index (for the API while they last); only
        sessions whose figures moved are written. Returns how many were."""
        written = 0
        for session in self.sessions.values():
            if not session.opened:
                continue
            infos = self._stream_infos(session)
            figures = tuple((i.packets_received, i.packets_lost) for i in infos)
            if figures != session.counters:
                session.counters = figures
                self.index.update_streams(session.recording_id, infos)
                written += 1
        return written

    # ------------------------------------------------------------- watching
    def snapshot(self) -> list[dict[str, Any]]:
        """The calls being recorded now, for the live view: plain values, read on the loop.

        Packet counts come from the plane; worker processes report theirs once per flush cycle, so
        their figures are up to a flush interval old.
        """
        calls = []
        for session in self.sessions.values():
            metadata = session.metadata
            streams = []
            for slot in session.slots:
                stream = slot.negotiated
                if stream is None or stream.refused:
                    continue
                codec = next(iter(stream.codecs.values()), None)
                received = (
                    self.plane.packets_received(session.session_id, slot.port.port) if slot.has_track else 0
                )
                streams.append({
                    "label": stream_label(stream),
                    "codec": codec.encoding if codec else None,
                    "packets_received": received,
                })
            calls.append({
                "id": session.recording_id,
                "sip_call_id": session.call_id,
                "call_recording_id": metadata.call_recording_id if metadata is not None else None,
                "participants": [
                    {"name": p.name, "aor": p.aor} for p in (metadata.participants if metadata else ())
                ],
                "started_at": session.started_wall,
                "paused": session.paused,
                "streams": streams,
            })
        return calls

    # ------------------------------------------------------------- flushing
    def flush(self, now: float) -> list[str]:
        """Write what is due (the in-process plane) and return sessions whose file failed."""
        failed: list[str] = []
        for key in self.plane.flush(now):
            session = self.sessions.get(key)
            if session is not None and session.failure is None:
                session.failure = "write failed"
                failed.append(key)
        return failed

    # ------------------------------------------------------------- ending
    def end(self, event: SessionEnded) -> Awaitable[Finished] | None:
        """Stop receiving and close the file up to ``event.at``; the result arrives when the plane is done.

        Ports are released at once; the index moves to ``stopping`` now and to ``available`` (or
        ``failed``) in :meth:`publish`.
        """
        session = self.sessions.pop(event.session_id, None)
        if session is None:
            return None
        key = session.session_id
        reported = self.watch.forget(key)
        for slot in session.slots:
            self.plane.detach(key, slot.port)
            self.allocator.release(slot.port)
        ended_wall = self.wall_clock()
        if not session.opened:
            reason = "cancelled before answer" if event.reason == "cancelled" else event.reason
            return _ready(Finished(session.recording_id, None, reason))
        self.index.advance_state(session.recording_id, State.STOPPING)
        if session.failure is not None:
            self.plane.abort(key)
            return _ready(Finished(session.recording_id, None, session.failure))
        closing = self.plane.close(key, event.at)
        return self._after_close(session, closing, ended_wall, event, reported)

    async def _after_close(
        self,
        session: LiveSession,
        closing: asyncio.Future[RecordingResult],
        ended_wall: float,
        event: SessionEnded,
        reported: dict[str, int],
    ) -> Finished:
        try:
            result = await closing
        except OSError as exc:
            return Finished(session.recording_id, None, str(exc) or "write failed")
        late = late_source_changes(session.session_id, result.streams, reported)
        for change in late:
            if change.message() not in session.warnings:
                session.warnings.append(change.message())
        done = self._finalized(session, result, ended_wall, event)
        return Finished(session.recording_id, done.record, None, late, done.streams)

    def _finalized(
        self, session: LiveSession, result: RecordingResult, ended_wall: float, event: SessionEnded
    ) -> Finalized:
        dropped = self.plane.srtp_dropped(session.session_id)
        srtp_by_label = {
            stream_label(slot.negotiated): dropped[slot.port.port]
            for slot in session.slots
            if slot.negotiated is not None and slot.port.port in dropped
        }
        done = finalized(
            result,
            warnings=session.warnings,
            ended_wall=ended_wall,
            end_reason=event.reason,
            srtp_by_label=srtp_by_label,
            interruptions=self.plane.interruptions(session.session_id),
            output=Output(self.options.file_format, 2 if self.options.output == "stereo" else 1),
        )
        self.index.update_streams(session.recording_id, done.infos)
        return done

    def publish(self, finished: Finished) -> None:
        """Write the final index row: available (or failed with the reason)."""
        final = finished.final or failed_record(finished.failure, self.wall_clock())
        self.index.finalize(finished.recording_id, final)


class _Ready:
    """An awaitable that is already done (no event loop needed to create it)."""

    def __init__(self, value: Finished) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Finished]:
        return self.value
        yield  # pragma: no cover - makes this a generator


def _ready(value: Finished) -> _Ready:
    return _Ready(value)
