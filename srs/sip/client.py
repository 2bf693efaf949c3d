"""Non-INVITE client transactions (RFC 3261 §17.1.2) for the BYE/UPDATE srs sends, sans-IO.

Over UDP a BYE must be retransmitted (Timer E) until a response arrives or
Timer F gives up; the core learns the outcome from the events returned here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from srs.errors import SipParseError
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
    state: ClientState = field(default=ClientState.TRYING, init=False)
    timers: dict[ClientInput, float] = field(default_factory=dict, init=False)
    timer_e_interval: float = field(default=0.0, init=False)

    @property
    def key(self) -> tuple[str, str]:
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
    """Owns the client transactions srs starts and matches responses to them (§17.1.3)."""

    def __init__(self, t1: float = 0.5, t2: float = 4.0, t4: float = 5.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self._transactions: dict[tuple[str, str], NonInviteClientTransaction] = {}

    def __len__(self) -> int:
        return len(self._transactions)

    def send_request(
        self, request: Request, destination: Address, transport: Transport, now: float
    ) -> tuple[NonInviteClientTransaction, Outgoing]:
        """Start a transaction for a non-INVITE request; the Outgoing is its first transmission."""
        if request.method in ("INVITE", "ACK"):
            raise ValueError(f"{request.method} needs an INVITE client transaction")
        data = serialize(request)
        txn = NonInviteClientTransaction(request, data, destination, transport, self.t1, self.t2, self.t4)
        txn.start(now)
        self._transactions[txn.key] = txn
        return txn, Outgoing(data, destination, transport)

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
            self._transactions.pop(txn.key, None)

    def next_deadline(self) -> float | None:
        deadlines = [min(t.timers.values()) for t in self._transactions.values() if t.timers]
        return min(deadlines) if deadlines else None

    def on_timer(self, now: float) -> list[Outgoing | ClientTimeout]:
        events: list[Outgoing | ClientTimeout] = []
        for txn in list(self._transactions.values()):
            while txn.timers and not txn.terminated:
                event, deadline = min(txn.timers.items(), key=lambda item: item[1])
                if deadline > now:
                    break
                action = txn.step(event, deadline)
                if action is ClientAction.RETRANSMIT:
                    events.append(Outgoing(txn.data, txn.destination, txn.transport))
                elif action is ClientAction.TIMEOUT:
                    events.append(ClientTimeout(txn))
            if txn.terminated:
                del self._transactions[txn.key]
        return events
