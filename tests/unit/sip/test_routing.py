"""Response routing: responses go where the request came from.

RFC 3261 §18.2.1 stamping and RFC 3581 §4 (received, rport) are kept; the destination is the
packet's source whatever the Via says (maddr, received, sent-by, rport), so a forged Via cannot
send srs's answers to a third host; reliable transports answer on the connection.
"""

from __future__ import annotations

import pytest

from srs.sip.headers import Via
from srs.sip.message import Request, parse_message, serialize
from srs.sip.routing import (
    Address,
    Transport,
    reconnect_address,
    response_destination,
    same_host,
    stamp_received,
)
from tests.unit.sip.fixtures import request


def make(via_host: str = "10.1.1.1", via_port: int | None = 4540, params: str = "") -> Request:
    msg = parse_message(
        request("OPTIONS", branch="z9hG4bKkjshdyff", via_host=via_host, via_port=via_port, via_params=params)
    )
    assert isinstance(msg, Request)
    return msg


def test_rfc3581_section4_example() -> None:
    # Via: SIP/2.0/UDP 10.1.1.1:4540;rport;branch=z9hG4bKkjshdyff, from 192.0.2.1:9988
    raw = request(
        "OPTIONS", branch=None, via_host="10.1.1.1", via_port=4540, via_params=";rport;branch=z9hG4bKkjshdyff"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    stamped = stamp_received(msg, Address("192.0.2.1", 9988))
    via = stamped.top_via
    assert via.received == "192.0.2.1"
    assert via.rport == 9988
    assert via.branch == "z9hG4bKkjshdyff"
    assert (
        stamped.headers.get("Via")
        == "SIP/2.0/UDP 10.1.1.1:4540;rport=9988;branch=z9hG4bKkjshdyff;received=192.0.2.1"
    )
    assert response_destination(via, Address("192.0.2.1", 9988), Transport.UDP) == Address("192.0.2.1", 9988)


def test_received_added_when_host_differs_without_rport() -> None:
    stamped = stamp_received(make(), Address("192.0.2.1", 9988))
    assert stamped.top_via.received == "192.0.2.1"
    assert not stamped.top_via.rport_requested
    # RFC 3581 behaviour without rport: the source port, not the sent-by port (§18.2.2 would say 4540)
    assert response_destination(stamped.top_via, Address("192.0.2.1", 9988), Transport.UDP) == Address(
        "192.0.2.1", 9988
    )


def test_nothing_added_when_source_matches_sent_by() -> None:
    msg = make("192.0.2.1")
    assert stamp_received(msg, Address("192.0.2.1", 4540)) is msg


def test_received_added_for_hostname_sent_by() -> None:
    stamped = stamp_received(make("pc33.atlanta.example.com", None), Address("192.0.2.101", 5060))
    assert stamped.top_via.received == "192.0.2.101"
    assert response_destination(stamped.top_via, Address("192.0.2.101", 5060), Transport.UDP) == Address(
        "192.0.2.101", 5060
    )


def test_ipv6_hosts_compare_as_addresses() -> None:
    assert same_host("2001:DB8::1", "[2001:db8:0::1]")
    assert not same_host("2001:db8::1", "2001:db8::2")
    assert same_host("Host.Example.COM", "host.example.com")
    msg = make("[2001:db8::1]", 5060)
    assert stamp_received(msg, Address("2001:db8:0:0::1", 5060)) is msg


def test_only_the_top_via_is_stamped() -> None:
    raw = request("OPTIONS", via_host="10.0.0.1", via_params=";rport").replace(
        b"Max-Forwards", b"Via: SIP/2.0/UDP 10.9.9.9;rport;branch=z9hG4bKlower\r\nMax-Forwards"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    stamped = stamp_received(msg, Address("198.51.100.7", 1234))
    assert [v.received for v in stamped.vias] == ["198.51.100.7", None]
    assert stamped.vias[1].rport is None
    assert parse_message(serialize(stamped)) == stamped


@pytest.mark.parametrize(
    ("via", "source", "transport"),
    [
        # reliable: back over the connection the request came in on
        ("SIP/2.0/TCP 10.1.1.1:5070;branch=z9hG4bK1", ("192.0.2.1", 40001), Transport.TCP),
        ("SIP/2.0/TLS a.example.com;branch=z9hG4bK1", ("192.0.2.1", 40001), Transport.TLS),
        # maddr is never followed (it used to win on UDP: a reflection to any address)
        ("SIP/2.0/UDP a.example.com;maddr=224.2.0.1;ttl=1", ("192.0.2.1", 5), Transport.UDP),
        ("SIP/2.0/UDP 192.0.2.1;maddr=198.51.100.9;rport;branch=z9hG4bK1", ("192.0.2.1", 5), Transport.UDP),
        # sent-by port or default port: the source port instead
        ("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", ("192.0.2.1", 5), Transport.UDP),
        ("SIP/2.0/UDP 192.0.2.1:5080;branch=z9hG4bK1", ("192.0.2.1", 5), Transport.UDP),
        # a sent-by naming another host gets nothing
        ("SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK1", ("192.0.2.1", 5), Transport.UDP),
        # a received the sender wrote itself is ignored
        ("SIP/2.0/UDP 10.1.1.1:5070;received=198.51.100.9", ("192.0.2.9", 5), Transport.UDP),
        # rport requested but not yet filled: the source
        ("SIP/2.0/UDP 10.1.1.1:5070;rport", ("192.0.2.9", 7777), Transport.UDP),
        # an rport the sender filled itself is ignored too
        ("SIP/2.0/UDP 10.1.1.1;rport=6000;received=198.51.100.9", ("192.0.2.9", 1), Transport.UDP),
    ],
)
def test_response_destination_is_the_source(via: str, source: tuple[str, int], transport: Transport) -> None:
    assert response_destination(Via.parse(via), Address(*source), transport) == Address(*source)


def test_forged_received_and_rport_are_overwritten_by_the_stamp() -> None:
    """The Via echoed in the response says where the request really came from."""
    msg = make("192.0.2.1", 5060, ";rport=6000;received=198.51.100.9")
    stamped = stamp_received(msg, Address("192.0.2.1", 40000))
    assert stamped.top_via.received == "192.0.2.1"
    assert stamped.top_via.rport == 40000
    plain = make("192.0.2.1", 5060, ";received=198.51.100.9")
    assert stamp_received(plain, Address("192.0.2.1", 5060)).top_via.received == "192.0.2.1"


def test_reconnect_address_is_the_source_host_at_the_via_port() -> None:
    """§18.2.2 for a closed connection: the host that connected (never a Via host), its listening port."""
    via = Via.parse("SIP/2.0/TCP 198.51.100.9:5070;maddr=203.0.113.1;branch=z9hG4bK1")
    assert reconnect_address(via, Address("192.0.2.1", 40001), Transport.TCP) == Address("192.0.2.1", 5070)
    tls = Via.parse("SIP/2.0/TLS sbc.example.com;branch=z9hG4bK1")
    assert reconnect_address(tls, Address("192.0.2.1", 40001), Transport.TLS) == Address("192.0.2.1", 5061)
    assert reconnect_address(via, Address("192.0.2.1", 40001), Transport.UDP) is None


def test_transport_properties() -> None:
    assert not Transport.UDP.reliable and Transport.TCP.reliable and Transport.TLS.reliable
    assert Transport.TLS.default_port == 5061 and Transport.UDP.default_port == 5060
    assert Transport.from_via("tcp") is Transport.TCP
    assert Transport.from_via("SCTP") is Transport.UDP
    assert str(Address("2001:db8::1", 5060)) == "[2001:db8::1]:5060"
