"""Which address a stream is taken from (symmetric-RTP latching with an allowed set of hosts).

``sources`` names the hosts the signalling allows to send the stream (None: any host). The first
packet from an allowed host latches its address; packets from anywhere else are dropped and
counted, their addresses remembered (bounded). The latch moves to another address only when that
address is allowed and either the signalling asked for it (:meth:`SourceLatch.relatch`,
:meth:`SourceLatch.allow`) or the latched address has been silent ``relatch_after`` seconds. With
``sources=None`` the latched host stands in for the allowed set, so after the first packet a
stranger cannot take the stream over by waiting for a pause either.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

from srs.media.fast_state import FastState, Shared, shared

MAX_SOURCES = 16
"""Accepted source addresses a track remembers (changes beyond are still counted in ``relatches``)."""
MAX_REJECTED = 8
"""Distinct refused source addresses a track remembers; packets from others are only counted."""
REPLAYED_SOURCE = ("0.0.0.0", 0)
"""The stand-in source of replayed journal datagrams (never latched, never reported)."""


def format_address(source: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """``host:port`` (``[host]:port`` for IPv6), as logs and reports show a UDP source."""
    host, port = source[0], source[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """The forms a source host may take in ``recvfrom``: canonical text, plus the IPv4-mapped IPv6
    form of an IPv4 address (what a dual-stack socket reports for it)."""
    out: set[str] = set()
    for host in hosts:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            out.add(host)
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        out.add(str(address))
        if isinstance(address, ipaddress.IPv4Address):
            out.add(f"::ffff:{address}")
    return frozenset(out)


class SourceLatch:
    """The latched address of one stream and the record of every other that tried."""

    __slots__ = (
        "accepted", "allowed", "fast", "packets_dropped_source", "rejected", "relatch_after",
        "relatch_pending", "relatches",
    )

    source: Shared[tuple[str, int] | None] = shared("source")
    """The latched address (None before the first packet)."""

    def __init__(self, sources: Iterable[str] | None, relatch_after: float, fast: Any = None) -> None:
        self.fast = FastState() if fast is None else fast
        """Where ``source`` is kept (the track's, shared with its other parts: see
        :mod:`srs.media.fast_state`)."""
        self.source = None
        self.allowed: frozenset[str] | None = None if sources is None else canonical_hosts(sources)
        self.relatch_after = relatch_after
        self.relatch_pending = False
        self.accepted: list[str] = []
        self.rejected: dict[str, int] = {}
        self.relatches = 0
        self.packets_dropped_source = 0

    def relatch(self) -> None:
        """Let the next packet from another allowed address take the stream at once."""
        self.relatch_pending = True

    def allow(self, sources: Iterable[str] | None) -> None:
        """New allowed hosts; a latched address outside them yields to the next allowed one (and is
        still accepted until then: packets in flight around a failover are the call's audio)."""
        self.allowed = None if sources is None else canonical_hosts(sources)
        if self.source is not None and self.allowed is not None and self.source[0] not in self.allowed:
            self.relatch_pending = True

    def may_report(self, source: tuple[str, int]) -> bool:
        """Whether ``source`` may send RTCP about the stream (only allowed hosts, when restricted)."""
        return self.allowed is None or source[0] in self.allowed or source is REPLAYED_SOURCE

    def admit(self, source: tuple[str, int], arrival: float, last_arrival: float) -> bool:
        """A packet from ``source`` (not the latched address): latch it, or drop and count it."""
        current = self.source
        allowed = self.allowed
        host = source[0]
        if allowed is not None:
            admitted = host in allowed
        else:
            # any host may be the first; afterwards the latched host stands in for the allowed set
            admitted = current is None or self.relatch_pending or host == current[0]
        if admitted and current is not None:
            admitted = self.relatch_pending or arrival - last_arrival >= self.relatch_after
        if not admitted:
            self.packets_dropped_source += 1
            name = format_address(source)
            if name in self.rejected or len(self.rejected) < MAX_REJECTED:
                self.rejected[name] = self.rejected.get(name, 0) + 1
            return False
        if current is not None:
            self.relatches += 1
        if len(self.accepted) < MAX_SOURCES:
            self.accepted.append(format_address(source))
        else:
            self.accepted[-1] = format_address(source)
        self.source = source
        self.relatch_pending = False
        return True

    @property
    def name(self) -> str | None:
        return format_address(self.source) if self.source is not None else None

    @property
    def previous(self) -> str | None:
        """The address accepted before the current one (None before the first change)."""
        return self.accepted[-2] if len(self.accepted) > 1 else None
