"""UAS dialogs (RFC 3261 §12.1.1, §12.2.1.1, §12.2.2)."""

from __future__ import annotations

import pytest

from srs.errors import SipParseError
from srs.sip.dialog import CSeqOutOfOrder, Dialog
from srs.sip.message import Request, parse_message, serialize
from srs.sip.routing import Transport
from srs.sip.transaction import new_branch
from tests.unit.sip.fixtures import SIPREC_INVITE, request


def invite(data: bytes = SIPREC_INVITE) -> Request:
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def dialog() -> Dialog:
    return Dialog.from_invite(invite(), "srs-tag", "<sip:srs@203.0.113.5:5060>;+sip.srs")


def test_dialog_state_from_the_siprec_invite() -> None:
    d = dialog()
    assert d.key == ("f81d4fae-7dec-11d0-a765-00a0c91e6bf6@sbc.example.net", "srs-tag", "4fa8d31c")
    assert str(d.remote_target) == "sip:sbc@192.0.2.10:5060;transport=udp"
    assert [str(r.uri) for r in d.route_set] == ["sip:192.0.2.10;lr;ftag=4fa8d31c", "sip:10.0.0.1;lr"]
    assert d.remote_cseq == 101
    assert d.local_tag == "srs-tag" and d.local_uri.tag == "srs-tag"
    assert str(d.remote_uri.uri) == "sip:sbc@sbc.example.net"
    assert not d.secure


def test_bye_built_from_the_dialog() -> None:
    d = dialog()
    bye = d.build_request(
        "BYE", via_host="203.0.113.5", via_port=5060, transport=Transport.UDP, branch=new_branch("b1")
    )
    assert str(bye.uri) == "sip:sbc@192.0.2.10:5060;transport=udp"
    assert bye.headers.get_all("Route") == ["<sip:192.0.2.10;lr;ftag=4fa8d31c>", "<sip:10.0.0.1;lr>"]
    assert bye.from_addr.tag == "srs-tag"
    assert str(bye.from_addr.uri) == "sip:recorder@srs.example.net"
    assert bye.to_addr.tag == "4fa8d31c"
    assert bye.to_addr.display_name == "SBC Recorder"
    assert bye.call_id == d.call_id
    assert str(bye.cseq) == "1 BYE"
    assert bye.max_forwards == 70
    assert bye.top_via.branch == "z9hG4bKb1" and bye.top_via.rport_requested
    assert bye.headers.get("Contact") is None
    wire = serialize(bye)
    assert wire.startswith(
        b"BYE sip:sbc@192.0.2.10:5060;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKb1;rport\r\n"
    )
    reparsed = parse_message(wire)
    assert reparsed.headers.remove("Content-Length") == bye.headers
    assert reparsed.headers.get("To") == '"SBC Recorder" <sip:sbc@sbc.example.net>;tag=4fa8d31c'
    second = d.build_request("BYE", via_host="h", via_port=1, transport=Transport.TCP, branch="z9hG4bKb2")
    assert second.cseq.number == 2


def test_update_carries_contact_and_body() -> None:
    d = dialog()
    update = d.build_request(
        "UPDATE",
        via_host="2001:db8::5",
        via_port=5061,
        transport=Transport.TLS,
        branch="z9hG4bKu",
        extra_headers=[("Supported", "timer")],
        body=b"v=0\r\n",
        content_type="application/sdp",
    )
    assert update.headers.get("Contact") == "<sip:srs@203.0.113.5:5060>;+sip.srs"
    assert update.headers.get("Content-Type") == "application/sdp"
    assert update.top_via.host == "2001:db8::5"
    assert b"Via: SIP/2.0/TLS [2001:db8::5]:5061;" in serialize(update)
    assert update.body == b"v=0\r\n"


def test_strict_route_becomes_the_request_uri() -> None:
    data = SIPREC_INVITE.replace(b"<sip:192.0.2.10;lr;ftag=4fa8d31c>", b"<sip:strict.example.net;maddr=x>")
    d = Dialog.from_invite(invite(data), "t", None)
    bye = d.build_request("BYE", via_host="h", via_port=5060, transport=Transport.UDP, branch="z9hG4bK1")
    assert str(bye.uri) == "sip:strict.example.net"
    assert bye.headers.get_all("Route") == ["<sip:10.0.0.1;lr>", "<sip:sbc@192.0.2.10:5060;transport=udp>"]


def test_no_route_set() -> None:
    d = Dialog.from_invite(invite(request("INVITE")), "t")
    bye = d.build_request("BYE", via_host="h", via_port=5060, transport=Transport.UDP, branch="z9hG4bK1")
    assert bye.headers.get("Route") is None
    assert str(bye.uri) == "sip:sbc@192.0.2.10:5060"


def test_remote_cseq_ordering() -> None:
    d = dialog()
    d.check_remote_cseq(101)
    d.check_remote_cseq(102)
    with pytest.raises(CSeqOutOfOrder) as info:
        d.check_remote_cseq(100)
    assert info.value.status == 500
    assert d.remote_cseq == 102


def test_target_refresh() -> None:
    d = dialog()
    d.update_target("<sip:sbc@198.51.100.1:5080>")
    assert d.remote_target.host == "198.51.100.1"


def test_invite_without_contact_cannot_make_a_dialog() -> None:
    data = b"\r\n".join(line for line in SIPREC_INVITE.split(b"\r\n") if not line.startswith(b"Contact:"))
    with pytest.raises(SipParseError, match="Contact"):
        Dialog.from_invite(invite(data), "t")


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    data = SIPREC_INVITE.replace(b"INVITE sip:recorder", b"INVITE sips:recorder", 1)
    assert Dialog.from_invite(invite(data), "t").secure
