"""The media watch: no-media warnings, RTP timeouts and source changes from activity reports."""

from __future__ import annotations

from srs.media.track import StreamActivity
from srs.mediaplane.watch import MediaWatch, NoMedia, RtpTimeout, SourceChanged, WatchedStream

LISTEN = "192.0.2.1:20000"


def stream(port: int = 20000, *, expects: bool = True, since: float = 100.0) -> WatchedStream:
    return WatchedStream(port, str(port), expects, since, f"192.0.2.1:{port}")


def seen(
    received: int = 0,
    last: float | None = None,
    source: str | None = None,
    changes: int = 0,
    refused: tuple[tuple[str, int], ...] = (),
    previous: str | None = None,
) -> StreamActivity:
    return StreamActivity(received, last, source, changes, refused, previous)


def test_no_media_is_raised_once_and_names_the_refused_sender() -> None:
    watch = MediaWatch(no_media_after=5.0, timeout=0.0)
    watch.arm("k", [stream()])
    refused = (("198.51.100.7:4000", 12),)
    assert watch.check(104.9, {"k": {20000: seen(refused=refused)}}) == []
    events = watch.check(105.0, {"k": {20000: seen(refused=refused)}})
    assert events == [NoMedia("k", "20000", LISTEN, 5.0, refused)]
    assert "198.51.100.7:4000 (12 packets)" in events[0].message() and LISTEN in events[0].message()
    assert watch.check(106.0, {"k": {20000: seen(refused=refused)}}) == []


def test_no_media_is_not_raised_for_a_stream_that_receives_or_is_not_expected_to_send() -> None:
    watch = MediaWatch(no_media_after=5.0, timeout=0.0)
    watch.arm("k", [stream(20000), stream(20002, expects=False)])
    assert watch.check(200.0, {"k": {20000: seen(received=3, last=101.0, source="192.0.2.9:1")}}) == []


def test_a_report_older_than_the_answer_decides_nothing() -> None:
    """A worker's reply may predate the answer: a missing track then is not a missing stream."""
    watch = MediaWatch(no_media_after=1.0, timeout=1.0)
    watch.arm("k", [stream(since=100.0)])
    assert watch.check(99.0, {}) == []


def test_rtp_timeout_counts_from_the_last_packet_of_any_expected_stream() -> None:
    watch = MediaWatch(no_media_after=0.0, timeout=60.0)
    watch.arm("k", [stream(20000), stream(20002)])
    report = {"k": {20000: seen(10, 110.0, "a:1"), 20002: seen(10, 130.0, "a:2")}}
    assert watch.check(189.0, report) == []
    assert watch.check(190.0, report) == [RtpTimeout("k", 60.0, 60.0)]
    assert watch.check(300.0, report) == []  # raised once
    assert RtpTimeout("k", 61.4, 60.0).reason() == "rtp timeout: no RTP for 60 s"


def test_held_streams_never_time_out_and_resuming_restarts_the_clock() -> None:
    watch = MediaWatch(no_media_after=5.0, timeout=10.0)
    watch.arm("k", [stream(expects=False)])
    assert watch.check(1000.0, {"k": {20000: seen(5, 101.0, "a:1")}}) == []
    watch.arm("k", [stream(since=1000.0)])  # resumed by re-INVITE at 1000
    assert watch.check(1009.0, {"k": {20000: seen(5, 101.0, "a:1")}}) == []
    assert watch.check(1010.0, {"k": {20000: seen(5, 101.0, "a:1")}}) == [RtpTimeout("k", 10.0, 10.0)]


def test_timeout_zero_is_off() -> None:
    watch = MediaWatch(no_media_after=0.0, timeout=0.0)
    watch.arm("k", [stream()])
    assert watch.check(10_000.0, {"k": {20000: seen()}}) == []


def test_a_source_change_is_raised_with_both_addresses() -> None:
    watch = MediaWatch(no_media_after=5.0, timeout=0.0)
    watch.arm("k", [stream()])
    assert watch.check(101.0, {"k": {20000: seen(5, 101.0, "192.0.2.10:4000")}}) == []
    moved = seen(9, 102.0, "192.0.2.20:4000", changes=1, previous="192.0.2.10:4000")
    events = watch.check(102.0, {"k": {20000: moved}})
    assert events == [SourceChanged("k", "20000", "192.0.2.10:4000", "192.0.2.20:4000", 1)]
    assert watch.check(103.0, {"k": {20000: seen(9, 103.0, "192.0.2.20:4000", changes=1)}}) == []


def test_a_change_before_any_report_still_names_the_previous_source() -> None:
    watch = MediaWatch(no_media_after=5.0, timeout=0.0)
    watch.arm("k", [stream()])
    moved = seen(9, 102.0, "192.0.2.20:4000", changes=1, previous="192.0.2.10:4000")
    (event,) = watch.check(102.0, {"k": {20000: moved}})
    assert (event.previous, event.current) == ("192.0.2.10:4000", "192.0.2.20:4000")


def test_forgotten_sessions_raise_nothing_and_say_which_changes_were_reported() -> None:
    watch = MediaWatch(no_media_after=1.0, timeout=1.0)
    watch.arm("k", [stream(20000), stream(20002)])
    watch.check(101.0, {"k": {20000: seen(5, 101.0, "192.0.2.20:4000", changes=1)}})
    assert watch.forget("k") == {"20000": 1, "20002": 0}
    assert len(watch) == 0 and watch.check(1000.0, {}) == [] and watch.forget("k") == {}
