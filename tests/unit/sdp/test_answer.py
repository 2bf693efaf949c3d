from __future__ import annotations

from collections.abc import Callable

from srs.sdp.answer import Answer, build_answer
from srs.sdp.model import Codec, Direction
from srs.sdp.parse import parse_sdp
from tests.unit.sdp.test_parse import SIPREC_OFFER
from tests.unit.siprec.fixtures import load

PLAIN = b"v=0\r\nc=IN IP4 192.0.2.1\r\n"


def g711(codec: Codec) -> bool:
    return codec.encoding in ("PCMU", "PCMA") and codec.clock_rate == 8000


def answer(
    offer: bytes,
    ports: list[int],
    *,
    local_address: str = "203.0.113.10",
    preference: tuple[str, ...] = (),
    srtp_key: Callable[[str], str] | None = None,
) -> Answer:
    return build_answer(
        parse_sdp(offer).session,
        local_address=local_address,
        ports=ports,
        can_decode=g711,
        preference=preference,
        session_id=1,
        session_version=1,
        srtp_key=srtp_key,
    )


GOLDEN_ANSWER = (
    b"v=0\r\n"
    b"o=srs 1 1 IN IP4 203.0.113.10\r\n"
    b"s=srs\r\n"
    b"c=IN IP4 203.0.113.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=label:96\r\n"
    b"a=recvonly\r\n"
    b"m=audio 30002 RTP/AVP 8\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=label:98\r\n"
    b"a=recvonly\r\n"
)


def test_two_stream_siprec_offer_golden_answer() -> None:
    result = answer(SIPREC_OFFER, [30000, 30002])
    assert result.sdp == GOLDEN_ANSWER
    first, second = result.streams
    assert (first.index, first.label, first.local_port, first.refused) == (0, "96", 30000, False)
    assert sorted(first.codecs) == [0, 8] and first.telephone_event_pt == 101 and first.cn_pt is None
    assert (first.remote_address, first.remote_port, first.remote_rtcp_port) == ("198.51.100.7", 49170, 49171)
    assert first.direction is Direction.SENDONLY and first.receives
    assert (second.remote_address, second.remote_rtcp_port) == ("198.51.100.8", 51380)
    assert list(second.codecs) == [8]


def test_answer_is_parseable_and_mirrors_every_m_line() -> None:
    parsed = parse_sdp(answer(SIPREC_OFFER, [30000, 30002]).sdp)
    assert parsed.warnings == ()
    assert [m.direction for m in parsed.session.media] == [Direction.RECVONLY, Direction.RECVONLY]
    assert [m.label for m in parsed.session.media] == ["96", "98"]


def test_preference_orders_codecs() -> None:
    result = answer(SIPREC_OFFER, [30000, 30002], preference=("pcma",))
    assert b"m=audio 30000 RTP/AVP 8 0 101\r\n" in result.sdp


def test_zero_port_refuses_only_that_stream() -> None:
    result = answer(SIPREC_OFFER, [0, 30002])
    assert b"m=audio 0 RTP/AVP 0 8 101\r\nm=audio 30002 RTP/AVP 8\r\n" in result.sdp
    assert result.streams[0].refused and not result.streams[0].receives
    assert not result.streams[1].refused


def test_missing_port_entries_refuse() -> None:
    result = answer(SIPREC_OFFER, [30000])
    assert result.streams[1].refused and result.streams[1].local_port == 0


def test_no_decodable_codec_refuses() -> None:
    offer = PLAIN + b"m=audio 4000 RTP/AVP 18 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    result = answer(offer, [30000])
    assert result.sdp.endswith(b"m=audio 0 RTP/AVP 18 101\r\n")
    assert result.streams[0].refused


def test_video_and_unknown_protocols_refused() -> None:
    offer = (
        b"v=0\r\nc=IN IP4 192.0.2.1\r\n"
        b"m=video 4000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
        b"m=audio 4002 UDP/TLS/RTP/SAVP 0\r\n"
        b"m=audio 4004 RTP/AVP 0\r\na=sendonly\r\n"
    )
    result = answer(offer, [30000, 30002, 30004])
    assert [s.refused for s in result.streams] == [True, True, False]
    expected = b"m=video 0 RTP/AVP 96\r\nm=audio 0 UDP/TLS/RTP/SAVP 0\r\nm=audio 30004 RTP/AVP 0\r\n"
    assert expected in result.sdp


