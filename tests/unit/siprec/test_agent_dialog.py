"""RFC 3261 §9, §12-15, RFC 3311, RFC 4028 and RFC 7866 §7: everything after the first INVITE."""

from __future__ import annotations

import pytest

from srs.sip.message import Response
from srs.sip.routing import Outgoing, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import (
    MetadataReceived,
    RequestRefused,
    SessionAnswered,
    SessionEnded,
    SessionOffered,
)

from .sbc import (
    PARTIAL_METADATA,
    TWO_STREAMS,
    Sbc,
    ack_for,
    audio,
    invite,
    make_ua,
    multipart,
    of_type,
    request,
    requests,
    responses,
    sdp,
    statuses,
)

TAG = "tok2"  # srs's To tag: the second token of a fresh user agent


def established(
    transport: Transport = Transport.UDP, extra: tuple[tuple[str, str], ...] = (), **ua_kwargs: object
) -> tuple[SiprecUserAgent, Sbc, str, Response]:
    ua = make_ua(**ua_kwargs)
    sbc = Sbc(ua, transport)
    offered = of_type(sbc.send(invite(extra=extra), 0.0), SessionOffered)[0]
    (ok,) = responses(ua.accept(offered.session_id, [30000, 30002], 0.0))
    assert sbc.send(ack_for(ok), 0.1) == []
    return ua, sbc, offered.session_id, ok


def in_dialog(method: str, cseq: int, branch: str, **kwargs: object) -> bytes:
    return request(method, cseq=cseq, branch=branch, to_tag=TAG, **kwargs)  # type: ignore[arg-type]


def m_lines(response: Response) -> list[str]:
    return [line for line in response.body.decode().split("\r\n") if line.startswith("m=")]


# ------------------------------------------------------------------ BYE


def test_bye_gets_200_and_ends_the_session() -> None:
    ua, sbc, session_id, _ = established()
    events = sbc.send(in_dialog("BYE", 2, "z9hG4bKbye"), 5.0)
    (ok,) = responses(events)
    assert ok.status == 200 and ok.to_addr.tag == TAG and ok.cseq.method == "BYE"
    assert of_type(events, SessionEnded) == [SessionEnded(session_id, 5.0, "bye", answered=True)]
    assert ua.active_sessions == 0


def test_retransmitted_bye_gets_the_same_200_and_no_second_end() -> None:
    _, sbc, _, _ = established()
    first = sbc.send(in_dialog("BYE", 2, "z9hG4bKbye"), 5.0)
    again = sbc.send(in_dialog("BYE", 2, "z9hG4bKbye"), 5.5)
    assert [o.data for o in of_type(again, Outgoing)] == [of_type(first, Outgoing)[0].data]
    assert of_type(again, SessionEnded) == []


def test_bye_with_lower_cseq_gets_500() -> None:
    _, sbc, _, _ = established()
    assert statuses(sbc.send(in_dialog("UPDATE", 5, "z9hG4bKu5"), 1.0)) == [200]
    events = sbc.send(in_dialog("BYE", 3, "z9hG4bKbye"), 2.0)
    assert statuses(events) == [500]
    assert of_type(events, SessionEnded) == []


# ------------------------------------------------------------------ CANCEL


def test_cancel_before_the_answer_gets_200_and_487() -> None:
    ua = make_ua(answer_delay=2.0)
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    assert ua.accept(offered.session_id, [30000, 30002], 0.1) == []  # answer delayed
    events = sbc.send(request("CANCEL", contact=None), 0.5)
    assert [(r.status, r.cseq.method) for r in responses(events)] == [(200, "CANCEL"), (487, "INVITE")]
    assert of_type(events, SessionEnded) == [
        SessionEnded(offered.session_id, 0.5, "cancelled", answered=False)
    ]
    assert of_type(ua.on_timer(2.1), SessionAnswered) == []
    # the ACK for the 487 belongs to the INVITE transaction (§17.2.1)
    assert sbc.send(request("ACK", to_tag=TAG, contact=None), 0.6) == []


