"""Header look-up by canonical name, and structured headers read once per message."""

from __future__ import annotations

from srs.sip.message import Headers, Request, build_response, parse_message

INVITE = (
    b"INVITE sip:srs@192.0.2.10 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds, SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKa\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.6;branch=z9hG4bKb\r\n"
    b"Max-Forwards: 70\r\n"
    b"t: <sip:srs@192.0.2.10>\r\n"
    b"f: \"SBC\" <sip:sbc@192.0.2.4>;tag=1928301774\r\n"
    b"i: a84b4c76e66710@192.0.2.4\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Require: siprec\r\n"
    b"k: timer, replaces\r\n"
    b"l: 0\r\n"
    b"\r\n"
)


def invite() -> Request:
    message = parse_message(INVITE)
    assert isinstance(message, Request)
    return message


def test_compact_and_long_forms_find_the_same_lines_in_any_case() -> None:
    headers = invite().headers
    assert headers.get("CALL-ID") == headers.get("i") == "a84b4c76e66710@192.0.2.4"
    assert headers.get("Content-Length") == "0"
    assert headers.get("supported") == "timer, replaces"
    assert headers.get("Allow") is None
    assert "require" in headers and "Accept" not in headers
    assert headers.get_all("VIA") == [
        "SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bK776asdhds",
        "SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKa",
        "SIP/2.0/UDP 192.0.2.6;branch=z9hG4bKb",
    ]
    assert headers.get_all("k") == ["timer", "replaces"]
    assert headers.get_all("Route") == []


def test_a_changed_copy_is_looked_up_afresh() -> None:
    headers = invite().headers
    assert headers.get("to") == "<sip:srs@192.0.2.10>"  # the original has its names worked out now
    changed = headers.replace("To", "<sip:other@192.0.2.10>;tag=x").add("Allow", "INVITE, ACK, BYE")
    assert changed.get("t") == "<sip:other@192.0.2.10>;tag=x"
    assert changed.get_all("allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get("to") == "<sip:srs@192.0.2.10>" and headers.get("allow") is None
    assert changed.remove("via").get_all("v") == []


def test_equality_and_hash_ignore_what_was_looked_up() -> None:
    looked_up = Headers((("Call-ID", "x"), ("v", "SIP/2.0/UDP h")))
    fresh = Headers((("Call-ID", "x"), ("v", "SIP/2.0/UDP h")))
    assert looked_up.get("via") == "SIP/2.0/UDP h"
    assert looked_up == fresh and hash(looked_up) == hash(fresh)
    assert repr(looked_up) == repr(fresh)


def test_structured_headers_are_parsed_once_and_stay_equal() -> None:
    request = invite()
    assert request.from_addr is request.from_addr
    assert request.to_addr is request.to_addr
    assert request.cseq is request.cseq and request.cseq.number == 314159
    assert request.from_addr.tag == "1928301774" and request.to_addr.tag is None
    assert [via.branch for via in request.vias] == ["z9hG4bK776asdhds", "z9hG4bKa", "z9hG4bKb"]
    assert request.top_via == request.vias[0]
    vias = request.vias
    vias.clear()  # the caller's list, not the message's
    assert len(request.vias) == 3
    assert request == invite()


def test_a_response_built_from_a_read_request_still_adds_one_to_tag() -> None:
    request = invite()
    assert request.to_addr.tag is None
    response = build_response(request, 200, to_tag="srs1")
    assert response.headers.get("to") == "<sip:srs@192.0.2.10>;tag=srs1"
    assert response.to_addr.tag == "srs1"
    tagged = parse_message(INVITE.replace(b"t: <sip:srs@192.0.2.10>", b"t: <sip:srs@h>;tag=a"))
    assert isinstance(tagged, Request)
    assert build_response(tagged, 200, to_tag="srs1").headers.get("to") == "<sip:srs@h>;tag=a"
