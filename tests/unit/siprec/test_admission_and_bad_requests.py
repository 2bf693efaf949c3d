"""The pieces under the user agent's front door: source ACL, token buckets, answers to unparseable bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from srs.errors import MessageTooLarge, SipParseError
from srs.sip.badrequest import answer_unparseable, read_headers, safe_text
from srs.sip.message import Response, parse_message
from srs.sip.routing import Address, Transport
from srs.siprec.admission import SourceAcl, SourceRateLimiter
from srs.siprec.events import RequestRefused, SessionOffered

from .sbc import SBC, Sbc, invite, make_ua, of_type, responses, statuses

HEAD = (
    b"INVITE sip:srs@198.51.100.1 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx1\r\n"
    b"f: <sip:a@sbc.example.com>;tag=1\r\n"
    b"t: <sip:srs@198.51.100.1>\r\n"
    b"i: compact@sbc\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"Broken header line\r\n\r\n"
)


def test_acl_empty_allows_everyone() -> None:
    assert SourceAcl(()).allows("203.0.113.1") and SourceAcl(()).allows("not an address")


def test_acl_matches_networks_by_family_and_ipv4_mapped() -> None:
    acl = SourceAcl(("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"))
    assert acl.allows("10.1.2.3") and acl.allows("192.0.2.7") and acl.allows("2001:db8::1")
    assert acl.allows("::ffff:10.9.9.9")
    assert not acl.allows("192.0.2.8") and not acl.allows("2001:db9::1") and not acl.allows("sbc.example")
    assert acl.allows("[2001:db8::5]") and acl.allows("fe80::1%eth0") is False


def test_token_bucket_refills_at_the_rate() -> None:
    bucket = SourceRateLimiter(rate=10.0, burst=2.0)
    assert [bucket.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert bucket.allow("a", 0.05) is False  # half a token
    assert bucket.allow("a", 0.1) is True
    assert SourceRateLimiter(rate=0.0, burst=1.0).allow("a", 0.0)


def test_token_bucket_table_is_bounded() -> None:
    bucket = SourceRateLimiter(rate=1.0, burst=1.0, max_sources=4)
    for index in range(100):
        bucket.allow(f"h{index}", float(index))
    assert len(bucket._buckets) <= 4


def test_compact_headers_are_read_and_echoed() -> None:
    readable = read_headers(HEAD)
    assert readable is not None and readable.method == "INVITE" and readable.call_id == "compact@sbc"
    out = answer_unparseable(HEAD, SipParseError("malformed header line"), SBC, Transport.UDP, to_tag="t9")
    assert out is not None
    response = parse_message(out.data)
    assert isinstance(response, Response)
    assert (response.status, response.reason) == (400, "Bad Request")
    assert response.to_addr.tag == "t9" and response.cseq.number == 7
    assert response.headers.get("warning") == '399 srs "malformed header line"'


def test_missing_any_transaction_header_means_no_answer() -> None:
    for name in (b"v:", b"f:", b"t:", b"i:", b"CSeq:"):
        damaged = HEAD.replace(name, b"X-Gone:")
        assert read_headers(damaged) is None, name


def test_headers_in_the_body_do_not_count() -> None:
    head, _, _ = HEAD.partition(b"CSeq")
    assert read_headers(head + b"\r\n\r\nCSeq: 1 INVITE\r\n") is None


def test_513_uses_the_error_status() -> None:
    out = answer_unparseable(HEAD, MessageTooLarge("too big"), SBC, Transport.TCP, to_tag="t")
    assert out is not None and out.data.startswith(b"SIP/2.0 513 Message Too Large\r\n")
    assert out.destination == SBC and out.transport is Transport.TCP


def test_reason_and_warning_text_are_sanitised() -> None:
    assert safe_text('a"b\r\nc\x00\\') == "a'b??c?/"
    out = answer_unparseable(HEAD, SipParseError('bad "x"\r\nInjected: 1'), SBC, Transport.UDP, to_tag="t")
    assert out is not None and b"\r\nInjected" not in out.data


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(invite())), st.binary(max_size=20))
def test_any_truncated_or_spliced_head_gets_a_parseable_answer_or_none(cut: int, junk: bytes) -> None:
    data = invite()[:cut] + junk
    out = answer_unparseable(data, SipParseError("x"), Address("192.0.2.10", 5060), Transport.UDP, to_tag="t")
    if out is not None:
        assert isinstance(parse_message(out.data), Response)


def test_while_shedding_a_new_invite_gets_503_before_its_body_is_read() -> None:
    """The daemon sets ``shedding`` while overloaded: refusing must cost less than accepting, so
    even an INVITE whose body would not parse gets the 503 (an SBC fails over on it)."""
    ua = make_ua()
    ua.shedding = "overloaded: 2048 KB of SIP queued"
    broken = invite(content=("multipart/mixed;boundary=nothere", b"not a multipart body"))
    events = Sbc(ua).send(broken, 0.0)
    assert statuses(events) == [100, 503]
    (refusal,) = [r for r in responses(events) if r.status == 503]
    assert refusal.headers.get("retry-after") == "30"
    assert of_type(events, SessionOffered) == []
    refused = of_type(events, RequestRefused)
    assert refused and refused[0].detail == "overloaded: 2048 KB of SIP queued"
    ua.shedding = None
    assert len(of_type(Sbc(ua).send(invite(branch="z9hG4bKlater"), 1.0), SessionOffered)) == 1
