"""Where SIP responses go: transports, addresses, RFC 3581 ``received``/``rport``.

Pure functions over parsed Via values; the network edge owns the sockets and
only asks "send these bytes there" through :class:`Outgoing`.

The rule is "answer where the request came from": a response goes back to the
source address and port of the datagram (RFC 3581 behaviour whether or not the
client asked for ``rport``) or over the connection it arrived on. Via ``maddr``
and a ``received`` the sender wrote itself are never followed: both name an
address that did not send to srs, so honouring them lets anyone who can forge
one allowed source address have srs's answers (dialog tags, RTP ports, 2xx
retransmissions) delivered to, or reflected at, a third host.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum

from srs.sip.headers import Via
from srs.sip.message import Request


class Transport(Enum):
    UDP = "UDP"
    TCP = "TCP"
    TLS = "TLS"

    @property
    def reliable(self) -> bool:
        """Reliable transports switch off retransmission timers (RFC 3261 §17)."""
        return self is not Transport.UDP

    @property
    def default_port(self) -> int:
        return 5061 if self is Transport.TLS else 5060

    @classmethod
    def from_via(cls, name: str) -> Transport:
        """Map a Via transport token; unknown tokens count as UDP (unreliable is the safe side)."""
        try:
            return cls(name.upper())
        except ValueError:
            return cls.UDP


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A request from a pure layer to the edge: send ``data`` to ``destination`` over ``transport``."""

    data: bytes
    destination: Address
    transport: Transport
    reconnect: Address | None = None
    """Reliable transports only: where to open a new connection when the one identified by
    ``destination`` has closed (the same host, at its listening port), or None to give up."""


def same_host(a: str, b: str) -> bool:
    """Compare hosts as IP addresses when both are literals, else case-insensitively.

    Equal strings are the same host whatever they are; that is every request whose Via names the
    address it came from, so the costly literal parse only runs for spellings that differ.
    """
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")) == ipaddress.ip_address(b.strip("[]"))
    except ValueError:
        return a.lower() == b.lower()


def stamp_received(request: Request, source: Address) -> Request:
    """RFC 3261 §18.2.1 + RFC 3581 §4: mark the top Via with where the request really came from.

    ``received`` is added when sent-by differs from the source address, when the client
    asked for ``rport``, or when the sender wrote a ``received`` of its own (which is
    overwritten: only srs knows where a request came from); an ``rport`` flag is filled
    with the source port. The stamp is informational: :func:`response_destination` uses
    the source itself.
    """
    via = request.top_via
    stamped = via
    mark = not same_host(via.host, source.host) or via.rport_requested or via.received is not None
    if mark and via.received != source.host:
        stamped = stamped.with_param("received", source.host)
    if via.rport_requested and via.rport != source.port:
        stamped = stamped.with_param("rport", str(source.port))
    if stamped is via:
        return request
    headers = request.headers.replace_first_value("Via", str(stamped))
    return Request(request.method, request.uri, headers, request.body, request.version, request.warnings)


def response_destination(top_via: Via, source: Address, transport: Transport) -> Address:
    """The address a response to this request is sent to: always where it came from.

    Unreliable transports: the packet's source address and port, as RFC 3581 §4 does
    when ``rport`` is present, whether or not it is (a NATed or forged sent-by gets
    nothing); ``maddr`` and ``received`` in the Via are ignored. Reliable transports
    answer on the connection the request came in on, which the edge identifies by
    ``source`` (RFC 3261 §18.2.2); see :func:`reconnect_address` for when it is gone.
    """
    del top_via, transport  # kept in the signature: the rule used to depend on them
    return source


def reconnect_address(top_via: Via, source: Address, transport: Transport) -> Address | None:
    """RFC 3261 §18.2.2 for a closed connection: the source host (``received``) at the sent-by port.

    The host completed a TCP handshake with srs, so it is not a forged address; only its
    listening port comes from the Via. None for UDP, which has no connection to lose.
    """
    if not transport.reliable:
        return None
    return Address(source.host, top_via.port or Transport.from_via(top_via.transport).default_port)
