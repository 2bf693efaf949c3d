"""The call state machine: every (phase, input) pair either follows the table or the one rule.

The calls are real: a real user agent admits a real INVITE and is driven into each phase by
the wire, then inputs are delivered with :func:`srs.siprec.call.step` and the agent's own hooks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.sip.message import Request, Response, parse_message
from srs.sip.routing import Outgoing, Transport, stamp_received
from srs.siprec.agent import SiprecUserAgent
from srs.siprec.call import (
    FOLLOW_UPS,
    TRANSITIONS,
    Call,
    CallInput,
    CallPhase,
    Stimulus,
    step,
    transition,
)
from srs.siprec.events import SessionAnswered, SessionEnded, SessionOffered, UaEvent

from .sbc import SBC, SIPREC_BODY, Sbc, invite, make_ua, of_type, request, statuses

TIMER = (("Session-Expires", "600;refresher=uas"), ("Supported", "timer"))
PORTS = [30000, 30002]


@dataclass
class Setup:
    ua: SiprecUserAgent
    sbc: Sbc
    call: Call
    branches: itertools.count[int]

    def in_dialog(self, method: str, cseq: int) -> bytes:
        branch = f"z9hG4bKt{next(self.branches)}"
        return request(method, to_tag=self.call.local_tag, cseq=cseq, branch=branch)


def call_in(phase: CallPhase) -> Setup:
    """A real call driven by the wire into ``phase`` (ENDED: confirmed, then ended by a BYE)."""
    ua = make_ua(answer_delay=5.0 if phase is CallPhase.ANSWERING else 0.0)
    sbc = Sbc(ua)
    offered = of_type(sbc.send(invite(extra=TIMER), 0.0), SessionOffered)[0]
    call = ua.calls.get(offered.session_id)
    assert call is not None
    setup = Setup(ua, sbc, call, itertools.count())
    if phase is not CallPhase.OFFERED:
        ua.accept(call.session_id, PORTS, 0.0)
    if phase in (CallPhase.CONFIRMED, CallPhase.ENDED):
        sbc.send(setup.in_dialog("ACK", 1), 0.1)
    if phase is CallPhase.ENDED:
        sbc.send(setup.in_dialog("BYE", 2), 0.2)
    assert call.phase is phase
    return setup


def stimulus(setup: Setup, fed: CallInput, now: float) -> Stimulus:
    """The input with what the agent hands along with it."""
    call = setup.call
    if fed is CallInput.PORTS_BOUND and not call.ports:
        call.ports.extend(PORTS)  # as accept() does before it delivers the input
    if fed is CallInput.ANSWER_FAILED:
        return Stimulus(fed, now, "no answer: test", 488, "Not Acceptable Here")
    if fed is CallInput.REJECTED:
        return Stimulus(fed, now, "refused by the recorder", 503, "Service Unavailable")
    if fed is CallInput.HANGUP:
        return Stimulus(fed, now, "test")
    if fed is CallInput.ACK:
        return Stimulus(fed, now, request=parse_request(setup.in_dialog("ACK", 1)))
    if fed is CallInput.REOFFER:
        stamped = stamp_received(parse_request(setup.in_dialog("UPDATE", 10 + next(setup.branches))), SBC)
        txn = setup.ua.transactions.receive_request(stamped, SBC, Transport.UDP, now).transaction
        assert txn is not None
        return Stimulus(fed, now, request=stamped, transaction=txn)
    return Stimulus(fed, now)


def deliver(setup: Setup, fed: CallInput, now: float) -> list[UaEvent]:
    """One input, checked against the table: its entry, or the one rule (ignored, phase kept)."""
    call = setup.call
    before = call.phase
    entry = transition(before, fed)
    events = step(setup.ua.effects, call, stimulus(setup, fed, now))
    assert isinstance(call.phase, CallPhase)
    if entry is None:
        assert events == [] and call.phase is before
    else:
        allowed = {entry.next}
        follow = FOLLOW_UPS.get(fed)
        then = transition(entry.next, follow) if follow is not None else None
        if then is not None:
            allowed.add(then.next)
        assert call.phase in allowed, (before, fed, call.phase)
    # an ended call is gone from every lookup; a live one is still found by its session id
    assert (call.phase is CallPhase.ENDED) is not setup.ua.calls.is_live(call)
    if call.phase is CallPhase.ENDED:
        assert setup.ua.calls.in_dialog(parse_request(setup.in_dialog("BYE", 99))) is None
        assert setup.ua.calls.by_invite(call.invite_transaction) is None
    return events


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return message


@pytest.mark.parametrize(("phase", "fed"), list(itertools.product(CallPhase, CallInput)))
def test_every_pair_follows_the_table_or_the_one_rule(phase: CallPhase, fed: CallInput) -> None:
    deliver(call_in(phase), fed, 1.0)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CallPhase), st.lists(st.sampled_from(CallInput), max_size=8))
def test_any_sequence_of_inputs_keeps_to_the_table(phase: CallPhase, inputs: list[CallInput]) -> None:
    setup = call_in(phase)
    for n, fed in enumerate(inputs):
        deliver(setup, fed, 1.0 + n)


def test_ended_is_final_and_every_other_phase_can_end() -> None:
    assert not [pair for pair in TRANSITIONS if pair[0] is CallPhase.ENDED]
    for phase in CallPhase:
        if phase is not CallPhase.ENDED:
            assert transition(phase, CallInput.HANGUP) is not None
            assert transition(phase, CallInput.HANGUP).next is CallPhase.ENDED  # type: ignore[union-attr]


# ---------------------------------------------------------- the important transitions, by the wire
Drive = Callable[[Setup], list[UaEvent]]


def accept(setup: Setup) -> list[UaEvent]:
    return setup.ua.accept(setup.call.session_id, PORTS, 1.0)


def wire(method: str, cseq: int) -> Drive:
    return lambda setup: setup.sbc.send(setup.in_dialog(method, cseq), 1.0)


def cancel(setup: Setup) -> list[UaEvent]:
    return setup.sbc.send(request("CANCEL", cseq=1), 1.0)  # same branch as the INVITE


def hangup(setup: Setup) -> list[UaEvent]:
    return setup.ua.hangup(setup.call.session_id, 1.0, "operator")


def reject(setup: Setup) -> list[UaEvent]:
    return setup.ua.reject(setup.call.session_id, 503, "Service Unavailable", 1.0)


def answer_timer(setup: Setup) -> list[UaEvent]:
    return setup.ua.on_timer(6.0)


def summary(events: list[UaEvent]) -> list[str]:
    """What happened, in order: statuses and methods sent, then the session's end or answer."""
    out: list[str] = []
    for event in events:
        if isinstance(event, Outgoing):
            message = parse_message(event.data)
            out.append(str(message.status) if isinstance(message, Response) else message.method)
        elif isinstance(event, SessionEnded):
            out.append(f"ended:{event.reason}:{'answered' if event.answered else 'unanswered'}")
        elif isinstance(event, SessionAnswered):
            out.append("answered")
    return out


