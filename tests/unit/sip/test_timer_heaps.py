"""Deadline heaps of the transaction layers and the 2xx retransmitter.

The daemon asks for the next deadline after every message, with thousands of
transactions alive (each lives up to 64*T1), so the answer must not come from a
scan, a timer tick must touch only what is due, and the heaps must shed the
entries of transactions that ended. Counts, never clocks, prove it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from srs.sip.client import ClientTransactionLayer, NonInviteClientTransaction
from srs.sip.dialog import Dialog
from srs.sip.message import Request, build_response, parse_message
from srs.sip.routing import Address, Outgoing, Transport
from srs.sip.transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    ServerTransaction,
    ServerTransactionLayer,
    TransactionTimeout,
)
from srs.sip.uas import AckTimeout, TwoXxRetransmitter
from tests.unit.counting import CountingDict
from tests.unit.sip.fixtures import SIPREC_INVITE, request

SOURCE = Address("192.0.2.10", 5060)
PEER = Address("192.0.2.10", 5060)
T1, T2, T4 = 0.5, 4.0, 5.0
MANY = 10_000


def req(method: str, n: int, **kwargs: object) -> Request:
    msg = parse_message(request(method, branch=f"z9hG4bK{method}{n}", **kwargs))  # type: ignore[arg-type]
    assert isinstance(msg, Request)
    return msg


def _ack(n: int) -> Request:
    """The ACK of a non-2xx final: same branch as its INVITE (§17.1.1.3)."""
    msg = parse_message(request("ACK", branch=f"z9hG4bKINVITE{n}", to_tag="srs1"))
    assert isinstance(msg, Request)
    return msg


class StepCounter:
    """Counts state-machine steps and per-transaction deadline reads while installed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.steps = 0
        self.reads = 0
        for cls in (InviteServerTransaction, NonInviteServerTransaction):
            self._wrap_step(monkeypatch, cls)
        original_read = ServerTransaction.next_deadline

        def counting_read(txn: ServerTransaction) -> float | None:
            self.reads += 1
            return original_read(txn)

        monkeypatch.setattr(ServerTransaction, "next_deadline", counting_read)

    def _wrap_step(self, monkeypatch: pytest.MonkeyPatch, cls: type[ServerTransaction]) -> None:
        original = cls.step

        def counting_step(txn: ServerTransaction, event: object, now: float) -> object:
            self.steps += 1
            return original(txn, event, now)  # type: ignore[arg-type]

        monkeypatch.setattr(cls, "step", counting_step)

    def reset(self) -> None:
        self.steps = 0
        self.reads = 0


def watch_table(layer: ServerTransactionLayer) -> CountingDict[object, ServerTransaction]:
    table = CountingDict[object, ServerTransaction](layer._transactions)
    layer._transactions = table
    return table


def options_completed(layer: ServerTransactionLayer, count: int, start: float = 0.0) -> None:
    """``count`` OPTIONS over UDP answered 200 at start + n ms: each waits in Completed for Timer J."""
    for n in range(count):
        disposition = layer.receive_request(req("OPTIONS", n), SOURCE, Transport.UDP, start + n / 1000)
        assert disposition.transaction is not None
        response = build_response(disposition.transaction.request, 200, to_tag="srs1")
        layer.send_response(disposition.transaction, response, start + n / 1000)


def brute_force_deadline(layer: ServerTransactionLayer) -> float | None:
    deadlines = [d for d in (t.next_deadline() for t in layer.transactions) if d is not None]
    return min(deadlines) if deadlines else None


# --------------------------------------------------------------- server layer


def test_next_deadline_with_many_live_transactions_reads_no_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = ServerTransactionLayer(T1, T2, T4)
    options_completed(layer, MANY)
    assert len(layer) == MANY
    counter = StepCounter(monkeypatch)
    table = watch_table(layer)
    for _ in range(1000):
        assert layer.next_deadline() == pytest.approx(64 * T1)
    assert counter.reads == 0 and counter.steps == 0 and table.walks == 0
    assert layer.heap_size <= MANY


