"""RFC 3261 §7 message syntax, §8.2.6 responses, liberal parsing (§7.3.1, §7.5)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import MessageTooLarge, SipParseError
from srs.sip.headers import CSeq
from srs.sip.message import Headers, Request, Response, build_response, parse_message, serialize
from tests.unit.sip.fixtures import (
    COMPACT_FOLDED,
    OK_RESPONSE,
    OPTIONS,
    RFC3261_INVITE,
    SIPREC_BODY,
    SIPREC_INVITE,
    crlf,
    request,
)


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def test_siprec_invite_fixture_is_realistic() -> None:
    assert 4000 <= len(SIPREC_INVITE) <= 4500


def test_siprec_invite_parses_whole() -> None:
    msg = parse_request(SIPREC_INVITE)
    assert msg.method == "INVITE"
    assert msg.uri.user == "recorder"
    assert msg.uri.port == 5060
    assert msg.uri.transport == "UDP"
    assert msg.body == SIPREC_BODY
    assert msg.call_id == "f81d4fae-7dec-11d0-a765-00a0c91e6bf6@sbc.example.net"
    assert msg.cseq == CSeq(101, "INVITE")
    assert msg.from_addr.display_name == "SBC Recorder"
    assert msg.from_addr.tag == "4fa8d31c"
    assert msg.to_addr.tag is None
    assert [v.branch for v in msg.vias] == ["z9hG4bK-siprec-1", "z9hG4bK77ef4c2312983.1"]
    assert msg.top_via.rport_requested and msg.top_via.rport is None
    assert msg.headers.get("require") == "siprec"
    assert msg.headers.get_all("Supported") == ["timer", "replaces", "100rel"]
    assert msg.headers.get_all("record-route") == ["<sip:192.0.2.10;lr;ftag=4fa8d31c>", "<sip:10.0.0.1;lr>"]
    assert msg.content_type == "multipart/mixed;boundary=OSS-unique-boundary-42"
    assert msg.max_forwards == 69
    assert msg.warnings == ()


def test_siprec_invite_with_trailing_junk_after_content_length_is_truncated() -> None:
    msg = parse_request(SIPREC_INVITE + b"garbage\r\n")
    assert msg.body == SIPREC_BODY
    assert any("after the Content-Length" in w for w in msg.warnings)


def test_rfc3261_invite() -> None:
    msg = parse_request(RFC3261_INVITE)
    assert msg.top_via.transport == "TCP"
    assert msg.top_via.host == "client.atlanta.example.com"
    assert msg.from_addr.display_name == "Alice"
    assert msg.body == b""


def test_compact_folded_lf_only_with_leading_blank_lines() -> None:
    msg = parse_request(COMPACT_FOLDED)
    assert msg.call_id == "0ha0isndaksdj@192.0.2.1"
    assert msg.cseq == CSeq(8, "INVITE")
    assert msg.to_addr.tag == "1918181833n"
    assert msg.from_addr.tag == "98asjd8"
    assert msg.from_addr.display_name == 'J Rosenberg \\"'
    assert msg.top_via.rport_requested
    assert msg.headers.get("Contact") == "<sip:joe@10.1.1.1:5060>;+sip.src"
    assert msg.headers.get("content-length") == "0"
    assert msg.uri.params.has("unknownparam")
    assert set(msg.warnings) == {"leading blank lines ignored", "LF-only line endings", "folded headers"}


def test_response_parses() -> None:
    msg = parse_message(OK_RESPONSE)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (200, "OK")
    assert msg.cseq == CSeq(1, "BYE")
    assert msg.top_via.received == "203.0.113.5"


def test_status_line_without_reason() -> None:
    msg = parse_message(OK_RESPONSE.replace(b"200 OK", b"200"))
    assert isinstance(msg, Response)
    assert msg.reason == ""


def test_missing_content_length_on_datagram_takes_the_rest() -> None:
    data = OPTIONS.replace(b"Content-Length: 0\r\n", b"") + b"hello"
    assert parse_request(data).body == b"hello"


def test_content_length_longer_than_datagram_is_an_error() -> None:
    with pytest.raises(SipParseError, match="Content-Length 10 but only 0"):
        parse_message(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 10"))


@pytest.mark.parametrize("value", [b"abc", b"-1", b"1 2", b"\xd9\xa1"])
def test_invalid_content_length(value: bytes) -> None:
    with pytest.raises(SipParseError, match="Content-Length"):
        parse_message(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + value))


def test_conflicting_content_lengths() -> None:
    with pytest.raises(SipParseError, match="conflicting"):
        parse_message(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 0\r\nl: 3"))


def test_without_blank_line_is_tolerated() -> None:
    msg = parse_request(OPTIONS.rstrip(b"\r\n"))
    assert "no empty line after the headers" in msg.warnings


@pytest.mark.parametrize("header", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_missing_mandatory_header(header: str) -> None:
    lines = [line for line in OPTIONS.split(b"\r\n") if not line.startswith(header.encode() + b":")]
    with pytest.raises(SipParseError, match=f"missing mandatory header '{header.lower()}'"):
        parse_message(b"\r\n".join(lines))


def test_missing_max_forwards_is_accepted() -> None:
    msg = parse_request(OPTIONS.replace(b"Max-Forwards: 70\r\n", b""))
    assert msg.max_forwards is None


@pytest.mark.parametrize(
    ("start_line", "message"),
    [
        (b"OPTIONS sip:srs.example.net", "malformed request line"),
        (b"OPTIONS  SIP/2.0", "malformed request line"),
        (b"OPT@ONS sip:srs.example.net SIP/2.0", "malformed request line"),
        (b"OPTIONS srs.example.net SIP/2.0", "bad Request-URI"),
        (b"OPTIONS sip: SIP/2.0", "bad Request-URI"),
        (b"SIP/2.0 099 Odd", "status code out of range"),
        (b"SIP/2.0 OK", "malformed status line"),
    ],
)
def test_bad_start_lines(start_line: bytes, message: str) -> None:
    data = start_line + OPTIONS[OPTIONS.index(b"\r\n") :]
    with pytest.raises(SipParseError, match=message):
        parse_message(data)


def test_wrong_version_is_505() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(OPTIONS.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1))
    assert info.value.status == 505


def test_unsupported_uri_scheme_is_416() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(OPTIONS.replace(b"sip:srs.example.net SIP", b"http://srs.example.net SIP", 1))
    assert info.value.status == 416


def test_cseq_method_must_match_request_method() -> None:
    with pytest.raises(SipParseError, match="does not match"):
        parse_message(request("BYE", cseq_method="INVITE"))


def test_malformed_header_line() -> None:
    with pytest.raises(SipParseError, match="malformed header line"):
        parse_message(OPTIONS.replace(b"Max-Forwards: 70", b"Max Forwards 70"))


def test_continuation_before_first_header() -> None:
    with pytest.raises(SipParseError, match="continuation"):
        parse_message(OPTIONS.replace(b"SIP/2.0\r\n", b"SIP/2.0\r\n  folded\r\n", 1))


def test_size_cap_is_513() -> None:
    with pytest.raises(MessageTooLarge) as info:
        parse_message(SIPREC_INVITE, max_size=4000)
    assert info.value.status == 513


def test_header_count_cap() -> None:
    data = OPTIONS.replace(b"Max-Forwards: 70\r\n", b"X-A: 1\r\n" * 10)
    parse_message(data, max_headers=20)
    with pytest.raises(SipParseError, match="more than 10 header lines"):
        parse_message(data, max_headers=10)


def test_header_length_cap() -> None:
    data = OPTIONS.replace(b"Max-Forwards: 70", b"X-Long: " + b"a" * 100)
    parse_message(data, max_header_length=200)
    with pytest.raises(SipParseError, match="longer than 50"):
        parse_message(data, max_header_length=50)


def test_non_utf8_header_bytes_do_not_raise_and_round_trip() -> None:
    data = OPTIONS.replace(b"Max-Forwards: 70", b"Subject: caf\xe9 \xff")
    msg = parse_request(data)
    assert msg.headers.get("s") is not None
    assert serialize(msg) == data


def test_empty_message() -> None:
    with pytest.raises(SipParseError, match="empty"):
        parse_message(b"\r\n\r\n")


def test_serialize_round_trips_the_siprec_invite() -> None:
    assert serialize(parse_request(SIPREC_INVITE)) == SIPREC_INVITE


def test_serialize_fixes_content_length_and_writes_crlf() -> None:
    msg = parse_request(COMPACT_FOLDED)
    changed = Request(msg.method, msg.uri, msg.headers, b"abc")
    out = serialize(changed)
    assert b"\r\nl: 3\r\n" in out
    assert out.endswith(b"\r\n\r\nabc")
    assert b"\n" not in out.replace(b"\r\n", b"")
    assert parse_request(out).body == b"abc"


def test_serialize_appends_content_length_when_absent() -> None:
    msg = parse_request(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    assert serialize(msg).endswith(b"Content-Length: 0\r\n\r\n")


# --- Headers ---


def test_headers_get_is_case_insensitive_and_knows_compact_forms() -> None:
    headers = Headers((("v", "SIP/2.0/UDP a"), ("CALL-ID", "x"), ("l", "0"), ("k", "timer")))
    assert headers.get("Via") == "SIP/2.0/UDP a"
    assert headers.get("i") == "x"
    assert headers.get("content-length") == "0"
    assert headers.get_all("Supported") == ["timer"]
    assert headers.get("Require") is None
    assert "call-id" in headers
    assert "Require" not in headers


def test_get_all_splits_list_headers_outside_quotes_and_angles() -> None:
    headers = Headers(
        (
            ("Contact", '"Doe, John" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>'),
            ("Contact", "<sip:e@f>"),
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("Subject", "hello, world"),
        )
    )
    assert headers.get_all("m") == ['"Doe, John" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>", "<sip:e@f>"]
    assert len(headers.get_all("v")) == 2
    assert headers.get_all("Subject") == ["hello, world"]


def test_get_all_contact_star() -> None:
    assert Headers((("Contact", "*"),)).get_all("Contact") == ["*"]


def test_headers_editing_returns_new_headers() -> None:
    headers = Headers((("Via", "a"), ("To", "t"), ("Via", "b")))
    assert headers.add("X", "1").items[-1] == ("X", "1")
    assert headers.prepend("Via", "z").get_all("via") == ["z", "a", "b"]
    assert headers.remove("v").items == (("To", "t"),)
    assert headers.replace("VIA", "c").items == (("Via", "c"), ("To", "t"))
    assert headers.replace("Y", "1").items[-1] == ("Y", "1")
    assert headers.replace_first_value("Via", "z").get_all("Via") == ["z", "b"]
    assert headers.items == (("Via", "a"), ("To", "t"), ("Via", "b"))


def test_replace_first_value_keeps_the_rest_of_a_combined_line() -> None:
    headers = Headers((("Via", "SIP/2.0/UDP a, SIP/2.0/UDP b"),))
    assert headers.replace_first_value("v", "SIP/2.0/UDP z").items == (
        ("Via", "SIP/2.0/UDP z, SIP/2.0/UDP b"),
    )


# --- build_response (§8.2.6) ---


def test_build_response_copies_vias_in_order_and_adds_tag() -> None:
    invite = parse_request(SIPREC_INVITE)
    response = build_response(invite, 200, to_tag="srs-tag", body=b"v=0\r\n", content_type="application/sdp")
    assert response.reason == "OK"
    assert response.headers.get_all("Via") == invite.headers.get_all("Via")
    assert response.to_addr.tag == "srs-tag"
    assert response.from_addr == invite.from_addr
    assert response.call_id == invite.call_id
    assert response.cseq == invite.cseq
    assert response.headers.get_all("Record-Route") == invite.headers.get_all("Record-Route")
    assert response.headers.get("Content-Type") == "application/sdp"
    wire = serialize(response)
    assert wire.startswith(
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-siprec-1;rport\r\n"
    )
    reparsed = parse_message(wire)
    assert isinstance(reparsed, Response)
    assert reparsed.body == b"v=0\r\n"


def test_build_response_never_duplicates_an_existing_to_tag() -> None:
    bye = parse_request(request("BYE", to_tag="already"))
    response = build_response(bye, 200, to_tag="other")
    assert response.headers.get("To") == "<sip:srs@srs.example.net>;tag=already"


def test_build_response_error_has_no_record_route_and_default_reason() -> None:
    invite = parse_request(SIPREC_INVITE)
    response = build_response(invite, 488, to_tag="t")
    assert response.reason == "Not Acceptable Here"
    assert response.headers.get("Record-Route") is None
    assert build_response(invite, 499).reason == "Client Error"


def test_build_response_100_has_no_tag_when_none_given_and_copies_timestamp() -> None:
    invite = parse_request(OPTIONS.replace(b"Max-Forwards: 70", b"Timestamp: 54"))
    response = build_response(invite, 100, extra_headers=[("Server", "srs")])
    assert response.to_addr.tag is None
    assert response.headers.get("Timestamp") == "54"
    assert response.headers.get("Server") == "srs"


# --- robustness ---


@pytest.mark.parametrize(
    "sample", [SIPREC_INVITE, COMPACT_FOLDED, OK_RESPONSE], ids=["siprec", "compact", "200"]
)
def test_every_truncation_parses_or_raises_sip_parse_error(sample: bytes) -> None:
    parsed = 0
    for cut in range(len(sample) + 1):
        try:
            parse_message(sample[:cut])
            parsed += 1
        except SipParseError:
            pass
    assert parsed >= 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_message(data)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=len(SIPREC_INVITE) - 1), st.binary(min_size=0, max_size=3)
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_invite_parses_or_raises_sip_parse_error(edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(SIPREC_INVITE)
    for position, replacement in edits:
        data[position : position + max(len(replacement), 1)] = replacement
    try:
        parsed = parse_message(bytes(data))
    except SipParseError:
        return
    serialize(parsed)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list(';,"<>:@[]=\\ \t ab1.')), max_size=40))
def test_structured_headers_never_raise_other_errors(text: str) -> None:
    template = crlf(
        "OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h{t}\nFrom: {t}\nTo: <sip:a@b>{t}\n"
        "Call-ID: c\nCSeq: 1 OPTIONS\nContact: {t}\n\n"
    )
    data = template.replace(b"{t}", text.encode())
    with contextlib.suppress(SipParseError):
        parse_message(data)
