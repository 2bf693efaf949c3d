"""Event dispatch: what the daemon does with each event the SIP user agent and the media watch emit.

One table from event type to handler (as aioquic dispatches frames): a new event type without a
handler is a ``KeyError`` at the first such event and a failing unit test before that, never a
silent fall-through of an ``isinstance`` chain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from srs.daemon.alerts import Announce, MediaAlerts
from srs.daemon.live_info import CallDirectory
from srs.daemon.metrics import DaemonMetrics
from srs.daemon.publish import Publisher
from srs.daemon.recordings import LiveRecordings
from srs.mediaplane.watch import NoMedia, RtpTimeout, SourceChanged, WatchEvent
from srs.net.sip_edge import SipEdge
from srs.service.live_hub import LiveHub
from srs.service.live_push import LivePusher
from srs.sip.routing import Outgoing
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import (
    LimitReached,
    MessageDropped,
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
    UaEvent,
)
from srs.siprec.offers import SDES_IN_CLEAR

Pending = list[UaEvent]
"""Events still to handle in this turn; a handler appends what its own actions produce."""
_COUNTERS_EVERY_S = 5.0
"""How often live calls' packet counters are written to the index."""
_MEDIA_WATCH_PERIOD_S = 1.0
"""How often per-stream activity is collected (bounds how late a no-media warning or RTP timeout fires)."""


_UA_HANDLERS: dict[type, str] = {
    Outgoing: "_send",
    SessionOffered: "_offered",
    SessionAnswered: "_answered",
    MetadataReceived: "_metadata",
    SessionEnded: "_ended",
    RequestRefused: "_refused",
    LimitReached: "_limit_reached",
    MessageDropped: "_dropped",
}
"""Event type -> handler method of :class:`Dispatcher`; each handler takes the event and the
list of events still pending in this turn."""
_MEDIA_HANDLERS: dict[type, str] = {
    NoMedia: "_no_media",
    SourceChanged: "_source_changed",
    RtpTimeout: "_rtp_timeout",
}
"""Media watch event type -> handler method; each takes the event and the recording's id."""


