"""Server transactions: RFC 3261 §17.2 with the RFC 6026 Accepted state, matching per §17.2.3."""

from __future__ import annotations

import itertools

import pytest

from srs.sip.message import Request, build_response, parse_message, serialize
from srs.sip.routing import Address, Outgoing, Transport
from srs.sip.transaction import (
    INVITE_TABLE,
    NON_INVITE_TABLE,
    Action,
    DispositionKind,
    Input,
    InviteServerTransaction,
    InviteState,
    NonInviteServerTransaction,
    NonInviteState,
    ServerTransactionLayer,
    TransactionStateError,
    TransactionTimeout,
    new_branch,
)
from tests.unit.sip.fixtures import request

SOURCE = Address("192.0.2.10", 5060)
T1, T2, T4 = 0.5, 4.0, 5.0


def req(method: str = "INVITE", **kwargs: object) -> Request:
    msg = parse_message(request(method, **kwargs))  # type: ignore[arg-type]
    assert isinstance(msg, Request)
    return msg


def layer() -> ServerTransactionLayer:
    return ServerTransactionLayer(t1=T1, t2=T2, t4=T4)


# --- the tables, pair by pair, as the RFC figures draw them ---

S, A = InviteState, Action
# RFC 6026 Figure 5 (INVITE server transaction); "-" = the core may not do this in that state.
EXPECTED_INVITE = {
    (S.PROCEEDING, Input.REQUEST): (S.PROCEEDING, A.RESEND),
    (S.PROCEEDING, Input.ACK): (S.PROCEEDING, A.ABSORB),
    (S.PROCEEDING, Input.SEND_1XX): (S.PROCEEDING, A.SEND),
    (S.PROCEEDING, Input.SEND_2XX): (S.ACCEPTED, A.SEND),
    (S.PROCEEDING, Input.SEND_FINAL): (S.COMPLETED, A.SEND),
    (S.ACCEPTED, Input.REQUEST): (S.ACCEPTED, A.ABSORB),
    (S.ACCEPTED, Input.ACK): (S.ACCEPTED, A.TO_CORE),
    (S.ACCEPTED, Input.SEND_1XX): "-",
    (S.ACCEPTED, Input.SEND_2XX): (S.ACCEPTED, A.SEND),
    (S.ACCEPTED, Input.SEND_FINAL): "-",
    (S.ACCEPTED, Input.TIMER_L): (S.TERMINATED, A.NONE),
    (S.COMPLETED, Input.REQUEST): (S.COMPLETED, A.RESEND),
    (S.COMPLETED, Input.ACK): (S.CONFIRMED, A.ABSORB),
    (S.COMPLETED, Input.SEND_1XX): "-",
    (S.COMPLETED, Input.SEND_2XX): "-",
    (S.COMPLETED, Input.SEND_FINAL): "-",
    (S.COMPLETED, Input.TIMER_G): (S.COMPLETED, A.RETRANSMIT),
    (S.COMPLETED, Input.TIMER_H): (S.TERMINATED, A.TIMEOUT),
    (S.CONFIRMED, Input.REQUEST): (S.CONFIRMED, A.ABSORB),
    (S.CONFIRMED, Input.ACK): (S.CONFIRMED, A.ABSORB),
    (S.CONFIRMED, Input.SEND_1XX): "-",
    (S.CONFIRMED, Input.SEND_2XX): "-",
    (S.CONFIRMED, Input.SEND_FINAL): "-",
    (S.CONFIRMED, Input.TIMER_I): (S.TERMINATED, A.NONE),
}
N = NonInviteState
# RFC 3261 Figure 8 (non-INVITE server transaction).
EXPECTED_NON_INVITE = {
    (N.TRYING, Input.REQUEST): (N.TRYING, A.ABSORB),
    (N.TRYING, Input.SEND_1XX): (N.PROCEEDING, A.SEND),
    (N.TRYING, Input.SEND_2XX): (N.COMPLETED, A.SEND),
    (N.TRYING, Input.SEND_FINAL): (N.COMPLETED, A.SEND),
    (N.PROCEEDING, Input.REQUEST): (N.PROCEEDING, A.RESEND),
    (N.PROCEEDING, Input.SEND_1XX): (N.PROCEEDING, A.SEND),
    (N.PROCEEDING, Input.SEND_2XX): (N.COMPLETED, A.SEND),
    (N.PROCEEDING, Input.SEND_FINAL): (N.COMPLETED, A.SEND),
    (N.COMPLETED, Input.REQUEST): (N.COMPLETED, A.RESEND),
    (N.COMPLETED, Input.SEND_1XX): "-",
    (N.COMPLETED, Input.SEND_2XX): (N.COMPLETED, A.IGNORE),
    (N.COMPLETED, Input.SEND_FINAL): (N.COMPLETED, A.IGNORE),
    (N.COMPLETED, Input.TIMER_J): (N.TERMINATED, A.NONE),
}
TIMERS = {Input.TIMER_G, Input.TIMER_H, Input.TIMER_I, Input.TIMER_J, Input.TIMER_L}


