"""inspect on whole SIP messages (needs the SIP message parser)."""

from __future__ import annotations

import pytest

pytest.importorskip("srs.sip.message")

from srs.siprec.inspect import inspect_bytes
from tests.unit.siprec.fixtures import DATA, load


def test_audiocodes_invite() -> None:
    result = inspect_bytes(load("audiocodes-mediant-siprec-invite.sip"))
    assert (result["kind"], result["method"], result["is_siprec"]) == ("request", "INVITE", True)
    assert result["headers"][0] == ["Via", "SIP/2.0/TCP 8.8.8.8:5060;alias;branch=z9hG4bKac586296494"]
    assert ["Require", "siprec"] in result["headers"]
    assert [m["label"] for m in result["sdp"]["media"]] == ["1", "2"]
    assert result["metadata"]["dialect"] == "draft"
    assert any("application/rs-metadata instead" in w for w in result["warnings"])


def test_broadworks_src_contact_is_siprec() -> None:
    result = inspect_bytes(load("broadworks-siprec-invite.sip"))
    assert result["is_siprec"] is True and result["metadata"]["dialect"] == "broadworks"


def test_cisco_invite_is_siprec_by_contact_feature_tag() -> None:
    result = inspect_bytes(load("cisco-siprec-invite.sip"))
    assert result["is_siprec"] is True and result["metadata"]["dialect"] == "rfc7865"
    assert [m["codecs"] for m in result["sdp"]["media"]] == [["PCMA", "CN"], ["PCMA", "CN"]]


def test_extra_parts_are_listed() -> None:
    result = inspect_bytes(load("tolerance-extra-parts.sip"))
    assert [p["content_type"] for p in result["parts"]] == [
        "application/isup;version=itu-t92+",
        "application/gtd",
    ]
    assert result["parts"][0]["text"] == "ISUP-PLACEHOLDER"


def test_wrong_content_length_takes_rest_of_file_with_warning() -> None:
    for name in ("tolerance-wrong-content-length.sip", "tolerance-truncated-body.sip"):
        result = inspect_bytes(load(name))
        assert result["sdp"] is not None and result["metadata"] is not None, name
        assert any("Content-Length" in w for w in result["warnings"]), name


def test_no_blank_line_before_first_delimiter() -> None:
    result = inspect_bytes(load("tolerance-no-blank-line-before-first-delimiter.sip"))
    assert result["metadata"]["participants"][0]["aor"] == "sip:alice@example.com"
    assert "no blank line between the headers and the body" in result["warnings"]


def test_response() -> None:
    data = (
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
        b"Content-Length: 0\r\n\r\nv=0\r\nm=audio 5000 RTP/AVP 0\r\na=recvonly\r\n"
    )
    result = inspect_bytes(data)
    assert (result["kind"], result["method"], result["is_siprec"]) == ("response", None, None)
    assert result["sdp"]["media"][0]["direction"] == "recvonly"


def test_every_message_fixture_inspects() -> None:
    for path in sorted(DATA.glob("*.sip")):
        result = inspect_bytes(path.read_bytes())
        assert result["kind"] == "request" and result["is_siprec"] is True, path.name
