"""The RFC 4028 session timer of one recording session, sans-IO.

A SIP session that nobody refreshes may be a dead one (an SBC that rebooted
never sends BYE), so RFC 4028 lets the UAC ask for a Session-Expires interval
and name the refresher. srs never asks for a timer itself; it keeps the one
the SBC asked for:

* the interval is the UAC's, refused with 422 and ``Min-SE`` when it is below
  srs's minimum (§8.1);
* the refresher is the UAC unless it said ``refresher=uas`` (§9 obliges the
  UAS to keep that choice);
* the refresher refreshes at half the interval; the other side, seeing no
  refresh, ends the session ``min(32, interval/3)`` s before it expires (§10).

Everything here takes the request and ``now`` and returns values: the user
agent stores the deadlines and sends the UPDATEs and BYEs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from srs.errors import ParseError, SipParseError
from srs.sip.message import Request
from srs.siprec.admission import option_tags


class IntervalTooSmall(ParseError):
    """A Session-Expires below srs's Min-SE: 422 with a Min-SE header (RFC 4028 §8.1)."""

    status = 422
    reason = "Session Interval Too Small"

    def __init__(self, interval: int, min_se: int) -> None:
        super().__init__(f"{interval} s")
        self.interval = interval
        self.min_se = min_se


@dataclass(frozen=True, slots=True)
class SessionExpires:
    """The Session-Expires header of a request: seconds and the refresher it names (if any)."""

    interval: int
    refresher: str | None


def parse_session_expires(request: Request) -> SessionExpires | None:
    """Session-Expires (or its compact form ``x``); a value that is not a number is a 400."""
    value = request.headers.get("session-expires") or request.headers.get("x")
    if value is None:
        return None
    head, _, params = value.partition(";")
    try:
        seconds = int(head.strip())
    except ValueError as exc:
        raise SipParseError(f"Session-Expires {value!r} is not a number of seconds") from exc
    refresher = None
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "refresher":
            refresher = val.strip().lower()
    return SessionExpires(seconds, refresher)


@dataclass(frozen=True, slots=True)
class SessionTimer:
    """A negotiated session timer: the interval and who refreshes."""

    interval: int
    refresher_uac: bool = True

    @property
    def header(self) -> str:
        """The Session-Expires value srs puts in its 2xx."""
        return f"{self.interval};refresher={'uac' if self.refresher_uac else 'uas'}"

    def deadlines(self, now: float) -> tuple[float | None, float]:
        """(when srs refreshes, when srs ends the session) counted from a refresh at ``now``."""
        if self.refresher_uac:
            return None, now + self.interval - min(32, self.interval / 3)
        return now + self.interval / 2, now + self.interval

    def next_refresh(self, now: float) -> float:
        """srs just sent a refresh: the next one is due half an interval later."""
        return now + self.interval / 2

    def renewed(self, now: float) -> float:
        """The peer answered srs's refresh with a 2xx: the session lives one interval more."""
        return now + self.interval


def negotiate(request: Request, min_se: int) -> SessionTimer | None:
    """The timer a request asks for, or None when it asks for none srs would run.

    A Session-Expires below ``min_se`` raises :class:`IntervalTooSmall` whether or not
    the UAC supports the extension; without ``timer`` in Supported or Require the
    header is only informative and no timer runs (§7.1).
    """
    expires = parse_session_expires(request)
    if expires is None:
        return None
    if expires.interval < min_se:
        raise IntervalTooSmall(expires.interval, min_se)
    if not supports_timer(request):
        return None
    return SessionTimer(expires.interval, refresher_uac=expires.refresher != "uas")


def supports_timer(request: Request) -> bool:
    return "timer" in (option_tags(request, "supported") | option_tags(request, "require"))


class RefreshOutcome(enum.Enum):
    RENEWED = "renewed"
    FAILED = "failed"
    WAIT = "wait for expiry"


def refresh_outcome(status: int) -> RefreshOutcome:
    """§10: a 2xx renews the session; 408, 481 (or no answer, counted as 408) end it; any other
    answer leaves it to expire on its own unless the next refresh succeeds."""
    if 200 <= status < 300:
        return RefreshOutcome.RENEWED
    if status in (408, 481):
        return RefreshOutcome.FAILED
    return RefreshOutcome.WAIT