def invite_txn(state: InviteState) -> InviteServerTransaction:
    txn = InviteServerTransaction("k", req(), SOURCE, Transport.UDP, T1, T2, T4)
    txn.state = state
    return txn


@pytest.mark.parametrize(("state", "event"), list(itertools.product(InviteState, Input)))
def test_invite_table_pair(state: InviteState, event: Input) -> None:
    if event is Input.TIMER_J:
        expected: object = "-"
    else:
        default = (state, A.IGNORE) if event in TIMERS and state is not S.TERMINATED else "-"
        expected = EXPECTED_INVITE.get((state, event), default)
    if state is S.TERMINATED:
        expected = "-"
    txn = invite_txn(state)
    if expected == "-":
        assert (state, event) not in INVITE_TABLE
        with pytest.raises(TransactionStateError):
            txn.step(event, 100.0)
        return
    assert isinstance(expected, tuple)
    assert txn.step(event, 100.0) is expected[1]
    assert txn.state is expected[0]


@pytest.mark.parametrize(("state", "event"), list(itertools.product(NonInviteState, Input)))
def test_non_invite_table_pair(state: NonInviteState, event: Input) -> None:
    if event is Input.TIMER_J and state in (N.TRYING, N.PROCEEDING):
        expected: object = (state, A.IGNORE)
    else:
        expected = EXPECTED_NON_INVITE.get((state, event), "-")
    txn = NonInviteServerTransaction("k", req("OPTIONS"), SOURCE, Transport.UDP, T1, T2, T4)
    txn.state = state
    if expected == "-":
        assert (state, event) not in NON_INVITE_TABLE
        with pytest.raises(TransactionStateError):
            txn.step(event, 100.0)
        return
    assert isinstance(expected, tuple)
    assert txn.step(event, 100.0) is expected[1]
    assert txn.state is expected[0]


def test_tables_hold_nothing_beyond_the_expected_pairs() -> None:
    for key in INVITE_TABLE:
        assert key in EXPECTED_INVITE or key[1] in TIMERS
    for pair in NON_INVITE_TABLE:
        assert pair in EXPECTED_NON_INVITE or pair[1] is Input.TIMER_J


# --- INVITE through the layer ---


def test_invite_retransmission_in_proceeding_resends_last_provisional() -> None:
    tl = layer()
    invite = req()
    first = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0)
    assert first.kind is DispositionKind.NEW
    txn = first.transaction
    assert txn is not None
    again = tl.receive_request(invite, SOURCE, Transport.UDP, 0.1)
    assert again.kind is DispositionKind.RETRANSMISSION and again.outgoing == ()
    trying = tl.send_response(txn, build_response(invite, 100), 0.2)
    assert trying.startswith(b"SIP/2.0 100 Trying\r\n")
    again = tl.receive_request(invite, SOURCE, Transport.UDP, 0.3)
    assert again.outgoing == (Outgoing(trying, SOURCE, Transport.UDP),)
    ringing = tl.send_response(txn, build_response(invite, 180, to_tag="t"), 0.4)
    assert tl.receive_request(invite, SOURCE, Transport.UDP, 0.5).outgoing[0].data == ringing
    assert tl.next_deadline() is None