def test_delayed_answer_is_sent_when_its_time_comes() -> None:
    ua = make_ua(answer_delay=2.0)
    offered = of_type(Sbc(ua).send(invite(), 0.0), SessionOffered)[0]
    ua.accept(offered.session_id, [30000, 30002], 0.1)
    assert ua.next_deadline() == pytest.approx(2.1)
    events = ua.on_timer(2.1)
    assert statuses(events) == [200] and len(of_type(events, SessionAnswered)) == 1


def test_cancel_while_waiting_for_ports() -> None:
    ua = make_ua()
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    events = sbc.send(request("CANCEL", contact=None), 0.5)
    assert statuses(events) == [200, 487]
    assert ua.accept(offered.session_id, [30000, 30002], 0.6) == []


def test_cancel_after_the_answer_gets_only_200() -> None:
    ua, sbc, _, _ = established()
    events = sbc.send(request("CANCEL", contact=None), 0.5)
    assert statuses(events) == [200]
    assert of_type(events, SessionEnded) == [] and ua.active_sessions == 1


def test_cancel_matching_no_invite_gets_481() -> None:
    events = Sbc(make_ua()).send(request("CANCEL", branch="z9hG4bKnone", contact=None), 0.0)
    assert statuses(events) == [481]


# ------------------------------------------------------------------ re-INVITE / UPDATE


def test_reinvite_hold_with_inactive_and_zero_address() -> None:
    ua, sbc, session_id, _ = established()
    held = sdp(
        audio(40000, "1", "inactive"), audio(40002, "2", "inactive"), origin_version=2, connection="0.0.0.0"
    )
    events = sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", held)), 10.0)
    assert statuses(events) == [100]
    (offered,) = of_type(events, SessionOffered)
    assert not offered.initial and offered.ports_needed == 0
    assert all(m.held_by_zero_address for m in offered.offer.media)
    answer = ua.accept(session_id, [], 10.0)
    (ok,) = responses(answer)
    assert ok.status == 200 and m_lines(ok) == [
        "m=audio 30000 RTP/AVP 0 8 101",
        "m=audio 30002 RTP/AVP 0 8 101",
    ]
    assert b"a=inactive" in ok.body
    assert b"o=srs " in ok.body and b" 2 IN IP4" in ok.body  # o= version moved on
    assert of_type(answer, SessionAnswered)[0].initial is False
    assert sbc.send(ack_for(ok, cseq=2, branch="z9hG4bKack2"), 10.1) == []
    assert len(ua.retransmitter) == 0


def test_reinvite_codec_change_answers_with_the_new_codec() -> None:
    ua, sbc, session_id, _ = established()
    pcma_only = sdp(
        "m=audio 40000 RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=label:1\na=sendonly\n",
        "m=audio 40002 RTP/AVP 8\na=rtpmap:8 PCMA/8000\na=label:2\na=sendonly\n",
        origin_version=2,
    )
    sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", pcma_only)), 10.0)
    (ok,) = responses(ua.accept(session_id, [], 10.0))
    assert m_lines(ok) == ["m=audio 30000 RTP/AVP 8", "m=audio 30002 RTP/AVP 8"]


def test_reinvite_adding_a_stream_needs_one_port_and_removing_one_answers_port_zero() -> None:
    ua, sbc, session_id, _ = established()
    three = sdp(audio(40000, "1"), audio(40002, "2"), audio(40004, "3"), origin_version=2)
    events = sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", three)), 10.0)
    assert of_type(events, SessionOffered)[0].ports_needed == 1
    (ok,) = responses(ua.accept(session_id, [30004], 10.0))
    assert [line.split()[1] for line in m_lines(ok)] == ["30000", "30002", "30004"]
    sbc.send(ack_for(ok, cseq=2, branch="z9hG4bKack2"), 10.1)
    removed = sdp(audio(40000, "1"), audio(0, "2"), audio(40004, "3"), origin_version=3)
    events = sbc.send(in_dialog("INVITE", 3, "z9hG4bKre2", content=("application/sdp", removed)), 20.0)
    assert of_type(events, SessionOffered)[0].ports_needed == 0
    (ok,) = responses(ua.accept(session_id, [], 20.0))
    assert [line.split()[1] for line in m_lines(ok)] == ["30000", "0", "30004"]


