"""2xx retransmission by the UAS core until the ACK arrives (RFC 3261 §13.3.1.4, RFC 6026).

The INVITE server transaction stops caring once the 2xx leaves; reliability of
the 2xx is the core's job. Sans-IO: the edge sends what :meth:`on_timer` returns.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

from srs.sip.routing import Address, Outgoing, Transport


@dataclass(frozen=True, slots=True)
class AckTimeout:
    """No ACK within 64*T1: the dialog is confirmed but the session SHOULD end (the core sends BYE)."""

    key: Hashable


@dataclass(slots=True)
class _Pending:
    data: bytes
    destination: Address
    transport: Transport
    reliable: bool
    interval: float
    next_send: float
    give_up: float


class TwoXxRetransmitter:
    """Retransmits each accepted INVITE's 2xx at T1, 2T1, 4T1 … capped at T2 (unreliable only)."""

    def __init__(self, t1: float = 0.5, t2: float = 4.0) -> None:
        self.t1 = t1
        self.t2 = t2
        self._pending: dict[Hashable, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

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
        self._pending[key] = _Pending(
            data=data,
            destination=destination,
            transport=transport,
            reliable=is_reliable,
            interval=self.t1,
            next_send=now + self.t1,
            give_up=now + 64 * self.t1,
        )

    def ack(self, key: Hashable) -> bool:
        """The ACK arrived; True if it was awaited."""
        return self._pending.pop(key, None) is not None

    def cancel(self, key: Hashable) -> None:
        self._pending.pop(key, None)

    def next_deadline(self) -> float | None:
        deadlines = [self._deadline(p) for p in self._pending.values()]
        return min(deadlines) if deadlines else None

    @staticmethod
    def _deadline(pending: _Pending) -> float:
        if pending.reliable:
            return pending.give_up
        return min(pending.next_send, pending.give_up)

    def on_timer(self, now: float) -> list[Outgoing | AckTimeout]:
        events: list[Outgoing | AckTimeout] = []
        for key, pending in list(self._pending.items()):
            while not pending.reliable and pending.next_send < pending.give_up and pending.next_send <= now:
                events.append(Outgoing(pending.data, pending.destination, pending.transport))
                pending.interval = min(pending.interval * 2, self.t2)
                pending.next_send += pending.interval
            if pending.give_up <= now:
                del self._pending[key]
                events.append(AckTimeout(key))
        return events


AcceptedInvites = TwoXxRetransmitter
