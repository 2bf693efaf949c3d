"""RFC 3261 §13 / RFC 7866 §6: the initial INVITE of a recording session, byte for byte."""

from __future__ import annotations

import pytest

from srs.sip.message import Response, parse_message
from srs.sip.routing import Outgoing, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import (
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
    UaEvent,
)

from .sbc import (
    METADATA,
    SBC,
    TWO_STREAMS,
    Sbc,
    ack_for,
    invite,
    make_ua,
    multipart,
    of_type,
    request,
    responses,
    statuses,
)


def offer_and_accept(
    ua_kwargs: dict[str, object] | None = None, transport: Transport = Transport.UDP
) -> tuple[SiprecUserAgent, Sbc, SessionOffered, list[UaEvent]]:
    ua = make_ua(**(ua_kwargs or {}))
    sbc = Sbc(ua, transport)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    answered = ua.accept(offered.session_id, [30000, 30002], 0.0)
    return ua, sbc, offered, answered


def test_invite_gets_100_then_an_offer_event_with_metadata() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(), 0.0)
    trying = of_type(events, Outgoing)[0]
    assert trying.data.startswith(b"SIP/2.0 100 Trying\r\n")
    assert trying.destination == SBC
    assert b"\r\nTo: <sip:srs@198.51.100.1>\r\n" in trying.data  # §8.2.6.1: no tag on 100
    offered = of_type(events, SessionOffered)[0]
    assert offered.initial and offered.ports_needed == 2
    assert [m.label for m in offered.offer.media] == ["1", "2"]
    assert offered.metadata is not None
    assert [p.aor for p in offered.metadata.participants] == [
        "sip:alice@atlanta.example.com",
        "sip:bob@biloxi.example.com",
    ]
    received = of_type(events, MetadataReceived)
    assert len(received) == 1 and received[0].merged == offered.metadata
    assert ua.active_sessions == 1


def test_accept_sends_200_with_recvonly_answer_on_ports_in_offer_order() -> None:
    _, _, offered, events = offer_and_accept()
    (ok,) = responses(events)
    assert ok.status == 200 and ok.reason == "OK"
    assert ok.to_addr.tag == "tok2"
    contact = ok.headers.get("contact")
    assert contact == "<sip:srs@198.51.100.1:5060>;+sip.srs"
    assert "siprec" in (ok.headers.get("supported") or "")
    assert ok.headers.get("content-type") == "application/sdp"
    assert ok.headers.get("session-expires") is None
    body = ok.body.decode()
    assert [line for line in body.split("\r\n") if line.startswith("m=")] == [
        "m=audio 30000 RTP/AVP 0 8 101",
        "m=audio 30002 RTP/AVP 0 8 101",
    ]
    assert body.count("a=recvonly") == 2 and "a=sendonly" not in body
    assert body.index("a=label:1") < body.index("m=audio 30002") < body.index("a=label:2")
    (answered,) = of_type(events, SessionAnswered)
    assert answered.initial and answered.session_id == offered.session_id
    assert [s.local_port for s in answered.streams] == [30000, 30002]


def test_contact_over_tls_is_sips_with_transport() -> None:
    _, _, _, events = offer_and_accept(transport=Transport.TLS)
    (ok,) = responses(events)
    assert ok.headers.get("contact") == "<sips:srs@198.51.100.1:5060;transport=tls>;+sip.srs"


def test_2xx_retransmitted_on_udp_at_t1_doubling_to_t2_until_ack() -> None:
    ua, sbc, _, events = offer_and_accept()
    ok_bytes = of_type(events, Outgoing)[0].data
    sent_at = []
    now = 0.0
    while (deadline := ua.retransmitter.next_deadline()) is not None and deadline < 16:
        now = deadline
        resent = of_type(ua.on_timer(now), Outgoing)
        assert [o.data for o in resent] == [ok_bytes]
        sent_at.append(now)
    assert sent_at == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]  # §13.3.1.4: T1, 2T1, 4T1, then T2 = 4 s
    assert sbc.send(ack_for(parse_message(ok_bytes)), 16.0) == []  # type: ignore[arg-type]
    assert len(ua.retransmitter) == 0
    assert of_type(ua.on_timer(40.0), Outgoing) == []
    assert ua.active_sessions == 1


def test_2xx_not_retransmitted_on_tcp() -> None:
    ua, _, _, _ = offer_and_accept(transport=Transport.TCP)
    for now in (0.5, 1.5, 3.5, 7.5):
        assert of_type(ua.on_timer(now), Outgoing) == []