def test_non_2xx_final_timer_g_schedule_until_timer_h() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert txn is not None
    busy = tl.send_response(txn, build_response(invite, 486, to_tag="t"), 0.0)
    sent_at: list[float] = []
    timeouts: list[float] = []
    while (deadline := tl.next_deadline()) is not None:
        for event in tl.on_timer(deadline):
            if isinstance(event, Outgoing):
                assert event.data == busy and event.destination == SOURCE
                sent_at.append(deadline)
            else:
                assert isinstance(event, TransactionTimeout) and event.transaction is txn
                timeouts.append(deadline)
    intervals = [round(b - a, 6) for a, b in itertools.pairwise([0.0, *sent_at])]
    assert intervals == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert sent_at[-1] == 31.5
    assert timeouts == [32.0]
    assert len(tl) == 0


def test_timers_fire_in_order_when_on_timer_is_late() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(invite, 500, to_tag="t"), 0.0)
    assert tl.on_timer(0.49) == []
    events = tl.on_timer(100.0)
    assert sum(isinstance(e, Outgoing) for e in events) == 10
    assert isinstance(events[-1], TransactionTimeout)
    assert len(tl) == 0


def test_ack_confirms_then_timer_i_terminates() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert isinstance(txn, InviteServerTransaction)
    final = tl.send_response(txn, build_response(invite, 404, to_tag="t"), 0.0)
    assert tl.receive_request(invite, SOURCE, Transport.UDP, 0.2).outgoing[0].data == final
    ack = req("ACK", to_tag="t")
    assert tl.receive_request(ack, SOURCE, Transport.UDP, 1.0).kind is DispositionKind.ACK_ABSORBED
    assert txn.state is InviteState.CONFIRMED
    assert tl.next_deadline() == 1.0 + T4
    assert tl.receive_request(ack, SOURCE, Transport.UDP, 2.0).kind is DispositionKind.ACK_ABSORBED
    retrans = tl.receive_request(invite, SOURCE, Transport.UDP, 2.0)
    assert retrans.kind is DispositionKind.RETRANSMISSION and retrans.outgoing == ()
    assert tl.on_timer(5.99) == []
    assert tl.on_timer(6.0) == []
    assert len(tl) == 0


def test_reliable_transport_no_timer_g_and_zero_timer_i() -> None:
    tl = layer()
    invite = req(transport="TCP")
    txn = tl.receive_request(invite, SOURCE, Transport.TCP, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(invite, 486, to_tag="t"), 0.0)
    assert tl.next_deadline() == 64 * T1
    assert tl.receive_request(req("ACK", to_tag="t", transport="TCP"), SOURCE, Transport.TCP, 1.0).kind is (
        DispositionKind.ACK_ABSORBED
    )
    assert len(tl) == 0


def test_reliable_override_on_send_response() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(invite, 486, to_tag="t"), 0.0, reliable=True)
    assert tl.next_deadline() == 32.0


def test_timer_h_on_reliable_still_times_out() -> None:
    tl = layer()
    invite = req(transport="TLS")
    txn = tl.receive_request(invite, SOURCE, Transport.TLS, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(invite, 603, to_tag="t"), 0.0)
    events = tl.on_timer(32.0)
    assert events == [TransactionTimeout(txn)]
    assert len(tl) == 0


