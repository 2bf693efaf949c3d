"""Who may talk to the recorder, how fast and how much: source ACL, per-source request rate,
per-source quotas of sessions and media streams, and whether this node takes a new call at all
(draining, shedding, ``max_sessions``, required extensions), sans-IO.

All work on the source address the edge saw, never on header contents, so a
forged Via cannot get a request past them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from srs.sip.message import Request
from srs.siprec.detect import detect_siprec

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


class SourceQuota:
    """Concurrent sessions and media streams (RTP port pairs) held per source host.

    One SBC is one source for all its calls, so these are sized to "most of the server",
    not to one call: they stop one source (or one forged INVITE after another) from holding
    every session slot or port pair while the others get 503. 0 switches a bound off.
    Counts are released by the caller exactly as they were taken; a host whose counts
    reach zero is forgotten, so the table holds only hosts with live calls.
    """

    def __init__(self, max_sessions: int, max_streams: int) -> None:
        self.max_sessions = max_sessions
        self.max_streams = max_streams
        self._held: dict[str, list[int]] = {}

    def held(self, host: str) -> tuple[int, int]:
        """(sessions, streams) held by ``host``."""
        counts = self._held.get(host)
        return (counts[0], counts[1]) if counts is not None else (0, 0)

    def refusal(self, host: str, sessions: int, streams: int) -> str | None:
        """Why taking ``sessions`` more sessions and ``streams`` more streams would exceed a bound
        (the limit's name), or None when it fits."""
        held_sessions, held_streams = self.held(host)
        if sessions and self.max_sessions and held_sessions + sessions > self.max_sessions:
            return "sessions_per_source"
        if streams and self.max_streams and held_streams + streams > self.max_streams:
            return "streams_per_source"
        return None

    def take(self, host: str, sessions: int, streams: int) -> None:
        counts = self._held.setdefault(host, [0, 0])
        counts[0] += sessions
        counts[1] += streams

    def release(self, host: str, sessions: int, streams: int) -> None:
        counts = self._held.get(host)
        if counts is None:
            return
        counts[0] = max(0, counts[0] - sessions)
        counts[1] = max(0, counts[1] - streams)
        if counts == [0, 0]:
            del self._held[host]


SUPPORTED_OPTIONS = frozenset({"siprec", "timer", "100rel"})
"""Option tags srs implements; a Require naming any other gets 420 (RFC 3261 §8.2.2.3)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a new INVITE is not admitted: the response to send, or the per-source ``limit`` it hit
    (the user agent words and counts those itself)."""

    status: int
    reason: str
    detail: str
    extra: tuple[tuple[str, str], ...] = ()
    limit: str | None = None


def option_tags(request: Request, name: str) -> set[str]:
    return {token.strip().lower() for value in request.headers.get_all(name) for token in value.split(",")}


class NodeAdmission:
    """Whether this node takes a new call now: its state (set by the daemon), its session ceiling,
    the per-source quota and the extensions the INVITE requires, checked before its body is read.

    ``draining``: shutting down, running calls go on. ``shedding``: overloaded.
    ``unavailable``: the index cannot be reached. ``low_disk``: free space under the minimum
    (OPTIONS pings only: an INVITE is refused by the recorder when it cannot write).
    Each refusal is a 503 with Retry-After, so an SBC tries another recorder at once.
    """

    def __init__(
        self,
        *,
        max_sessions: int,
        retry_after: int,
        reject_status: int,
        reject_reason: str,
        quota: SourceQuota,
    ) -> None:
        self.max_sessions = max_sessions
        self.retry_after = retry_after
        self.reject_status = reject_status
        self.reject_reason = reject_reason
        self.quota = quota
        self.draining = False
        self.shedding: str | None = None
        self.unavailable: str | None = None
        self.low_disk: str | None = None

    def busy(self) -> str | None:
        """Why this node takes no new call now (draining, shedding, disk, index), or None: an SBC's
        OPTIONS ping gets 503 for it, so the SBC sends its next call elsewhere."""
        if self.draining:
            return "draining"
        return self.shedding or self.low_disk or self.unavailable

    def refuse_invite(self, request: Request, host: str, active: int) -> Refusal | None:
        """The first reason to refuse a new INVITE from ``host`` while ``active`` calls run, or None."""
        retry = (("Retry-After", str(self.retry_after)),)
        state = "shutting down" if self.draining else self.shedding or self.unavailable
        if state is not None:
            return Refusal(503, "Service Unavailable", state, retry)
        if active >= self.max_sessions:
            return Refusal(503, "Service Unavailable", "max_sessions reached", retry)
        limit = self.quota.refusal(host, 1, 0)
        if limit is not None:
            return Refusal(503, "Service Unavailable", limit, retry, limit=limit)
        unsupported = sorted(option_tags(request, "require") - SUPPORTED_OPTIONS - {""})
        if unsupported:
            detail = ", ".join(unsupported)
            return Refusal(420, "Bad Extension", f"unsupported: {detail}", (("Unsupported", detail),))
        if not detect_siprec(request):
            return Refusal(self.reject_status, self.reject_reason, "no SIPREC marker")
        return None