@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP])
def test_no_ack_within_64_t1_sends_bye_and_ends_session(transport: Transport) -> None:
    ua, _, offered, _ = offer_and_accept(transport=transport)
    assert ua.on_timer(31.9) == [] or transport is Transport.UDP
    events = ua.on_timer(32.0)
    byes = [o for o in of_type(events, Outgoing) if o.data.startswith(b"BYE ")]
    assert len(byes) == 1 and byes[0].transport is transport
    (ended,) = of_type(events, SessionEnded)
    assert ended.session_id == offered.session_id and ended.reason == "no ACK for 2xx" and ended.answered
    assert ua.active_sessions == 0


def test_retransmitted_invite_before_answer_gets_the_100_again_and_no_second_session() -> None:
    ua = make_ua()
    sbc = Sbc(ua)
    first = sbc.send(invite(), 0.0)
    again = sbc.send(invite(), 0.5)
    assert of_type(again, SessionOffered) == []
    assert [o.data for o in of_type(again, Outgoing)] == [of_type(first, Outgoing)[0].data]
    assert ua.active_sessions == 1


def test_retransmitted_invite_after_2xx_is_absorbed() -> None:
    # RFC 6026 §7.1: the core retransmits the 2xx on its own timer
    ua, sbc, _, _ = offer_and_accept()
    assert sbc.send(invite(), 0.2) == []
    assert ua.active_sessions == 1


def test_invite_without_metadata_is_accepted() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(content=("application/sdp", TWO_STREAMS)), 0.0)
    (offered,) = of_type(events, SessionOffered)
    assert offered.metadata is None and of_type(events, MetadataReceived) == []
    assert statuses(ua.accept(offered.session_id, [30000, 30002], 0.0)) == [200]


def test_metadata_that_is_not_well_formed_still_records_with_a_warning() -> None:
    broken = METADATA.replace(b"</recording>", b"</recordin")
    ua = make_ua()
    events = Sbc(ua).send(
        invite(content=multipart(("application/sdp", TWO_STREAMS), ("application/rs-metadata+xml", broken))),
        0.0,
    )
    (offered,) = of_type(events, SessionOffered)
    assert offered.warnings, "the damage must be reported"
    assert statuses(ua.accept(offered.session_id, [30000, 30002], 0.0)) == [200]


def test_rs_metadata_without_xml_suffix_and_before_the_sdp() -> None:
    ua = make_ua()
    content = multipart(("application/rs-metadata", METADATA), ("application/sdp", TWO_STREAMS))
    events = Sbc(ua).send(invite(content=content), 0.0)
    (offered,) = of_type(events, SessionOffered)
    assert offered.ports_needed == 2
    assert offered.metadata is not None and len(offered.metadata.participants) == 2


def test_non_siprec_invite_gets_the_configured_reject_status() -> None:
    ua = make_ua(reject_status=403, reject_reason="Recording Only")
    events = Sbc(ua).send(
        invite(require=None, content=("application/sdp", TWO_STREAMS), contact="<sip:bob@192.0.2.10>"), 0.0
    )
    final = responses(events)[-1]
    assert (final.status, final.reason) == (403, "Recording Only")
    assert final.to_addr.tag  # §8.2.6.2: a final response gets a To tag
    assert of_type(events, RequestRefused)[0].status == 403
    assert ua.active_sessions == 0


def test_default_reject_is_488() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(require=None, content=("application/sdp", TWO_STREAMS), contact=None), 0.0)
    assert statuses(events)[-1] == 488


def test_unknown_required_extension_gets_420_with_unsupported() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(require="siprec, foo"), 0.0)
    final = responses(events)[-1]
    assert final.status == 420 and final.headers.get("unsupported") == "foo"
    assert of_type(events, SessionOffered) == []


def test_require_100rel_and_timer_are_accepted() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(require="siprec, 100rel, timer", extra=[("Session-Expires", "1800")]), 0.0)
    assert len(of_type(events, SessionOffered)) == 1


def test_invite_without_contact_is_refused_at_once() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(contact=None), 0.0)
    assert statuses(events)[-1] == 400
    assert ua.active_sessions == 0


def test_offerless_initial_invite_is_refused_with_488() -> None:
    ua = make_ua()
    events = Sbc(ua).send(invite(content=("application/rs-metadata+xml", METADATA)), 0.0)
    assert statuses(events)[-1] == 488 and ua.active_sessions == 0


def test_draining_refuses_new_invites_with_503_retry_after() -> None:
    ua = make_ua(retry_after=17)
    ua.start_draining()
    final = responses(Sbc(ua).send(invite(), 0.0))[-1]
    assert final.status == 503 and final.headers.get("retry-after") == "17"