def test_reinvite_without_sdp_gets_the_last_answer_as_offer() -> None:
    _, sbc, _, first_ok = established()
    events = sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1"), 10.0)
    assert of_type(events, SessionOffered) == []
    ok = responses(events)[-1]
    assert ok.status == 200 and ok.body == first_ok.body
    assert ok.headers.get("content-type") == "application/sdp"
    # until the ACK answers srs's offer, a new offer collides (§14.2: 491)
    collide = sbc.send(in_dialog("UPDATE", 3, "z9hG4bKu1", content=("application/sdp", TWO_STREAMS)), 10.2)
    assert statuses(collide) == [491]
    sbc.send(ack_for(ok, cseq=2, branch="z9hG4bKack2"), 10.3)
    after = sbc.send(in_dialog("UPDATE", 4, "z9hG4bKu2", content=("application/sdp", TWO_STREAMS)), 10.4)
    assert len(of_type(after, SessionOffered)) == 1


def test_reinvite_with_metadata_only_updates_metadata_and_offers_the_last_answer() -> None:
    _, sbc, session_id, first_ok = established()
    events = sbc.send(
        in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/rs-metadata+xml", PARTIAL_METADATA)), 10.0
    )
    (received,) = of_type(events, MetadataReceived)
    assert received.session_id == session_id and received.update.datamode == "partial"
    names = {p.id: p.aor for p in received.merged.participants}
    assert names["zSfPoSvdSDCmU3A3TRDxAw=="] == "sip:carol@chicago.example.com"
    assert names["srfBElmCRp2QB23b7Mpk0w=="] == "sip:alice@atlanta.example.com"
    assert responses(events)[-1].body == first_ok.body


def test_update_without_sdp_is_a_refresh_answered_without_body() -> None:
    _, sbc, _, _ = established()
    events = sbc.send(in_dialog("UPDATE", 2, "z9hG4bKu1"), 10.0)
    (ok,) = responses(events)
    assert ok.status == 200 and ok.body == b"" and ok.headers.get("contact")


def test_update_with_sdp_and_partial_metadata() -> None:
    ua, sbc, session_id, _ = established()
    content = multipart(
        ("application/sdp", sdp(audio(40000, "1"), audio(40002, "2"), origin_version=2)),
        ("application/rs-metadata+xml", PARTIAL_METADATA),
    )
    events = sbc.send(in_dialog("UPDATE", 2, "z9hG4bKu1", content=content), 10.0)
    assert statuses(events) == []  # non-INVITE: no 100, the answer waits for accept()
    assert len(of_type(events, MetadataReceived)) == 1
    assert of_type(events, SessionOffered)[0].ports_needed == 0
    (ok,) = responses(ua.accept(session_id, [], 10.0))
    assert ok.status == 200 and ok.cseq.method == "UPDATE" and ok.body.startswith(b"v=0")
    assert len(ua.retransmitter) == 0  # no ACK for UPDATE


def test_overlapping_reinvite_gets_500_with_retry_after() -> None:
    _, sbc, _, _ = established()
    sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", TWO_STREAMS)), 10.0)
    events = sbc.send(in_dialog("INVITE", 3, "z9hG4bKre2", content=("application/sdp", TWO_STREAMS)), 10.1)
    final = responses(events)[-1]
    assert final.status == 500 and final.headers.get("retry-after")


