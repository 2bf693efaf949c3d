"""A re-offer that moves the SBC's media is applied before srs's answer leaves."""

from __future__ import annotations

from srs.sip.routing import Outgoing
from srs.siprec.events import SessionAnswered
from tests.unit.siprec.test_agent_dialog import established, in_dialog

from .sbc import audio, of_type, sdp


def test_a_reoffer_is_applied_before_its_answer_leaves() -> None:
    """An SBC failing over sends from its new address as soon as it has the 200: the layer above
    must have allowed that address by then, so the re-offer's SessionAnswered precedes the 2xx."""
    ua, sbc, session_id, _ = established()
    moved = sdp(audio(40000, "1"), audio(40002, "2"), origin_version=2, connection="192.0.2.99")
    sbc.send(in_dialog("INVITE", 2, "z9hG4bKre1", content=("application/sdp", moved)), 10.0)
    events = ua.accept(session_id, [], 10.0)
    kinds = [type(e) for e in events if isinstance(e, SessionAnswered | Outgoing)]
    assert kinds == [SessionAnswered, Outgoing], kinds
    (answered,) = of_type(events, SessionAnswered)
    assert [s.remote_address for s in answered.streams] == ["192.0.2.99", "192.0.2.99"]
