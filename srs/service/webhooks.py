"""Signed JSON event notifications to configured URLs, retried with backoff, each attempt logged.

Receivers authenticate a call by recomputing ``X-Srs-Signature: sha256=<hex>``, an HMAC-SHA256 of the
raw request body with the server secret. Delivery runs on the daemon's event loop from a queue, so
emitting an event never waits on a slow receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

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
log = logging.getLogger(__name__)


def sign_body(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_body(secret: bytes, body: bytes, header: str) -> bool:
    return hmac.compare_digest(sign_body(secret, body).encode(), header.encode("utf-8", "replace"))


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
        self._queue: asyncio.Queue[bytes] | None = None
        self._queue_size = queue_size
        self._worker: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self.dropped = 0

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue(self._queue_size)
        self._client = httpx.AsyncClient(timeout=self.timeout_s, transport=self._transport)
        self._worker = asyncio.create_task(self._run(), name="srs-webhooks")

    async def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``drain_timeout_s``), then stop."""
        if self._worker is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_timeout_s)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._worker = None
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
        """Queue an event (call from the loop thread; never blocks). Without URLs it is a no-op."""
        body = self.build_body(event, data)
        if not self.urls:
            return
        if self._queue is None:
            raise RuntimeError("webhook dispatcher is not started")
        try:
            self._queue.put_nowait(body)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full; dropped %s", event)

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            body = await self._queue.get()
            try:
                await asyncio.gather(*(self.deliver(url, body) for url in self.urls))
            except Exception:
                log.exception("webhook delivery crashed")
            finally:
                self._queue.task_done()

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