def test_max_sessions_refuses_with_503() -> None:
    ua = make_ua(max_sessions=1)
    sbc = Sbc(ua)
    sbc.send(invite(), 0.0)
    final = responses(sbc.send(invite(call_id="second@sbc", branch="z9hG4bK2"), 0.0))[-1]
    assert final.status == 503 and final.headers.get("retry-after") == "30"
    assert ua.active_sessions == 1


def test_options_outside_a_dialog_announces_capabilities() -> None:
    ua = make_ua()
    events = Sbc(ua).send(request("OPTIONS", contact=None), 0.0)
    (ok,) = responses(events)
    assert ok.status == 200 and ok.to_addr.tag
    assert "INVITE" in (ok.headers.get("allow") or "") and "UPDATE" in (ok.headers.get("allow") or "")
    assert "siprec" in (ok.headers.get("supported") or "")
    assert "application/rs-metadata+xml" in (ok.headers.get("accept") or "")


@pytest.mark.parametrize("method", ["BYE", "UPDATE", "INFO"])
def test_requests_for_an_unknown_dialog_get_481(method: str) -> None:
    ua = make_ua()
    events = Sbc(ua).send(request(method, to_tag="nosuch"), 0.0)
    assert statuses(events) == [481]


def test_bye_outside_a_dialog_gets_481() -> None:
    assert statuses(Sbc(make_ua()).send(request("BYE"), 0.0)) == [481]


def test_unknown_method_gets_405_with_allow() -> None:
    (response,) = responses(Sbc(make_ua()).send(request("PUBLISH"), 0.0))
    assert response.status == 405 and "INVITE" in (response.headers.get("allow") or "")


def test_accept_for_an_unknown_session_does_nothing() -> None:
    assert make_ua().accept("nosuch", [1], 0.0) == []


def test_reject_by_the_recorder_answers_the_invite() -> None:
    ua = make_ua()
    offered = of_type(Sbc(ua).send(invite(), 0.0), SessionOffered)[0]
    final = responses(ua.reject(offered.session_id, 503, "Service Unavailable", 0.0, retry_after=5))[-1]
    assert final.status == 503 and final.headers.get("retry-after") == "5"
    assert ua.active_sessions == 0


def test_response_from_first_retransmission_is_byte_identical() -> None:
    ua, _, _, events = offer_and_accept()
    ok = of_type(events, Outgoing)[0].data
    assert isinstance(parse_message(ok), Response)
    assert [o.data for o in of_type(ua.on_timer(0.5), Outgoing)] == [ok]


# ------------------------------------------------------------------ §8.2.2.2 merged requests


def test_initial_invite_resent_with_a_new_branch_is_a_merged_request_482() -> None:
    """Same Call-ID, From tag and CSeq but another transaction: the request arrived twice, one call."""
    ua = make_ua()
    sbc = Sbc(ua)
    first = sbc.send(invite(branch="z9hG4bKfirst"), 0.0)
    assert len(of_type(first, SessionOffered)) == 1
    again = sbc.send(invite(branch="z9hG4bKsecond"), 0.6)
    assert of_type(again, SessionOffered) == []
    assert statuses(again) == [482]
    refused = of_type(again, RequestRefused)
    assert refused and refused[0].status == 482 and refused[0].detail == "merged request"
    assert ua.active_sessions == 1


def test_merged_request_detection_keys_on_call_id_from_tag_and_cseq() -> None:
    """Another Call-ID, another From tag or another CSeq is another request: each is a new call."""
    ua = make_ua()
    sbc = Sbc(ua)
    sbc.send(invite(branch="z9hG4bKa"), 0.0)
    others = [
        invite(branch="z9hG4bKb", call_id="other-call@sbc.example.com"),
        invite(branch="z9hG4bKc", from_tag="sbc-tag-2"),
        invite(branch="z9hG4bKd", cseq=2),
    ]
    for data in others:
        assert len(of_type(sbc.send(data, 0.1), SessionOffered)) == 1
    assert ua.active_sessions == 4


def test_the_same_request_after_its_call_ended_is_a_new_call() -> None:
    ua, sbc, _, answered = offer_and_accept()
    (ok,) = responses(answered)
    sbc.send(ack_for(ok), 0.1)
    bye = request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=ok.to_addr.tag)
    assert len(of_type(sbc.send(bye, 1.0), SessionEnded)) == 1
    assert ua.active_sessions == 0
    fresh = sbc.send(invite(branch="z9hG4bKlater"), 40.0)
    assert len(of_type(fresh, SessionOffered)) == 1
