"""Where SIP responses go: transports, addresses, RFC 3581 ``received``/``rport``.

Pure functions over parsed Via values; the network edge owns the sockets and
only asks "send these bytes there" through :class:`Outgoing`.
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

    ``received`` is added when sent-by differs from the source address or when the
    client asked for ``rport``; an ``rport`` flag is filled with the source port.
    """
    via = request.top_via
    stamped = via
    if not same_host(via.host, source.host) or via.rport_requested:
        stamped = stamped.with_param("received", source.host)
    if via.rport_requested:
        stamped = stamped.with_param("rport", str(source.port))
    if stamped is via:
        return request
    headers = request.headers.replace_first_value("Via", str(stamped))
    return Request(request.method, request.uri, headers, request.body, request.version, request.warnings)


def response_destination(top_via: Via, source: Address, transport: Transport) -> Address:
    """RFC 3261 §18.2.2 with RFC 3581 §4: the address a response to this request is sent to.

    Reliable transports answer on the connection the request came in on, which the
    edge identifies by ``source``.
    """
    via = top_via
    if transport.reliable:
        return source
    default_port = Transport.from_via(via.transport).default_port
    if via.maddr:
        return Address(via.maddr, via.port or default_port)
    if via.rport_requested:
        return Address(via.received or source.host, via.rport or source.port)
    return Address(via.received or via.host, via.port or default_port)
