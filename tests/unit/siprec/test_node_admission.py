"""Whether the node takes a new call: the order of the checks and what OPTIONS pings are told."""

from __future__ import annotations

from srs.sip.message import Request, parse_message
from srs.siprec.admission import NodeAdmission, Refusal, SourceQuota

from .sbc import TWO_STREAMS, invite


def parse(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


def node(max_sessions: int = 10, per_source: int = 0) -> NodeAdmission:
    return NodeAdmission(
        max_sessions=max_sessions,
        retry_after=30,
        reject_status=488,
        reject_reason="Not a SIPREC session",
        quota=SourceQuota(per_source, 0),
    )


RETRY = (("Retry-After", "30"),)


def test_a_siprec_invite_is_admitted() -> None:
    assert node().refuse_invite(parse(invite()), "192.0.2.10", 0) is None


def test_node_state_comes_first_in_this_order() -> None:
    admission = node(max_sessions=1)
    request = parse(invite(require="siprec, 100rel, foo"))
    admission.draining = True
    admission.shedding = "overloaded"
    admission.unavailable = "index unreachable"
    assert admission.refuse_invite(request, "h", 5) == Refusal(
        503, "Service Unavailable", "shutting down", RETRY
    )
    admission.draining = False
    assert admission.refuse_invite(request, "h", 5) == Refusal(
        503, "Service Unavailable", "overloaded", RETRY
    )
    admission.shedding = None
    assert admission.refuse_invite(request, "h", 5) == Refusal(
        503, "Service Unavailable", "index unreachable", RETRY
    )
    admission.unavailable = None
    assert admission.refuse_invite(request, "h", 5) == Refusal(
        503, "Service Unavailable", "max_sessions reached", RETRY
    )
    assert admission.refuse_invite(request, "h", 0) == Refusal(
        420, "Bad Extension", "unsupported: foo", (("Unsupported", "foo"),)
    )


def test_a_source_over_its_session_quota_is_named_as_a_limit() -> None:
    admission = node(per_source=1)
    admission.quota.take("192.0.2.10", 1, 2)
    refusal = admission.refuse_invite(parse(invite()), "192.0.2.10", 1)
    assert refusal is not None and refusal.limit == "sessions_per_source" and refusal.status == 503
    assert admission.refuse_invite(parse(invite()), "192.0.2.11", 1) is None


def test_an_invite_without_the_siprec_marker_gets_the_configured_rejection() -> None:
    plain = parse(
        invite(require=None, contact="<sip:bob@192.0.2.10>", content=("application/sdp", TWO_STREAMS))
    )
    assert node().refuse_invite(plain, "h", 0) == Refusal(488, "Not a SIPREC session", "no SIPREC marker")


def test_low_disk_is_told_to_pings_but_does_not_refuse_an_invite() -> None:
    admission = node()
    assert admission.busy() is None
    admission.low_disk = "low on disk: 12 MB free"
    assert admission.busy() == "low on disk: 12 MB free"
    assert admission.refuse_invite(parse(invite()), "h", 0) is None
    admission.draining = True
    assert admission.busy() == "draining"
