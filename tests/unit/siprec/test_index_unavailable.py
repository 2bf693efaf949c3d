"""While the daemon cannot reach its index, SBCs are told to go elsewhere: 503 to pings and offers."""

from __future__ import annotations

from srs.siprec.events import RequestRefused, SessionOffered

from .sbc import Sbc, invite, make_ua, of_type, request, responses, statuses


def test_options_ping_and_new_invite_get_503_with_retry_after_while_the_index_is_unreachable() -> None:
    ua = make_ua()
    ua.unavailable = "index unreachable: connection refused"
    ping = Sbc(ua).send(request("OPTIONS", contact=None, branch="z9hG4bKping1"), 0.0)
    assert statuses(ping) == [503]
    (answer,) = responses(ping)
    assert answer.headers.get("retry-after") == "30"
    events = Sbc(ua).send(invite(branch="z9hG4bKdown"), 0.0)
    assert statuses(events) == [100, 503]
    assert of_type(events, SessionOffered) == []
    assert of_type(events, RequestRefused)[0].detail == "index unreachable: connection refused"
    ua.unavailable = None  # the index answers again
    assert statuses(Sbc(ua).send(request("OPTIONS", contact=None, branch="z9hG4bKping2"), 1.0)) == [200]
    assert len(of_type(Sbc(ua).send(invite(branch="z9hG4bKup"), 1.0), SessionOffered)) == 1


def test_options_ping_gets_503_whenever_the_node_takes_no_new_call() -> None:
    """What an SBC's OPTIONS ping learns: 200 while the node takes calls, 503 + Retry-After while it
    drains, sheds load or is low on disk (as while it cannot reach its index)."""
    for state in ("draining", "shedding", "low_disk"):
        ua = make_ua()
        if state == "draining":
            ua.draining = True
        elif state == "shedding":
            ua.shedding = "overloaded: event loop 400 ms behind"
        else:
            ua.low_disk = "low on disk: 12 MB free"
        ping = Sbc(ua).send(request("OPTIONS", contact=None, branch=f"z9hG4bK{state}"), 0.0)
        assert statuses(ping) == [503], state
        (answer,) = responses(ping)
        assert answer.headers.get("retry-after") == "30", state
    assert statuses(Sbc(make_ua()).send(request("OPTIONS", contact=None, branch="z9hG4bKok"), 0.0)) == [200]
