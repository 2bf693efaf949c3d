"""The daemon's Prometheus metrics, every name prefixed ``srs_``.

The daemon touches this object a handful of times per call (session start/end, packet totals when a
recording closes, a refused request), never per packet. What is cheaper to read than to track --
sessions and streams in flight, recordings per state, free disk -- is read when /metrics is scraped,
from callables and the index registered here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from srs.storage.diskspace import disk_space

LiveSource = Callable[[], Mapping[str, float]]
StateCounts = Callable[[], Mapping[str, int]]
UploadBacklog = Callable[[], tuple[int, int]]

LIVE_KEYS = ("active_sessions", "active_streams")


class _ScrapeCollector(Collector):
    """Values computed at scrape time: live gauges, recordings by state, disk space."""

    def __init__(self, owner: DaemonMetrics) -> None:
        self.owner = owner

    def collect(self) -> Iterator[Metric]:
        live = dict(self.owner.live_values())
        sessions = GaugeMetricFamily("srs_active_sessions", "SIPREC sessions in progress")
        sessions.add_metric([], float(live.get("active_sessions", 0)))
        yield sessions
        streams = GaugeMetricFamily("srs_active_streams", "Media streams being received")
        streams.add_metric([], float(live.get("active_streams", 0)))
        yield streams
        if self.owner.node is not None:
            info = GaugeMetricFamily("srs_node_info", "This srs node's name in its fleet", labels=["node"])
            info.add_metric([self.owner.node], 1.0)
            yield info
        counts = self.owner.state_counts()
        if counts is not None:
            family = GaugeMetricFamily("srs_recordings", "Recordings in the index by state", labels=["state"])
            for state, count in sorted(counts.items()):
                family.add_metric([state], float(count))
            yield family
        backlog = self.owner.upload_backlog()
        if backlog is not None:
            waiting = GaugeMetricFamily(
                "srs_upload_backlog_recordings", "Recordings waiting to be confirmed in the object store"
            )
            waiting.add_metric([], float(backlog[0]))
            yield waiting
            size = GaugeMetricFamily(
                "srs_upload_backlog_bytes", "Bytes waiting to be confirmed in the object store"
            )
            size.add_metric([], float(backlog[1]))
            yield size
        data_dir = self.owner.data_dir
        if data_dir is not None:
            usage = disk_space(data_dir)
            if usage is None:
                return
            free = GaugeMetricFamily("srs_disk_free_bytes", "Free bytes on the data directory's file system")
            free.add_metric([], float(usage.free))
            yield free
            total = GaugeMetricFamily("srs_disk_total_bytes", "Size of the data directory's file system")
            total.add_metric([], float(usage.total))
            yield total


class DaemonMetrics:
    def __init__(self, data_dir: Path | None = None) -> None:
        self.node: str | None = None
        """The node's name (``[node] id``), reported as ``srs_node_info{node}``."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.data_dir = data_dir
        self._live: LiveSource | None = None
        self._states: StateCounts | None = None
        self._uploads: UploadBacklog | None = None
        self._sessions_started = 0
        self._sessions_ended = 0
        reg = self.registry
        self.sessions_total = Counter("srs_sessions", "SIPREC sessions answered", registry=reg)
        self.rtp_received = Counter("srs_rtp_packets_received", "RTP packets received", registry=reg)
        self.rtp_lost = Counter("srs_rtp_packets_lost", "RTP packets lost (sequence gaps)", registry=reg)
        self.rtp_dropped = Counter(
            "srs_rtp_packets_dropped",
            "RTP packets dropped (late, duplicate, malformed, foreign source)",
            registry=reg,
        )
        self.sip_refused = Counter(
            "srs_sip_requests_refused", "SIP requests answered with an error status", ["status"], registry=reg
        )
        self.sip_limit_refusals = Counter(
            "srs_sip_limit_refusals",
            "Requests refused and connections closed by a per-call or per-source bound",
            ["reason"],
            registry=reg,
        )
        self.sip_dropped = Counter(
            "srs_sip_messages_dropped", "SIP messages dropped unanswered", registry=reg
        )
        self.webhook_failures = Counter(
            "srs_webhook_delivery_failures", "Webhook deliveries that failed after every retry", registry=reg
        )
        self.webhook_attempt_failures = Counter(
            "srs_webhook_attempt_failures", "Webhook delivery attempts that failed", registry=reg
        )
        self.webhook_drops = Counter(
            "srs_webhook_events_dropped", "Webhook events dropped because a receiver's queue was full",
            ["receiver"], registry=reg,
        )
        self.retention_deleted = Counter(
            "srs_retention_deleted", "Recordings deleted by the retention job", registry=reg
        )
        self.uploads = Counter(
            "srs_uploads", "Recordings uploaded to the object store and confirmed", registry=reg
        )
        self.uploaded_bytes = Counter(
            "srs_uploaded_bytes", "Bytes uploaded to the object store", registry=reg
        )
        self.upload_failures = Counter(
            "srs_upload_failures", "Uploads given up (the local file is kept)", registry=reg
        )
        self.upload_attempt_failures = Counter(
            "srs_upload_attempt_failures", "Upload attempts that failed and will be retried", registry=reg
        )
        self.rtp_source_changes = Counter(
            "srs_rtp_source_changes", "RTP streams moved to another (allowed) source address", registry=reg
        )
        self.rtp_no_media = Counter(
            "srs_rtp_no_media", "Streams with no accepted RTP a few seconds after the answer", registry=reg
        )
        self.rtp_timeouts = Counter(
            "srs_rtp_timeouts", "Sessions ended by srs because no RTP came for rtp_timeout_s", registry=reg
        )
        self.up_since = Gauge("srs_start_time_seconds", "Unix time the daemon started", registry=reg)
        reg.register(_ScrapeCollector(self))

    # ---- sources read at scrape time -----------------------------------------------------------

    def set_live_source(self, source: LiveSource | None) -> None:
        """``source()`` returns e.g. ``{"active_sessions": 3, "active_streams": 6}``; called per scrape."""
        self._live = source

    def set_state_source(self, source: StateCounts | None) -> None:
        self._states = source

    def set_upload_source(self, source: UploadBacklog | None) -> None:
        """``source()`` returns the upload backlog as (recordings, bytes); called per scrape."""
        self._uploads = source

    def upload_backlog(self) -> tuple[int, int] | None:
        if self._uploads is None:
            return None
        try:
            return self._uploads()
        except Exception:
            return None

    def upload_event(self, event: str, size: int) -> None:
        """One step of an upload: ``done`` (confirmed), ``retry`` (attempt failed) or ``failed``."""
        if event == "done":
            self.uploads.inc()
            self.uploaded_bytes.inc(size)
        elif event == "retry":
            self.upload_attempt_failures.inc()
        elif event == "failed":
            self.upload_failures.inc()

    def live_values(self) -> Mapping[str, float]:
        if self._live is not None:
            try:
                return self._live()
            except Exception:  # a scrape must never fail because the daemon is mid-change
                return {}
        return {"active_sessions": float(self._sessions_started - self._sessions_ended)}

    def state_counts(self) -> Mapping[str, int] | None:
        if self._states is None:
            return None
        try:
            return self._states()
        except Exception:
            return None

    # ---- daemon-side updates (cheap, a few per call) ---------------------------------------------

    def session_started(self) -> None:
        self._sessions_started += 1
        self.sessions_total.inc()

    def session_ended(self) -> None:
        self._sessions_ended += 1

    def packets(self, *, received: int = 0, lost: int = 0, dropped: int = 0) -> None:
        """Add the packet totals of one finished stream or recording."""
        if received > 0:
            self.rtp_received.inc(received)
        if lost > 0:
            self.rtp_lost.inc(lost)
        if dropped > 0:
            self.rtp_dropped.inc(dropped)

    def source_changed(self) -> None:
        self.rtp_source_changes.inc()

    def no_media(self) -> None:
        self.rtp_no_media.inc()

    def rtp_timeout(self) -> None:
        self.rtp_timeouts.inc()

    def request_refused(self, status: int) -> None:
        self.sip_refused.labels(str(status)).inc()

    def limit_reached(self, reason: str) -> None:
        """``reason`` names the bound: streams_per_call, sessions_per_source, header_timeout …"""
        self.sip_limit_refusals.labels(reason).inc()

    def message_dropped(self) -> None:
        self.sip_dropped.inc()

    def webhook_failed(self) -> None:
        self.webhook_failures.inc()

    def webhook_receiver(self, receiver: str) -> None:
        """Show the receiver's drop counter (at 0) before its first drop."""
        self.webhook_drops.labels(receiver)

    def webhook_dropped(self, receiver: str) -> None:
        self.webhook_drops.labels(receiver).inc()

    def webhook_attempt_failed(self) -> None:
        self.webhook_attempt_failures.inc()

    def retention_swept(self, deleted: int) -> None:
        if deleted > 0:
            self.retention_deleted.inc(deleted)

    def render(self) -> bytes:
        return generate_latest(self.registry)