def test_2xx_accepted_absorbs_invites_passes_acks_and_ends_at_timer_l() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert isinstance(txn, InviteServerTransaction)
    ok = build_response(invite, 200, to_tag="t")
    assert tl.send_response(txn, ok, 0.0) == serialize(ok)
    assert txn.state is InviteState.ACCEPTED
    retrans = tl.receive_request(invite, SOURCE, Transport.UDP, 0.5)
    assert retrans.kind is DispositionKind.RETRANSMISSION and retrans.outgoing == ()
    # the core retransmits the 2xx itself through the transaction
    assert tl.send_response(txn, ok, 0.5) == serialize(ok)
    ack_new_branch = tl.receive_request(
        req("ACK", branch="z9hG4bKack", to_tag="t"), SOURCE, Transport.UDP, 1.0
    )
    assert ack_new_branch.kind is DispositionKind.ACK_FOR_CORE and ack_new_branch.transaction is None
    ack_same_branch = tl.receive_request(req("ACK", to_tag="t"), SOURCE, Transport.UDP, 1.0)
    assert ack_same_branch.kind is DispositionKind.ACK_FOR_CORE and ack_same_branch.transaction is txn
    assert tl.next_deadline() == 32.0
    assert tl.on_timer(31.9) == []
    assert tl.on_timer(32.0) == []
    assert len(tl) == 0
    # after Accepted ends, a late INVITE retransmission looks new (the dialog layer catches it)
    assert tl.receive_request(invite, SOURCE, Transport.UDP, 33.0).kind is DispositionKind.NEW


def test_sending_after_final_is_a_core_bug() -> None:
    tl = layer()
    invite = req()
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(invite, 486, to_tag="t"), 0.0)
    with pytest.raises(TransactionStateError):
        tl.send_response(txn, build_response(invite, 200, to_tag="t"), 0.1)


# --- non-INVITE ---


def test_non_invite_trying_proceeding_completed_timer_j() -> None:
    tl = layer()
    bye = req("BYE", to_tag="t")
    txn = tl.receive_request(bye, SOURCE, Transport.UDP, 0.0).transaction
    assert isinstance(txn, NonInviteServerTransaction)
    assert tl.receive_request(bye, SOURCE, Transport.UDP, 0.1).outgoing == ()
    trying = tl.send_response(txn, build_response(bye, 100), 0.2)
    assert txn.state.value == "Proceeding"
    assert tl.receive_request(bye, SOURCE, Transport.UDP, 0.3).outgoing[0].data == trying
    ok = tl.send_response(txn, build_response(bye, 200), 0.4)
    assert txn.state is NonInviteState.COMPLETED
    assert tl.receive_request(bye, SOURCE, Transport.UDP, 0.5).outgoing[0].data == ok
    assert tl.send_response(txn, build_response(bye, 500), 0.6) == b""
    assert tl.receive_request(bye, SOURCE, Transport.UDP, 0.7).outgoing[0].data == ok
    assert tl.next_deadline() == 0.4 + 64 * T1
    assert tl.on_timer(32.39) == []
    assert tl.on_timer(32.4) == []
    assert len(tl) == 0


def test_non_invite_reliable_terminates_at_once() -> None:
    tl = layer()
    options = req("OPTIONS", transport="TCP")
    txn = tl.receive_request(options, SOURCE, Transport.TCP, 0.0).transaction
    assert txn is not None
    tl.send_response(txn, build_response(options, 200), 0.0)
    assert len(tl) == 0
    assert tl.next_deadline() is None


# --- matching (§17.2.3 and the RFC 2543 fallback) ---


def test_matching_uses_branch_sent_by_and_method() -> None:
    tl = layer()
    assert tl.receive_request(req("OPTIONS"), SOURCE, Transport.UDP, 0.0).kind is DispositionKind.NEW
    assert (
        tl.receive_request(req("OPTIONS"), SOURCE, Transport.UDP, 0.0).kind is DispositionKind.RETRANSMISSION
    )
    other_host = req("OPTIONS", via_host="192.0.2.99")
    assert tl.receive_request(other_host, SOURCE, Transport.UDP, 0.0).kind is DispositionKind.NEW
    other_port = req("OPTIONS", via_port=5070)
    assert tl.receive_request(other_port, SOURCE, Transport.UDP, 0.0).kind is DispositionKind.NEW
    other_branch = req("OPTIONS", branch="z9hG4bKother")
    assert tl.receive_request(other_branch, SOURCE, Transport.UDP, 0.0).kind is DispositionKind.NEW
    # same branch, different method: INFO vs OPTIONS are different transactions
    assert tl.receive_request(req("INFO"), SOURCE, Transport.UDP, 0.0).kind is DispositionKind.NEW
    assert len(tl) == 5


