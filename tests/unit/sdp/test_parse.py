from __future__ import annotations

import pytest

from srs.errors import SdpError
from srs.sdp.model import Codec, Crypto, Direction
from srs.sdp.parse import parse_sdp
from tests.unit.siprec.fixtures import load

SIPREC_OFFER = (
    b"v=0\r\n"
    b"o=SRC 2890844526 2890844526 IN IP4 198.51.100.7\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=label:96\r\n"
    b"a=sendonly\r\n"
    b"m=audio 51372 RTP/AVP 8\r\n"
    b"c=IN IP4 198.51.100.8\r\n"
    b"a=rtcp:51380\r\n"
    b"a=label:98\r\n"
    b"a=sendonly\r\n"
)


def test_siprec_offer_reads_as_written() -> None:
    parsed = parse_sdp(SIPREC_OFFER)
    assert parsed.warnings == ()
    session = parsed.session
    assert session.origin == "SRC 2890844526 2890844526 IN IP4 198.51.100.7"
    assert session.connection_address == "198.51.100.7"
    first, second = session.media
    assert (first.index, first.media, first.port, first.proto) == (0, "audio", 49170, "RTP/AVP")
    assert first.formats == ("0", "8", "101")
    assert first.codecs == (
        Codec(0, "PCMU", 8000, 1, None),
        Codec(8, "PCMA", 8000, 1, None),
        Codec(101, "TELEPHONE-EVENT", 8000, 1, "0-16"),
    )
    assert first.label == "96" and first.direction is Direction.SENDONLY and first.ptime == 20
    assert first.connection_address == "198.51.100.7"
    assert second.connection_address == "198.51.100.8" and second.rtcp_port == 51380
    assert second.attribute("sendonly") == "" and second.attribute("label") == "98"


@pytest.mark.parametrize(
    ("pt", "encoding", "rate"),
    [(0, "PCMU", 8000), (3, "GSM", 8000), (4, "G723", 8000), (8, "PCMA", 8000), (9, "G722", 8000),
     (18, "G729", 8000), (13, "CN", 8000)],
)
def test_static_payload_types_resolve_without_rtpmap(pt: int, encoding: str, rate: int) -> None:
    media = parse_sdp(f"v=0\r\nm=audio 1000 RTP/AVP {pt}\r\n").session.media[0]
    assert media.codecs == (Codec(pt, encoding, rate, 1, None),)


def test_fmtp_without_rtpmap_is_tolerated() -> None:
    parsed = parse_sdp(b"v=0\nm=audio 1000 RTP/AVP 18 96\na=fmtp:18 annexb=no\na=fmtp:96 mode=30\n")
    assert parsed.session.media[0].codecs == (Codec(18, "G729", 8000, 1, "annexb=no"),)
    assert any("96" in w and "fmtp" in w for w in parsed.warnings)


def test_rtpmap_with_channels() -> None:
    media = parse_sdp("v=0\nm=audio 1 RTP/AVP 111\na=rtpmap:111 opus/48000/2\n").session.media[0]
    assert media.codecs == (Codec(111, "OPUS", 48000, 2, None),)


def test_session_direction_is_inherited_and_media_overrides() -> None:
    session = parse_sdp(
        b"v=0\r\na=sendonly\r\nm=audio 1 RTP/AVP 0\r\nm=audio 2 RTP/AVP 0\r\na=inactive\r\n"
    ).session
    assert session.direction is Direction.SENDONLY
    assert [m.direction for m in session.media] == [Direction.SENDONLY, Direction.INACTIVE]


def test_no_direction_means_sendrecv() -> None:
    assert parse_sdp(b"v=0\r\nm=audio 1 RTP/AVP 0\r\n").session.media[0].direction is Direction.SENDRECV


