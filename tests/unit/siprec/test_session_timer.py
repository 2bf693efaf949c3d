"""The RFC 4028 session timer on its own: negotiation, refresher, deadlines, refresh answers."""

from __future__ import annotations

import pytest

from srs.errors import SipParseError
from srs.sip.message import Request, parse_message
from srs.siprec.session_timer import (
    IntervalTooSmall,
    RefreshOutcome,
    SessionExpires,
    SessionTimer,
    negotiate,
    parse_session_expires,
    refresh_outcome,
)

from .sbc import invite


def req(*headers: tuple[str, str]) -> Request:
    message = parse_message(invite(extra=headers))
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), None),
        ((("Session-Expires", "1800"),), SessionExpires(1800, None)),
        ((("Session-Expires", "1800;refresher=UAS"),), SessionExpires(1800, "uas")),
        ((("Session-Expires", " 900 ; foo=1 ; refresher=uac"),), SessionExpires(900, "uac")),
        ((("x", "600;refresher=uas"),), SessionExpires(600, "uas")),  # compact form
    ],
)
def test_session_expires_is_read_liberally(
    headers: tuple[tuple[str, str], ...], expected: SessionExpires | None
) -> None:
    assert parse_session_expires(req(*headers)) == expected


def test_a_session_expires_that_is_not_a_number_is_a_400() -> None:
    with pytest.raises(SipParseError) as caught:
        parse_session_expires(req(("Session-Expires", "soon")))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((), None),
        # without "timer" in Supported or Require the header is only informative (§7.1)
        ((("Session-Expires", "1800"),), None),
        ((("Session-Expires", "1800"), ("Supported", "timer")), SessionTimer(1800, refresher_uac=True)),
        (
            (("Session-Expires", "1800;refresher=uac"), ("Supported", "100rel, timer")),
            SessionTimer(1800, True),
        ),
        ((("Session-Expires", "1800;refresher=uas"), ("Require", "timer")), SessionTimer(1800, False)),
        ((("Session-Expires", "90"), ("Supported", "timer")), SessionTimer(90, True)),  # exactly Min-SE
    ],
)
def test_negotiation_keeps_the_uacs_interval_and_refresher(
    headers: tuple[tuple[str, str], ...], expected: SessionTimer | None
) -> None:
    assert negotiate(req(*headers), min_se=90) == expected


@pytest.mark.parametrize("supported", [(), (("Supported", "timer"),)])
def test_an_interval_below_min_se_is_refused_with_422_either_way(
    supported: tuple[tuple[str, str], ...],
) -> None:
    with pytest.raises(IntervalTooSmall) as caught:
        negotiate(req(("Session-Expires", "89"), *supported), min_se=90)
    error = caught.value
    assert (error.status, error.reason, error.min_se, error.interval) == (
        422,
        "Session Interval Too Small",
        90,
        89,
    )
    assert error.message == "89 s"


def test_the_header_names_the_refresher() -> None:
    assert SessionTimer(1800, refresher_uac=True).header == "1800;refresher=uac"
    assert SessionTimer(600, refresher_uac=False).header == "600;refresher=uas"


@pytest.mark.parametrize(
    ("timer", "refresh_at", "expires_at"),
    [
        # the UAC refreshes: srs only watches, and gives up min(32, interval/3) s early (§10)
        (SessionTimer(1800, refresher_uac=True), None, 100 + 1800 - 32),
        (SessionTimer(90, refresher_uac=True), None, 100 + 90 - 30),
        # srs refreshes at half the interval and ends the session when the interval passes
        (SessionTimer(600, refresher_uac=False), 100 + 300, 100 + 600),
    ],
)
def test_deadlines_from_a_refresh(timer: SessionTimer, refresh_at: float | None, expires_at: float) -> None:
    assert timer.deadlines(100.0) == (refresh_at, expires_at)


def test_refresh_and_renewal_deadlines() -> None:
    timer = SessionTimer(600, refresher_uac=False)
    assert timer.next_refresh(400.0) == 700.0
    assert timer.renewed(400.5) == 1000.5


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, RefreshOutcome.RENEWED),
        (299, RefreshOutcome.RENEWED),
        (408, RefreshOutcome.FAILED),
        (481, RefreshOutcome.FAILED),
        (422, RefreshOutcome.WAIT),
        (500, RefreshOutcome.WAIT),
        (603, RefreshOutcome.WAIT),
    ],
)
def test_refresh_outcome(status: int, outcome: RefreshOutcome) -> None:
    assert refresh_outcome(status) is outcome
