"""What the daemon says when the media watch sees something wrong with a stream: a metric, a log
line, and a ``recording_*`` event to webhooks and the console."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from srs.daemon.metrics import DaemonMetrics
from srs.mediaplane.watch import NoMedia, RtpTimeout, SourceChanged

Announce = Callable[[str, str, Mapping[str, Any] | None], None]
"""``(event, recording_id, details)``: a recording event for webhooks and the console's stream."""


class MediaAlerts:
    def __init__(self, metrics: DaemonMetrics, log: Any, announce: Announce) -> None:
        self.metrics = metrics
        self.log = log
        self.announce = announce

    def no_media(self, event: NoMedia, recording: str) -> None:
        self.metrics.no_media()
        refused = [{"address": a, "packets": n} for a, n in event.refused]
        self.log.warning(
            "recording_no_media",
            session=event.key,
            recording=recording,
            stream=event.label,
            listen=event.listen,
            refused=refused,
            detail=event.message(),
        )
        details = {"stream": event.label, "listen": event.listen, "refused": refused}
        self.announce("recording_no_media", recording, details)

    def source_changed(self, event: SourceChanged, recording: str) -> None:
        self.metrics.source_changed()
        self.log.warning(
            "recording_source_changed",
            session=event.key,
            recording=recording,
            stream=event.label,
            previous=event.previous,
            current=event.current,
            changes=event.changes,
        )
        details = {
            "stream": event.label,
            "previous": event.previous,
            "current": event.current,
            "changes": event.changes,
        }
        self.announce("recording_source_changed", recording, details)

    def rtp_timeout(self, event: RtpTimeout, recording: str) -> None:
        self.metrics.rtp_timeout()
        self.log.warning("rtp_timeout", session=event.key, recording=recording, idle_s=round(event.idle))
