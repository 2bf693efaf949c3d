"""SRTP/SRTCP with SDES keys: RFC 3711 protection, RFC 4568 key parameters, RFC 7714 AES-GCM."""

from __future__ import annotations

import base64
import struct

import pylibsrtp
import pytest

from srs.errors import ParseError, RtpError, SdpError
from srs.rtp.srtp import (
    MASTER_KEY_SALT_LENGTH,
    SUPPORTED_SUITES,
    SrtpInbound,
    SrtpOutbound,
    make_inline_key,
    parse_key_params,
)

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
# RFC 4568 §6.1 example key parameter (30 octets of key and salt, lifetime 2^20, MKI 1 of 4 octets).
RFC4568_KEY_PARAMS = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def rtcp_sender_report(ssrc: int = 0x11223344) -> bytes:
    return struct.pack("!BBHIIIIII", 0x80, 200, 6, ssrc, 0xE1234567, 0x89ABCDEF, 16000, 100, 16000)


def offerer(suite: str, master: bytes) -> pylibsrtp.Session:
    """The SBC's sending side, keyed as its a=crypto line says."""
    policy = pylibsrtp.Policy(key=master, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
                              srtp_profile=PROFILES[suite])
    return pylibsrtp.Session(policy=policy)


def master_for(suite: str, seed: int = 1) -> bytes:
    return bytes((seed * 37 + i * 11) % 256 for i in range(MASTER_KEY_SALT_LENGTH[suite]))


def test_suites_include_the_mandatory_sdes_ones() -> None:
    assert SUPPORTED_SUITES[:2] == ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")
    assert set(SUPPORTED_SUITES) <= set(PROFILES)


def test_make_inline_key_is_deterministic_base64() -> None:
    key = make_inline_key("AES_CM_128_HMAC_SHA1_80", bytes(range(30)))
    assert key == "inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"
    assert parse_key_params("AES_CM_128_HMAC_SHA1_80", key)[0].master_key_salt == bytes(range(30))


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_make_inline_key_needs_exact_length(suite: str) -> None:
    size = MASTER_KEY_SALT_LENGTH[suite]
    assert base64.b64decode(make_inline_key(suite, bytes(size)).removeprefix("inline:")) == bytes(size)
    for wrong in (size - 1, size + 1, 0):
        with pytest.raises(ValueError):
            make_inline_key(suite, bytes(wrong))


def test_unknown_suite_is_an_sdp_error() -> None:
    with pytest.raises(SdpError):
        make_inline_key("F8_128_HMAC_SHA1_80", bytes(30))
    with pytest.raises(SdpError) as info:
        SrtpInbound("NULL_HMAC", "inline:" + "A" * 40)
    assert info.value.status == 488


def test_rfc4568_key_params_with_lifetime_and_mki() -> None:
    key, warnings = parse_key_params("aes_cm_128_hmac_sha1_80", RFC4568_KEY_PARAMS)
    assert len(key.master_key_salt) == 30
    assert key.lifetime == "2^20"
    assert (key.mki, key.mki_length) == (1, 4)
    assert warnings == []


def test_several_keys_use_the_first_with_a_warning() -> None:
    second = make_inline_key("AES_CM_128_HMAC_SHA1_80", bytes(30))
    key, warnings = parse_key_params("AES_CM_128_HMAC_SHA1_80", RFC4568_KEY_PARAMS + ";" + second)
    assert key.mki == 1
    assert len(warnings) == 1


def test_missing_base64_padding_is_tolerated() -> None:
    material = bytes(range(28))
    unpadded = "inline:" + base64.b64encode(material).decode().rstrip("=")
    assert parse_key_params("AEAD_AES_128_GCM", unpadded)[0].master_key_salt == material


