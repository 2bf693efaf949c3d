"""Signed JSON event notifications to configured URLs, retried with backoff, each attempt logged.

Receivers authenticate a call by recomputing ``X-Srs-Signature: sha256=<hex>``, an HMAC-SHA256 of the
raw request body with the server secret. Delivery runs on the daemon's event loop, from one bounded
queue and one worker per receiver: emitting never waits, and a slow, hanging or failing receiver
(retried with exponential backoff) never delays the events of another. A full queue drops the new
event for that receiver only, and counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from srs.service.timefmt import iso_utc
from srs.storage.ids import new_id
from srs.storage.index import RecordingIndex

EVENTS = (
    "recording_started",
    "recording_finished",
    "recording_available",
    "export_available",
    "recording_no_media",
    "recording_source_changed",
)
SIGNATURE_HEADER = "X-Srs-Signature"
_RETRY_STATUSES = frozenset({408, 425, 429})
log = structlog.get_logger(__name__)


def sign_body(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_body(secret: bytes, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign_body(secret, body).encode(), header.encode("utf-8", "replace"))


def receiver_label(url: str) -> str:
    """The receiver as metrics name it: no credentials, no query (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


@dataclass
class _Receiver:
    """One URL's own queue and worker: its backlog and its retries never hold up another URL."""

    url: str
    label: str
    queue: asyncio.Queue[bytes]
    worker: asyncio.Task[None] | None = None
    dropped: int = 0


class WebhookDispatcher:
    def __init__(
        self,
        urls: Sequence[str],
        secret: bytes,
        index: RecordingIndex | None = None,
        clock: Callable[[], float] = time.time,
        *,
        max_attempts: int = 5,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 5.0,
        queue_size: int = 1000,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_failure: Callable[[str, str], None] | None = None,
        on_drop: Callable[[str], None] | None = None,
    ) -> None:
        self.urls = tuple(urls)
        self.secret = secret
        self.index = index
        self.clock = clock
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.timeout_s = timeout_s
        self._transport = transport
        self._sleep = sleep
        self._on_failure = on_failure
        self._on_drop = on_drop
        self._queue_size = max(1, queue_size)
        self._receivers: list[_Receiver] = []
        self._client: httpx.AsyncClient | None = None

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(receiver_label(url) for url in self.urls)

    @property
    def dropped(self) -> int:
        return sum(r.dropped for r in self._receivers)

    def dropped_by_receiver(self) -> dict[str, int]:
        return {r.label: r.dropped for r in self._receivers}

    def queued(self) -> dict[str, int]:
        return {r.label: r.queue.qsize() for r in self._receivers}

    async def start(self) -> None:
        if self._receivers or not self.urls:
            return
        self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        for url in self.urls:
            receiver = _Receiver(url, receiver_label(url), asyncio.Queue(self._queue_size))
            receiver.worker = asyncio.create_task(self._run(receiver), name=f"srs-webhook {receiver.label}")
            self._receivers.append(receiver)

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``drain_timeout_s`` for all receivers together), then stop."""
        if not self._receivers:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(r.queue.join() for r in self._receivers)), drain_timeout_s
            )
        for receiver in self._receivers:
            if receiver.worker is not None:
                receiver.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await receiver.worker
                receiver.worker = None
        self._receivers = []
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def build_body(self, event: str, data: Mapping[str, Any]) -> bytes:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}")
        now = self.clock()
        envelope = {"id": new_id(now), "event": event, "at": iso_utc(now), "data": dict(data)}
        return json.dumps(envelope, sort_keys=True, separators=(",", ":")).encode()

    def emit(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue an event for every receiver (call from the loop thread; never blocks).

        Without URLs it is a no-op. A receiver whose queue is full loses this event, counted.
        """
        body = self.build_body(event, data)
        if not self.urls:
            return
        if not self._receivers:
            raise RuntimeError("webhook dispatcher is not started")
        for receiver in self._receivers:
            try:
                receiver.queue.put_nowait(body)
            except asyncio.QueueFull:
                receiver.dropped += 1
                if self._on_drop is not None:
                    self._on_drop(receiver.label)
                log.warning("webhook_dropped", receiver=receiver.label, webhook_event=event)

    async def _run(self, receiver: _Receiver) -> None:
        while True:
            body = await receiver.queue.get()
            try:
                await self.deliver(receiver.url, body)
            except Exception:
                log.exception("webhook_delivery_crashed", receiver=receiver.label)
            finally:
                receiver.queue.task_done()

    async def deliver(self, url: str, body: bytes) -> bool:
        """POST one signed body to one URL with retries; True once a 2xx came back."""
        client = self._client
        own_client = client is None
        if client is None:
            client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        envelope = json.loads(body)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign_body(self.secret, body),
            "X-Srs-Event": envelope["event"],
            "X-Srs-Delivery": envelope["id"],
        }
        subject = envelope["data"].get("id")
        try:
            for attempt in range(1, self.max_attempts + 1):
                status: int | None = None
                error: str | None = None
                try:
                    response = await client.post(url, content=body, headers=headers)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                ok = status is not None and 200 <= status < 300
                if status is not None and not ok:
                    error = f"HTTP {status}"
                await self._log(envelope["event"], url, subject, attempt, status, error, ok)
                if ok:
                    return True
                permanent = status is not None and 400 <= status < 500 and status not in _RETRY_STATUSES
                if permanent or attempt == self.max_attempts:
                    if self._on_failure is not None:
                        self._on_failure(envelope["event"], url)
                    return False
                await self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
            return False
        finally:
            if own_client:
                await client.aclose()

    async def _log(
        self,
        event: str,
        url: str,
        subject: Any,
        attempt: int,
        status: int | None,
        error: str | None,
        ok: bool,
    ) -> None:
        if self.index is None:
            return
        admin = self.index.admin
        await asyncio.to_thread(
            admin.log_delivery,
            event, url, str(subject) if subject is not None else None, attempt, status, error, ok,
        )