def test_offered_sendrecv_is_answered_recvonly_and_inactive_stays_inactive() -> None:
    offer = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=inactive\r\n"
    result = answer(offer, [30000, 30002])
    assert result.sdp.count(b"a=recvonly") == 1 and result.sdp.endswith(b"a=inactive\r\n")
    assert result.streams[0].receives and not result.streams[1].receives


def test_zero_address_hold_answers_inactive() -> None:
    offer = b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\na=sendonly\r\n"
    result = answer(offer, [30000])
    assert result.sdp.endswith(b"a=inactive\r\n") and not result.streams[0].receives


def test_cn_is_kept_when_offered() -> None:
    offer = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 8 13\r\na=sendonly\r\n"
    result = answer(offer, [30000])
    assert b"m=audio 30000 RTP/AVP 8 13\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\n" in result.sdp
    assert result.streams[0].cn_pt == 13


def test_srtp_picks_first_supported_suite_and_keeps_plain_lines_plain() -> None:
    suites: list[str] = []

    def key(suite: str) -> str:
        suites.append(suite)
        return "inline:U1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JT"

    result = answer(load("tolerance-sdp-mixed-srtp.sdp"), [30000, 30002], srtp_key=key)
    assert suites == ["AES_CM_128_HMAC_SHA1_80"]
    assert (
        b"m=audio 30000 RTP/SAVP 8 0\r\n"
        b"a=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:U1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JT\r\n"
        b"a=label:1\r\n"
        b"a=recvonly\r\n"
        b"m=audio 30002 RTP/AVP 8\r\n"
    ) in result.sdp
    secure, plain = result.streams
    assert secure.crypto_offer is not None and secure.crypto_offer.tag == 2
    assert secure.crypto_answer_key == "inline:U1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JTU1JT"
    assert secure.remote_rtcp_port == 41005
    assert plain.crypto_offer is None and plain.crypto_answer_key is None
    assert result.sdp.count(b"a=crypto") == 1


def test_srtp_without_key_source_or_supported_suite_refuses() -> None:
    offer = PLAIN + b"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 F8_128_HMAC_SHA1_80 inline:x\r\n"
    assert answer(offer, [30000], srtp_key=lambda suite: "inline:y").streams[0].refused
    supported = PLAIN + b"m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AEAD_AES_128_GCM inline:x\r\n"
    assert answer(supported, [30000]).streams[0].refused
    accepted = answer(supported, [30000], srtp_key=lambda suite: "inline:y")
    assert accepted.sdp.endswith(b"a=crypto:1 AEAD_AES_128_GCM inline:y\r\na=recvonly\r\n")


def test_ipv6_local_address() -> None:
    result = answer(SIPREC_OFFER, [30000, 30002], local_address="2001:db8::10")
    assert b"c=IN IP6 2001:db8::10\r\n" in result.sdp and b"IN IP6 2001:db8::10\r\n" in result.sdp


def test_rtpmap_spelling_of_the_offer_is_echoed() -> None:
    offer = b"v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 0 96\r\na=rtpmap:96 Telephone-Event/8000\r\n"
    assert b"a=rtpmap:96 Telephone-Event/8000\r\n" in answer(offer, [30000]).sdp


def test_every_fixture_offer_gets_one_answer_line_per_m_line() -> None:
    for name in ("tolerance-sdp-sloppy.sdp", "tolerance-sdp-mixed-srtp.sdp"):
        offer = parse_sdp(load(name)).session
        result = build_answer(
            offer, local_address="203.0.113.10", ports=[30000 + 2 * i for i in range(len(offer.media))],
            can_decode=g711, session_id=5, session_version=6,
        )
        assert parse_sdp(result.sdp).session.media.__len__() == len(offer.media)
        assert len(result.streams) == len(offer.media)


def test_format_parameters_are_echoed() -> None:
    offer = (
        PLAIN + b"m=audio 4000 RTP/AVP 96 101\r\na=rtpmap:96 AMR/8000\r\na=fmtp:96 octet-align=1\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendonly\r\n"
    )
    result = build_answer(
        parse_sdp(offer).session, local_address="203.0.113.10", ports=[30000],
        can_decode=lambda codec: codec.encoding == "AMR", session_id=1, session_version=1,
    )
    assert (
        b"m=audio 30000 RTP/AVP 96 101\r\na=rtpmap:96 AMR/8000\r\na=fmtp:96 octet-align=1\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=recvonly\r\n"
    ) in result.sdp
    assert result.streams[0].codecs[96].fmtp == "octet-align=1"
