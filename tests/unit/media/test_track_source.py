"""Who may send a stream: the track's source policy (SDP-allowed hosts, latching, relatching).

Each test is an attack (or the legitimate case it must not break) on one track fed real RTP
datagrams: a sender racing the SBC to the port, a stranger waiting for a pause, a re-INVITE moving
the stream to another host.
"""

from __future__ import annotations

import numpy as np

from srs.media.latch import MAX_REJECTED, canonical_hosts
from srs.media.track import StreamActivity, StreamTrack
from tests.unit.media.fixtures import FORMATS, OTHER, SRC, expected, factory, payload_for, rtp
from tests.unit.media.test_rtcp_alignment import sender_report

N = 50
END = 8000 + N * 160 + 800
ATTACK = b"\x01" * 160


def arrival(i: float) -> float:
    return (50 + i) / 50


def make(sources: list[str] | None) -> StreamTrack:
    return StreamTrack(FORMATS, start=0.0, decoder_factory=factory, sources=sources)


def genuine(indexes: range | list[int] = range(N)) -> np.ndarray:
    return expected([(8000 + 160 * i, payload_for(i)) for i in indexes], END)


def test_a_sender_racing_the_sbc_to_the_port_is_never_latched() -> None:
    """The attacker's packets arrive first and keep coming; only the SDP's host is recorded."""
    track = make([SRC[0]])
    for i in range(N):
        track.push(rtp(i, 160 * i, ATTACK, ssrc=0xBAD), OTHER, arrival(i) - 0.001)
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    np.testing.assert_array_equal(track.render(0, END), genuine())
    stats = track.stats()
    assert (stats.packets_received, stats.packets_dropped_source, stats.relatches) == (N, N, 0)
    assert stats.source == f"{SRC[0]}:{SRC[1]}"
    assert stats.rejected_sources == ((f"{OTHER[0]}:{OTHER[1]}", N),)


def test_any_mode_latches_the_first_sender() -> None:
    """``rtp_source = "any"``: whoever comes first is recorded (the documented lab relaxation)."""
    track = make(None)
    track.push(rtp(0, 0, ATTACK, ssrc=0xBAD), OTHER, arrival(0) - 0.001)
    for i in range(N):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    assert track.stats().source == f"{OTHER[0]}:{OTHER[1]}"
    assert track.stats().packets_dropped_source == N


def test_a_stranger_cannot_take_the_stream_in_a_pause() -> None:
    """Two seconds of silence from the SBC, then a stranger: still dropped, the SBC resumes."""
    for sources in ([SRC[0]], None):
        track = make(sources)
        for i in range(10):
            track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
        for i in range(110, 130):  # the stranger, 2 s into the pause
            track.push(rtp(i, 160 * i, ATTACK, ssrc=0xBAD), OTHER, arrival(i))
        for i in range(130, 140):
            track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
        stats = track.stats()
        assert (stats.packets_dropped_source, stats.relatches, stats.packets_received) == (20, 0, 20), sources
        assert stats.ssrcs == (0x11223344,)


def test_a_reinvite_moves_the_stream_to_the_newly_allowed_host() -> None:
    """Failover: new SDP names another host; its packets take over at once, the old host's stop counting."""
    track = make([SRC[0]])
    for i in range(20):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    track.allow([OTHER[0]])
    for i in range(20, N):
        track.push(rtp(i, 160 * i, payload_for(i)), OTHER, arrival(i))
        track.push(rtp(i, 160 * i, ATTACK), SRC, arrival(i))  # the old host is no longer allowed
    np.testing.assert_array_equal(track.render(0, END), genuine())
    stats = track.stats()
    assert (stats.relatches, stats.packets_dropped_source) == (1, N - 20)
    assert stats.sources == (f"{SRC[0]}:{SRC[1]}", f"{OTHER[0]}:{OTHER[1]}")
    activity = StreamActivity._make(track.activity())
    assert (activity.source, activity.source_changes, activity.packets_received) == (
        f"{OTHER[0]}:{OTHER[1]}",
        1,
        N,
    )


def test_relatch_without_new_hosts_does_not_admit_a_stranger() -> None:
    """A re-INVITE with the same c= address must not open the door to anyone else."""
    track = make([SRC[0]])
    for i in range(10):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    track.relatch()
    track.push(rtp(10, 1600, ATTACK, ssrc=0xBAD), OTHER, arrival(10))
    assert track.stats().packets_dropped_source == 1
    moved = (SRC[0], SRC[1] + 2)
    track.push(
        rtp(11, 1760, payload_for(11)), moved, arrival(11)
    )  # same host, new port: signalled, so at once
    stats = track.stats()
    assert (stats.relatches, stats.source) == (1, f"{moved[0]}:{moved[1]}")


def test_rejected_addresses_are_bounded() -> None:
    track = make([SRC[0]])
    for n in range(100):
        track.push(rtp(n, 160 * n), ("198.51.100.9", 10000 + n), arrival(n))
    stats = track.stats()
    assert stats.packets_dropped_source == 100
    assert len(stats.rejected_sources) == MAX_REJECTED
    assert StreamActivity._make(track.activity()).rejected_sources == stats.rejected_sources


def test_ipv4_allowed_host_matches_a_dual_stack_socket_source() -> None:
    assert "::ffff:192.0.2.10" in canonical_hosts(["192.0.2.10"])
    assert "192.0.2.10" in canonical_hosts(["::ffff:192.0.2.10"])
    assert "2001:db8::1" in canonical_hosts(["2001:DB8:0::1"])
    track = make(["192.0.2.10"])
    track.push(rtp(0, 0), ("::ffff:192.0.2.10", 40000, 0, 0), arrival(0))  # type: ignore[arg-type]
    assert track.stats().packets_received == 1


def test_a_stranger_s_sender_report_cannot_move_the_stream() -> None:
    """A forged RTCP sender report for the SBC's SSRC would shift the stream on the timeline."""
    track = make([SRC[0]])
    for i in range(10):
        track.push(rtp(i, 160 * i, payload_for(i)), SRC, arrival(i))
    report = sender_report(0x11223344, 160 * 9, 1_700_000_000.0)
    track.push_rtcp(report, OTHER, arrival(9))
    stats = track.stats()
    assert (stats.sender_reports, stats.rtcp_dropped_source, stats.packets_rtcp) == (0, 1, 0)
    assert track.sender_lag() is None
    track.push_rtcp(report, (SRC[0], SRC[1] + 1), arrival(9))  # the SBC's RTCP port
    assert track.stats().sender_reports == 1 and track.sender_lag() is not None
