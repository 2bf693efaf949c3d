"""Who may talk to the recorder, and how fast: source ACL and per-source request rate, sans-IO.

Both work on the source address the edge saw, never on header contents, so a
forged Via cannot get a request past them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceAcl:
    """Networks allowed to send SIP; none configured means everyone is allowed."""

    def __init__(self, networks: Sequence[str]) -> None:
        self.networks: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(text.strip(), strict=False) for text in networks
        )

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            mapped = address.ipv4_mapped
            if any(mapped in network for network in self.networks if network.version == 4):
                return True
        return any(address in network for network in self.networks if network.version == address.version)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class SourceRateLimiter:
    """A token bucket per source host: ``rate`` requests per second, bursts up to ``burst``.

    ``rate`` 0 switches it off.  Idle full buckets are forgotten when the table
    grows, so a scan from many addresses cannot grow it without bound.
    """

    def __init__(self, rate: float, burst: float, max_sources: int = 10000) -> None:
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.max_sources = max_sources
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def allow(self, host: str, now: float) -> bool:
        """Take one token for ``host``; False when it has none left."""
        if not self.enabled:
            return True
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._prune(now)
            bucket = self._buckets[host] = _Bucket(self.burst, now)
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
        bucket.updated = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _prune(self, now: float) -> None:
        full_after = self.burst / self.rate
        for host, bucket in list(self._buckets.items()):
            if now - bucket.updated >= full_after:
                del self._buckets[host]
        if len(self._buckets) >= self.max_sources:
            self._buckets.clear()
