"""The live-call table: every lookup, the deadline heap's order, and removal from all of them."""

from __future__ import annotations

from srs.sdp.parse import parse_sdp
from srs.sip.dialog import Dialog
from srs.sip.message import Request, parse_message
from srs.sip.routing import Transport, stamp_received
from srs.sip.transaction import InviteServerTransaction, ServerTransactionLayer
from srs.siprec.call import Call
from srs.siprec.calls import Calls

from .sbc import SBC, SRS, TWO_STREAMS, invite, request


def parse_request(data: bytes) -> Request:
    message = parse_message(data)
    assert isinstance(message, Request)
    return stamp_received(message, SBC)


def make_call(n: int, *, call_id: str | None = None) -> Call:
    """A call as the user agent builds one: a real INVITE, its real server transaction, a dialog."""
    invite_request = parse_request(
        invite(call_id=call_id or f"call-{n}", branch=f"z9hG4bKc{n}", from_tag=f"f{n}")
    )
    layer = ServerTransactionLayer(0.5, 4.0, 5.0)  # its own, so every call has its own transaction
    txn = layer.receive_request(invite_request, SBC, Transport.UDP, 0.0).transaction
    assert isinstance(txn, InviteServerTransaction)
    call = Call(
        session_id=f"s{n}",
        call_id=invite_request.call_id,
        local_tag=f"t{n}",
        invite=invite_request,
        invite_transaction=txn,
        source=SBC,
        transport=Transport.UDP,
        local=SRS,
        offer=parse_sdp(TWO_STREAMS).session,
        metadata=None,
    )
    call.dialog = Dialog.from_invite(invite_request, call.local_tag, "<sip:srs@198.51.100.1:5060>")
    return call


def bye(call: Call) -> Request:
    return parse_request(
        request("BYE", call_id=call.call_id, from_tag=call.remote_tag, to_tag=call.local_tag, cseq=2)
    )


def test_a_call_is_found_by_session_id_invite_and_origin_and_by_dialog_once_answered() -> None:
    calls = Calls()
    first, second = make_call(1), make_call(2)
    calls.add(first)
    calls.add(second)
    assert len(calls) == 2 and calls.session_ids() == ["s1", "s2"]
    assert calls.get("s1") is first and calls.get("s2") is second and calls.get("s3") is None
    assert calls.by_invite(first.invite_transaction) is first
    assert calls.is_merged(first.invite) and not calls.is_merged(parse_request(invite(call_id="other")))
    assert calls.in_dialog(bye(first)) is None  # no dialog before the answer
    calls.add_dialog(first)
    assert calls.in_dialog(bye(first)) is first
    assert calls.in_dialog(bye(second)) is None
    assert [call.rank for call in calls] == [0, 1]


def test_due_calls_come_in_creation_order_and_only_when_due() -> None:
    calls = Calls()
    made = [make_call(n) for n in range(5)]
    for call in made:
        calls.add(call)
    deadlines = [40.0, 10.0, 30.0, 20.0, None]
    for call, deadline in zip(made, deadlines, strict=True):
        call.expires_at = deadline
        calls.rearm(call)
    assert calls.earliest() == 10.0
    assert calls.due(9.9) == []
    # calls 1 and 3 are due; they fire in creation order as a scan of all calls would
    assert [c.session_id for c in calls.due(25.0)] == ["s1", "s3"]
    assert calls.earliest() == 30.0
    assert [c.session_id for c in calls.due(100.0)] == ["s0", "s2"]
    assert calls.earliest() is None


def test_the_earliest_of_a_calls_deadlines_counts_and_rearming_moves_it() -> None:
    calls = Calls()
    call = make_call(1)
    calls.add(call)
    call.max_end, call.expires_at, call.refresh_at = 500.0, 300.0, 150.0
    calls.rearm(call)
    assert Calls.deadline(call) == calls.earliest() == 150.0
    call.refresh_at = 450.0
    calls.rearm(call)
    assert calls.earliest() == 300.0
    assert calls.due(200.0) == []  # the stale 150 s entry does not fire
    assert calls.due(300.0) == [call]


def test_removal_forgets_the_call_everywhere_and_only_once() -> None:
    calls = Calls()
    call, other = make_call(1), make_call(2)
    for each in (call, other):
        calls.add(each)
        calls.add_dialog(each)
    call.expires_at = 10.0
    calls.rearm(call)
    assert calls.remove(call) is True
    assert calls.remove(call) is False  # its quota must be given back once
    assert calls.get("s1") is None and calls.by_invite(call.invite_transaction) is None
    assert not calls.is_merged(call.invite) and calls.in_dialog(bye(call)) is None
    assert calls.earliest() is None and calls.due(100.0) == []
    calls.rearm(call)  # a late re-arm of an ended call is ignored
    assert calls.earliest() is None
    assert calls.session_ids() == ["s2"] and calls.in_dialog(bye(other)) is other


def test_removing_a_stale_call_keeps_the_live_one_with_the_same_origin() -> None:
    calls = Calls()
    old = make_call(1, call_id="same")
    calls.add(old)
    calls.remove(old)
    new = make_call(1, call_id="same")  # the same Call-ID, From tag and CSeq again
    calls.add(new)
    calls.remove(old)
    assert calls.is_merged(new.invite) and calls.get("s1") is new
    assert calls.by_invite(new.invite_transaction) is new


def test_srs_own_requests_are_matched_to_their_session() -> None:
    calls = Calls()
    calls.sent_bye(("z9hG4bKbye", "BYE"), "s1")
    calls.sent_refresh(("z9hG4bKupd", "UPDATE"), "s2")
    assert calls.byes_pending
    assert calls.is_ours(("z9hG4bKbye", "BYE")) and calls.is_ours(("z9hG4bKupd", "UPDATE"))
    assert not calls.is_ours(("z9hG4bKupd", "BYE"))
    assert calls.finished(("z9hG4bKbye", "BYE")) is None  # a BYE's answer ends the wait only
    assert not calls.byes_pending
    assert calls.finished(("z9hG4bKupd", "UPDATE")) == "s2"  # a refresh's answer goes to its session
    assert not calls.is_ours(("z9hG4bKupd", "UPDATE"))
