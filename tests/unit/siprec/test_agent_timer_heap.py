"""The user agent's timers with many sessions alive.

``next_deadline()`` runs after every SIP message, so it must not look at every
call; ``on_timer(now)`` must look only at calls with something due; the call
deadline heap must shed the entries of ended calls. Counted, never timed.
"""

from __future__ import annotations

import pytest

from srs.sip.message import Request, Response
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.call import Call
from srs.siprec.calls import Calls
from srs.siprec.events import SessionEnded, SessionOffered
from tests.unit.counting import CountingDict

from .sbc import Sbc, ack_for, invite, make_ua, of_type, request, requests, responses

TIMER = (("Session-Expires", "600;refresher=uas"), ("Supported", "timer"))
CALLS = 400


def open_calls(ua: SiprecUserAgent, count: int, *, spacing: float = 0.01) -> list[tuple[str, Response]]:
    """``count`` answered and ACKed sessions where srs refreshes (refresh due at start + 300 s)."""
    sbc = Sbc(ua)
    opened = []
    for n in range(count):
        now = n * spacing
        events = sbc.send(invite(extra=TIMER, call_id=f"call-{n}", branch=f"z9hG4bKi{n}"), now)
        offered = of_type(events, SessionOffered)[0]
        (ok,) = responses(ua.accept(offered.session_id, [30000 + 4 * n, 30002 + 4 * n], now))
        assert sbc.send(ack_for(ok, branch=f"z9hG4bKa{n}", call_id=f"call-{n}"), now) == []
        opened.append((offered.session_id, ok))
    return opened


def watch_calls(ua: SiprecUserAgent) -> CountingDict[str, Call]:
    table = CountingDict[str, Call](ua.calls._by_session)
    ua.calls._by_session = table
    return table


class DeadlineReads:
    """Counts how often the user agent computes one call's earliest deadline."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = Calls.deadline

        def counting(call: Call) -> float | None:
            self.count += 1
            return original(call)

        monkeypatch.setattr(Calls, "deadline", staticmethod(counting))


def test_next_deadline_does_not_visit_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    ua = make_ua()
    open_calls(ua, CALLS)
    assert ua.on_timer(100.0) == []  # every 2xx was ACKed: no retransmission left
    reads = DeadlineReads(monkeypatch)
    table = watch_calls(ua)
    for _ in range(1000):
        assert ua.next_deadline() == pytest.approx(300.0)  # the first call's refresh
    assert reads.count == 0 and table.walks == 0


def test_on_timer_visits_only_the_due_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    ua = make_ua()
    open_calls(ua, CALLS)
    ua.on_timer(100.0)
    reads = DeadlineReads(monkeypatch)
    table = watch_calls(ua)
    events = ua.on_timer(300.035)  # refreshes of calls 0..3 are due (300.00 … 300.03)
    updates = requests(events)
    assert [u.method for u in updates] == ["UPDATE"] * 4
    assert [u.call_id for u in updates] == [f"call-{n}" for n in range(4)]  # creation order
    assert reads.count <= 2 * 4  # each due call re-queued, nothing else looked at
    assert table.walks == 0
    assert ua.next_deadline() == pytest.approx(300.04)


def test_call_heap_sheds_entries_of_ended_calls() -> None:
    ua = make_ua()
    sbc = Sbc(ua)
    opened = open_calls(ua, CALLS)
    for n, (_, ok) in enumerate(opened):
        bye = request("BYE", call_id=f"call-{n}", branch=f"z9hG4bKb{n}", cseq=2, to_tag=ok.to_addr.tag)
        events = sbc.send(bye, 10.0)
        assert [e.reason for e in of_type(events, SessionEnded)] == ["bye"]
        assert ua.call_heap_size <= 2 * ua.active_sessions + 64
    assert ua.active_sessions == 0
    ua.next_deadline()
    assert ua.call_heap_size == 0


def test_repeated_refreshes_keep_one_entry_per_call() -> None:
    """Every refresh and every 2xx to it moves the call's deadline; stale entries must not pile up."""
    ua = make_ua()
    sbc = Sbc(ua)
    open_calls(ua, 100, spacing=0.0)
    now = 0.0
    for _ in range(20):
        now += 300.0
        updates = requests(ua.on_timer(now))
        assert len(updates) == 100
        for update in updates:
            sbc.send(answer(update), now + 0.1)
        assert ua.active_sessions == 100
        assert ua.call_heap_size <= 2 * 100 + 64
    assert ua.next_deadline() is not None


def test_next_deadline_agrees_with_a_scan_of_every_timer() -> None:
    ua = make_ua(answer_delay=0.5)
    sbc = Sbc(ua)
    for n in range(60):
        now = n * 0.1
        events = sbc.send(invite(extra=TIMER, call_id=f"call-{n}", branch=f"z9hG4bKi{n}"), now)
        offered = of_type(events, SessionOffered)[0]
        ua.accept(offered.session_id, [30000 + 4 * n, 30002 + 4 * n], now)
        if n % 4 == 0:
            ua.hangup(offered.session_id, now, "test")
        ua.on_timer(now)
        assert ua.next_deadline() == scan(ua)


def scan(ua: SiprecUserAgent) -> float | None:
    """The definition the heaps must match: the earliest of every timer anywhere."""
    candidates = [
        ua.transactions.next_deadline(),
        ua.retransmitter.next_deadline(),
        ua.clients.next_deadline(),
    ]
    for call in ua.calls._by_session.values():
        candidates.extend((call.answer_due, call.expires_at, call.max_end, call.refresh_at))
    present = [c for c in candidates if c is not None]
    return min(present) if present else None


def answer(req: Request) -> bytes:
    return (
        f"SIP/2.0 200 OK\r\nVia: {req.headers.get('via')}\r\nFrom: {req.headers.get('from')}\r\n"
        f"To: {req.headers.get('to')}\r\nCall-ID: {req.call_id}\r\nCSeq: {req.headers.get('cseq')}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
