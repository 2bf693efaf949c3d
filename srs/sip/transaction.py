"""Server transactions (RFC 3261 §17.2 as updated by RFC 6026), sans-IO.

Each state machine is an explicit table (state, input) -> (next state, action);
a pair missing from a table is an input that state cannot take (for network
inputs the tables are complete, so only a misbehaving core can hit that).
Timers are absolute deadlines compared with the ``now`` the caller passes in.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass, field
from enum import Enum

from srs.errors import SrsError
from srs.sip.deadlines import DeadlineHeap
from srs.sip.grammar import MAGIC_COOKIE
from srs.sip.message import Request, Response, serialize
from srs.sip.routing import Address, Outgoing, Transport, reconnect_address, response_destination


class TransactionStateError(SrsError):
    """The core asked a transaction for something its state does not allow."""


class InviteState(Enum):
    PROCEEDING = "Proceeding"
    ACCEPTED = "Accepted"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    TERMINATED = "Terminated"


class NonInviteState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class Input(Enum):
    REQUEST = "request retransmission"
    ACK = "ACK"
    SEND_1XX = "core sends 1xx"
    SEND_2XX = "core sends 2xx"
    SEND_FINAL = "core sends 300-699"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_L = "Timer L"


class Action(Enum):
    SEND = "send the core's response"
    RESEND = "re-send the last response"
    ABSORB = "absorb silently"
    TO_CORE = "hand to the core"
    RETRANSMIT = "re-send the final response and back off"
    TIMEOUT = "report a timeout to the core"
    IGNORE = "ignore (stale timer)"
    NONE = "nothing"


_I = InviteState
INVITE_TABLE: dict[tuple[InviteState, Input], tuple[InviteState, Action]] = {
    (_I.PROCEEDING, Input.REQUEST): (_I.PROCEEDING, Action.RESEND),
    (_I.PROCEEDING, Input.ACK): (_I.PROCEEDING, Action.ABSORB),
    (_I.PROCEEDING, Input.SEND_1XX): (_I.PROCEEDING, Action.SEND),
    (_I.PROCEEDING, Input.SEND_2XX): (_I.ACCEPTED, Action.SEND),
    (_I.PROCEEDING, Input.SEND_FINAL): (_I.COMPLETED, Action.SEND),
    (_I.PROCEEDING, Input.TIMER_G): (_I.PROCEEDING, Action.IGNORE),
    (_I.PROCEEDING, Input.TIMER_H): (_I.PROCEEDING, Action.IGNORE),
    (_I.PROCEEDING, Input.TIMER_I): (_I.PROCEEDING, Action.IGNORE),
    (_I.PROCEEDING, Input.TIMER_L): (_I.PROCEEDING, Action.IGNORE),
    # RFC 6026 §7.1: in Accepted, INVITE retransmissions are absorbed (the core
    # retransmits the 2xx on its own schedule), ACKs and further 2xx pass through.
    (_I.ACCEPTED, Input.REQUEST): (_I.ACCEPTED, Action.ABSORB),
    (_I.ACCEPTED, Input.ACK): (_I.ACCEPTED, Action.TO_CORE),
    (_I.ACCEPTED, Input.SEND_2XX): (_I.ACCEPTED, Action.SEND),
    (_I.ACCEPTED, Input.TIMER_G): (_I.ACCEPTED, Action.IGNORE),
    (_I.ACCEPTED, Input.TIMER_H): (_I.ACCEPTED, Action.IGNORE),
    (_I.ACCEPTED, Input.TIMER_I): (_I.ACCEPTED, Action.IGNORE),
    (_I.ACCEPTED, Input.TIMER_L): (_I.TERMINATED, Action.NONE),
    (_I.COMPLETED, Input.REQUEST): (_I.COMPLETED, Action.RESEND),
    (_I.COMPLETED, Input.ACK): (_I.CONFIRMED, Action.ABSORB),
    (_I.COMPLETED, Input.TIMER_G): (_I.COMPLETED, Action.RETRANSMIT),
    (_I.COMPLETED, Input.TIMER_H): (_I.TERMINATED, Action.TIMEOUT),
    (_I.COMPLETED, Input.TIMER_I): (_I.COMPLETED, Action.IGNORE),
    (_I.COMPLETED, Input.TIMER_L): (_I.COMPLETED, Action.IGNORE),
    (_I.CONFIRMED, Input.REQUEST): (_I.CONFIRMED, Action.ABSORB),
    (_I.CONFIRMED, Input.ACK): (_I.CONFIRMED, Action.ABSORB),
    (_I.CONFIRMED, Input.TIMER_G): (_I.CONFIRMED, Action.IGNORE),
    (_I.CONFIRMED, Input.TIMER_H): (_I.CONFIRMED, Action.IGNORE),
    (_I.CONFIRMED, Input.TIMER_I): (_I.TERMINATED, Action.NONE),
    (_I.CONFIRMED, Input.TIMER_L): (_I.CONFIRMED, Action.IGNORE),
}

_N = NonInviteState
NON_INVITE_TABLE: dict[tuple[NonInviteState, Input], tuple[NonInviteState, Action]] = {
    (_N.TRYING, Input.REQUEST): (_N.TRYING, Action.ABSORB),
    (_N.TRYING, Input.SEND_1XX): (_N.PROCEEDING, Action.SEND),
    (_N.TRYING, Input.SEND_2XX): (_N.COMPLETED, Action.SEND),
    (_N.TRYING, Input.SEND_FINAL): (_N.COMPLETED, Action.SEND),
    (_N.TRYING, Input.TIMER_J): (_N.TRYING, Action.IGNORE),
    (_N.PROCEEDING, Input.REQUEST): (_N.PROCEEDING, Action.RESEND),
    (_N.PROCEEDING, Input.SEND_1XX): (_N.PROCEEDING, Action.SEND),
    (_N.PROCEEDING, Input.SEND_2XX): (_N.COMPLETED, Action.SEND),
    (_N.PROCEEDING, Input.SEND_FINAL): (_N.COMPLETED, Action.SEND),
    (_N.PROCEEDING, Input.TIMER_J): (_N.PROCEEDING, Action.IGNORE),
    (_N.COMPLETED, Input.REQUEST): (_N.COMPLETED, Action.RESEND),
    # §17.2.2: further final responses from the TU are discarded.
    (_N.COMPLETED, Input.SEND_2XX): (_N.COMPLETED, Action.IGNORE),
    (_N.COMPLETED, Input.SEND_FINAL): (_N.COMPLETED, Action.IGNORE),
    (_N.COMPLETED, Input.TIMER_J): (_N.TERMINATED, Action.NONE),
}

NETWORK_INPUTS = frozenset({Input.REQUEST, Input.ACK})


def response_input(status: int) -> Input:
    if status < 200:
        return Input.SEND_1XX
    if status < 300:
        return Input.SEND_2XX
    return Input.SEND_FINAL


@dataclass(frozen=True, slots=True)
class TransactionTimeout:
    """Timer H fired: the final non-2xx response to an INVITE was never acknowledged."""

    transaction: ServerTransaction


@dataclass(eq=False)
class ServerTransaction:
    """State shared by both kinds; ``timers`` maps an Input (a timer) to its absolute deadline."""

    key: Hashable
    request: Request
    source: Address
    transport: Transport
    t1: float
    t2: float
    t4: float
    destination: Address = field(init=False)
    reconnect: Address | None = field(default=None, init=False)
    last_response: Response | None = field(default=None, init=False)
    last_response_bytes: bytes | None = field(default=None, init=False)
    timers: dict[Input, float] = field(default_factory=dict, init=False)
    timer_g_interval: float = field(default=0.0, init=False)
    reliable: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.destination = response_destination(self.request.top_via, self.source, self.transport)
        self.reconnect = reconnect_address(self.request.top_via, self.source, self.transport)
        self.reliable = self.transport.reliable

    @property
    def terminated(self) -> bool:
        raise NotImplementedError

    def step(self, event: Input, now: float) -> Action:
        raise NotImplementedError

    def next_deadline(self) -> float | None:
        return min(self.timers.values()) if self.timers else None

    def resend_outgoing(self) -> Outgoing | None:
        """The last response again, addressed as the first one was (None before any response)."""
        if self.last_response_bytes is None:
            return None
        return Outgoing(self.last_response_bytes, self.destination, self.transport, self.reconnect)


@dataclass(eq=False)
class InviteServerTransaction(ServerTransaction):
    state: InviteState = field(default=InviteState.PROCEEDING, init=False)

    @property
    def terminated(self) -> bool:
        return self.state is InviteState.TERMINATED

    def step(self, event: Input, now: float) -> Action:
        """Apply one input; enter-state timers are (re)armed here."""
        try:
            next_state, action = INVITE_TABLE[(self.state, event)]
        except KeyError:
            raise TransactionStateError(f"{event.value} not allowed in INVITE {self.state.value}") from None
        self.timers.pop(event, None)
        if next_state is not self.state:
            self._enter(next_state, now)
        if action is Action.RETRANSMIT:
            self.timer_g_interval = min(self.timer_g_interval * 2, self.t2)
            self.timers[Input.TIMER_G] = now + self.timer_g_interval
        return action

    def _enter(self, state: InviteState, now: float) -> None:
        self.state = state
        self.timers.clear()
        reliable = self.reliable
        if state is InviteState.ACCEPTED:
            self.timers[Input.TIMER_L] = now + 64 * self.t1
        elif state is InviteState.COMPLETED:
            if not reliable:
                self.timer_g_interval = self.t1
                self.timers[Input.TIMER_G] = now + self.t1
            self.timers[Input.TIMER_H] = now + 64 * self.t1
        elif state is InviteState.CONFIRMED:
            self.timers[Input.TIMER_I] = now + (0.0 if reliable else self.t4)


@dataclass(eq=False)
class NonInviteServerTransaction(ServerTransaction):
    state: NonInviteState = field(default=NonInviteState.TRYING, init=False)

    @property
    def terminated(self) -> bool:
        return self.state is NonInviteState.TERMINATED

    def step(self, event: Input, now: float) -> Action:
        try:
            next_state, action = NON_INVITE_TABLE[(self.state, event)]
        except KeyError:
            raise TransactionStateError(
                f"{event.value} not allowed in non-INVITE {self.state.value}"
            ) from None
        self.timers.pop(event, None)
        if next_state is not self.state:
            self.state = next_state
            self.timers.clear()
            if next_state is NonInviteState.COMPLETED:
                self.timers[Input.TIMER_J] = now + (0.0 if self.reliable else 64 * self.t1)
        return action


class DispositionKind(Enum):
    NEW = "new request for the core"
    RETRANSMISSION = "retransmission handled by its transaction"
    ACK_ABSORBED = "ACK for a non-2xx final response"
    ACK_FOR_CORE = "ACK for a 2xx (or unmatched): the dialog's business"
    CANCEL = "CANCEL: answer it, and end the matched INVITE if any"


@dataclass(frozen=True, slots=True)
class Disposition:
    """What the edge does with a received request.

    ``transaction`` is the request's own transaction (NEW, CANCEL, and matched
    ACK/retransmission), ``outgoing`` what to re-send now, ``cancelled`` the INVITE
    transaction a CANCEL targets (None: the core answers the CANCEL with 481). The
    core answers the CANCEL with 200 and, only if ``cancelled.state`` is still
    PROCEEDING, the INVITE with 487 (§9.2).
    """

    kind: DispositionKind
    transaction: ServerTransaction | None = None
    outgoing: tuple[Outgoing, ...] = ()
    cancelled: InviteServerTransaction | None = None


def _via_key(request: Request) -> tuple[str, str, int | None, str | None]:
    via = request.top_via
    return (via.transport, via.host.lower(), via.port, via.branch)


def transaction_key(request: Request, method: str | None = None, *, to_tag: str | None = "") -> Hashable:
    """§17.2.3 key (branch, sent-by, method) or the RFC 2543 key when the branch lacks the cookie.

    ACK uses the INVITE key; CANCEL has its own unless ``method`` overrides it.
    The RFC 2543 key holds the request's To tag unless ``to_tag`` names another
    one (an ACK carries the tag of the response, the INVITE it acknowledges none).
    """
    via = request.top_via
    if method is None:
        method = "INVITE" if request.method == "ACK" else request.method
    if via.has_magic_cookie and via.branch is not None:
        return ("3261", via.branch, via.host.lower(), via.port, method)
    return (
        "2543",
        str(request.uri),
        request.to_addr.tag if to_tag == "" else to_tag,
        request.from_addr.tag,
        request.call_id,
        request.cseq.number,
        _via_key(request),
        method,
    )


class ServerTransactionLayer:
    """Matches requests to server transactions and runs their timers.

    Deadlines sit in a :class:`DeadlineHeap` (lazy deletion): every time a
    transaction's earliest deadline changes it is re-armed, and an ended
    transaction is disarmed. Finding the next deadline is O(1) amortised and a
    timer tick touches only the transactions that are due, however many
    thousands are alive.
    """

    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self._transactions: dict[Hashable, ServerTransaction] = {}
        self._deadlines: DeadlineHeap[ServerTransaction] = DeadlineHeap()
        self._order: dict[int, int] = {}  # id(txn) -> insertion rank (the dict's iteration order)
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._transactions)

    @property
    def transactions(self) -> list[ServerTransaction]:
        return list(self._transactions.values())

    @property
    def heap_size(self) -> int:
        """Entries in the deadline heap, stale ones included (bounded by a multiple of live ones)."""
        return len(self._deadlines)

    def receive_request(
        self, request: Request, source: Address, transport: Transport, now: float
    ) -> Disposition:
        if request.method == "ACK":
            return self._receive_ack(request, now)
        key = transaction_key(request)
        existing = self._transactions.get(key)
        if existing is not None:
            return self._retransmission(existing, now)
        txn: ServerTransaction
        if request.method == "INVITE":
            txn = InviteServerTransaction(key, request, source, transport, self.t1, self.t2, self.t4)
        else:
            txn = NonInviteServerTransaction(key, request, source, transport, self.t1, self.t2, self.t4)
        self._transactions[key] = txn
        self._order[id(txn)] = next(self._seq)
        if request.method == "CANCEL":
            target = self._transactions.get(transaction_key(request, "INVITE"))
            cancelled = target if isinstance(target, InviteServerTransaction) else None
            return Disposition(DispositionKind.CANCEL, txn, cancelled=cancelled)
        return Disposition(DispositionKind.NEW, txn)

    def _retransmission(self, txn: ServerTransaction, now: float) -> Disposition:
        action = txn.step(Input.REQUEST, now)
        self._track(txn)
        outgoing = txn.resend_outgoing() if action is Action.RESEND else None
        return Disposition(DispositionKind.RETRANSMISSION, txn, tuple(o for o in (outgoing,) if o))

    def _receive_ack(self, request: Request, now: float) -> Disposition:
        txn = self._find_acked_invite(request)
        if txn is None:
            return Disposition(DispositionKind.ACK_FOR_CORE)
        action = txn.step(Input.ACK, now)
        self._expire_zero_timers(txn, now)
        if action is Action.TO_CORE:
            return Disposition(DispositionKind.ACK_FOR_CORE, txn)
        return Disposition(DispositionKind.ACK_ABSORBED, txn)

    def _find_acked_invite(self, ack: Request) -> InviteServerTransaction | None:
        """§17.2.3 for ACK; in RFC 2543 mode its To tag must be the one our response carried."""
        key = transaction_key(ack)
        if isinstance(key, tuple) and key[0] == "3261":
            found = self._transactions.get(key)
            return found if isinstance(found, InviteServerTransaction) else None
        same_tag = self._transactions.get(key)
        if isinstance(same_tag, InviteServerTransaction):
            return same_tag
        initial = self._transactions.get(transaction_key(ack, to_tag=None))
        if not isinstance(initial, InviteServerTransaction) or initial.last_response is None:
            return None
        return initial if initial.last_response.to_addr.tag == ack.to_addr.tag else None

    def send_response(
        self, txn: ServerTransaction, response: Response, now: float, reliable: bool | None = None
    ) -> bytes:
        """Serialize ``response``, let the transaction remember it and arm its timers.

        Returns the bytes to send to ``txn.destination`` (empty if the state machine
        discards the response, as a late final on a completed non-INVITE).
        """
        if reliable is not None:
            txn.reliable = reliable
        action = txn.step(response_input(response.status), now)
        if action is not Action.SEND:
            self._track(txn)
            return b""
        data = serialize(response)
        txn.last_response = response
        txn.last_response_bytes = data
        self._expire_zero_timers(txn, now)
        return data

    def _expire_zero_timers(self, txn: ServerTransaction, now: float) -> None:
        """Timers I and J are zero on reliable transports: end the transaction right away."""
        while txn.timers and not txn.terminated:
            event, deadline = min(txn.timers.items(), key=lambda item: item[1])
            if deadline > now:
                break
            txn.step(event, now)
        if txn.terminated:
            self._drop(txn)
        else:
            self._track(txn)

    # ------------------------------------------------------------ deadline heap
    def _track(self, txn: ServerTransaction) -> None:
        """Arm the transaction's earliest deadline (disarm if it has none) while it is in the table."""
        deadline = txn.next_deadline()
        if deadline is not None and self._transactions.get(txn.key) is not txn:
            return
        self._deadlines.arm(txn, deadline)

    def _drop(self, txn: ServerTransaction) -> None:
        if self._transactions.get(txn.key) is txn:
            del self._transactions[txn.key]
        self._deadlines.disarm(txn)
        self._order.pop(id(txn), None)

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    def on_timer(self, now: float) -> list[Outgoing | TransactionTimeout]:
        """Fire every timer due at ``now`` in deadline order (several per transaction if late).

        Due transactions are handled in the order they were created, as a scan of
        all of them would; transactions with nothing due are not touched.
        """
        due = self._deadlines.pop_due(now)
        events: list[Outgoing | TransactionTimeout] = []
        for txn in sorted(due, key=lambda t: self._order.get(id(t), 0)):
            while txn.timers and not txn.terminated:
                event, deadline = min(txn.timers.items(), key=lambda item: item[1])
                if deadline > now:
                    break
                action = txn.step(event, deadline)
                if action is Action.RETRANSMIT:
                    outgoing = txn.resend_outgoing()
                    if outgoing is not None:
                        events.append(outgoing)
                elif action is Action.TIMEOUT:
                    events.append(TransactionTimeout(txn))
            if txn.terminated:
                self._drop(txn)
            else:
                self._track(txn)
        return events

    def find_invite(self, request: Request) -> InviteServerTransaction | None:
        """The INVITE transaction a CANCEL (or ACK) refers to, if still alive."""
        txn = self._transactions.get(transaction_key(request, "INVITE"))
        return txn if isinstance(txn, InviteServerTransaction) else None


def new_branch(token: str) -> str:
    """An RFC 3261 branch from a random token the edge supplies."""
    return MAGIC_COOKIE + token
