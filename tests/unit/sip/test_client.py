"""Non-INVITE client transactions (RFC 3261 §17.1.2): Timer E, F, K."""

from __future__ import annotations

import itertools

import pytest

from srs.sip.client import (
    CLIENT_TABLE,
    ClientAction,
    ClientInput,
    ClientResponse,
    ClientState,
    ClientTimeout,
    ClientTransactionLayer,
)
from srs.sip.dialog import Dialog
from srs.sip.message import Request, Response, build_response, parse_message
from srs.sip.routing import Address, Outgoing, Transport
from tests.unit.sip.fixtures import SIPREC_INVITE

PEER = Address("192.0.2.10", 5060)


def bye(transport: Transport = Transport.UDP, branch: str = "z9hG4bKbye1") -> Request:
    invite = parse_message(SIPREC_INVITE)
    assert isinstance(invite, Request)
    dialog = Dialog.from_invite(invite, "srs-tag")
    return dialog.build_request(
        "BYE", via_host="203.0.113.5", via_port=5060, transport=transport, branch=branch
    )


def answer(request: Request, status: int) -> Response:
    return build_response(request, status)


def test_every_pair_of_the_table_is_defined() -> None:
    for state, event in itertools.product(ClientState, ClientInput):
        assert ((state, event) in CLIENT_TABLE) is (state is not ClientState.TERMINATED)


def test_timer_e_schedule_then_timer_f_timeout() -> None:
    layer = ClientTransactionLayer()
    txn, first = layer.send_request(bye(), PEER, Transport.UDP, 0.0)
    assert first == Outgoing(txn.data, PEER, Transport.UDP)
    sent: list[float] = []
    timeouts: list[float] = []
    while (deadline := layer.next_deadline()) is not None:
        for event in layer.on_timer(deadline):
            if isinstance(event, Outgoing):
                sent.append(deadline)
            else:
                assert event == ClientTimeout(txn)
                timeouts.append(deadline)
    intervals = [round(b - a, 6) for a, b in itertools.pairwise([0.0, *sent])]
    assert intervals == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert timeouts == [32.0]
    assert len(layer) == 0


def test_provisional_jumps_timer_e_to_t2_and_final_completes() -> None:
    layer = ClientTransactionLayer()
    request = bye()
    txn, _ = layer.send_request(request, PEER, Transport.UDP, 0.0)
    trying = answer(request, 100)
    assert layer.receive_response(trying, 0.1) == ClientResponse(txn, trying)
    assert txn.state is ClientState.PROCEEDING
    assert len(layer.on_timer(0.5)) == 1
    assert layer.next_deadline() == 4.5
    ok = answer(request, 200)
    assert layer.receive_response(ok, 1.0) == ClientResponse(txn, ok)
    assert txn.state.value == "Completed"
    assert layer.receive_response(ok, 1.1) is None
    assert layer.next_deadline() == 6.0
    assert layer.on_timer(6.0) == []
    assert len(layer) == 0


def test_reliable_no_retransmission_and_zero_timer_k() -> None:
    layer = ClientTransactionLayer()
    request = bye(Transport.TCP)
    layer.send_request(request, PEER, Transport.TCP, 0.0)
    assert layer.next_deadline() == 32.0
    assert layer.receive_response(answer(request, 481), 0.2) is not None
    assert len(layer) == 0


def test_unmatched_responses_are_dropped() -> None:
    layer = ClientTransactionLayer()
    request = bye()
    layer.send_request(request, PEER, Transport.UDP, 0.0)
    assert layer.receive_response(answer(bye(branch="z9hG4bKother"), 200), 0.1) is None
    assert len(layer) == 1


def test_invite_is_refused() -> None:
    invite = parse_message(SIPREC_INVITE)
    assert isinstance(invite, Request)
    with pytest.raises(ValueError, match="INVITE"):
        ClientTransactionLayer().send_request(invite, PEER, Transport.UDP, 0.0)


def test_actions_cover_completed_absorption() -> None:
    assert CLIENT_TABLE[(ClientState.COMPLETED, ClientInput.FINAL)] == (
        ClientState.COMPLETED,
        ClientAction.ABSORB,
    )
