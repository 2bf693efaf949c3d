"""The SRS side of the offer/answer exchange (RFC 3264, RFC 7866 §8).

An SRS only receives: every m= line of the offer gets exactly one answer line, in order, either
accepted recvonly with the codecs srs can decode, or refused with port 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from srs.sdp.model import Codec, Crypto, Direction, MediaDescription, SessionDescription

SUPPORTED_PROTOS = frozenset({"RTP/AVP", "RTP/AVPF", "RTP/SAVP", "RTP/SAVPF"})
SUPPORTED_SRTP_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "AEAD_AES_128_GCM")
_SIGNALLING_ENCODINGS = frozenset({"TELEPHONE-EVENT", "CN"})
_CANONICAL_SPELLING = {"TELEPHONE-EVENT": "telephone-event", "OPUS": "opus"}


@dataclass(frozen=True, slots=True)
class NegotiatedStream:
    """What the media layer needs to receive one recorded stream."""

    index: int
    label: str | None
    local_port: int
    codecs: dict[int, Codec] = field(hash=False)
    telephone_event_pt: int | None
    cn_pt: int | None
    direction: Direction
    remote_address: str | None
    remote_port: int
    remote_rtcp_port: int | None
    crypto_offer: Crypto | None
    crypto_answer_key: str | None
    refused: bool

    @property
    def receives(self) -> bool:
        """True when the SRC will send media on this stream."""
        return not self.refused and self.direction.sends


@dataclass(frozen=True, slots=True)
class Answer:
    sdp: bytes
    streams: tuple[NegotiatedStream, ...]


def build_answer(
    offer: SessionDescription,
    *,
    local_address: str,
    ports: Sequence[int],
    can_decode: Callable[[Codec], bool],
    preference: Sequence[str] = (),
    session_id: int,
    session_version: int,
    srtp_key: Callable[[str], str] | None = None,
) -> Answer:
    """Answer a SIPREC offer; ``ports[i]`` is the local RTP port for offered m-line i (0 refuses it)."""
    family = "IP6" if ":" in local_address else "IP4"
    lines = [
        "v=0",
        f"o=srs {session_id} {session_version} IN {family} {local_address}",
        "s=srs",
        f"c=IN {family} {local_address}",
        "t=0 0",
    ]
    streams: list[NegotiatedStream] = []
    for media in offer.media:
        port = ports[media.index] if media.index < len(ports) else 0
        stream, media_lines = _answer_media(media, port, can_decode, preference, srtp_key)
        streams.append(stream)
        lines.extend(media_lines)
    return Answer(("\r\n".join(lines) + "\r\n").encode("utf-8"), tuple(streams))


def _answer_media(
    media: MediaDescription,
    port: int,
    can_decode: Callable[[Codec], bool],
    preference: Sequence[str],
    srtp_key: Callable[[str], str] | None,
) -> tuple[NegotiatedStream, list[str]]:
    audio = [c for c in media.codecs if c.encoding not in _SIGNALLING_ENCODINGS and can_decode(c)]
    signalling = [c for c in media.codecs if c.encoding in _SIGNALLING_ENCODINGS]
    secure = media.proto.upper() in ("RTP/SAVP", "RTP/SAVPF")
    crypto_offer = _pick_crypto(media.crypto) if secure else None
    refused = (
        port == 0
        or media.port == 0
        or media.media.lower() != "audio"
        or media.proto.upper() not in SUPPORTED_PROTOS
        or not audio
        or (secure and (crypto_offer is None or srtp_key is None))
    )
    if refused:
        formats = " ".join(media.formats) if media.formats else "0"
        stream = _stream(media, 0, {}, None, None, None, None, refused=True)
        return stream, [f"m={media.media} 0 {media.proto} {formats}"]

    ranked = _ordered(audio, preference)
    chosen = ranked + signalling
    lines = [f"m=audio {port} {media.proto} " + " ".join(str(c.payload_type) for c in chosen)]
    rtpmaps = _offered_rtpmaps(media)
    for codec in chosen:
        lines.append(f"a=rtpmap:{codec.payload_type} {rtpmaps.get(codec.payload_type) or _rtpmap(codec)}")
        # Echoed so format parameters that change the payload layout (AMR octet-align, the
        # telephone-event range) match what the SRC will send.
        if codec.fmtp:
            lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    answer_key: str | None = None
    if crypto_offer is not None and srtp_key is not None:
        answer_key = srtp_key(crypto_offer.suite)
        lines.append(f"a=crypto:{crypto_offer.tag} {crypto_offer.suite} {answer_key}")
    if media.label is not None:
        lines.append(f"a=label:{media.label}")
    lines.append("a=recvonly" if media.direction.sends else "a=inactive")

    events = [c for c in signalling if c.encoding == "TELEPHONE-EVENT"]
    event = next((c for c in events if c.clock_rate == 8000), events[0] if events else None)
    noise = next((c for c in signalling if c.encoding == "CN"), None)
    stream = _stream(
        media,
        port,
        {c.payload_type: c for c in ranked},
        event.payload_type if event else None,
        noise.payload_type if noise else None,
        crypto_offer,
        answer_key,
        refused=False,
    )
    return stream, lines


def _stream(
    media: MediaDescription,
    port: int,
    codecs: dict[int, Codec],
    event_pt: int | None,
    cn_pt: int | None,
    crypto_offer: Crypto | None,
    answer_key: str | None,
    *,
    refused: bool,
) -> NegotiatedStream:
    rtcp = media.rtcp_port if media.rtcp_port is not None else (media.port + 1 if media.port else None)
    return NegotiatedStream(
        index=media.index,
        label=media.label,
        local_port=port,
        codecs=codecs,
        telephone_event_pt=event_pt,
        cn_pt=cn_pt,
        direction=media.direction,
        remote_address=media.connection_address,
        remote_port=media.port,
        remote_rtcp_port=rtcp,
        crypto_offer=crypto_offer,
        crypto_answer_key=answer_key,
        refused=refused,
    )


def _pick_crypto(offered: Sequence[Crypto]) -> Crypto | None:
    for crypto in offered:
        if crypto.suite.upper() in SUPPORTED_SRTP_SUITES:
            return crypto
    return None


def _ordered(codecs: list[Codec], preference: Sequence[str]) -> list[Codec]:
    if not preference:
        return codecs
    rank = {name.upper(): position for position, name in enumerate(preference)}
    # sorted() is stable, so codecs outside the preference list keep offer order after the listed ones.
    return sorted(codecs, key=lambda codec: rank.get(codec.encoding, len(rank)))


def _offered_rtpmaps(media: MediaDescription) -> dict[int, str]:
    """The offer's own rtpmap text per payload type, echoed so the SRC sees its spelling back."""
    found: dict[int, str] = {}
    for name, value in media.attributes:
        if name == "rtpmap" and value:
            pt_text, _, mapping = value.partition(" ")
            if pt_text.isascii() and pt_text.isdigit():
                found.setdefault(int(pt_text), mapping.strip())
    return found


def _rtpmap(codec: Codec) -> str:
    name = _CANONICAL_SPELLING.get(codec.encoding, codec.encoding)
    suffix = f"/{codec.channels}" if codec.channels != 1 else ""
    return f"{name}/{codec.clock_rate}{suffix}"
