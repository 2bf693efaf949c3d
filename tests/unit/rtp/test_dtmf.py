"""RFC 4733 §2.3 telephone-event payload and §2.5.1 end-of-event retransmission."""

from __future__ import annotations

import struct

import pytest

from srs.errors import RtpError
from srs.rtp.dtmf import DtmfCollector, DtmfEvent, TelephoneEvent, event_name, parse_telephone_event


def te(event: int, duration: int, end: bool = False, volume: int = 10) -> TelephoneEvent:
    return parse_telephone_event(struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration))


def test_parse_fields() -> None:
    assert parse_telephone_event(bytes([5, 0x8A, 0x03, 0x20])) == TelephoneEvent(5, True, 10, 800)
    assert parse_telephone_event(bytes([11, 0x4A, 0, 160])) == TelephoneEvent(11, False, 10, 160)


@pytest.mark.parametrize("size", range(4))
def test_short_payload_is_rejected(size: int) -> None:
    with pytest.raises(RtpError, match="telephone-event"):
        parse_telephone_event(bytes([1, 2, 3])[:size])


@pytest.mark.parametrize(
    ("event", "name"),
    [(0, "0"), (9, "9"), (10, "*"), (11, "#"), (12, "A"), (15, "D"), (16, "flash"), (70, "event-70")],
)
def test_event_names(event: int, name: str) -> None:
    assert event_name(event) == name


def test_one_press_with_three_end_packets_is_one_event() -> None:
    c = DtmfCollector(8000)
    results = [
        c.add(te(5, 400), 1000, 125),
        c.add(te(5, 800), 1000, 125),
        c.add(te(5, 1200, end=True), 1000, 125),
        c.add(te(5, 1200, end=True), 1000, 125),
        c.add(te(5, 1200, end=True), 1000, 125),
    ]
    assert results == [None, None, DtmfEvent("5", 125, 150), None, None]
    assert c.finish() == [DtmfEvent("5", 125, 150)]


def test_lost_end_packets_reported_at_next_event_and_finish() -> None:
    c = DtmfCollector(8000)
    c.add(te(1, 400), 1000, 0)
    c.add(te(1, 960), 1000, 0)
    assert c.add(te(2, 160), 5000, 500) == DtmfEvent("1", 0, 120)
    assert c.finish() == [DtmfEvent("1", 0, 120), DtmfEvent("2", 500, 20)]


def test_late_retransmission_of_finished_event_is_ignored() -> None:
    c = DtmfCollector(8000)
    c.add(te(1, 800, end=True), 1000, 0)
    c.add(te(2, 800, end=True), 9000, 1000)
    assert c.add(te(1, 800, end=True), 1000, 0) is None
    assert c.add(te(3, 800), 500, 0) is None  # older than the current event
    assert [e.digit for e in c.finish()] == ["1", "2"]


def test_end_packet_reordered_before_updates_keeps_longest_duration() -> None:
    c = DtmfCollector(8000)
    assert c.add(te(7, 1600, end=True), 2000, 10) == DtmfEvent("7", 10, 200)
    assert c.add(te(7, 800), 2000, 10) is None
    assert c.events == [DtmfEvent("7", 10, 200)]


def test_wideband_clock_durations() -> None:
    c = DtmfCollector(48000)
    assert c.add(te(0, 4800, end=True), 0, 0) == DtmfEvent("0", 0, 100)
