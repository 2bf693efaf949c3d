"""Bounds on TCP/TLS connections: how many, from whom, and how long they may dawdle; sans-IO.

A stream connection costs a descriptor and up to ``max_message_size`` of buffer for as long as
it stays open, and it costs the peer almost nothing to keep it open. So a refused source is
turned away at accept (before a byte is buffered or a TLS handshake is done), each address and
all of them together get a number of connections, a message must arrive whole within a few
seconds of its first byte, and a connection that says nothing for long is closed. The edge
asks; this module only counts and compares times it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """0 switches a count bound off; times in seconds."""

    max_connections: int = 1000
    max_connections_per_source: int = 64
    header_timeout: float = 10.0
    idle_timeout: float = 900.0


class ConnectionTable:
    """Open connections per source host, with the admission decision for a new one."""

    def __init__(self, limits: StreamLimits, allows: Callable[[str], bool] | None = None) -> None:
        self.limits = limits
        self._allows = allows
        self._per_host: dict[str, int] = {}
        self.total = 0

    def refusal(self, host: str) -> str | None:
        """Why a connection from ``host`` is turned away at accept (the limit's name), or None."""
        if self._allows is not None and not self._allows(host):
            return "acl"
        limits = self.limits
        if limits.max_connections and self.total >= limits.max_connections:
            return "connections_total"
        per_source = limits.max_connections_per_source
        if per_source and self._per_host.get(host, 0) >= per_source:
            return "connections_per_source"
        return None

    def opened(self, host: str) -> None:
        self.total += 1
        self._per_host[host] = self._per_host.get(host, 0) + 1

    def closed(self, host: str) -> None:
        count = self._per_host.get(host, 0)
        if count <= 0:
            return
        self.total -= 1
        if count == 1:
            del self._per_host[host]
        else:
            self._per_host[host] = count - 1

    def held(self, host: str) -> int:
        return self._per_host.get(host, 0)


@dataclass(slots=True)
class StreamClock:
    """When one connection last received bytes, and since when a message on it is incomplete.

    ``message_since`` starts at accept (a peer that connects must say something) and at the
    first byte of every later message; it stops when the message is framed whole. Connections
    srs opened itself start without it: there the peer owes srs nothing.
    """

    last_activity: float
    message_since: float | None

    def received(self, now: float, *, framed: bool, buffered: int) -> None:
        """Bytes arrived; ``framed`` when they completed at least one message, ``buffered`` what is left."""
        self.last_activity = now
        if buffered == 0:
            self.message_since = None
        elif framed or self.message_since is None:
            self.message_since = now

    def expired(self, now: float, limits: StreamLimits) -> str | None:
        """``header_timeout`` or ``idle_timeout`` when the connection should be closed, else None."""
        since = self.message_since
        if since is not None and limits.header_timeout and now - since > limits.header_timeout:
            return "header_timeout"
        if limits.idle_timeout and now - self.last_activity > limits.idle_timeout:
            return "idle_timeout"
        return None
