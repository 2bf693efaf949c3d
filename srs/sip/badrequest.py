"""Answering requests the parser refused (RFC 3261 §8.2.6, §21.4.1), sans-IO.

A request that cannot be parsed may still carry readable Via, From, To, Call-ID
and CSeq lines.  Those five are all a client needs to match a response to its
transaction, so srs answers with an error instead of leaving the client to
retransmit into silence.  The lines are copied as written; nothing else of the
message is trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from srs.errors import ParseError
from srs.sip.grammar import split_unquoted
from srs.sip.headers import CSeq, NameAddr, Via
from srs.sip.message import REASON_PHRASES
from srs.sip.routing import Address, Outgoing, Transport

# header-name HCOLON value, long or compact form, at the start of a line
_LINE_RE = re.compile(
    rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE
)
_CANONICAL = {
    b"via": "Via",
    b"v": "Via",
    b"from": "From",
    b"f": "From",
    b"to": "To",
    b"t": "To",
    b"call-id": "Call-ID",
    b"i": "Call-ID",
    b"cseq": "CSeq",
}
_MAX_VALUE = 1024
_MAX_VIAS = 16
_TAG_RE = re.compile(r";\s*tag\s*=", re.IGNORECASE)
_CSEQ_RE = re.compile(r"^\s*\d{1,10}\s+([A-Za-z]+)\s*$")
_UNSAFE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class ReadableHeaders:
    """The five header values a response must echo, as far as they could be read."""

    vias: tuple[str, ...]
    from_: str
    to: str
    call_id: str
    cseq: str

    @property
    def method(self) -> str:
        match = _CSEQ_RE.match(self.cseq)
        return match.group(1).upper() if match else ""


def safe_text(text: str, limit: int = 200) -> str:
    """Printable ASCII only and no double quotes: fit for a reason phrase or a Warning's quoted text."""
    cleaned = _UNSAFE.sub("?", text).replace('"', "'").replace("\\", "/")
    return cleaned[:limit]


def read_headers(data: bytes) -> ReadableHeaders | None:
    """The Via/From/To/Call-ID/CSeq lines of a request's head, or None when one is missing.

    Only the head counts (up to the first empty line), so a body cannot smuggle
    headers in; a response (status line) gives None because responses are never answered.
    """
    head = re.split(rb"\r?\n\r?\n", data.lstrip(b"\r\n"), maxsplit=1)[0]
    if head[:4].upper() == b"SIP/" or head[:4].upper() == b"ACK ":
        return None  # responses and ACKs are never answered (§17.2.1, §17.2.3)
    found: dict[str, list[str]] = {}
    for match in _LINE_RE.finditer(head):
        name = _CANONICAL[match.group(1).lower()]
        value = match.group(2).strip()
        if not value or len(value) > _MAX_VALUE:
            continue
        try:
            text = value.decode("ascii")
        except UnicodeDecodeError:
            continue
        if _UNSAFE.search(text) or not _readable(name, text):
            continue
        found.setdefault(name, []).append(text)
    if any(name not in found for name in ("Via", "From", "To", "Call-ID", "CSeq")):
        return None
    cseq = found["CSeq"][0]
    if not _CSEQ_RE.match(cseq):
        return None
    return ReadableHeaders(
        vias=tuple(found["Via"][:_MAX_VIAS]),
        from_=found["From"][0],
        to=found["To"][0],
        call_id=found["Call-ID"][0],
        cseq=cseq,
    )


def _readable(name: str, value: str) -> bool:
    """Only values the client's own parser can match on are echoed: a response must itself be valid."""
    try:
        if name == "Via":
            for part in split_unquoted(value, ","):
                Via.parse(part)
        elif name in ("From", "To"):
            NameAddr.parse(value)
        elif name == "CSeq":
            CSeq.parse(value)
    except (ParseError, ValueError, IndexError):
        return False
    return True


def error_response_bytes(
    headers: ReadableHeaders,
    status: int,
    detail: str,
    *,
    to_tag: str,
    extra_headers: tuple[tuple[str, str], ...] = (),
    reason: str | None = None,
) -> bytes:
    """A final response built from copied lines: To gets ``to_tag`` unless it has a tag already."""
    phrase = safe_text(reason or REASON_PHRASES.get(status, "Bad Request"), 100)
    to_value = headers.to if _TAG_RE.search(headers.to) else f"{headers.to};tag={to_tag}"
    lines = [f"SIP/2.0 {status} {phrase}"]
    lines.extend(f"Via: {via}" for via in headers.vias)
    lines += [
        f"From: {headers.from_}",
        f"To: {to_value}",
        f"Call-ID: {headers.call_id}",
        f"CSeq: {headers.cseq}",
    ]
    lines.extend(f"{name}: {value}" for name, value in extra_headers)
    lines.append(f'Warning: 399 srs "{safe_text(detail)}"')
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii", errors="replace")


def destination_for(headers: ReadableHeaders, source: Address, transport: Transport) -> Address:
    """Back to where the bytes came from, as every response (:func:`response_destination`):
    the Via of a message srs could not even parse is the last thing to trust."""
    del headers, transport
    return source


def answer_unparseable(
    data: bytes,
    error: ParseError,
    source: Address,
    transport: Transport,
    *,
    to_tag: str,
) -> Outgoing | None:
    """The error response for bytes the parser refused, or None when it cannot be addressed."""
    headers = read_headers(data)
    if headers is None:
        return None
    status = error.status if 400 <= error.status <= 699 else 400
    payload = error_response_bytes(headers, status, error.message, to_tag=to_tag, reason=error.reason)
    return Outgoing(payload, destination_for(headers, source, transport), transport)
