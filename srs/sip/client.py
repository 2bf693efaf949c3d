"""Non-INVITE client transactions (RFC 3261 §17.1.2) for the BYE/UPDATE srs sends, sans-IO.

Over UDP a BYE must be retransmitted (Timer E) until a response arrives or
Timer F gives up; the core learns the outcome from the events returned here.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property

from srs.errors import SipParseError
from srs.sip.deadlines import DeadlineHeap
from srs.sip.message import Request, Response, serialize
from srs.sip.routing import Address, Outgoing, Transport


class ClientState(Enum):
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    TERMINATED = "Terminated"


class ClientInput(Enum):
    PROVISIONAL = "1xx received"
    FINAL = "200-699 received"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_K = "Timer K"


class ClientAction(Enum):
    PASS_UP = "hand the response to the core"
    RETRANSMIT = "re-send the request"
    TIMEOUT = "report a timeout to the core"
    ABSORB = "absorb a response retransmission"
    NONE = "nothing"


_C = ClientState
_In = ClientInput
_Act = ClientAction
CLIENT_TABLE: dict[tuple[ClientState, ClientInput], tuple[ClientState, ClientAction]] = {
    (_C.TRYING, _In.PROVISIONAL): (_C.PROCEEDING, _Act.PASS_UP),
    (_C.TRYING, _In.FINAL): (_C.COMPLETED, _Act.PASS_UP),
    (_C.TRYING, _In.TIMER_E): (_C.TRYING, _Act.RETRANSMIT),
    (_C.TRYING, _In.TIMER_F): (_C.TERMINATED, _Act.TIMEOUT),
    (_C.TRYING, _In.TIMER_K): (_C.TRYING, _Act.NONE),
    (_C.PROCEEDING, _In.PROVISIONAL): (_C.PROCEEDING, _Act.PASS_UP),
    (_C.PROCEEDING, _In.FINAL): (_C.COMPLETED, _Act.PASS_UP),
    (_C.PROCEEDING, _In.TIMER_E): (_C.PROCEEDING, _Act.RETRANSMIT),
    (_C.PROCEEDING, _In.TIMER_F): (_C.TERMINATED, _Act.TIMEOUT),
    (_C.PROCEEDING, _In.TIMER_K): (_C.PROCEEDING, _Act.NONE),
    (_C.COMPLETED, _In.PROVISIONAL): (_C.COMPLETED, _Act.ABSORB),
    (_C.COMPLETED, _In.FINAL): (_C.COMPLETED, _Act.ABSORB),
    (_C.COMPLETED, _In.TIMER_E): (_C.COMPLETED, _Act.NONE),
    (_C.COMPLETED, _In.TIMER_F): (_C.COMPLETED, _Act.NONE),
    (_C.COMPLETED, _In.TIMER_K): (_C.TERMINATED, _Act.NONE),
}


@dataclass(frozen=True, slots=True)
class ClientResponse:
    """A response the core must see, with the transaction it belongs to."""

    transaction: NonInviteClientTransaction
    response: Response


@dataclass(frozen=True, slots=True)
class ClientTimeout:
    """Timer F fired: no final response (the core treats it as 408, §8.1.3.1)."""

    transaction: NonInviteClientTransaction


@dataclass(eq=False)
class NonInviteClientTransaction:
    request: Request
    data: bytes
    destination: Address
    transport: Transport
    t1: float
    t2: float
    t4: float
    reconnect: Address | None = None
    state: ClientState = field(default=ClientState.TRYING, init=False)
    timers: dict[ClientInput, float] = field(default_factory=dict, init=False)
    timer_e_interval: float = field(default=0.0, init=False)

    @cached_property
    def key(self) -> tuple[str, str]:
        """Read once: the deadline heap asks for it on every look at the top entry."""
        branch = self.request.top_via.branch
        if branch is None:
            raise SipParseError("client request without branch")
        return (branch, self.request.cseq.method)

    @property
    def terminated(self) -> bool:
        return self.state is ClientState.TERMINATED

    def start(self, now: float) -> None:
        if not self.transport.reliable:
            self.timer_e_interval = self.t1
            self.timers[ClientInput.TIMER_E] = now + self.t1
        self.timers[ClientInput.TIMER_F] = now + 64 * self.t1

    def step(self, event: ClientInput, now: float) -> ClientAction:
        next_state, action = CLIENT_TABLE.get((self.state, event), (self.state, ClientAction.NONE))
        self.timers.pop(event, None)
        if action is ClientAction.RETRANSMIT:
            # §17.1.2.2: back off to T2, and straight to T2 once a provisional came in
            ceiling = self.t2
            self.timer_e_interval = (
                ceiling if self.state is ClientState.PROCEEDING else min(2 * self.timer_e_interval, ceiling)
            )
            self.timers[ClientInput.TIMER_E] = now + self.timer_e_interval
        if next_state is not self.state:
            self.state = next_state
            if next_state is ClientState.COMPLETED:
                self.timers.clear()
                self.timers[ClientInput.TIMER_K] = now + (0.0 if self.transport.reliable else self.t4)
            elif next_state is ClientState.TERMINATED:
                self.timers.clear()
        return action


class ClientTransactionLayer:
    """Owns the client transactions srs starts and matches responses to them (§17.1.3).

    Deadlines sit in a :class:`DeadlineHeap`, as in the server transaction
    layer: re-armed whenever a transaction's earliest deadline moves, disarmed
    when it ends.
    """

    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self._transactions: dict[tuple[str, str], NonInviteClientTransaction] = {}
        self._deadlines: DeadlineHeap[NonInviteClientTransaction] = DeadlineHeap()
        self._order: dict[int, int] = {}  # id(txn) -> insertion rank
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._transactions)

    @property
    def heap_size(self) -> int:
        """Entries in the deadline heap, stale ones included (bounded by a multiple of live ones)."""
        return len(self._deadlines)

    def send_request(
        self,
        request: Request,
        destination: Address,
        transport: Transport,
        now: float,
        reconnect: Address | None = None,
    ) -> tuple[NonInviteClientTransaction, Outgoing]:
        """Start a transaction for a non-INVITE request; the Outgoing is its first transmission.

        ``reconnect`` (reliable transports): where the edge may open a new connection when
        the one to ``destination`` has closed.
        """
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} needs an INVITE client transaction")
        data = serialize(request)
        txn = NonInviteClientTransaction(
            request, data, destination, transport, self.t1, self.t2, self.t4, reconnect
        )
        txn.start(now)
        replaced = self._transactions.get(txn.key)
        if replaced is not None:
            self._drop(replaced)
        self._transactions[txn.key] = txn
        self._order[id(txn)] = next(self._seq)
        self._track(txn)
        return txn, Outgoing(data, destination, transport, reconnect)

    def receive_response(self, response: Response, now: float) -> ClientResponse | None:
        """The response for the core, or None (no transaction, or a retransmission absorbed)."""
        branch = response.top_via.branch
        if branch is None:
            return None
        txn = self._transactions.get((branch, response.cseq.method))
        if txn is None:
            return None
        event = ClientInput.PROVISIONAL if response.status < 200 else ClientInput.FINAL
        action = txn.step(event, now)
        self._expire(txn, now)
        return ClientResponse(txn, response) if action is ClientAction.PASS_UP else None

    def _expire(self, txn: NonInviteClientTransaction, now: float) -> None:
        for event, deadline in list(txn.timers.items()):
            if deadline <= now and event is ClientInput.TIMER_K:
                txn.step(event, now)
        if txn.terminated:
            self._drop(txn)
        else:
            self._track(txn)

    # ------------------------------------------------------------ deadline heap
    @staticmethod
    def _earliest(txn: NonInviteClientTransaction) -> float | None:
        return min(txn.timers.values()) if txn.timers else None

    def _track(self, txn: NonInviteClientTransaction) -> None:
        deadline = self._earliest(txn)
        if deadline is not None and self._transactions.get(txn.key) is not txn:
            return
        self._deadlines.arm(txn, deadline)

    def _drop(self, txn: NonInviteClientTransaction) -> None:
        if self._transactions.get(txn.key) is txn:
            del self._transactions[txn.key]
        self._deadlines.disarm(txn)
        self._order.pop(id(txn), None)

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    def on_timer(self, now: float) -> list[Outgoing | ClientTimeout]:
        """Due transactions in the order they were started; the others are not touched."""
        due = self._deadlines.pop_due(now)
        events: list[Outgoing | ClientTimeout] = []
        for txn in sorted(due, key=lambda t: self._order.get(id(t), 0)):
            while txn.timers and not txn.terminated:
                event, deadline = min(txn.timers.items(), key=lambda item: item[1])
                if deadline > now:
                    break
                action = txn.step(event, deadline)
                if action is ClientAction.RETRANSMIT:
                    events.append(Outgoing(txn.data, txn.destination, txn.transport, txn.reconnect))
                elif action is ClientAction.TIMEOUT:
                    events.append(ClientTimeout(txn))
            if txn.terminated:
                self._drop(txn)
            else:
                self._track(txn)
        return events
