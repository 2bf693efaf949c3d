"""RFC 4028 with srs as refresher, and what differs between UDP and TCP (RFC 3261 §17, §18)."""

from __future__ import annotations

import pytest

from srs.sip.message import Request
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import SessionEnded, SessionOffered, UaEvent

from .sbc import SBC, SRS, Sbc, ack_for, invite, make_ua, of_type, request, requests, responses

TIMER = (("Session-Expires", "600;refresher=uas"), ("Supported", "timer"))


def established(
    transport: Transport = Transport.UDP, extra: tuple[tuple[str, str], ...] = ()
) -> tuple[SiprecUserAgent, Sbc, str]:
    ua = make_ua()
    sbc = Sbc(ua, transport)
    offered = of_type(sbc.send(invite(extra=extra), 0.0), SessionOffered)[0]
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    sbc.send(ack_for(ok), 0.1)
    return ua, sbc, offered.session_id


def answer(req: Request, status: int, reason: str = "OK") -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\nVia: {req.headers.get('via')}\r\nFrom: {req.headers.get('from')}\r\n"
        f"To: {req.headers.get('to')}\r\nCall-ID: {req.call_id}\r\nCSeq: {req.headers.get('cseq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def test_refresher_uas_is_kept_and_srs_refreshes_with_update_at_half_interval() -> None:
    ua, sbc, _ = established(extra=TIMER)
    assert requests(ua.on_timer(299.0)) == []
    (update,) = requests(ua.on_timer(300.0))
    assert update.method == "UPDATE" and update.body == b""
    assert update.headers.get("session-expires") == "600;refresher=uas"
    assert update.headers.get("contact") and update.to_addr.tag == "sbc-tag-1"
    assert sbc.send(answer(update, 200), 300.1) == []
    events = ua.on_timer(600.0)  # the next refresh; the 2xx renewed the session to 900.1
    assert of_type(events, SessionEnded) == []
    (second,) = requests(events)
    assert second.method == "UPDATE" and second.cseq.number == update.cseq.number + 1


def test_refresh_answered_481_ends_the_session() -> None:
    ua, sbc, session_id = established(extra=TIMER)
    (update,) = requests(ua.on_timer(300.0))
    events = sbc.send(answer(update, 481, "Call/Transaction Does Not Exist"), 300.1)
    assert [r.method for r in requests(events)] == ["BYE"]
    (ended,) = of_type(events, SessionEnded)
    assert (ended.session_id, ended.reason) == (session_id, "session refresh failed with 481")


def test_unanswered_refresh_ends_the_session_after_timer_f() -> None:
    ua, _, _ = established(extra=TIMER)
    ua.on_timer(300.0)
    events: list[UaEvent] = []
    now = 300.0
    while not of_type(events, SessionEnded) and now < 400:
        deadline = ua.next_deadline()
        assert deadline is not None
        now = deadline
        events = ua.on_timer(now)
    assert now == pytest.approx(300.0 + 32.0)
    assert of_type(events, SessionEnded)[0].reason == "session refresh failed with 408"


def test_refresh_rejected_otherwise_ends_at_expiry() -> None:
    ua, sbc, _ = established(extra=TIMER)
    (update,) = requests(ua.on_timer(300.0))
    assert sbc.send(answer(update, 405, "Method Not Allowed"), 300.1) == []
    ua.on_timer(599.0)
    assert of_type(ua.on_timer(600.0), SessionEnded)[0].reason == "session expired"


# ------------------------------------------------------------------ UDP vs TCP


@pytest.mark.parametrize(("transport", "resent"), [(Transport.UDP, 1), (Transport.TCP, 0)])
def test_error_response_to_invite_is_retransmitted_only_on_udp(transport: Transport, resent: int) -> None:
    ua = make_ua()
    events = Sbc(ua, transport).send(invite(require="siprec, foo"), 0.0)
    final = of_type(events, Outgoing)[-1]
    assert of_type(ua.on_timer(0.5), Outgoing) == [final] * resent  # Timer G only on UDP


def test_ack_stops_timer_g() -> None:
    ua = make_ua()
    sbc = Sbc(ua)
    (_, refused) = responses(sbc.send(invite(require="siprec, foo"), 0.0))
    assert sbc.send(request("ACK", to_tag=refused.to_addr.tag, contact=None), 0.2) == []
    assert of_type(ua.on_timer(0.5), Outgoing) == []


def test_udp_response_goes_to_rport_source_and_tcp_to_the_connection() -> None:
    nat = Address("203.0.113.7", 40123)
    udp = make_ua().receive(invite(), nat, Transport.UDP, SRS, 0.0)
    assert of_type(udp, Outgoing)[0].destination == nat  # RFC 3581: received + rport
    tcp = make_ua().receive(invite(via_transport="TCP"), nat, Transport.TCP, SRS, 0.0)
    assert (
        of_type(tcp, Outgoing)[0].destination == nat and of_type(tcp, Outgoing)[0].transport is Transport.TCP
    )


def test_udp_without_rport_still_goes_to_the_source_port() -> None:
    """RFC 3581 behaviour whether or not rport was asked: never the Via sent-by (or maddr)."""
    data = invite().replace(b";rport", b";maddr=192.0.2.99")
    source = Address("192.0.2.10", 40000)
    events = make_ua().receive(data, source, Transport.UDP, SRS, 0.0)
    assert {event.destination for event in of_type(events, Outgoing)} == {source}


def test_bye_from_srs_goes_over_the_transport_the_session_came_on() -> None:
    for transport in (Transport.UDP, Transport.TCP, Transport.TLS):
        ua, _, _ = established(transport)
        (bye,) = of_type(ua.hangup_all(1.0, "x"), Outgoing)
        assert bye.transport is transport and bye.destination == SBC
        assert f"SIP/2.0/{transport.value} 198.51.100.1:5060".encode() in bye.data
