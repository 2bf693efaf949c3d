"""SDES keys (a=crypto) over unencrypted SIP: warned about, refused or allowed; never quoted in clear.

The keys in an ``a=crypto`` line let whoever reads the SIP decrypt the recorded media and inject
packets that authenticate; over UDP/TCP anyone on the path reads them.
"""

from __future__ import annotations

import pytest

from srs.sdp.parse import parse_sdp
from srs.sdp.redact import redact_keys
from srs.sip.routing import Transport
from srs.siprec.events import SessionOffered
from srs.siprec.offers import SDES_IN_CLEAR

from .sbc import METADATA, Sbc, invite, make_ua, multipart, of_type, sdp, statuses

KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"


def srtp_audio(port: int, label: str, crypto: str | None = None) -> str:
    line = crypto if crypto is not None else f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"
    return f"m=audio {port} RTP/SAVP 0\na=rtpmap:0 PCMU/8000\n{line}\na=label:{label}\na=sendonly\n"


def srtp_invite(crypto: str | None = None) -> bytes:
    body = multipart(
        ("application/sdp", sdp(srtp_audio(40000, "1", crypto))),
        ("application/rs-metadata+xml", METADATA),
    )
    return invite(content=body)


def offer(
    policy: str, transport: Transport, crypto: str | None = None
) -> tuple[list[int], list[SessionOffered]]:
    ua = make_ua(sdes_over_plain_sip=policy, srtp_key=lambda suite: "inline:" + "A" * 40)
    events = Sbc(ua, transport).send(srtp_invite(crypto), 0.0)
    return statuses(events), of_type(events, SessionOffered)


@pytest.mark.parametrize("transport", [Transport.UDP, Transport.TCP])
def test_default_accepts_sdes_over_plain_sip_with_a_loud_warning(transport: Transport) -> None:
    codes, offered = offer("warn", transport)
    assert codes == [100] and len(offered) == 1
    assert SDES_IN_CLEAR in offered[0].warnings


def test_refuse_answers_488_over_udp() -> None:
    codes, offered = offer("refuse", Transport.UDP)
    assert codes == [100, 488] and offered == []


def test_tls_is_never_warned_about_nor_refused() -> None:
    for policy in ("warn", "refuse"):
        codes, offered = offer(policy, Transport.TLS)
        assert codes == [100] and SDES_IN_CLEAR not in offered[0].warnings


def test_allow_accepts_quietly() -> None:
    codes, offered = offer("allow", Transport.UDP)
    assert codes == [100] and SDES_IN_CLEAR not in offered[0].warnings


def test_a_malformed_crypto_line_is_quoted_without_its_key() -> None:
    bad = f"a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20"
    _codes, offered = offer("allow", Transport.UDP, bad)
    text = " ".join(offered[0].warnings)
    assert "unreadable a=crypto" in text and KEY not in text and "inline:<redacted>" in text
    parsed = parse_sdp(sdp(srtp_audio(40000, "1", bad)))
    assert all(KEY not in w for w in parsed.warnings)


def test_redaction_covers_every_inline_key_of_a_line() -> None:
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4;inline:{KEY[::-1]}|2^20|2:4 KDR=1"
    redacted = redact_keys(line)
    assert KEY not in redacted and KEY[::-1] not in redacted
    assert redacted == "1 AES_CM_128_HMAC_SHA1_80 inline:<redacted>;inline:<redacted> KDR=1"
    assert redact_keys("INLINE:abc") == "INLINE:<redacted>"
