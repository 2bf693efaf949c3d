"""The soak and overload benchmarks read /proc and Prometheus text: their parsers, on fixed text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.loadgen import LoadResult
from bench.overload import REFUSED_503, bye_bound_to_its_transaction, failure_kinds
from bench.soak import (
    UdpSocket,
    leak_check,
    parse_metric,
    parse_proc_net_udp,
    parse_vm_rss_kb,
    rss_slopes,
    slope_per_minute,
)

STATUS = (
    "Name:\tpython\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t  412000 kB\n"
    "VmHWM:\t  120000 kB\nVmRSS:\t  108928 kB\nRssAnon:\t   70000 kB\nThreads:\t3\n"
)

UDP = (
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref"
    " pointer drops            \n"
    "  978: 00000000:22B8 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 963759 2"
    " 000000009c21b46c 0        \n"
    " 3634: 0100007F:4E20 00000000:0000 07 00000000:00030000 00:00000000 00000000     0        0 963760 2"
    " 00000000fefb7a85 17       \n"
)

UDP6 = (
    "  sl  local_address                         remote_address                        st tx_queue rx_queue"
    " tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"
    "  120: 00000000000000000000000000000000:4E22 00000000000000000000000000000000:0000 07 00000000:00000000"
    " 00:00000000 00000000     0        0 5551 2 0000000011112222 3\n"
)


def test_vm_rss_is_read_in_kib() -> None:
    assert parse_vm_rss_kb(STATUS) == 108928


def test_a_status_without_vm_rss_gives_none() -> None:
    assert parse_vm_rss_kb("Name:\tzombie\nState:\tZ (zombie)\n") is None
    assert parse_vm_rss_kb("VmRSS:\n") is None


def test_proc_net_udp_gives_inode_port_and_drops() -> None:
    assert parse_proc_net_udp(UDP) == [
        UdpSocket(inode=963759, port=0x22B8, drops=0),
        UdpSocket(inode=963760, port=20000, drops=17),
    ]


def test_proc_net_udp6_has_the_same_columns() -> None:
    assert parse_proc_net_udp(UDP6) == [UdpSocket(inode=5551, port=20002, drops=3)]


@pytest.mark.parametrize(
    "line",
    [
        "",
        "  12: garbage",
        "  12: 0100007F:ZZZZ 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 ff 0",
        "  12: 0100007F:4E20 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 x 2 ff 0",
    ],
)
def test_malformed_udp_lines_are_skipped(line: str) -> None:
    assert parse_proc_net_udp(UDP.splitlines()[0] + "\n" + line + "\n") == []


def test_slope_of_a_line_is_exact_per_minute() -> None:
    times = [0.0, 10.0, 20.0, 30.0]
    assert slope_per_minute(times, [100 + 2 * t for t in times]) == pytest.approx(120.0)


def test_slope_of_a_sawtooth_is_its_least_squares_trend() -> None:
    # t - mean: -2.5 .. 2.5; v - mean: -2, 2, ...; sum of products 6; spread 17.5
    assert slope_per_minute([0, 1, 2, 3, 4, 5], [5, 9, 5, 9, 5, 9]) == pytest.approx(60 * 6 / 17.5)
    assert slope_per_minute([0, 1, 2, 3], [7, 7, 7, 7]) == 0.0


def test_slope_needs_three_points_and_spread_in_time() -> None:
    assert slope_per_minute([0, 1], [0, 1]) is None
    assert slope_per_minute([5, 5, 5], [1, 2, 3]) is None
    assert slope_per_minute([0, 1, 2], [1, 2]) is None


METRICS = (
    "# HELP srs_active_sessions SIPREC sessions in progress\n# TYPE srs_active_sessions gauge\n"
    "srs_active_sessions 6.0\n"
    'srs_sip_requests_refused_total{status="503"} 51.0\n'
    'srs_sip_requests_refused_total{status="488"} 2.0\n'
)


def test_metrics_are_found_by_name_and_labels() -> None:
    assert parse_metric(METRICS, "srs_active_sessions") == 6.0
    assert parse_metric(METRICS, "srs_sip_requests_refused_total", 'status="503"') == 51.0
    assert parse_metric(METRICS, "srs_sip_requests_refused_total", 'status="500"') is None
    assert parse_metric(METRICS, "srs_sip_requests_refused_total") is None
    assert parse_metric("srs_active_sessions NaNx\n", "srs_active_sessions") is None


def _point(t: float, daemon_rss: int, worker_rss: int | None, fds: int, sockets: int) -> dict[str, Any]:
    return {
        "t": t,
        "rss_kb": {"daemon": daemon_rss, "worker-7": worker_rss},
        "fds": {"daemon": fds, "worker-7": 5},
        "rtp_udp_sockets": sockets,
    }


def test_rss_slopes_use_only_the_second_half_and_skip_missing_values() -> None:
    samples = [
        _point(0, 1000, 50, 20, 0),
        _point(60, 5000, 50, 20, 0),  # warm-up jump, first half
        _point(120, 5000, None, 20, 0),
        _point(180, 5010, 50, 20, 0),
        _point(240, 5020, 50, 20, 0),
        _point(300, 5030, 50, 20, 0),
    ]
    assert rss_slopes(samples, 120) == {"daemon": 10.0, "worker-7": 0.0}


def test_leak_check_compares_quiet_points_with_baseline_and_first_quiet_point() -> None:
    baseline = _point(0, 1000, 50, 20, 0)
    quiet = [_point(60, 1500, 60, 21, 0), _point(120, 1500, 60, 21, 0), _point(180, 1700, 60, 24, 4)]
    report = leak_check(baseline, quiet)
    assert report["fd_delta_per_quiet_point"] == {"daemon": [1, 1, 4], "worker-7": [0, 0, 0]}
    assert report["rtp_udp_sockets_delta_per_quiet_point"] == [0, 0, 4]
    assert report["fd_growth_since_first_quiet_point"] == {"daemon": 3, "worker-7": 0}
    assert report["rss_growth_kb_since_first_quiet_point"] == {"daemon": 200, "worker-7": 0}
    assert report["rtp_sockets_back_to_baseline"] is False
    assert leak_check(baseline, []) == {}


def test_failures_are_counted_by_kind() -> None:
    result = LoadResult(
        calls=5,
        failed_setup=4,
        failures=[
            "MAXS-1: INVITE answered 503",
            "MAXS-2: INVITE answered 503",
            "MAXS-3: INVITE timed out",
            "MAXS-4: BYE answered 481",
        ],
        setup_times=[],
        bye_to_available=[],
        calls_ok=[],
        sender_errors=0,
        concurrent_peak=1,
    )
    assert failure_kinds(result) == {REFUSED_503: 2, "INVITE timed out": 1, "BYE answered 481": 1}


def test_the_bye_answer_is_bound_to_the_bye_transaction(tmp_path: Path) -> None:
    scenario = tmp_path / "s.xml"
    scenario.write_text(
        '<scenario><send retrans="500">INVITE</send><recv response="200" rtd="true" />'
        '<send>ACK</send><send retrans="500">BYE</send><recv response="200" crlf="true" /></scenario>'
    )
    text = bye_bound_to_its_transaction(scenario).read_text()
    assert text == (
        '<scenario><send retrans="500">INVITE</send><recv response="200" rtd="true" />'
        '<send>ACK</send><send retrans="500" start_txn="bye">BYE</send>'
        '<recv response="200" response_txn="bye" crlf="true" /></scenario>'
    )