class Dispatcher:
    """Handles the user agent's events in order, then re-arms the user agent's timer."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        ua: SiprecUserAgent,
        edge: SipEdge,
        live: LiveRecordings,
        metrics: DaemonMetrics,
        log: Any,
        disk_low: Callable[[], bool],
        announce: Announce,
        alerts: MediaAlerts,
        publisher: Publisher,
        calls: CallDirectory,
        hub: LiveHub,
        pusher: LivePusher,
    ) -> None:
        self.loop = loop
        self.ua = ua
        self.edge = edge
        self.live = live
        self.metrics = metrics
        self.log = log
        self.disk_low = disk_low
        self.announce = announce
        self.alerts = alerts
        self.publisher = publisher
        self.calls = calls
        self.hub = hub
        self.pusher = pusher
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.ua_handlers: dict[type, Callable[[Any, Pending], None]] = {
            kind: getattr(self, name) for kind, name in _UA_HANDLERS.items()
        }
        self.media_handlers: dict[type, Callable[[Any, str], None]] = {
            kind: getattr(self, name) for kind, name in _MEDIA_HANDLERS.items()
        }

    @staticmethod
    def ua_event_types() -> tuple[type, ...]:
        """The user agent's event types this dispatcher handles."""
        return tuple(_UA_HANDLERS)

    @staticmethod
    def media_event_types() -> tuple[type, ...]:
        """The media watch's event types this dispatcher handles."""
        return tuple(_MEDIA_HANDLERS)

    # ----------------------------------------------------------- the user agent's events
    def handle(self, events: list[UaEvent]) -> None:
        pending = list(events)
        while pending:
            event = pending.pop(0)
            self.ua_handlers[type(event)](event, pending)
        self._arm_timer()

    def _send(self, event: Outgoing, pending: Pending) -> None:
        self.edge.send(event)

    def _offered(self, event: SessionOffered, pending: Pending) -> None:
        pending.extend(self._admit(event))

    def _admit(self, event: SessionOffered) -> list[UaEvent]:
        now = self.loop.time()
        if event.initial and self.disk_low():
            self.log.warning("call_refused_disk_low", call_id=event.call_id, source=str(event.source))
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=60)
        try:
            ports = self.live.offered(event, now)
        except Exception as exc:  # disk, index (either engine), ports: this call only
            self.log.error("offer_failed", session=event.session_id, error=str(exc))
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if ports is None:
            self.log.warning("rtp_ports_exhausted", session=event.session_id)
            return self.ua.reject(event.session_id, 503, "Service Unavailable", now, retry_after=30)
        if SDES_IN_CLEAR in event.warnings:
            self.log.warning(
                "sdes_over_plain_sip", session=event.session_id, call_id=event.call_id,
                source=str(event.source), transport=event.transport.value, detail=SDES_IN_CLEAR,
            )
        if event.initial:
            self.calls.sources[event.session_id] = str(event.source)
            self.log.info(
                "session_offered", session=event.session_id, call_id=event.call_id, source=str(event.source),
                streams=event.ports_needed, warnings=list(event.warnings),
            )
        return self.ua.accept(event.session_id, ports, now)

    def _answered(self, event: SessionAnswered, pending: Pending) -> None:
        answered = self._recording_step(event.session_id, self.live.answered, event, pending)
        if not answered or not event.initial:
            return
        self.log.info("recording_started", session=event.session_id, streams=len(event.streams))
        session = self.live.sessions.get(event.session_id)
        if session is not None:
            self.metrics.session_started()
            self.announce("recording_started", session.recording_id, None)
            self.pusher.consider(self.calls.info(session))

    def _metadata(self, event: MetadataReceived, pending: Pending) -> None:
        """Store the new metadata, then tell live listeners and push targets about it."""
        if not self._recording_step(event.session_id, self.live.metadata, event, pending):
            return
        info = self.calls.opened(event.session_id)
        if info is not None:
            self.hub.metadata_changed(event.session_id, info)
            self.pusher.consider(info)

    def _ended(self, event: SessionEnded, pending: Pending) -> None:
        self._recording_step(event.session_id, self._end, event, pending)

    def _end(self, event: SessionEnded) -> None:
        session = self.live.sessions.get(event.session_id)
        self.calls.sources.pop(event.session_id, None)
        self.pusher.ended(event.session_id)
        dropped = self.hub.ended(event.session_id)
        if dropped and session is not None:
            session.warnings.append(f"live audio: {dropped} frames dropped for slow listeners")
        closing = self.live.end(event)
        if closing is None:
            return
        self.log.info(
            "recording_ended",
            session=event.session_id,
            recording=session.recording_id if session is not None else None,
            reason=event.reason,
        )
        self.metrics.session_ended()
        self.publisher.start(closing)

    def _recording_step(
        self, session_id: str, action: Callable[[Any], None], event: Any, pending: Pending
    ) -> bool:
        """Run one step of a recording; a failing disk or index ends that one recording (BYE,
        failed), never the daemon. Returns whether the step succeeded."""
        try:
            action(event)
        except Exception as exc:
            self.log.exception("recording_error", session=session_id, error=str(exc))
            if isinstance(event, SessionEnded):
                self.live.sessions.pop(session_id, None)
            else:
                pending.extend(self.ua.hangup(session_id, self.loop.time(), f"recording failed: {exc}"))
            return False
        return True

    def _refused(self, event: RequestRefused, pending: Pending) -> None:
        self.metrics.request_refused(event.status)
        if event.status == 503 and event.detail.startswith("overloaded"):
            self.log.warning("call_refused_overload", call_id=event.call_id, detail=event.detail)
        self.log.info(
            "request_refused", method=event.method, status=event.status, detail=event.detail,
            source=str(event.source), call_id=event.call_id,
        )

    def _limit_reached(self, event: LimitReached, pending: Pending) -> None:
        self.metrics.limit_reached(event.limit)
        self.log.info(  # info: one line per refused packet must not flood the warnings
            "sip_limit_reached", limit=event.limit, detail=event.detail, source=str(event.source),
            call_id=event.call_id,
        )

    def _dropped(self, event: MessageDropped, pending: Pending) -> None:
        self.metrics.message_dropped()
        self.log.info("sip_dropped", detail=event.detail, source=str(event.source))

    # ----------------------------------------------------------- the media watch's events
    def on_media(self, events: list[WatchEvent]) -> None:
        for event in events:
            session = self.live.sessions.get(event.key)
            if session is not None:
                self.media_handlers[type(event)](event, session.recording_id)

    def _no_media(self, event: NoMedia, recording: str) -> None:
        self.alerts.no_media(event, recording)

    def _source_changed(self, event: SourceChanged, recording: str) -> None:
        self.alerts.source_changed(event, recording)

    def _rtp_timeout(self, event: RtpTimeout, recording: str) -> None:
        self.alerts.rtp_timeout(event, recording)
        self.handle(self.ua.hangup(event.key, self.loop.time(), event.reason()))

    # ----------------------------------------------------------- timers and periodic work
    def _arm_timer(self) -> None:
        deadline = self.ua.next_deadline()
        if deadline is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.handle(self.ua.on_timer(self.loop.time()))

    async def flush_loop(self, interval: float) -> None:
        """Write what is due; a recording whose file cannot be written is hung up."""
        counters_due = self.loop.time() + _COUNTERS_EVERY_S
        while True:
            await asyncio.sleep(interval)
            if self.loop.time() >= counters_due:
                counters_due = self.loop.time() + _COUNTERS_EVERY_S
                self.live.refresh_counters()
            for session_id in self.live.flush(self.loop.time()):
                self.log.error("recording_write_failed", session=session_id)
                self.handle(self.ua.hangup(session_id, self.loop.time(), "recording failed"))

    async def media_loop(self) -> None:
        """Once a second: ask the plane for per-stream activity and act on what the watch says
        (the worker plane answers asynchronously, so each check uses the previous answer)."""
        while True:
            await asyncio.sleep(_MEDIA_WATCH_PERIOD_S)
            if not self.live.sessions:
                continue
            self.live.plane.poll_activity()
            self.on_media(self.live.check_media())
