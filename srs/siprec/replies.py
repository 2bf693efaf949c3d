"""Responses the user agent writes without a call: capabilities, its Contact, stateless refusals
and the answer to bytes that could not be parsed."""

from __future__ import annotations

from collections.abc import Sequence

from srs.errors import ParseError
from srs.sip.badrequest import answer_unparseable, read_headers, safe_text
from srs.sip.message import Request, build_response, serialize
from srs.sip.routing import Address, Outgoing, Transport, response_destination, stamp_received
from srs.siprec.events import MessageDropped, RequestRefused, UaEvent

ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO"
ACCEPT = "application/sdp, application/rs-metadata+xml, multipart/mixed"


def capabilities(user_agent: str) -> list[tuple[str, str]]:
    return [
        ("Allow", ALLOW),
        ("Supported", "siprec, timer"),
        ("Accept", ACCEPT),
        ("User-Agent", user_agent),
    ]


def contact(user: str, local: Address, transport: Transport) -> str:
    """srs's Contact on the address and transport the INVITE came in on (+sip.srs, RFC 7866 §6.1.1)."""
    scheme = "sips" if transport is Transport.TLS else "sip"
    host = f"[{local.host}]" if ":" in local.host else local.host
    param = "" if transport is Transport.UDP else f";transport={transport.value.lower()}"
    return f"<{scheme}:{user}@{host}:{local.port}{param}>;+sip.srs"


def refuse_stateless(
    request: Request,
    status: int,
    reason: str,
    detail: str,
    source: Address,
    transport: Transport,
    to_tag: str,
    extra: Sequence[tuple[str, str]] = (),
) -> list[UaEvent]:
    """An error without a transaction: admission refusals must not cost state."""
    refused = RequestRefused(request.method, status, reason, detail, source, request.call_id)
    if request.method == "ACK":
        return [refused]
    response = build_response(
        request,
        status,
        reason,
        to_tag=to_tag,
        extra_headers=[*extra, ("Warning", f'399 srs "{safe_text(detail)}"')],
    )
    try:
        destination = response_destination(stamp_received(request, source).top_via, source, transport)
    except ParseError:
        destination = source
    return [Outgoing(serialize(response), destination, transport), refused]


def refuse_unparseable(
    data: bytes, error: ParseError, source: Address, transport: Transport, to_tag: str
) -> list[UaEvent]:
    """400 (or the error's own status) when the bytes name their transaction, else a drop."""
    outgoing = answer_unparseable(data, error, source, transport, to_tag=to_tag)
    if outgoing is None:
        return [MessageDropped(f"unparseable SIP message: {error.message}", source)]
    readable = read_headers(data)
    method = readable.method if readable is not None else ""
    call_id = readable.call_id if readable is not None else None
    status = error.status if 400 <= error.status <= 699 else 400
    return [outgoing, RequestRefused(method, status, error.reason, error.message, source, call_id)]