IMPORTANT = [
    (CallPhase.OFFERED, accept, CallPhase.ANSWERED, ["200", "answered"]),
    (CallPhase.OFFERED, reject, CallPhase.ENDED, ["503"]),
    (CallPhase.OFFERED, cancel, CallPhase.ENDED, ["200", "487", "ended:cancelled:unanswered"]),
    (CallPhase.OFFERED, hangup, CallPhase.ENDED, ["503", "ended:operator:unanswered"]),
    (CallPhase.ANSWERING, answer_timer, CallPhase.ANSWERED, ["200", "answered"]),
    (CallPhase.ANSWERING, wire("BYE", 2), CallPhase.ENDED, ["200", "487", "ended:bye:unanswered"]),
    (CallPhase.ANSWERING, wire("UPDATE", 2), CallPhase.ANSWERING, ["500"]),
    (CallPhase.ANSWERED, wire("ACK", 1), CallPhase.CONFIRMED, []),
    (CallPhase.ANSWERED, wire("UPDATE", 2), CallPhase.CONFIRMED, ["200"]),
    (CallPhase.ANSWERED, hangup, CallPhase.ENDED, ["BYE", "ended:operator:answered"]),
    (CallPhase.CONFIRMED, cancel, CallPhase.CONFIRMED, ["200"]),
    (CallPhase.CONFIRMED, wire("BYE", 2), CallPhase.ENDED, ["200", "ended:bye:answered"]),
    (CallPhase.CONFIRMED, hangup, CallPhase.ENDED, ["BYE", "ended:operator:answered"]),
    (CallPhase.ENDED, hangup, CallPhase.ENDED, []),
]


@pytest.mark.parametrize(("start", "drive", "end", "sent"), IMPORTANT)
def test_important_transitions_on_the_wire(
    start: CallPhase, drive: Drive, end: CallPhase, sent: list[str]
) -> None:
    setup = call_in(start)
    events = drive(setup)
    assert setup.call.phase is end
    assert summary(events) == sent


def test_ack_stops_the_2xx_retransmissions_and_the_in_dialog_request_does_too() -> None:
    for drive in (wire("ACK", 1), wire("UPDATE", 2)):
        setup = call_in(CallPhase.ANSWERED)
        assert setup.ua.retransmitter.next_deadline() is not None
        drive(setup)
        assert setup.ua.retransmitter.next_deadline() is None


def test_a_reoffer_in_answered_is_refused_by_a_limit_and_leaves_the_phase() -> None:
    """The dialog is proven only by a re-offer that passed its checks (as before the table)."""
    setup = call_in(CallPhase.ANSWERED)
    narrowed = replace(setup.ua.settings, max_streams_per_call=1)
    setup.ua.settings = setup.ua.effects.settings = narrowed
    update = request("UPDATE", to_tag=setup.call.local_tag, cseq=2, branch="z9hG4bKlim", content=SIPREC_BODY)
    assert statuses(setup.sbc.send(update, 1.0)) == [488]
    assert setup.call.phase is CallPhase.ANSWERED
