"""2xx retransmission by the UAS core (RFC 3261 §13.3.1.4) until ACK or 64*T1."""

from __future__ import annotations

import itertools

from srs.sip.routing import Address, Outgoing, Transport
from srs.sip.uas import AckTimeout, TwoXxRetransmitter

DEST = Address("192.0.2.10", 5060)
OK = b"SIP/2.0 200 OK\r\n\r\n"


def run_until_idle(retransmitter: TwoXxRetransmitter) -> tuple[list[float], list[tuple[float, AckTimeout]]]:
    sent: list[float] = []
    timeouts: list[tuple[float, AckTimeout]] = []
    while (deadline := retransmitter.next_deadline()) is not None:
        for event in retransmitter.on_timer(deadline):
            if isinstance(event, Outgoing):
                assert event == Outgoing(OK, DEST, Transport.UDP)
                sent.append(deadline)
            else:
                timeouts.append((deadline, event))
    return sent, timeouts


def test_schedule_doubles_to_t2_and_gives_up_at_64_t1() -> None:
    retransmitter = TwoXxRetransmitter(t1=0.5, t2=4.0)
    retransmitter.start("call-1", OK, DEST, Transport.UDP, 10.0)
    sent, timeouts = run_until_idle(retransmitter)
    intervals = [round(b - a, 6) for a, b in itertools.pairwise([10.0, *sent])]
    assert intervals == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert timeouts == [(42.0, AckTimeout("call-1"))]
    assert len(retransmitter) == 0


def test_ack_stops_retransmission() -> None:
    retransmitter = TwoXxRetransmitter()
    retransmitter.start("k", OK, DEST, Transport.UDP, 0.0)
    assert retransmitter.on_timer(0.5) == [Outgoing(OK, DEST, Transport.UDP)]
    assert "k" in retransmitter
    assert retransmitter.ack("k") is True
    assert retransmitter.ack("k") is False
    assert retransmitter.next_deadline() is None
    assert retransmitter.on_timer(100.0) == []


def test_reliable_transport_never_retransmits_but_still_times_out() -> None:
    retransmitter = TwoXxRetransmitter()
    retransmitter.start("k", OK, DEST, Transport.TCP, 0.0)
    assert retransmitter.next_deadline() == 32.0
    assert retransmitter.on_timer(31.9) == []
    assert retransmitter.on_timer(32.0) == [AckTimeout("k")]


def test_explicit_reliable_flag_overrides_transport() -> None:
    retransmitter = TwoXxRetransmitter()
    retransmitter.start("k", OK, DEST, Transport.UDP, 0.0, reliable=True)
    assert retransmitter.next_deadline() == 32.0


def test_late_on_timer_catches_up_in_one_call() -> None:
    retransmitter = TwoXxRetransmitter()
    retransmitter.start("k", OK, DEST, Transport.UDP, 0.0)
    events = retransmitter.on_timer(8.0)
    assert events == [Outgoing(OK, DEST, Transport.UDP)] * 4
    assert retransmitter.next_deadline() == 11.5


def test_independent_keys_and_cancel() -> None:
    retransmitter = TwoXxRetransmitter()
    retransmitter.start("a", OK, DEST, Transport.UDP, 0.0)
    retransmitter.start("b", OK, DEST, Transport.UDP, 0.2)
    assert retransmitter.next_deadline() == 0.5
    retransmitter.cancel("a")
    assert retransmitter.next_deadline() == 0.7
    assert retransmitter.on_timer(32.2)[-1] == AckTimeout("b")
    assert len(retransmitter) == 0
