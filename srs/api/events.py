"""The live feed: recording events and the calls being recorded now, as server-sent events.

Webhooks push to receivers configured in advance; a browser (or any integrator without a public
URL) instead keeps one ``GET /api/v1/events`` open and reads ``text/event-stream``. The daemon
publishes ``recording_started``/``recording_finished``/``recording_available`` into an
:class:`EventHub` on its own loop; every open stream gets them, plus a ``live`` snapshot every
``interval_s`` (durations and per-stream packet counts change continuously, so they are sampled
rather than evented).

``EventSource`` cannot send an ``Authorization`` header, so a token holder first asks for a
ticket (``POST /api/v1/events/ticket``): a random string valid for ``TICKET_TTL_S``, usable only
to open the feed, remembered in memory only (a restart forgets it, the browser asks again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from srs.service.principal import Principal

TICKET_TTL_S = 60.0
MAX_TICKETS = 10_000
QUEUE_SIZE = 256
DEFAULT_INTERVAL_S = 1.0
LiveSource = Callable[[], list[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Ticket:
    principal: Principal
    expires_at: float


class _Closed:
    """Put on every queue when the hub closes, so open streams end before the server stops."""


_CLOSED = _Closed()


class EventHub:
    def __init__(
        self,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.wall_clock = wall_clock
        self.live_source: LiveSource = list
        self._queues: set[asyncio.Queue[tuple[str, Any] | _Closed]] = set()
        self._tickets: dict[str, Ticket] = {}
        self._closed = False
        self.published = 0

    # ---- tickets ----------------------------------------------------------------------------

    def issue_ticket(self, principal: Principal) -> tuple[str, float]:
        """A fresh ticket for ``principal`` and its lifetime in seconds."""
        now = self.clock()
        if len(self._tickets) >= MAX_TICKETS:
            self._tickets = {k: t for k, t in self._tickets.items() if t.expires_at > now}
            while len(self._tickets) >= MAX_TICKETS:
                self._tickets.pop(next(iter(self._tickets)))
        ticket = secrets.token_urlsafe(24)
        self._tickets[ticket] = Ticket(principal, now + TICKET_TTL_S)
        return ticket, TICKET_TTL_S

    def redeem(self, ticket: str) -> Principal | None:
        """The principal a ticket was issued to, while it is valid (it may open several streams)."""
        found = self._tickets.get(ticket)
        if found is None:
            return None
        if found.expires_at <= self.clock():
            self._tickets.pop(ticket, None)
            return None
        return found.principal

    # ---- publishing -------------------------------------------------------------------------

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def publish(self, event: str, data: Any) -> None:
        """Queue ``event`` for every open stream (call on the loop). A reader too slow to keep up
        with ``QUEUE_SIZE`` events is cut off; its browser reconnects and starts from a snapshot."""
        self.published += 1
        for queue in list(self._queues):
            try:
                queue.put_nowait((event, data))
            except asyncio.QueueFull:
                self._queues.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(_CLOSED)

    def close(self) -> None:
        self._closed = True
        for queue in list(self._queues):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(_CLOSED)
        self._queues.clear()

    def snapshot(self) -> dict[str, Any]:
        now = self.wall_clock()
        calls = []
        for call in self.live_source():
            item = dict(call)
            started = item.get("started_at")
            if isinstance(started, int | float):
                item["elapsed_ms"] = max(0, round((now - started) * 1000))
            calls.append(item)
        return {"at": now, "calls": calls}

    async def stream(self) -> AsyncIterator[bytes]:
        """The ``text/event-stream`` body of one subscriber."""
        queue: asyncio.Queue[tuple[str, Any] | _Closed] = asyncio.Queue(QUEUE_SIZE)
        if self._closed:
            return
        self._queues.add(queue)
        counter = 0
        try:
            yield f"retry: {int(self.interval_s * 3000)}\n\n".encode()
            yield frame("live", self.snapshot(), counter)
            deadline = self.clock() + self.interval_s
            while True:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, deadline - self.clock()))
                except TimeoutError:
                    counter += 1
                    yield frame("live", self.snapshot(), counter)
                    deadline = self.clock() + self.interval_s
                    continue
                if isinstance(item, _Closed):
                    return
                counter += 1
                yield frame(item[0], item[1], counter)
        finally:
            self._queues.discard(queue)


def frame(event: str, data: Any, event_id: int) -> bytes:
    """One SSE message; JSON has no raw newlines, so ``data`` is a single line."""
    body = json.dumps(data, separators=(",", ":"), default=str)
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()
