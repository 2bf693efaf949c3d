"""Reading what an SBC offers: the SIPREC body, its SDP and metadata, and the checks on them
that need no call state (stream count before parsing, SDES keys over plain SIP, usable URIs)."""

from __future__ import annotations

import re

from srs.errors import ParseError
from srs.sdp.model import SessionDescription
from srs.sip.headers import SipUri
from srs.sip.message import Request
from srs.sip.routing import Transport
from srs.siprec.metadata import RecordingMetadata, parse_metadata
from srs.siprec.multipart import SiprecBody, extract_siprec_body

SDES_IN_CLEAR = (
    "SRTP keys (SDES a=crypto) were offered over unencrypted SIP: whoever can read the SIP traffic can "
    "decrypt this call's media and inject packets into it; use SIP over TLS, or set "
    "[media] sdes_over_plain_sip = true if the SIP path is protected otherwise"
)

SDES_REFUSED = "SDES keys over unencrypted SIP refused ([media] sdes_over_plain_sip = false)"

_M_LINE_RE = re.compile(rb"^m=", re.M)


def count_m_lines(sdp: bytes) -> int:
    """m-lines in an SDP body, counted before it is parsed: a 490-stream offer is refused
    without building 490 media descriptions."""
    return len(_M_LINE_RE.findall(sdp))


def routable(uri: SipUri) -> bool:
    """A target srs can put in a Request-URI or Route: SIP or SIPS, no whitespace or control bytes."""
    text = str(uri)
    return (
        uri.scheme in ("sip", "sips")
        and bool(uri.host)
        and text.isascii()
        and text.isprintable()
        and " " not in text
    )


def sdes_in_clear(transport: Transport, offer: SessionDescription, policy: str) -> str | None:
    """The ``sdes_over_plain_sip`` policy when ``offer`` carries SDES keys over UDP/TCP, else None."""
    if transport is Transport.TLS or not any(media.crypto for media in offer.media):
        return None
    return policy


def read_body(request: Request) -> SiprecBody:
    return extract_siprec_body(
        request.headers.get("content-type"), request.body, request.headers.get("content-disposition")
    )


def metadata_body(request: Request) -> SiprecBody | None:
    """The body of an INFO/OPTIONS/NOTIFY that may carry metadata; unreadable is none at all."""
    if not request.body:
        return None
    try:
        return read_body(request)
    except ParseError:
        return None


def read_metadata(body: SiprecBody, warnings: list[str]) -> RecordingMetadata | None:
    """Unreadable metadata never costs the recording: it becomes a warning."""
    if body.metadata is None:
        return None
    try:
        metadata = parse_metadata(body.metadata)
    except ParseError as exc:
        warnings.append(f"metadata ignored: {exc.message}")
        return None
    warnings.extend(metadata.warnings)
    return metadata
