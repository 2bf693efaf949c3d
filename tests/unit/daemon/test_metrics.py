"""The daemon's metrics registry: names, counters, and what is read at scrape time."""

from __future__ import annotations

from pathlib import Path

from srs.daemon.metrics import DaemonMetrics


def samples(metrics: DaemonMetrics) -> dict[str, float]:
    out = {}
    for line in metrics.render().decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_every_name_is_srs_prefixed(tmp_path: Path) -> None:
    metrics = DaemonMetrics(tmp_path)
    metrics.set_state_source(lambda: {"available": 2, "failed": 1})
    metrics.request_refused(488)
    names = {name.split("{")[0] for name in samples(metrics)}
    assert {"srs_active_sessions", "srs_active_streams", "srs_rtp_packets_received_total",
            "srs_recordings", "srs_disk_free_bytes", "srs_sip_requests_refused_total",
            "srs_webhook_delivery_failures_total"} <= names
    assert all(name.startswith("srs_") for name in names), names


def test_counters_add_up() -> None:
    metrics = DaemonMetrics()
    metrics.packets(received=100, lost=2, dropped=3)
    metrics.packets(received=50)
    metrics.request_refused(488)
    metrics.request_refused(488)
    metrics.request_refused(503)
    metrics.webhook_failed()
    metrics.retention_swept(3)
    metrics.retention_swept(0)
    got = samples(metrics)
    assert got["srs_rtp_packets_received_total"] == 150
    assert got["srs_rtp_packets_lost_total"] == 2
    assert got["srs_rtp_packets_dropped_total"] == 3
    assert got['srs_sip_requests_refused_total{status="488"}'] == 2
    assert got['srs_sip_requests_refused_total{status="503"}'] == 1
    assert got["srs_webhook_delivery_failures_total"] == 1
    assert got["srs_retention_deleted_total"] == 3


def test_negative_packet_counts_are_ignored() -> None:
    metrics = DaemonMetrics()
    metrics.packets(received=-5, lost=-1, dropped=-1)
    got = samples(metrics)
    assert got["srs_rtp_packets_received_total"] == 0 and got["srs_rtp_packets_lost_total"] == 0


def test_live_source_is_read_at_each_scrape() -> None:
    metrics = DaemonMetrics()
    live = {"active_sessions": 3.0, "active_streams": 6.0}
    metrics.set_live_source(lambda: live)
    assert samples(metrics)["srs_active_sessions"] == 3
    live["active_sessions"] = 1
    got = samples(metrics)
    assert got["srs_active_sessions"] == 1 and got["srs_active_streams"] == 6


def test_without_a_live_source_sessions_are_counted_from_calls() -> None:
    metrics = DaemonMetrics()
    metrics.session_started()
    metrics.session_started()
    metrics.session_ended()
    got = samples(metrics)
    assert got["srs_active_sessions"] == 1 and got["srs_sessions_total"] == 2


def test_a_failing_source_does_not_break_the_scrape() -> None:
    metrics = DaemonMetrics()

    def broken() -> dict[str, float]:
        raise RuntimeError("mid-change")

    metrics.set_live_source(broken)
    metrics.set_state_source(broken)  # type: ignore[arg-type]
    got = samples(metrics)
    assert got["srs_active_sessions"] == 0 and "srs_recordings" not in {k.split("{")[0] for k in got}


def test_recordings_by_state_come_from_the_source() -> None:
    metrics = DaemonMetrics()
    metrics.set_state_source(lambda: {"available": 4, "recording": 1})
    got = samples(metrics)
    assert got['srs_recordings{state="available"}'] == 4 and got['srs_recordings{state="recording"}'] == 1


def test_rtp_source_and_media_watch_counters() -> None:
    metrics = DaemonMetrics()
    metrics.source_changed()
    metrics.source_changed()
    metrics.no_media()
    metrics.rtp_timeout()
    got = samples(metrics)
    assert got["srs_rtp_source_changes_total"] == 2
    assert got["srs_rtp_no_media_total"] == 1
    assert got["srs_rtp_timeouts_total"] == 1
