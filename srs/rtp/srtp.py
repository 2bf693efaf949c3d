"""SRTP/SRTCP with SDES keys (RFC 3711, RFC 4568 key parameters, RFC 7714 AES-GCM).

srs is the answerer: it learns the sender's master key from the offer's
``a=crypto`` line and decrypts with it; its own key in the answer only matters
for a peer that reads it. Every failure (bad tag, replay, truncation) is an
:class:`~srs.errors.RtpError` so the media edge drops and counts the packet
like any other malformed one.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from functools import cache

import pylibsrtp

from srs.errors import RtpError, SdpError

_PROFILES: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}

MASTER_KEY_SALT_LENGTH: dict[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": 16 + 14,
    "AES_CM_128_HMAC_SHA1_32": 16 + 14,
    "AEAD_AES_128_GCM": 16 + 12,
    "AEAD_AES_256_GCM": 32 + 12,
}

_AEAD = ("AEAD_AES_128_GCM", "AEAD_AES_256_GCM")
_AUTH_TAG_LENGTH = {"AES_CM_128_HMAC_SHA1_80": 10, "AES_CM_128_HMAC_SHA1_32": 4}
_SRTCP_AUTH_TAG_LENGTH = 10  # SRTCP always uses the 80-bit tag with these suites (RFC 4568 §6.2)
_SRTCP_INDEX_LENGTH = 4


@cache
def _suite_works(suite: str) -> bool:
    """libsrtp may be built without the AES-GCM cipher; find out by trying."""
    try:
        policy = pylibsrtp.Policy(
            key=bytes(MASTER_KEY_SALT_LENGTH[suite]),
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND,
            srtp_profile=_PROFILES[suite],
        )
        pylibsrtp.Session(policy=policy)
    except (pylibsrtp.Error, ValueError, TypeError):
        return False
    return True


SUPPORTED_SUITES: tuple[str, ...] = tuple(suite for suite in _PROFILES if _suite_works(suite))
"""Crypto suites srs accepts, in its order of preference."""


@dataclass(frozen=True, slots=True)
class SdesKey:
    """One ``inline:`` key of an ``a=crypto`` line (RFC 4568 §6.1)."""

    master_key_salt: bytes
    lifetime: str | None
    mki: int | None
    mki_length: int


def _check_suite(suite: str) -> str:
    name = suite.strip().upper()
    if name not in SUPPORTED_SUITES:
        raise SdpError(f"unsupported SRTP crypto suite {suite!r}")
    return name


def make_inline_key(suite: str, random_bytes: bytes) -> str:
    """The ``inline:`` key parameter for srs's own ``a=crypto`` line.

    Randomness comes from the caller (``os.urandom`` in the daemon), so tests
    get the same line every time.
    """
    name = _check_suite(suite)
    needed = MASTER_KEY_SALT_LENGTH[name]
    if len(random_bytes) != needed:
        raise ValueError(f"{name} needs {needed} octets of master key and salt, got {len(random_bytes)}")
    return "inline:" + base64.b64encode(random_bytes).decode("ascii")


def parse_key_params(suite: str, key_params: str) -> tuple[SdesKey, list[str]]:
    """The first ``inline:`` key of ``key_params``, plus warnings about what was ignored."""
    name = _check_suite(suite)
    warnings: list[str] = []
    keys = [k.strip() for k in key_params.split(";") if k.strip()]
    if not keys:
        raise SdpError("a=crypto without key parameters")
    if len(keys) > 1:
        warnings.append(f"{len(keys)} SRTP master keys offered; only the first is used")
    method, sep, info = keys[0].partition(":")
    if not sep or method.strip().lower() != "inline":
        raise SdpError(f"SRTP key method must be inline, got {keys[0][:40]!r}")
    key_b64, *rest = info.strip().split("|")
    try:
        material = base64.b64decode(key_b64 + "=" * (-len(key_b64) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SdpError(f"SRTP key is not base64: {exc}") from None
    needed = MASTER_KEY_SALT_LENGTH[name]
    if len(material) != needed:
        raise SdpError(f"{name} key must be {needed} octets of key and salt, got {len(material)}")
    lifetime: str | None = None
    mki: int | None = None
    mki_length = 0
    for field in rest:
        field = field.strip()
        if ":" in field:
            value, _, length = field.partition(":")
            try:
                mki, mki_length = int(value), int(length)
            except ValueError:
                raise SdpError(f"bad SRTP MKI field {field!r}") from None
            if not 1 <= mki_length <= 128 or mki >= 256**mki_length or mki < 0:
                raise SdpError(f"bad SRTP MKI field {field!r}")
        elif field:
            lifetime = field
    return SdesKey(material, lifetime, mki, mki_length), warnings


class _SrtpSession:
    def __init__(self, suite: str, key_params: str, ssrc_type: int) -> None:
        self.suite = _check_suite(suite)
        self.key, self.warnings = parse_key_params(self.suite, key_params)
        policy = pylibsrtp.Policy(
            key=self.key.master_key_salt, ssrc_type=ssrc_type, srtp_profile=_PROFILES[self.suite]
        )
        self._session = pylibsrtp.Session(policy=policy)


class SrtpInbound(_SrtpSession):
    """Decrypts one sender's SRTP and SRTCP (any SSRC: SBCs change SSRC mid-call)."""

    def __init__(self, suite: str, key_params: str) -> None:
        super().__init__(suite, key_params, pylibsrtp.Policy.SSRC_ANY_INBOUND)

    def _strip_mki(self, packet: bytes, tag_length: int) -> bytes:
        """libsrtp is keyed without MKI; the MKI octets sit just before the tag (at the end for GCM)."""
        length = self.key.mki_length
        if not length:
            return packet
        if len(packet) < length + tag_length + 12:
            raise RtpError(f"SRTP packet of {len(packet)} octets is too short for its MKI")
        end = len(packet) - tag_length
        mki = int.from_bytes(packet[end - length : end], "big")
        if mki != self.key.mki:
            raise RtpError(f"SRTP packet carries unknown MKI {mki}")
        return packet[: end - length] + packet[end:]

    def unprotect(self, packet: bytes) -> bytes:
        """The plain RTP packet; RtpError on a bad tag, a replay or garbage."""
        tag = 0 if self.suite in _AEAD else _AUTH_TAG_LENGTH[self.suite]
        data = self._strip_mki(packet, tag)
        try:
            return bytes(self._session.unprotect(data))
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise RtpError(f"SRTP unprotect failed: {exc}") from None

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """The plain RTCP compound packet; RtpError on a bad tag, a replay or garbage."""
        tag = 0 if self.suite in _AEAD else _SRTCP_AUTH_TAG_LENGTH
        data = self._strip_mki(packet, tag)
        try:
            return bytes(self._session.unprotect_rtcp(data))
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise RtpError(f"SRTCP unprotect failed: {exc}") from None


class SrtpOutbound(_SrtpSession):
    """Encrypts with an SDES key: test traffic and load generation (srs itself only receives).

    Keys with an MKI are refused here: the generators do not need them.
    """

    def __init__(self, suite: str, key_params: str) -> None:
        super().__init__(suite, key_params, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        if self.key.mki_length:
            raise ValueError("SrtpOutbound does not add MKI fields")

    def protect(self, packet: bytes) -> bytes:
        try:
            return bytes(self._session.protect(packet))
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise RtpError(f"SRTP protect failed: {exc}") from None

    def protect_rtcp(self, packet: bytes) -> bytes:
        try:
            return bytes(self._session.protect_rtcp(packet))
        except (pylibsrtp.Error, ValueError, TypeError) as exc:
            raise RtpError(f"SRTCP protect failed: {exc}") from None
