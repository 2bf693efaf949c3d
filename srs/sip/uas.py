"""2xx retransmission by the UAS core until the ACK arrives (RFC 3261 §13.3.1.4, RFC 6026).

The INVITE server transaction stops caring once the 2xx leaves; reliability of
the 2xx is the core's job. Sans-IO: the edge sends what :meth:`on_timer` returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from dataclasses import dataclass

from srs.sip.deadlines import DeadlineHeap
from srs.sip.routing import Address, Outgoing, Transport


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ACK within 64*T1: the dialog is confirmed but the session SHOULD end (the core sends BYE)."""

    key: Hashable


@dataclass(slots=True)
class _Pending:
    key: Hashable
    data: bytes
    destination: Address
    transport: Transport
    reliable: bool
    interval: float
    next_send: float
    give_up: float
    order: int


class TwoXxRetransmitter:
    """Retransmits each accepted INVITE's 2xx at T1, 2T1, 4T1 … capped at T2 (unreliable only).

    Deadlines sit in a :class:`DeadlineHeap` (re-armed when a 2xx's deadline
    moves on, disarmed once it is acknowledged), so a tick touches only due 2xx.
    """

    def __init__(self, t1: float = 0.5, t2: float = 4.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self._pending: dict[Hashable, _Pending] = {}
        self._deadlines: DeadlineHeap[_Pending] = DeadlineHeap()
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    @property
    def heap_size(self) -> int:
        """Entries in the deadline heap, stale ones included (bounded by a multiple of live ones)."""
        return len(self._deadlines)

    def start(
        self,
        key: Hashable,
        data: bytes,
        destination: Address,
        transport: Transport,
        now: float,
        reliable: bool | None = None,
    ) -> None:
        """Track a 2xx the edge has just sent once; a second start for the key replaces the first."""
        is_reliable = transport.reliable if reliable is None else reliable
        previous = self._pending.get(key)
        pending = _Pending(
            key=key,
            data=data,
            destination=destination,
            transport=transport,
            reliable=is_reliable,
            interval=self.t1,
            next_send=now + self.t1,
            give_up=now + 64 * self.t1,
            order=previous.order if previous is not None else next(self._seq),
        )
        if previous is not None:
            self._deadlines.disarm(previous)
        self._pending[key] = pending
        self._deadlines.arm(pending, self._deadline(pending))

    def ack(self, key: Hashable) -> bool:
        """The ACK arrived; True if it was awaited."""
        found = self._pending.pop(key, None)
        if found is not None:
            self._deadlines.disarm(found)
        return found is not None

    def cancel(self, key: Hashable) -> None:
        self.ack(key)

    def next_deadline(self) -> float | None:
        return self._deadlines.earliest()

    @staticmethod
    def _deadline(pending: _Pending) -> float:
        if pending.reliable:
            return pending.give_up
        return min(pending.next_send, pending.give_up)

    def on_timer(self, now: float) -> list[Outgoing | AckTimeout]:
        """Due 2xx in the order they were first started, as a scan of all of them would give."""
        due = self._deadlines.pop_due(now)
        events: list[Outgoing | AckTimeout] = []
        for pending in sorted(due, key=lambda item: item.order):
            while not pending.reliable and pending.next_send < pending.give_up and pending.next_send <= now:
                events.append(Outgoing(pending.data, pending.destination, pending.transport))
                pending.interval = min(pending.interval * 2, self.t2)
                pending.next_send += pending.interval
            if pending.give_up <= now:
                del self._pending[pending.key]
                events.append(AckTimeout(pending.key))
            else:
                self._deadlines.arm(pending, self._deadline(pending))
        return events


AcceptedInvites = TwoXxRetransmitter
