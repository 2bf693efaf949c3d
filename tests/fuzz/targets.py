"""Fuzz targets: one function per parser, each taking raw bytes.

A target returns normally for a parsed result or for the project's own parse error
(``ALLOWED``); any other exception escaping it is a crash. The same functions are
driven by the coverage-guided runner (``tests.fuzz.run``) and by the in-process
smoke test, so both exercise exactly the same code paths.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

from srs_codecs import get_decoder, is_supported

from srs.errors import ParseError
from srs.media.rendering import PayloadFormat
from srs.media.track import StreamTrack
from srs.rtp.dtmf import parse_telephone_event
from srs.rtp.packet import parse_rtp, split_rtp
from srs.rtp.rtcp import parse_rtcp
from srs.sdp.answer import build_answer
from srs.sdp.model import Codec
from srs.sdp.parse import parse_sdp
from srs.sip.framing import StreamFramer
from srs.sip.message import Request, Response, parse_message, serialize
from srs.sip.routing import Address, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import SessionOffered
from srs.siprec.metadata import merge_metadata, parse_metadata
from srs.siprec.multipart import extract_siprec_body
from srs.siprec.settings import UaSettings

ALLOWED: tuple[type[Exception], ...] = (ParseError,)
"""The only exceptions a target may let through: the parsers' documented refusal."""

Target = Callable[[bytes], None]

_SIP_MAX = 8192
"""Below the 65535 default, so fuzz-sized inputs also reach the size refusals."""


def _split_points(control: bytes, length: int) -> list[int]:
    """Chunk boundaries derived from fuzz bytes, so the fuzzer also explores the framing."""
    points = sorted({(byte * 257 + index * 31) % (length + 1) for index, byte in enumerate(control)})
    return [0, *points, length]


class InvariantBroken(AssertionError):
    """A parser accepted the input but broke one of its own promises (a crash, like any other)."""


def _without_length(message: Request | Response) -> tuple[tuple[str, str], ...]:
    return message.headers.remove("content-length").items


def sip_udp(data: bytes) -> None:
    """One datagram: a parsed message must serialize to bytes that parse back to the same message.

    The caps are smaller than the defaults so fuzz-sized inputs reach the refusal paths too.
    """
    try:
        message = parse_message(data, max_size=_SIP_MAX, max_headers=48, max_header_length=2048)
    except ParseError:
        return
    _ = message.call_id, message.cseq, message.from_addr, message.to_addr, message.vias
    wire = serialize(message)
    try:
        again = parse_message(wire)
    except ParseError as error:
        raise InvariantBroken(f"serialized message does not parse: {error.message}; {wire[:200]!r}") from None
    if isinstance(message, Request):
        same_line = isinstance(again, Request) and (again.method, again.uri) == (message.method, message.uri)
    else:
        same_line = isinstance(again, Response) and again.status == message.status
    if not same_line or _without_length(again) != _without_length(message) or again.body != message.body:
        raise InvariantBroken(f"round trip changed the message: {wire[:200]!r}")


def _frame(chunks: list[bytes]) -> tuple[list[bytes], int, bool]:
    framer = StreamFramer(max_message_size=_SIP_MAX)
    messages: list[bytes] = []
    failed = False
    try:
        for chunk in chunks:
            messages.extend(framer.feed(chunk))
    except ParseError:
        failed = True
    return messages, framer.pending_pongs, failed


def sip_tcp(data: bytes) -> None:
    """A byte stream cut at fuzz-chosen points (the first 8 bytes pick the cuts, the rest is the stream).

    However the stream is cut, the framer must find the same messages and pings, or fail on both.
    """
    control, stream = data[:8], data[8:]
    points = _split_points(control, len(stream))
    chunks = [stream[begin:end] for begin, end in itertools.pairwise(points)]
    messages, pongs, failed = _frame(chunks)
    whole_messages, whole_pongs, whole_failed = _frame([stream])
    if failed != whole_failed or (not failed and (messages, pongs) != (whole_messages, whole_pongs)):
        raise InvariantBroken(f"framing depends on how the stream is cut: {points} of {stream[:120]!r}")
    for message in messages:
        with contextlib.suppress(ParseError):
            parse_message(message, max_size=_SIP_MAX)


def multipart(data: bytes) -> None:
    """First line is the Content-Type (empty: none), second the Content-Disposition, the rest the body."""
    first, _, rest = data.partition(b"\n")
    second, _, body = rest.partition(b"\n")
    content_type = first.decode("utf-8", "surrogateescape") or None
    disposition = second.decode("utf-8", "surrogateescape") or None
    with contextlib.suppress(ParseError):
        extract_siprec_body(content_type, body, disposition)


def _decodable(codec: Codec) -> bool:
    return is_supported(codec.encoding, codec.clock_rate)


