"""Bad input is normal input: RFC 3261 §8.2 / §21.4 answers, admission, and receive() that never raises."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srs.errors import MessageTooLarge, SipParseError
from srs.sdp.model import Codec
from srs.sip.message import parse_message
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import MessageDropped, RequestRefused, SessionEnded, SessionOffered
from srs.siprec.settings import UaSettings

from .sbc import SBC, SRS, Sbc, audio, invite, make_ua, of_type, request, responses, sdp, statuses


def test_unparseable_request_with_readable_headers_gets_400_with_the_reason() -> None:
    bad = invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n")
    events = Sbc(make_ua()).send(bad, 0.0)
    (response,) = responses(events)
    assert response.status == 400 and response.reason == "Bad Request"
    assert "malformed header line" in (response.headers.get("warning") or "")
    assert response.call_id == "f81d4fae-7dec-11d0-a765@sbc.example.com"
    assert response.cseq.method == "INVITE" and response.to_addr.tag == "tok1"
    assert of_type(events, Outgoing)[0].destination == SBC
    (refused,) = of_type(events, RequestRefused)
    assert refused.method == "INVITE" and refused.status == 400


def test_content_length_longer_than_the_datagram_gets_400() -> None:
    bad = invite()[:-40]
    (response,) = responses(Sbc(make_ua()).send(bad, 0.0))
    assert response.status == 400 and "Content-Length" in (response.headers.get("warning") or "")


def test_wrong_sip_version_gets_505() -> None:
    bad = invite().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    (response,) = responses(Sbc(make_ua()).send(bad, 0.0))
    assert response.status == 505


def test_unsupported_uri_scheme_gets_416() -> None:
    bad = invite(uri="mailto:srs@example.com")
    (response,) = responses(Sbc(make_ua()).send(bad, 0.0))
    assert response.status == 416


def test_bad_request_reply_follows_rport_over_udp() -> None:
    bad = invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n")
    source = Address("203.0.113.5", 31000)
    events = make_ua().receive(bad, source, Transport.UDP, SRS, 0.0)
    assert of_type(events, Outgoing)[0].destination == source


def test_malformed_ack_and_responses_are_never_answered() -> None:
    ack = request("ACK", to_tag="x").replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n")
    assert [type(e) for e in Sbc(make_ua()).send(ack, 0.0)] == [MessageDropped]
    response = b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n"
    assert [type(e) for e in Sbc(make_ua()).send(response, 0.0)] == [MessageDropped]


def test_garbage_without_transaction_headers_is_dropped() -> None:
    for garbage in (b"", b"\x00\xff" * 40, b"HELLO\r\n\r\n", b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"):
        events = Sbc(make_ua()).send(garbage, 0.0)
        assert [type(e) for e in events] == [MessageDropped], garbage


def test_answer_unframeable_sends_513_for_an_oversized_stream_message() -> None:
    ua = make_ua()
    head = invite().split(b"\r\n\r\n")[0]
    events = ua.answer_unframeable(
        head, MessageTooLarge("message of 70000 bytes"), SBC, Transport.TCP, SRS, 0.0
    )
    (response,) = responses(events)
    assert response.status == 513 and response.reason == "Message Too Large"
    assert of_type(events, Outgoing)[0].transport is Transport.TCP
    assert of_type(events, Outgoing)[0].destination == SBC


def test_answer_unframeable_without_headers_is_a_drop() -> None:
    events = make_ua().answer_unframeable(b"\x16\x03\x01", SipParseError("no"), SBC, Transport.TCP, SRS, 0.0)
    assert [type(e) for e in events] == [MessageDropped]


def test_an_answer_that_cannot_be_built_refuses_with_500_and_ends_the_session() -> None:
    def broken(codec: Codec) -> bool:
        raise RuntimeError("decoder table gone")

    ua = SiprecUserAgent(UaSettings(can_decode=broken, new_token=lambda: "t"))
    offered = of_type(Sbc(ua).send(invite(), 0.0), SessionOffered)[0]
    events = ua.accept(offered.session_id, [30000, 30002], 0.0)
    assert statuses(events) == [500]
    (ended,) = of_type(events, SessionEnded)
    assert ended.session_id == offered.session_id and not ended.answered
    assert ua.active_sessions == 0
    events = Sbc(ua).send(request("OPTIONS", contact=None, branch="z9hG4bKopt"), 1.0)
    assert statuses(events) == [200]


def test_a_reoffer_that_cannot_be_answered_is_refused_and_the_session_goes_on() -> None:
    broken = {"now": False}

    def can_decode(codec: Codec) -> bool:
        if broken["now"]:
            raise RuntimeError("decoder table gone")
        return codec.encoding == "PCMU"

    ua = SiprecUserAgent(
        UaSettings(can_decode=can_decode, new_token=iter(f"t{i}" for i in range(99)).__next__)
    )
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    broken["now"] = True
    update = request(
        "UPDATE",
        cseq=2,
        branch="z9hG4bKu",
        to_tag=ok.to_addr.tag,
        content=("application/sdp", sdp(audio(1, "1"))),
    )
    sbc.send(update, 1.0)
    events = ua.accept(offered.session_id, [], 1.0)
    assert statuses(events) == [500] and of_type(events, SessionEnded) == []
    assert ua.active_sessions == 1
    broken["now"] = False
    retry = request(
        "UPDATE",
        cseq=3,
        branch="z9hG4bKu2",
        to_tag=ok.to_addr.tag,
        content=("application/sdp", sdp(audio(1, "1"))),
    )
    assert len(of_type(sbc.send(retry, 2.0), SessionOffered)) == 1
    assert statuses(ua.accept(offered.session_id, [], 2.0)) == [200]


# ------------------------------------------------------------------ admission


def test_source_outside_allowed_networks_gets_403() -> None:
    ua = make_ua(allowed_networks=("10.0.0.0/8", "2001:db8::/32"))
    events = Sbc(ua).send(invite(), 0.0)
    (response,) = responses(events)
    assert response.status == 403
    assert of_type(events, RequestRefused)[0].detail == "source not allowed"
    assert ua.active_sessions == 0 and len(ua.transactions) == 0  # refused without state


def test_sources_inside_allowed_networks_are_served() -> None:
    ua = make_ua(allowed_networks=("192.0.2.0/24",))
    assert len(of_type(Sbc(ua).send(invite(), 0.0), SessionOffered)) == 1
    v6 = make_ua(allowed_networks=("2001:db8::/32",))
    events = v6.receive(invite(), Address("2001:db8::10", 5060), Transport.UDP, SRS, 0.0)
    assert len(of_type(events, SessionOffered)) == 1


def test_garbage_from_outside_allowed_networks_is_not_answered() -> None:
    ua = make_ua(allowed_networks=("10.0.0.0/8",))
    bad = invite().replace(b"Max-Forwards: 70\r\n", b"Max-Forwards 70\r\n")
    assert [type(e) for e in Sbc(ua).send(bad, 0.0)] == [MessageDropped]


def test_rate_limit_per_source_drops_beyond_the_burst_and_refills() -> None:
    ua = make_ua(rate_limit_per_source=2.0, rate_limit_burst=3.0)
    sbc = Sbc(ua)
    results = [sbc.send(request("OPTIONS", contact=None, branch=f"z9hG4bKo{i}"), 0.0) for i in range(4)]
    assert [statuses(r) for r in results[:3]] == [[200], [200], [200]]
    assert [type(e) for e in results[3]] == [MessageDropped]
    other = ua.receive(
        request("OPTIONS", contact=None, branch="z9hG4bKx"),
        Address("192.0.2.99", 5060),
        Transport.UDP,
        SRS,
        0.0,
    )
    assert statuses(other) == [200]  # another source has its own bucket
    assert statuses(sbc.send(request("OPTIONS", contact=None, branch="z9hG4bKo9"), 0.5)) == [200]


def test_malformed_packets_never_count_against_a_source() -> None:
    ua = make_ua(rate_limit_per_source=1.0, rate_limit_burst=1.0)
    sbc = Sbc(ua)
    for _ in range(20):
        sbc.send(b"garbage\r\n\r\n", 0.0)
    assert statuses(sbc.send(request("OPTIONS", contact=None), 0.0)) == [200]


def test_rate_limit_is_off_by_default() -> None:
    sbc = Sbc(make_ua())
    for i in range(200):
        assert statuses(sbc.send(request("OPTIONS", contact=None, branch=f"z9hG4bKo{i}"), 0.0)) == [200]


# ------------------------------------------------------------------ never raises


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    buffer = bytearray(data)
    for kind, position, value in edits:
        if not buffer:
            break
        index = position % len(buffer)
        if kind == 0:
            buffer[index] = value
        elif kind == 1:
            del buffer[index]
        elif kind == 2:
            buffer.insert(index, value)
        else:
            del buffer[index:]
    return bytes(buffer)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=8
    ),
    st.sampled_from([Transport.UDP, Transport.TCP]),
)
def test_random_mutations_of_an_invite_never_raise(
    edits: list[tuple[int, int, int]], transport: Transport
) -> None:
    ua = make_ua()
    data = _mutate(invite(), edits)
    events = ua.receive(data, SBC, transport, SRS, 0.0)
    for offered in of_type(events, SessionOffered):
        events += ua.accept(offered.session_id, [30000] * offered.ports_needed, 0.0)
    events += ua.on_timer(100.0)
    for out in of_type(events, Outgoing):
        assert isinstance(parse_message(out.data), object)  # everything srs sends parses


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(data: bytes) -> None:
    events = make_ua().receive(data, SBC, Transport.UDP, SRS, 0.0)
    assert all(not isinstance(e, SessionOffered) for e in events) or data.startswith(b"INVITE")