def test_offer_while_an_update_offer_is_pending_is_refused() -> None:
    # RFC 3311 §5.2: an offer received and not yet answered: 500 with Retry-After
    _, sbc, _, _ = established()
    sbc.send(in_dialog("UPDATE", 2, "z9hG4bKu1", content=("application/sdp", TWO_STREAMS)), 10.0)
    events = sbc.send(in_dialog("UPDATE", 3, "z9hG4bKu2", content=("application/sdp", TWO_STREAMS)), 10.1)
    (refused,) = responses(events)
    assert refused.status == 500 and refused.headers.get("retry-after")
    assert of_type(events, RequestRefused)[0].status == 500


def test_update_without_offer_while_an_offer_is_pending_is_fine() -> None:
    _, sbc, _, _ = established()
    sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", TWO_STREAMS)), 10.0)
    assert statuses(sbc.send(in_dialog("UPDATE", 3, "z9hG4bKu1"), 10.1)) == [200]


def test_cancel_of_a_pending_reinvite_gets_487_and_keeps_the_session() -> None:
    ua, sbc, session_id, _ = established()
    sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", TWO_STREAMS)), 10.0)
    events = sbc.send(in_dialog("CANCEL", 2, "z9hG4bKre1", contact=None), 10.1)
    assert statuses(events) == [200, 487]
    assert ua.active_sessions == 1
    assert ua.accept(session_id, [], 10.2) == []


def test_reinvite_sdp_error_is_488_and_the_session_survives() -> None:
    ua, sbc, _, _ = established()
    events = sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", b"garbage")), 10.0)
    assert statuses(events)[-1] == 488
    assert ua.active_sessions == 1


def test_options_and_info_in_dialog_get_200() -> None:
    _, sbc, _, _ = established()
    (ok,) = responses(sbc.send(in_dialog("OPTIONS", 2, "z9hG4bKo1"), 1.0))
    assert ok.status == 200 and "siprec" in (ok.headers.get("supported") or "")
    events = sbc.send(
        in_dialog("INFO", 3, "z9hG4bKi1", content=("application/rs-metadata+xml", PARTIAL_METADATA)), 2.0
    )
    assert statuses(events) == [200] and len(of_type(events, MetadataReceived)) == 1


def test_reinvite_before_the_ack_confirms_the_dialog_and_stops_the_first_2xx() -> None:
    ua = make_ua()
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(), 0.0), SessionOffered)[0]
    ua.accept(offered.session_id, [30000, 30002], 0.0)
    sbc.send(in_dialog("UPDATE", 2, "z9hG4bKu1"), 0.2)
    assert len(ua.retransmitter) == 0
    assert of_type(ua.on_timer(40.0), SessionEnded) == []


# ------------------------------------------------------------------ RFC 4028 session timers


def test_session_expires_is_echoed_with_require_timer() -> None:
    _, _, _, ok = established(extra=(("Session-Expires", "1800"), ("Supported", "timer")))
    assert ok.headers.get("session-expires") == "1800;refresher=uac"
    assert "timer" in ok.headers.get_all("require")


def test_session_expires_without_timer_support_is_ignored() -> None:
    _, _, _, ok = established(extra=(("Session-Expires", "1800"),))
    assert ok.headers.get("session-expires") is None


def test_too_small_session_interval_gets_422_with_min_se() -> None:
    ua = make_ua(min_se=90)
    events = Sbc(ua).send(invite(extra=[("Session-Expires", "60"), ("Supported", "timer")]), 0.0)
    final = responses(events)[-1]
    assert final.status == 422 and final.headers.get("min-se") == "90"


def test_no_refresh_means_bye_before_expiry() -> None:
    # §10: BYE at interval - min(32, interval/3) without a refresh
    ua, _, session_id, _ = established(extra=(("Session-Expires", "1800"), ("Supported", "timer")))
    assert ua.next_deadline() is not None
    assert of_type(ua.on_timer(1767.0), SessionEnded) == []
    events = ua.on_timer(1768.0)
    assert [r.method for r in requests(events)] == ["BYE"]
    assert of_type(events, SessionEnded) == [
        SessionEnded(session_id, 1768.0, "session expired", answered=True)
    ]


