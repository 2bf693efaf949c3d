"""Who may send RTP, and RTP that never comes or stops: attacks on a real daemon over loopback.

The SBC is 127.0.0.1 (its SDP says c=127.0.0.1); a stranger on its network is 127.0.0.2; the
SBC after a failover is 127.0.0.3. Each stream carries its own tone, so what the WAV holds tells
whose audio was recorded: 400/1200 Hz the SBC, 2000 Hz the stranger, 600/1600 Hz the SBC after
its failover.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from tests.e2e.conftest import SrsDaemon, read_wav, wait_recording
from tests.e2e.siprec_peer import LOOPBACK, RtpStream, SiprecPeer, play
from tests.e2e.test_http_api import HookReceiver, start_receiver

SBC, STRANGER, FAILOVER = "127.0.0.1", "127.0.0.2", "127.0.0.3"
GENUINE = (400, 1200)
MOVED = (600, 1600)
ATTACK = 2000
PACKETS = 200  # 4 s per stream
PRESENT_DBFS = -24.0  # the tones are sent at -12 dBFS and mixed at that level


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()


def _config(hooks: HookReceiver, workers: int, extra: str = "") -> str:
    return f'[media]\nworkers = {workers}\n{extra}\n[http]\nwebhook_urls = ["{hooks.url}"]\n'


def _peer(daemon: SrsDaemon, crid: str) -> SiprecPeer:
    return SiprecPeer((LOOPBACK, daemon.ports.sip), crid)


def _streams(host: str, answer_ports: list[int], tones: tuple[int, ...], ssrc: int) -> list[RtpStream]:
    return [
        RtpStream(host, (LOOPBACK, port), tone, ssrc + i)
        for i, (port, tone) in enumerate(zip(answer_ports, tones, strict=True))
    ]


def _tone_frames(rec: dict[str, Any], freqs: tuple[int, ...]) -> dict[int, int]:
    """How many 20 ms frames of the WAV carry each tone at nearly the level sent (-12 dBFS).

    Counting frames, not measuring one level over a stretch of the file, makes the check
    independent of where the recorder placed each stream (placement anchors on the arrival of
    a stream's first packet, which a loaded machine delays). A sender or receiver stalled for
    seconds (a machine shared by many) makes the recorder re-anchor and overlap audio, so the
    tests ask for a fifth of the frames sent (the tone is there): the packet counts are the exact
    check, and the stranger's tone must be in no frame at all."""
    samples = read_wav(rec["file"]["path"]).samples
    frames = samples[: len(samples) // 160 * 160].reshape(-1, 160).astype(np.float64)
    window = np.hanning(160)
    n = np.arange(160)
    counts = {}
    for freq in freqs:
        amplitude = 2 * np.abs((frames * window) @ np.exp(-2j * np.pi * freq * n / 8000)) / window.sum()
        counts[freq] = int(np.sum(amplitude > 32767 * 10 ** (PRESENT_DBFS / 20)))
    return counts


def _stream_stats(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    streams: dict[str, dict[str, Any]] = rec["completeness"]["streams"]
    return streams


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "worker"])
def test_a_sender_racing_the_sbc_to_the_answered_ports_is_not_recorded(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str, workers: int
) -> None:
    daemon = start_srs(_config(hooks, workers))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    assert len(answer.ports) == 2
    stranger = _streams(STRANGER, answer.ports, (ATTACK, ATTACK), 0xBAD0)
    genuine = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    # the stranger is first on both ports and keeps sending for as long as the SBC does
    play([(s, 0.0, PACKETS) for s in stranger] + [(g, 0.1, PACKETS) for g in genuine])
    time.sleep(0.3)
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    frames = _tone_frames(rec, (*GENUINE, ATTACK))
    assert frames[ATTACK] == 0 and min(frames[GENUINE[0]], frames[GENUINE[1]]) >= PACKETS // 5, frames
    for label, stream in zip(("1", "2"), stranger, strict=True):
        stats = _stream_stats(rec)[label]
        assert stats["packets_received"] == PACKETS, stats
        assert stats["packets_dropped_source"] == PACKETS, stats
        assert stats["source"].startswith(f"{SBC}:"), stats
        assert stats["source_changes"] == 0, stats
        assert stats["rejected_sources"] == [{"address": stream.address, "packets": PACKETS}], stats
    for s in (*stranger, *genuine):
        s.close()
    peer.close()


def test_a_stranger_cannot_take_over_the_stream_during_a_pause(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    daemon = start_srs(_config(hooks, 1))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    genuine = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    stranger = _streams(STRANGER, answer.ports, (ATTACK, ATTACK), 0xBAD0)
    # 1 s of audio, a 3 s pause; 1.5 s into it the stranger sends for 1 s; then the SBC resumes
    play([(g, 0.0, 50) for g in genuine] + [(s, 2.5, 50) for s in stranger] + [(g, 4.0, 50) for g in genuine])
    time.sleep(0.3)
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    for label in ("1", "2"):
        stats = _stream_stats(rec)[label]
        assert (stats["packets_received"], stats["packets_dropped_source"]) == (100, 50), stats
        assert stats["source_changes"] == 0, stats
    # the stranger's tone nowhere, the SBC's (before and after the pause) at full level
    frames = _tone_frames(rec, (*GENUINE, ATTACK))
    assert frames[ATTACK] == 0 and min(frames[GENUINE[0]], frames[GENUINE[1]]) >= 20, frames
    assert not hooks.wait_for(lambda e: e["event"] == "recording_source_changed", within=0.5)
    for s in (*stranger, *genuine):
        s.close()
    peer.close()


@pytest.mark.parametrize("after", [75, 15], ids=["long-after", "bye-right-after"])
def test_a_reinvite_naming_a_new_address_moves_the_stream_and_says_so(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str, after: int
) -> None:
    """An SBC failover: the re-INVITE's SDP names 127.0.0.3; its packets are accepted at once.
    The change is announced once per stream, also when the call ends before any activity report
    could show it (``bye-right-after``: 0.3 s of audio from the new address, then BYE)."""
    daemon = start_srs(_config(hooks, 1))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    first = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    play([(g, 0.0, 75) for g in first])
    again = peer.invite(FAILOVER, [31000, 31002], version=2)
    assert again.ports == answer.ports
    moved = _streams(FAILOVER, answer.ports, MOVED, 0x5BD0)
    play([(m, 0.0, after) for m in moved])
    time.sleep(0.3)
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    # the failover's tone is recorded (the SBC's may be covered by it: a media worker that started
    # late under load anchors the first stream late, and the later stream's audio wins an overlap)
    frames = _tone_frames(rec, MOVED)
    assert min(frames.values()) >= after // 5, (frames, _stream_stats(rec))
    for label, old, new in zip(("1", "2"), first, moved, strict=True):
        stats = _stream_stats(rec)[label]
        assert stats["source_changes"] == 1, stats
        assert stats["sources"] == [old.address, new.address], stats
        # the new SDP reaches the media worker before the answer leaves: no packet is lost
        assert (stats["packets_received"], stats["packets_dropped_source"]) == (75 + after, 0), stats
    changed = hooks.wait_for(
        lambda e: e["event"] == "recording_source_changed" and e["data"]["id"] == rec["id"], within=5.0
    )
    time.sleep(0.5)  # a duplicate would come within this
    changed = [d for d in hooks.events() if d.envelope["event"] == "recording_source_changed"]
    assert sorted(d.envelope["data"]["details"]["stream"] for d in changed) == ["1", "2"], changed
    for delivery in changed:
        details = delivery.envelope["data"]["details"]
        assert details["current"].startswith(f"{FAILOVER}:") and details["previous"].startswith(f"{SBC}:")
    assert any("RTP source changed" in w for w in rec["warnings"]), rec["warnings"]
    logged = [e for e in daemon.log_events() if e.get("event") == "recording_source_changed"]
    assert len(logged) == 2, logged
    for s in (*first, *moved):
        s.close()
    peer.close()


def test_no_media_warning_names_the_sender_that_was_not_accepted(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    """The SBC is behind a NAT: its SDP says 127.0.0.1, its packets come from 127.0.0.2."""
    daemon = start_srs(_config(hooks, 1, "no_media_warning_s = 2\n"))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    natted = _streams(STRANGER, answer.ports[:1], (ATTACK,), 0xAA00)
    play([(natted[0], 0.0, 150)])  # 3 s
    got = hooks.wait_for(lambda e: e["event"] == "recording_no_media", within=10.0)
    assert got, [d.envelope["event"] for d in hooks.events()]
    time.sleep(1.0)  # both streams' warnings come from one check; their deliveries may not
    got = [d for d in hooks.events() if d.envelope["event"] == "recording_no_media"]
    by_stream = {d.envelope["data"]["details"]["stream"]: d.envelope["data"]["details"] for d in got}
    assert set(by_stream) == {"1", "2"}, by_stream
    assert by_stream["1"]["listen"] == f"{answer.host}:{answer.ports[0]}"
    assert by_stream["1"]["refused"] and by_stream["1"]["refused"][0]["address"] == natted[0].address
    assert by_stream["2"]["refused"] == []
    logged = [e for e in daemon.log_events() if e.get("event") == "recording_no_media"]
    assert any(natted[0].address in str(e.get("refused")) for e in logged), logged
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    warning = next(w for w in rec["warnings"] if w.startswith("stream 1: no RTP"))
    assert natted[0].address in warning and f"{answer.ports[0]}" in warning, rec["warnings"]
    natted[0].close()
    peer.close()


def test_rtp_that_stops_ends_the_session_with_bye_and_a_reason(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    """The SBC's BYE is lost: RTP stops and nothing else comes. srs hangs up after rtp_timeout_s."""
    daemon = start_srs(_config(hooks, 1, "rtp_timeout_s = 3\n"))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    genuine = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    play([(g, 0.0, 50) for g in genuine])
    stopped = time.monotonic()
    bye = peer.wait_for_bye(within=10.0)
    waited = time.monotonic() - stopped
    assert bye is not None, peer.received[-3:]
    assert 2.5 <= waited <= 8.0, waited  # 3 s, plus up to 2 s of activity polling, plus load
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    assert rec["completeness"]["end_reason"].startswith("rtp timeout"), rec["completeness"]
    assert "rtp timeout: no RTP for 3 s" in rec["warnings"], rec["warnings"]
    assert any(e.get("event") == "rtp_timeout" for e in daemon.log_events())
    for g in genuine:
        g.close()
    peer.close()


def test_a_held_call_is_not_timed_out(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    """Hold (a=inactive) is silence by agreement: no timeout, no no-media warning."""
    daemon = start_srs(_config(hooks, 1, "rtp_timeout_s = 2\nno_media_warning_s = 1\n"))
    peer = _peer(daemon, crid)
    answer = peer.invite(SBC, [30000, 30002])
    genuine = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    play([(g, 0.0, 25) for g in genuine])
    peer.invite(SBC, [30000, 30002], direction="inactive", version=2)
    assert peer.wait_for_bye(within=4.0) is None
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    assert rec["completeness"]["end_reason"] == "bye", rec["completeness"]
    assert not [w for w in rec["warnings"] if "no RTP" in w or "rtp timeout" in w], rec["warnings"]
    for g in genuine:
        g.close()
    peer.close()


def test_sip_peer_mode_accepts_the_sip_host_when_the_sdp_names_another(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    """An SBC whose SDP names an address its RTP does not come from; strangers still lose the race."""
    daemon = start_srs(_config(hooks, 1, 'rtp_source = "sip-peer"\n'))
    peer = _peer(daemon, crid)
    answer = peer.invite("192.0.2.55", [30000, 30002])  # TEST-NET: nobody sends from there
    stranger = _streams(STRANGER, answer.ports, (ATTACK, ATTACK), 0xBAD0)
    genuine = _streams(SBC, answer.ports, GENUINE, 0x5BC0)
    play([(s, 0.0, 100) for s in stranger] + [(g, 0.05, 100) for g in genuine])
    time.sleep(0.3)
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    frames = _tone_frames(rec, (*GENUINE, ATTACK))
    assert frames[ATTACK] == 0 and min(frames[GENUINE[0]], frames[GENUINE[1]]) >= 20, frames
    for label in ("1", "2"):
        stats = _stream_stats(rec)[label]
        assert (stats["packets_received"], stats["packets_dropped_source"]) == (100, 100), stats
    for s in (*stranger, *genuine):
        s.close()
    peer.close()


def test_any_mode_records_a_natted_lab_sbc(
    start_srs: Callable[..., SrsDaemon], hooks: HookReceiver, crid: str
) -> None:
    """``rtp_source = "any"``: the first sender latches, wherever the SDP says the media is."""
    daemon = start_srs(_config(hooks, 1, 'rtp_source = "any"\nno_media_warning_s = 1\n'))
    peer = _peer(daemon, crid)
    answer = peer.invite("192.0.2.55", [30000, 30002])
    natted = _streams(STRANGER, answer.ports, GENUINE, 0x5BC0)
    play([(n, 0.0, 100) for n in natted])
    time.sleep(0.3)
    peer.bye()
    rec = wait_recording(crid, daemon.data_dir, within=10.0)
    assert min(_tone_frames(rec, GENUINE).values()) >= 20
    for label, stream in zip(("1", "2"), natted, strict=True):
        stats = _stream_stats(rec)[label]
        assert (stats["packets_received"], stats["source"]) == (100, stream.address), stats
    assert not [w for w in rec["warnings"] if "no RTP" in w], rec["warnings"]
    for n in natted:
        n.close()
    peer.close()