def test_cancel_matches_the_invite_with_the_same_branch() -> None:
    tl = layer()
    invite_txn_ = tl.receive_request(req(), SOURCE, Transport.UDP, 0.0).transaction
    cancel = tl.receive_request(req("CANCEL"), SOURCE, Transport.UDP, 0.1)
    assert cancel.kind is DispositionKind.CANCEL
    assert cancel.cancelled is invite_txn_
    assert isinstance(cancel.transaction, NonInviteServerTransaction)
    assert invite_txn_ is not None and invite_txn_.key != cancel.transaction.key
    again = tl.receive_request(req("CANCEL"), SOURCE, Transport.UDP, 0.2)
    assert again.kind is DispositionKind.RETRANSMISSION
    unknown = tl.receive_request(req("CANCEL", branch="z9hG4bKnope"), SOURCE, Transport.UDP, 0.3)
    assert unknown.kind is DispositionKind.CANCEL and unknown.cancelled is None
    other_sent_by = tl.receive_request(req("CANCEL", via_host="192.0.2.77"), SOURCE, Transport.UDP, 0.3)
    assert other_sent_by.cancelled is None
    assert tl.find_invite(req("CANCEL")) is invite_txn_


def test_rfc2543_fallback_matching() -> None:
    tl = layer()
    invite = req(branch=None)
    txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
    assert txn is not None
    assert (
        tl.receive_request(req(branch=None), SOURCE, Transport.UDP, 0.1).kind
        is DispositionKind.RETRANSMISSION
    )
    # an old-style branch without the magic cookie still falls back
    assert tl.receive_request(req(branch="1234"), SOURCE, Transport.UDP, 0.1).kind is DispositionKind.NEW
    for changed in (
        {"cseq": 2},
        {"call_id": "other@x"},
        {"from_tag": "other"},
        {"uri": "sip:other@srs.example.net"},
        {"via_port": 5999},
        {"to_tag": "x"},
    ):
        assert tl.receive_request(req(branch=None, **changed), SOURCE, Transport.UDP, 0.2).kind is (
            DispositionKind.NEW
        ), changed
    tl.send_response(txn, build_response(invite, 486, to_tag="ours"), 0.3)
    foreign = tl.receive_request(req("ACK", branch=None, to_tag="theirs"), SOURCE, Transport.UDP, 0.4)
    assert foreign.kind is DispositionKind.ACK_FOR_CORE
    ack = tl.receive_request(req("ACK", branch=None, to_tag="ours"), SOURCE, Transport.UDP, 0.5)
    assert ack.kind is DispositionKind.ACK_ABSORBED and ack.transaction is txn
    cancel = tl.receive_request(req("CANCEL", branch=None), SOURCE, Transport.UDP, 0.6)
    assert cancel.cancelled is txn


def test_new_branch_has_the_magic_cookie() -> None:
    assert new_branch("abc") == "z9hG4bKabc"


def test_transaction_table_empties_after_a_busy_mix() -> None:
    tl = layer()
    for index in range(20):
        invite = req(branch=f"z9hG4bK{index}", call_id=f"c{index}")
        txn = tl.receive_request(invite, SOURCE, Transport.UDP, 0.0).transaction
        assert txn is not None
        status = 200 if index % 2 else 486
        tl.send_response(txn, build_response(invite, status, to_tag="t"), 0.0)
        option = req("OPTIONS", branch=f"z9hG4bKo{index}")
        otxn = tl.receive_request(option, SOURCE, Transport.UDP, 0.0).transaction
        assert otxn is not None
        tl.send_response(otxn, build_response(option, 200), 0.0)
    assert len(tl) == 40
    tl.on_timer(1000.0)
    assert len(tl) == 0
    assert tl.next_deadline() is None
