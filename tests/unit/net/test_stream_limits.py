"""Connection bounds, sans-IO: who is turned away at accept, when a connection has dawdled too long."""

from __future__ import annotations

from srs.net.stream_limits import ConnectionTable, StreamClock, StreamLimits


def test_acl_then_total_then_per_source() -> None:
    table = ConnectionTable(
        StreamLimits(max_connections=3, max_connections_per_source=2), allows=lambda h: h != "10.0.0.9"
    )
    assert table.refusal("10.0.0.9") == "acl"
    table.opened("10.0.0.1")
    table.opened("10.0.0.1")
    assert table.refusal("10.0.0.1") == "connections_per_source"
    assert table.refusal("10.0.0.2") is None
    table.opened("10.0.0.2")
    assert table.refusal("10.0.0.3") == "connections_total"
    table.closed("10.0.0.1")
    assert table.refusal("10.0.0.1") is None and table.total == 2 and table.held("10.0.0.1") == 1


def test_closing_more_than_opened_never_goes_negative_and_forgets_idle_hosts() -> None:
    table = ConnectionTable(StreamLimits())
    table.opened("a")
    table.closed("a")
    table.closed("a")
    assert table.total == 0 and table.held("a") == 0 and table._per_host == {}


def test_zero_switches_the_counts_off() -> None:
    table = ConnectionTable(StreamLimits(max_connections=0, max_connections_per_source=0))
    for _ in range(10_000):
        table.opened("a")
    assert table.refusal("a") is None


def test_header_clock_runs_from_accept_and_from_each_message_start() -> None:
    limits = StreamLimits(header_timeout=10, idle_timeout=100)
    clock = StreamClock(0.0, 0.0)  # accepted at 0: the peer owes srs a message
    assert clock.expired(10.0, limits) is None
    assert clock.expired(10.1, limits) == "header_timeout"
    clock.received(5.0, framed=False, buffered=100)  # bytes, but no whole message: still from 0
    assert clock.expired(10.1, limits) == "header_timeout"
    clock.received(6.0, framed=True, buffered=0)  # a whole message: the clock stops
    assert clock.expired(50.0, limits) is None
    clock.received(60.0, framed=True, buffered=30)  # a message and the start of the next
    assert clock.expired(70.0, limits) is None and clock.expired(70.1, limits) == "header_timeout"


def test_idle_clock_and_outbound_connections() -> None:
    limits = StreamLimits(header_timeout=10, idle_timeout=100)
    clock = StreamClock(0.0, None)  # srs opened it: no message owed
    assert clock.expired(100.0, limits) is None
    assert clock.expired(100.1, limits) == "idle_timeout"
    clock.received(90.0, framed=True, buffered=0)
    assert clock.expired(150.0, limits) is None
    assert clock.expired(150.0, StreamLimits(header_timeout=0, idle_timeout=0)) is None