def test_zero_address_is_rfc2543_hold() -> None:
    media = parse_sdp(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 1 RTP/AVP 0\r\na=sendonly\r\n").session.media[0]
    assert media.direction is Direction.INACTIVE and media.held_by_zero_address


def test_comedia_direction_both_is_not_a_media_direction() -> None:
    media = parse_sdp(b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=direction:both\r\na=sendonly\r\n").session.media[0]
    assert media.direction is Direction.SENDONLY
    only_both = parse_sdp(b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=direction:both\r\n").session.media[0]
    assert only_both.direction is Direction.SENDRECV


def test_crypto_lines() -> None:
    media = parse_sdp(load("tolerance-sdp-mixed-srtp.sdp")).session.media[0]
    assert [c.suite for c in media.crypto] == ["AES_256_CM_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_80"]
    assert media.crypto[1] == Crypto(
        2, "AES_CM_128_HMAC_SHA1_80", "inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcwo=|2^20|1:4", ()
    )
    assert media.rtcp_port == 41005


def test_crypto_session_params_kept() -> None:
    media = parse_sdp(
        "v=0\nm=audio 1 RTP/SAVP 0\na=crypto:7 AES_CM_128_HMAC_SHA1_32 inline:x KDR=1 UNENCRYPTED_SRTCP\n"
    )
    assert media.session.media[0].crypto == (
        Crypto(7, "AES_CM_128_HMAC_SHA1_32", "inline:x", ("KDR=1", "UNENCRYPTED_SRTCP")),
    )


def test_sloppy_sdp_is_tolerated_with_warnings() -> None:
    parsed = parse_sdp(load("tolerance-sdp-sloppy.sdp"))
    first, second = parsed.session.media
    assert first.label == "0123456789abcdef0123456789abcdef-leg-A"
    assert first.connection_address == "198.51.100.7"
    assert [c.encoding for c in first.codecs] == ["PCMU", "G729", "TELEPHONE-EVENT"]
    assert first.direction is Direction.SENDONLY  # session-level a=sendonly, a=direction:both ignored
    assert second.label == "leg B" and second.held_by_zero_address
    assert any("LF only" in w for w in parsed.warnings)
    assert any("trailing whitespace" in w for w in parsed.warnings)
    assert any("garbage line" in w for w in parsed.warnings)


def test_sdp_without_version_but_with_media_is_accepted() -> None:
    parsed = parse_sdp(b"m=audio 1 RTP/AVP 0\r\n")
    assert len(parsed.session.media) == 1 and any("v=" in w for w in parsed.warnings)


def test_labels_are_strings_exactly_as_written() -> None:
    media = parse_sdp(b"v=0\r\nm=audio 1 RTP/AVP 0\r\na=label:007\r\n").session.media[0]
    assert media.label == "007"


@pytest.mark.parametrize(
    "data",
    [b"", b"hello world", b"x=1\r\n", b"v=0\r\nm=audio\r\n", b"v=0\r\nm=audio x RTP/AVP 0\r\n",
     b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n", b"v=0\r\nm=audio \xb2 RTP/AVP 0\r\n"],
)
def test_unusable_sdp_raises_488(data: bytes) -> None:
    with pytest.raises(SdpError) as caught:
        parse_sdp(data)
    assert caught.value.status == 488


def test_non_utf8_is_replaced_with_warning() -> None:
    parsed = parse_sdp(b"v=0\r\ns=\xff\r\nm=audio 1 RTP/AVP 0\r\n")
    assert any("UTF-8" in w for w in parsed.warnings)


def test_port_count() -> None:
    media = parse_sdp(b"v=0\r\nm=audio 1000/2 RTP/AVP 0\r\n").session.media[0]
    assert (media.port, media.port_count) == (1000, 2)


def test_bare_cr_line_endings() -> None:
    media = parse_sdp(b"v=0\rm=audio 1 RTP/AVP 8\ra=label:x\r").session.media
    assert [(m.label, m.codecs[0].encoding) for m in media] == [("x", "PCMA")]