@pytest.mark.parametrize("method", ["INVITE", "UPDATE"])
def test_refresh_extends_the_session(method: str) -> None:
    ua, sbc, session_id, _ = established(extra=(("Session-Expires", "1800"), ("Supported", "timer")))
    events = sbc.send(
        in_dialog(
            method, 2, "z9hG4bKr1", extra=[("Session-Expires", "1800;refresher=uac"), ("Supported", "timer")]
        ),
        900.0,
    )
    ok = responses(events)[-1]
    assert ok.status == 200 and ok.headers.get("session-expires") == "1800;refresher=uac"
    if method == "INVITE":
        sbc.send(ack_for(ok, cseq=2, branch="z9hG4bKack2"), 900.1)
    assert of_type(ua.on_timer(1768.0), SessionEnded) == []
    assert of_type(ua.on_timer(900.0 + 1768.0), SessionEnded)[0].session_id == session_id


def test_maximum_duration_ends_with_bye() -> None:
    ua, _, _, _ = established(max_duration=3600.0)
    events = ua.on_timer(3600.0)
    assert [r.method for r in requests(events)] == ["BYE"]
    assert of_type(events, SessionEnded)[0].reason == "maximum duration reached"


# ------------------------------------------------------------------ srs hangs up


def test_hangup_all_sends_bye_per_session_retransmitted_until_answered() -> None:
    ua, sbc, _, _ = established()
    events = ua.hangup_all(50.0, "srs shutting down")
    (bye,) = requests(events)
    assert bye.method == "BYE" and bye.to_addr.tag == "sbc-tag-1" and bye.from_addr.tag == TAG
    assert bye.uri.host == "192.0.2.10"
    assert of_type(events, SessionEnded)[0].reason == "srs shutting down"
    assert ua.has_pending_requests()
    # Timer E: the BYE again at T1 on UDP
    again = of_type(ua.on_timer(50.5), Outgoing)
    assert len(again) == 1 and again[0].data.startswith(b"BYE ")
    ok = (
        "SIP/2.0 200 OK\r\n"
        f"Via: {bye.headers.get('via')}\r\n"
        f"From: {bye.headers.get('from')}\r\nTo: {bye.headers.get('to')}\r\n"
        f"Call-ID: {bye.call_id}\r\nCSeq: {bye.headers.get('cseq')}\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    assert sbc.send(ok, 50.6) == []
    assert not ua.has_pending_requests()
    assert of_type(ua.on_timer(51.5), Outgoing) == []


def test_bye_over_tcp_is_not_retransmitted_and_times_out_after_64_t1() -> None:
    ua, _, _, _ = established(transport=Transport.TCP)
    (bye,) = of_type(ua.hangup_all(50.0, "bye"), Outgoing)
    assert bye.transport is Transport.TCP
    assert of_type(ua.on_timer(60.0), Outgoing) == []
    assert ua.has_pending_requests()
    ua.on_timer(50.0 + 32.0)
    assert not ua.has_pending_requests()


def test_hangup_before_the_answer_sends_503() -> None:
    ua = make_ua()
    offered = of_type(Sbc(ua).send(invite(), 0.0), SessionOffered)[0]
    events = ua.hangup(offered.session_id, 1.0, "recording failed")
    assert statuses(events) == [503]
    assert of_type(events, SessionEnded)[0].answered is False


def test_stray_response_is_dropped_with_an_event() -> None:
    from srs.siprec.events import MessageDropped

    ua = make_ua()
    stray = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKnothing\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 BYE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert [type(e) for e in Sbc(ua).send(stray, 0.0)] == [MessageDropped]