def test_on_timer_with_many_live_transactions_steps_only_the_due_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    layer = ServerTransactionLayer(T1, T2, T4)
    options_completed(layer, MANY)
    counter = StepCounter(monkeypatch)
    table = watch_table(layer)
    # Timer J of transaction n is due at 32 s + n ms: at 32.0095 s exactly ten are due
    assert layer.on_timer(64 * T1 + 0.0095) == []
    assert counter.steps == 10
    assert len(layer) == MANY - 10
    counter.reset()
    assert layer.on_timer(64 * T1 + 0.0095) == []  # nothing new is due: nothing is touched
    assert counter.steps == 0 and counter.reads == 0
    assert table.walks == 0
    assert layer.next_deadline() == pytest.approx(64 * T1 + 0.010)


def test_late_tick_fires_due_transactions_in_creation_order() -> None:
    """As the scan did: transaction by transaction in creation order, each timer in deadline order."""
    layer = ServerTransactionLayer(T1, T2, T4)
    sent: dict[bytes, int] = {}
    for n in range(3):
        txn = layer.receive_request(req("INVITE", n), SOURCE, Transport.UDP, 0.3 - n / 10).transaction
        assert txn is not None
        sent[layer.send_response(txn, build_response(txn.request, 486, to_tag="srs1"), 0.3 - n / 10)] = n
    events = layer.on_timer(1.65)  # each has its G at +0.5 and +1.5 (the later one due only for n=2)
    order = [sent[e.data] for e in events if isinstance(e, Outgoing)]
    assert order == [0, 1, 2, 2]


def test_heap_stays_bounded_and_empties_as_transactions_terminate() -> None:
    """20 waves of INVITEs refused with 486 and ACKed: every wave moves G/H to I, leaving stale entries."""
    layer = ServerTransactionLayer(T1, T2, T4)
    now = 0.0
    peak = 0
    for wave in range(20):
        for n in range(wave * 500, wave * 500 + 500):
            txn = layer.receive_request(req("INVITE", n), SOURCE, Transport.UDP, now).transaction
            assert txn is not None
            layer.send_response(txn, build_response(txn.request, 486, to_tag="srs1"), now)
            assert layer.heap_size <= 2 * len(layer) + 64
        now += 0.4
        for n in range(wave * 500, wave * 500 + 500):
            layer.receive_request(_ack(n), SOURCE, Transport.UDP, now)
            assert layer.heap_size <= 2 * len(layer) + 64
        layer.on_timer(now)
        layer.next_deadline()
        peak = max(peak, layer.heap_size)
        now += 1.0
    assert peak <= 2 * 1000 + 64  # at most two waves wait in Confirmed for Timer I
    assert layer.on_timer(now + T4) == []
    assert len(layer) == 0
    assert layer.next_deadline() is None
    assert layer.heap_size == 0


def test_next_deadline_agrees_with_a_scan_through_a_busy_mix() -> None:
    layer = ServerTransactionLayer(T1, T2, T4)
    now = 0.0
    for n in range(300):
        now += 0.01
        method = "INVITE" if n % 2 else "BYE"
        txn = layer.receive_request(req(method, n), SOURCE, Transport.UDP, now).transaction
        assert txn is not None
        status = (180, 200, 486)[n % 3] if method == "INVITE" else 200
        layer.send_response(txn, build_response(txn.request, status, to_tag="srs1"), now)
        if n % 5 == 0 and method == "INVITE" and status == 486:
            layer.receive_request(_ack(n), SOURCE, Transport.UDP, now + 0.005)
        if n % 7 == 0:
            layer.on_timer(now)
        assert layer.next_deadline() == brute_force_deadline(layer)
    while (deadline := layer.next_deadline()) is not None:
        assert deadline == brute_force_deadline(layer)
        timeouts = [e for e in layer.on_timer(deadline) if isinstance(e, TransactionTimeout)]
        assert all(t.transaction.terminated for t in timeouts)
    # the 180s leave INVITEs in Proceeding, which has no timer and waits for the core
    assert all(isinstance(t, InviteServerTransaction) for t in layer.transactions)
    assert layer.heap_size == 0


def test_reliable_transactions_never_enter_the_heap() -> None:
    layer = ServerTransactionLayer(T1, T2, T4)
    for n in range(100):
        txn = layer.receive_request(req("OPTIONS", n, transport="TCP"), SOURCE, Transport.TCP, 0.0)
        assert txn.transaction is not None
        layer.send_response(txn.transaction, build_response(txn.transaction.request, 200), 0.0)
    assert len(layer) == 0 and layer.heap_size == 0 and layer.next_deadline() is None


