"""Structured header values: SIP URIs (§19.1), name-addr (§20.10), Via (§20.42), CSeq (§20.16)."""

from __future__ import annotations

import pytest

from srs.errors import SipParseError
from srs.sip import headers
from srs.sip.headers import CSeq, NameAddr, Params, SipUri, Via


def test_full_sip_uri() -> None:
    uri = SipUri.parse("sips:alice:secretword@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "secretword",
        "atlanta.example.com",
        5061,
    )
    assert uri.transport == "TCP"
    assert uri.params.has("lr") and uri.param("lr") == ""
    assert uri.headers == "subject=project%20x"
    assert str(uri) == "sips:alice:secretword@atlanta.example.com:5061;transport=tcp;lr?subject=project%20x"


def test_ipv6_uri_keeps_host_without_brackets() -> None:
    uri = SipUri.parse("sip:[2001:db8::10]:5070;+sip.src")
    assert uri.host == "2001:db8::10"
    assert uri.port == 5070
    assert uri.params.has("+sip.src")
    assert str(uri) == "sip:[2001:db8::10]:5070;+sip.src"


def test_user_with_phone_params_and_tel_uri() -> None:
    uri = SipUri.parse("sip:+1-212-555-1212;phone-context=example.com@gw.example.com;user=phone")
    assert uri.user == "+1-212-555-1212;phone-context=example.com"
    assert uri.param("user") == "phone"
    tel = SipUri.parse("tel:+1-201-555-0123;ext=42")
    assert (tel.scheme, tel.user, tel.param("ext")) == ("tel", "+1-201-555-0123", "42")
    assert str(tel) == "tel:+1-201-555-0123;ext=42"


@pytest.mark.parametrize(
    "text",
    ["sip:", "nohost", "sip:@host", "sip:a@[2001:db8::1", "sip:a@host:99999", "sip:a@host;;=x", "tel:"],
)
def test_bad_uris(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_a_uri_text_is_parsed_once_and_bad_ones_always_fail() -> None:
    first = SipUri.parse("sip:srs@192.0.2.10:5060;transport=udp")
    assert SipUri.parse("sip:srs@192.0.2.10:5060;transport=udp") is first
    for _ in range(2):  # a refusal is not remembered as a result
        with pytest.raises(SipParseError):
            SipUri.parse("sip:a@host:99999")


def test_the_uri_cache_is_bounded_against_senders_inventing_uris() -> None:
    for n in range(headers._URI_CACHE_LIMIT + 10):
        assert SipUri.parse(f"sip:u{n}@192.0.2.1").user == f"u{n}"
    assert len(headers._URI_CACHE) <= headers._URI_CACHE_LIMIT


def test_name_addr_forms() -> None:
    quoted = NameAddr.parse('"Doe, \\"J\\"" <sip:j@example.com;transport=udp>;tag=abc;+sip.src')
    assert quoted.display_name == 'Doe, "J"'
    assert quoted.uri.transport == "UDP"
    assert quoted.tag == "abc"
    assert quoted.params.has("+sip.src")
    assert str(quoted) == '"Doe, \\"J\\"" <sip:j@example.com;transport=udp>;tag=abc;+sip.src'
    token = NameAddr.parse("Bob <sip:bob@biloxi.example.com>")
    assert token.display_name == "Bob"
    assert str(token) == '"Bob" <sip:bob@biloxi.example.com>'
    bare = NameAddr.parse("sip:bob@biloxi.example.com;tag=1928301774")
    assert bare.tag == "1928301774"
    assert not bare.uri.params.has("tag")


def test_name_addr_quoted_param_values() -> None:
    contact = NameAddr.parse(
        '<sip:srs@192.0.2.1>;+sip.srs;+sip.instance="<urn:uuid:f81d4fae-7dec>";expires=60'
    )
    assert contact.params.get("+sip.instance") == "<urn:uuid:f81d4fae-7dec>"
    assert contact.params.get("+sip.srs") == ""
    assert contact.params.get("absent") is None


def test_with_tag_replaces_never_duplicates() -> None:
    addr = NameAddr.parse("<sip:a@b>;tag=1").with_tag("2")
    assert str(addr) == "<sip:a@b>;tag=2"


@pytest.mark.parametrize("text", ["", "*", '"unterminated <sip:a@b>', '"name" sip:a@b', "<sip:a@b", "plain"])
def test_bad_name_addrs(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


def test_via_with_everything() -> None:
    via = Via.parse(
        "SIP / 2.0 / udp [2001:db8::9]:5062 ;branch=z9hG4bK776asdhds;received=[2001:db8::1];rport=9"
    )
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.host == "2001:db8::9"
    assert via.port == 5062
    assert via.branch == "z9hG4bK776asdhds"
    assert via.has_magic_cookie
    assert via.received == "2001:db8::1"
    assert via.rport == 9 and via.rport_requested
    assert str(via) == "SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bK776asdhds;received=[2001:db8::1];rport=9"


def test_via_defaults_and_flags() -> None:
    via = Via.parse("SIP/2.0/TLS pc33.atlanta.example.com;rport;maddr=224.2.0.1;ttl=16")
    assert via.port is None
    assert via.rport_requested and via.rport is None
    assert via.maddr == "224.2.0.1"
    assert via.branch is None and not via.has_magic_cookie
    assert via.sent_by == ("pc33.atlanta.example.com", None)


@pytest.mark.parametrize(
    "text", ["SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host:70000", "SIP/2.0/UDP host;=x"]
)
def test_bad_vias(text: str) -> None:
    with pytest.raises(SipParseError):
        Via.parse(text)


def test_cseq() -> None:
    assert CSeq.parse(" 4711   INVITE ") == CSeq(4711, "INVITE")
    # methods are case-sensitive (§7.1): kept as written
    assert CSeq.parse("1 invite").method == "invite"
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for bad in ["", "INVITE", "1", "x INVITE", str(2**31) + " INVITE"]:
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


def test_params_editing() -> None:
    params = Params.parse(';a=1;B;c="x;y"')
    assert params.get("b") == ""
    assert params.get("C") == "x;y"
    assert str(params.with_param("a", "2")) == ';a=2;B;c="x;y"'
    assert str(params.without("b")) == ';a=1;c="x;y"'
    assert str(params.with_param("d", None)) == ';a=1;B;c="x;y";d'
