"""The user agent's settings: plain values the composition root hands over."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from srs.sdp.model import Codec


@dataclass(frozen=True, slots=True)
class UaSettings:
    """Plain values the composition root hands over; times in seconds."""

    can_decode: Callable[[Codec], bool]
    new_token: Callable[[], str]
    srtp_key: Callable[[str], str] | None = None
    codec_preference: tuple[str, ...] = ()
    user: str = "srs"
    user_agent: str = "srs"
    answer_delay: float = 0.0
    reject_status: int = 488
    reject_reason: str = "Not a SIPREC session"
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    min_se: int = 90
    max_duration: float = 86400.0
    max_sessions: int = 5000
    retry_after: int = 30
    allowed_networks: tuple[str, ...] = ()
    rate_limit_per_source: float = 0.0
    rate_limit_burst: float = 20.0
    max_streams_per_call: int = 8
    max_sessions_per_source: int = 0
    max_streams_per_source: int = 0
    max_metadata_versions: int = 100
    max_metadata_bytes: int = 1048576
    sdes_over_plain_sip: str = "warn"
    """SRTP keys (SDES a=crypto) offered over UDP/TCP: "warn" (accept, with a warning in the
    recording), "allow" (accept quietly) or "refuse" (488)."""