# ------------------------------------------------------------ 2xx retransmitter


def test_retransmitter_with_many_pending_touches_only_the_due() -> None:
    retransmitter = TwoXxRetransmitter(T1, T2)
    for n in range(MANY):
        retransmitter.start(("s", n), b"2xx-%d" % n, PEER, Transport.UDP, n / 1000)
    assert retransmitter.next_deadline() == pytest.approx(T1)
    events = retransmitter.on_timer(T1 + 0.0045)  # first resend of the first five
    assert [e.data for e in events if isinstance(e, Outgoing)] == [b"2xx-%d" % n for n in range(5)]
    assert retransmitter.next_deadline() == pytest.approx(T1 + 0.005)
    assert retransmitter.heap_size <= MANY + 5


def test_retransmitter_heap_sheds_acked_entries() -> None:
    retransmitter = TwoXxRetransmitter(T1, T2)
    for wave in range(20):
        for n in range(500):
            retransmitter.start((wave, n), b"2xx", PEER, Transport.UDP, float(wave))
        for n in range(500):
            assert retransmitter.ack((wave, n))
        assert retransmitter.heap_size <= 2 * len(retransmitter) + 64
    assert retransmitter.next_deadline() is None and retransmitter.heap_size == 0
    assert retransmitter.on_timer(1000.0) == []


def test_retransmitter_gives_up_once_per_key_even_when_replaced() -> None:
    retransmitter = TwoXxRetransmitter(T1, T2)
    retransmitter.start("k", b"first", PEER, Transport.TCP, 0.0)
    retransmitter.start("k", b"second", PEER, Transport.TCP, 1.0)
    assert retransmitter.next_deadline() == pytest.approx(1.0 + 64 * T1)
    assert retransmitter.on_timer(64 * T1) == []  # the replaced 2xx's give-up is stale
    assert retransmitter.on_timer(1.0 + 64 * T1) == [AckTimeout("k")]
    assert len(retransmitter) == 0 and retransmitter.next_deadline() is None


# ------------------------------------------------------------ client layer


def bye_maker() -> Callable[[int], Request]:
    """BYEs of one dialog, each with its own branch (and so its own transaction)."""
    invite = parse_message(SIPREC_INVITE)
    assert isinstance(invite, Request)
    dialog = Dialog.from_invite(invite, "srs-tag")

    def bye(n: int) -> Request:
        return dialog.build_request(
            "BYE", via_host="203.0.113.5", via_port=5060, transport=Transport.UDP, branch=f"z9hG4bKbye{n}"
        )

    return bye


def count_client_steps(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    calls = [0]
    original = NonInviteClientTransaction.step

    def counting(txn: NonInviteClientTransaction, event: object, now: float) -> object:
        calls[0] += 1
        return original(txn, event, now)  # type: ignore[arg-type]

    monkeypatch.setattr(NonInviteClientTransaction, "step", counting)
    while True:
        yield calls[0]


def test_client_layer_with_many_transactions_steps_only_the_due(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = ClientTransactionLayer(T1, T2, T4)
    bye = bye_maker()
    for n in range(MANY):
        layer.send_request(bye(n), PEER, Transport.UDP, n / 1000)
    steps = count_client_steps(monkeypatch)
    before = next(steps)
    assert layer.next_deadline() == pytest.approx(T1)
    events = layer.on_timer(T1 + 0.0025)  # Timer E of the first three
    assert len(events) == 3 and all(isinstance(e, Outgoing) for e in events)
    assert next(steps) - before == 3
    assert layer.next_deadline() == pytest.approx(T1 + 0.003)


def test_client_heap_sheds_answered_transactions() -> None:
    layer = ClientTransactionLayer(T1, T2, T4)
    bye = bye_maker()
    now = 0.0
    for wave in range(10):
        for n in range(wave * 300, wave * 300 + 300):
            txn, _ = layer.send_request(bye(n), PEER, Transport.UDP, now)
            layer.receive_response(build_response(txn.request, 200), now + 0.05)
            assert layer.heap_size <= 2 * len(layer) + 64
        now += 10.0  # Timer K (T4) of the wave has passed
        layer.on_timer(now)
    assert len(layer) == 0
    assert layer.next_deadline() is None and layer.heap_size == 0