def _srtp_key(suite: str) -> str:
    return "inline:" + "A" * 40


def sdp(data: bytes) -> None:
    """Parse an offer and answer it, as the user agent does."""
    try:
        parsed = parse_sdp(data)
    except ParseError:
        return
    offer = parsed.session
    answer = build_answer(
        offer,
        local_address="192.0.2.1",
        ports=[20000 + 2 * i for i in range(len(offer.media))],
        can_decode=_decodable,
        session_id=1,
        session_version=1,
        srtp_key=_srtp_key,
    )
    try:
        reparsed = parse_sdp(answer.sdp).session
    except ParseError as error:
        raise InvariantBroken(f"our answer does not parse: {error.message}; {answer.sdp[:300]!r}") from None
    if len(reparsed.media) != len(offer.media) or len(answer.streams) != len(offer.media):
        raise InvariantBroken(f"answer has {len(reparsed.media)} m-lines for {len(offer.media)} offered")


def metadata(data: bytes) -> None:
    """Parse rs-metadata and apply it to itself as a partial/complete update."""
    try:
        parsed = parse_metadata(data)
    except ParseError:
        return
    merged = merge_metadata(parsed, parsed)
    merge_metadata(None, merged)


_TRACK_FORMATS = {
    0: PayloadFormat("PCMU", 8000),
    8: PayloadFormat("PCMA", 8000),
    9: PayloadFormat("G722", 8000),
    101: PayloadFormat("telephone-event", 8000, fmtp="0-16"),
    13: PayloadFormat("CN", 8000),
    96: PayloadFormat("L16", 16000),
}


def rtp(data: bytes) -> None:
    """The packet parsers, then a real receiver track fed the packet and pieces of it."""
    try:
        packet = parse_rtp(data)
    except ParseError:
        packet = None
    try:
        split = split_rtp(data)
    except ParseError:
        split = None
    if (packet is None) != (split is None):
        raise InvariantBroken(f"parse_rtp and split_rtp disagree on {data[:16].hex()}")
    if packet is not None and split is not None:
        full = (packet.marker << 7 | packet.payload_type, packet.sequence, packet.timestamp, packet.ssrc)
        if split[:4] != full or bytes(split[4]) != packet.payload:
            raise InvariantBroken(f"parse_rtp and split_rtp disagree on {data[:16].hex()}")
    if packet is not None and packet.payload_type == 101:
        with contextlib.suppress(ParseError):
            parse_telephone_event(packet.payload)
    track = StreamTrack(_TRACK_FORMATS, start=0.0, decoder_factory=get_decoder, label="fuzz")
    source = ("192.0.2.10", 40000)
    track.push(data, source, 0.01)
    # Pieces of the input as further packets: reordering, duplicates, SSRC changes.
    for index, offset in enumerate(range(12, min(len(data), 12 * 40), 12)):
        track.push(data[:12] + data[offset : offset + 172], source, 0.02 * (index + 2))
    track.render(0, 800)
    track.finish()
    track.stats()


def rtcp(data: bytes) -> None:
    with contextlib.suppress(ParseError):
        parse_rtcp(data)


def _settings() -> UaSettings:
    counter = iter(range(1 << 62))
    return UaSettings(can_decode=_decodable, new_token=lambda: f"t{next(counter)}", srtp_key=_srtp_key)


def siprec_ua(data: bytes) -> None:
    """The user agent as the SIP edge drives it: it must turn any bytes into events, never raise."""
    ua = SiprecUserAgent(_settings())
    source = Address("192.0.2.10", 5060)
    local = Address("192.0.2.1", 5060)
    messages = data.split(b"\x00\x00\x00") if b"\x00\x00\x00" in data else [data]
    now = 0.0
    for chunk in messages[:8]:
        now += 0.1
        for event in ua.receive(chunk, source, Transport.UDP, local, now):
            if isinstance(event, SessionOffered):
                ua.accept(event.session_id, [30000 + 2 * i for i in range(event.ports_needed)], now)
        ua.on_timer(now + 40.0)


TARGETS: dict[str, Target] = {
    "sip_udp": sip_udp,
    "sip_tcp": sip_tcp,
    "multipart": multipart,
    "sdp": sdp,
    "metadata": metadata,
    "rtp": rtp,
    "rtcp": rtcp,
    "siprec_ua": siprec_ua,
}

MAX_LEN: dict[str, int] = {
    "sip_udp": 16384,
    "sip_tcp": 16384,
    "multipart": 16384,
    "sdp": 8192,
    "metadata": 16384,
    "rtp": 2048,
    "rtcp": 2048,
    "siprec_ua": 16384,
}
"""Largest input the runner generates per target (the size caps are tested separately, by unit tests)."""