@pytest.mark.parametrize(
    "params",
    ["", ";", "uri:https://kms.example/key", "inline", "inline:!!!notbase64!!!",
     "inline:" + base64.b64encode(bytes(29)).decode(), "inline:" + base64.b64encode(bytes(31)).decode(),
     RFC4568_KEY_PARAMS.replace("1:4", "x:4"), RFC4568_KEY_PARAMS.replace("1:4", "1:0"),
     RFC4568_KEY_PARAMS.replace("1:4", "300:1")],
)
def test_bad_key_params_are_sdp_errors(params: str) -> None:
    with pytest.raises(SdpError):
        parse_key_params("AES_CM_128_HMAC_SHA1_80", params)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_round_trip_rtp_and_rtcp(suite: str) -> None:
    master = master_for(suite)
    sender = offerer(suite, master)
    inbound = SrtpInbound(suite, make_inline_key(suite, master))
    for seq in range(65530, 65536 + 40):  # across the sequence number wrap
        plain = rtp(seq % 65536)
        protected = sender.protect(plain)
        assert protected != plain
        assert inbound.unprotect(protected) == plain
    report = rtcp_sender_report()
    assert inbound.unprotect_rtcp(sender.protect_rtcp(report)) == report


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_new_ssrc_mid_call_is_accepted(suite: str) -> None:
    master = master_for(suite)
    sender = offerer(suite, master)
    inbound = SrtpInbound(suite, make_inline_key(suite, master))
    assert inbound.unprotect(sender.protect(rtp(1, ssrc=1))) == rtp(1, ssrc=1)
    assert inbound.unprotect(sender.protect(rtp(900, ssrc=2))) == rtp(900, ssrc=2)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_tampered_packets_are_rejected_and_the_stream_survives(suite: str) -> None:
    master = master_for(suite)
    sender = offerer(suite, master)
    inbound = SrtpInbound(suite, make_inline_key(suite, master))
    protected = sender.protect(rtp(10))
    for position in (1, 5, 11, 12, 100, len(protected) - 1):  # header, payload and tag octets
        tampered = bytearray(protected)
        tampered[position] ^= 0x01
        with pytest.raises(RtpError):
            inbound.unprotect(bytes(tampered))
    assert inbound.unprotect(protected) == rtp(10)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_replay_is_rejected(suite: str) -> None:
    master = master_for(suite)
    sender = offerer(suite, master)
    inbound = SrtpInbound(suite, make_inline_key(suite, master))
    protected = sender.protect(rtp(7))
    inbound.unprotect(protected)
    with pytest.raises(RtpError, match="unprotect"):
        inbound.unprotect(protected)
    report = sender.protect_rtcp(rtcp_sender_report())
    inbound.unprotect_rtcp(report)
    with pytest.raises(RtpError):
        inbound.unprotect_rtcp(report)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_wrong_key_is_rejected(suite: str) -> None:
    sender = offerer(suite, master_for(suite, seed=1))
    inbound = SrtpInbound(suite, make_inline_key(suite, master_for(suite, seed=2)))
    with pytest.raises(RtpError):
        inbound.unprotect(sender.protect(rtp(1)))
    with pytest.raises(RtpError):
        inbound.unprotect_rtcp(sender.protect_rtcp(rtcp_sender_report()))


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_every_truncation_and_garbage_is_an_rtp_error(suite: str) -> None:
    master = master_for(suite)
    inbound = SrtpInbound(suite, make_inline_key(suite, master))
    protected = offerer(suite, master).protect(rtp(3, payload=b"\x01" * 20))
    for cut in range(len(protected)):
        with pytest.raises(RtpError):
            inbound.unprotect(protected[:cut])
    for garbage in (b"", b"\x00", b"\xff" * 11, bytes(64)):
        with pytest.raises(RtpError):
            inbound.unprotect(garbage)
        with pytest.raises(RtpError):
            inbound.unprotect_rtcp(garbage)
    assert issubclass(RtpError, ParseError)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_mki_octets_are_checked_and_removed(suite: str) -> None:
    master = master_for(suite)
    sender = offerer(suite, master)
    inbound = SrtpInbound(suite, make_inline_key(suite, master) + "|2^31|5:2")
    tag = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}.get(suite, 0)
    rtcp_tag = 10 if tag else 0

    def with_mki(packet: bytes, tag_length: int, mki: bytes = b"\x00\x05") -> bytes:
        end = len(packet) - tag_length
        return packet[:end] + mki + packet[end:]

    assert inbound.unprotect(with_mki(sender.protect(rtp(1)), tag)) == rtp(1)
    assert inbound.unprotect_rtcp(with_mki(sender.protect_rtcp(rtcp_sender_report()), rtcp_tag)) == (
        rtcp_sender_report()
    )
    with pytest.raises(RtpError, match="MKI"):
        inbound.unprotect(with_mki(sender.protect(rtp(2)), tag, b"\x00\x06"))
    with pytest.raises(RtpError):
        inbound.unprotect(b"\x80" * 5)


@pytest.mark.parametrize("suite", SUPPORTED_SUITES)
def test_outbound_helper_matches_inbound(suite: str) -> None:
    key = make_inline_key(suite, master_for(suite, seed=9))
    outbound = SrtpOutbound(suite, key)
    inbound = SrtpInbound(suite, key)
    assert inbound.unprotect(outbound.protect(rtp(44))) == rtp(44)
    assert inbound.unprotect_rtcp(outbound.protect_rtcp(rtcp_sender_report())) == rtcp_sender_report()
    with pytest.raises(ValueError):
        SrtpOutbound(suite, key + "|1:4")
    with pytest.raises(RtpError):
        outbound.protect(b"\x80")
