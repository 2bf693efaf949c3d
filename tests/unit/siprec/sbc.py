"""A scripted SBC for the user-agent tests: byte-level SIPREC requests and functions that read the answers.

Every request is written out as the bytes an SBC puts on the wire (CRLF lines,
Content-Length computed), so the tests exercise the parser as well as the core.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TypeVar

from srs.sdp.model import Codec
from srs.sip.message import Request, Response, parse_message
from srs.sip.routing import Address, Outgoing, Transport
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.events import UaEvent
from srs.siprec.settings import UaSettings

SBC = Address("192.0.2.10", 5060)
SRS = Address("198.51.100.1", 5060)
BOUNDARY = "OSS-unique-boundary-42"
T = TypeVar("T")


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


def sdp(*media: str, origin_version: int = 1, connection: str = "192.0.2.10") -> bytes:
    """An SDP offer; each ``media`` is the block of lines for one m= section."""
    head = f"v=0\no=SBC 1212 {origin_version} IN IP4 192.0.2.10\ns=SIPREC\nc=IN IP4 {connection}\nt=0 0\n"
    return crlf(head + "".join(media))


def audio(port: int, label: str, direction: str = "sendonly") -> str:
    return (
        f"m=audio {port} RTP/AVP 0 8 101\na=rtpmap:0 PCMU/8000\na=rtpmap:8 PCMA/8000\n"
        f"a=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=label:{label}\na={direction}\n"
    )


TWO_STREAMS = sdp(audio(40000, "1"), audio(40002, "2"))

METADATA = crlf(
    """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <sipSessionID>ab30317f1a784dc48ff824d0d3715d86;remote=47755a9de7794ba387653f2099600ef2</sipSessionID>
  </session>
  <participant participant_id="srfBElmCRp2QB23b7Mpk0w==">
    <nameID aor="sip:alice@atlanta.example.com"><name xml:lang="en">Alice</name></nameID>
  </participant>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:bob@biloxi.example.com"><name xml:lang="en">Bob</name></nameID>
  </participant>
  <stream stream_id="UAAMm5GRQKSCMVvLyl4rFw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>1</label>
  </stream>
  <stream stream_id="i1Pz3to5hGk8fuXl+PbwCw==" session_id="hVpd7YQgRW2nD22h7q60JQ==">
    <label>2</label>
  </stream>
</recording>
"""
)

PARTIAL_METADATA = crlf(
    """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>partial</datamode>
  <participant participant_id="zSfPoSvdSDCmU3A3TRDxAw==">
    <nameID aor="sip:carol@chicago.example.com"><name xml:lang="en">Carol</name></nameID>
  </participant>
</recording>
"""
)


def multipart(*parts: tuple[str, bytes], boundary: str = BOUNDARY) -> tuple[str, bytes]:
    """(Content-Type value, body) for a multipart/mixed body of (content type, content) parts."""
    chunks = []
    for content_type, content in parts:
        disposition = "Content-Disposition: recording-session\r\n" if "metadata" in content_type else ""
        chunks.append(
            f"--{boundary}\r\nContent-Type: {content_type}\r\n{disposition}\r\n".encode() + content + b"\r\n"
        )
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return f'multipart/mixed;boundary="{boundary}"', body


SIPREC_BODY = multipart(("application/sdp", TWO_STREAMS), ("application/rs-metadata+xml", METADATA))


def request(
    method: str,
    *,
    call_id: str = "f81d4fae-7dec-11d0-a765@sbc.example.com",
    branch: str = "z9hG4bK74bf9",
    cseq: int = 1,
    cseq_method: str | None = None,
    from_tag: str = "sbc-tag-1",
    to_tag: str | None = None,
    via_transport: str = "UDP",
    extra: Sequence[tuple[str, str]] = (),
    content: tuple[str, bytes] | None = None,
    contact: str | None = "<sip:sbc@192.0.2.10:5060>;+sip.src",
    uri: str = "sip:srs@198.51.100.1:5060",
) -> bytes:
    """One request exactly as an SBC writes it."""
    to = "<sip:srs@198.51.100.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{via_transport} 192.0.2.10:5060;branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:recorder@sbc.example.com>;tag={from_tag}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    body = b""
    if content is not None:
        lines.append(f"Content-Type: {content[0]}")
        body = content[1]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def invite(
    *,
    require: str | None = "siprec",
    content: tuple[str, bytes] | None = SIPREC_BODY,
    extra: Sequence[tuple[str, str]] = (),
    **kwargs: object,
) -> bytes:
    headers = [("Require", require)] if require else []
    return request("INVITE", extra=[*headers, *extra], content=content, **kwargs)  # type: ignore[arg-type]


def make_ua(**overrides: object) -> SiprecUserAgent:
    """A user agent with deterministic tokens (tok1, tok2, …) and PCMU/PCMA decoding."""
    counter = itertools.count(1)

    def can_decode(codec: Codec) -> bool:
        return codec.encoding.upper() in ("PCMU", "PCMA")

    settings = UaSettings(
        can_decode=can_decode,
        new_token=lambda: f"tok{next(counter)}",
        **overrides,  # type: ignore[arg-type]
    )
    return SiprecUserAgent(settings)


def of_type(events: Sequence[UaEvent], kind: type[T]) -> list[T]:
    return [event for event in events if isinstance(event, kind)]


def responses(events: Sequence[UaEvent]) -> list[Response]:
    parsed = [parse_message(event.data) for event in of_type(events, Outgoing)]
    assert all(isinstance(message, Response) for message in parsed), parsed
    return [message for message in parsed if isinstance(message, Response)]


def requests(events: Sequence[UaEvent]) -> list[Request]:
    parsed = [parse_message(event.data) for event in of_type(events, Outgoing)]
    return [message for message in parsed if isinstance(message, Request)]


def statuses(events: Sequence[UaEvent]) -> list[int]:
    return [response.status for response in responses(events)]


def ack_for(response: Response, *, branch: str = "z9hG4bKack1", cseq: int = 1, **kwargs: object) -> bytes:
    """The ACK for a 2xx: a new transaction in the dialog the 2xx created (§13.2.2.4)."""
    to_tag = response.to_addr.tag
    return request("ACK", branch=branch, cseq=cseq, to_tag=to_tag, **kwargs)  # type: ignore[arg-type]


class Sbc:
    """Sends scripted bytes into one user agent from one address."""

    def __init__(self, ua: SiprecUserAgent, transport: Transport = Transport.UDP, source: Address = SBC):
        self.ua = ua
        self.transport = transport
        self.source = source

    def send(self, data: bytes, now: float) -> list[UaEvent]:
        return self.ua.receive(data, self.source, self.transport, SRS, now)
