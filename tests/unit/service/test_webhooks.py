"""Webhook delivery against a real HTTP receiver on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable

import pytest
import structlog.testing

from srs.service.webhooks import SIGNATURE_HEADER, WebhookDispatcher, sign_body, verify_body
from srs.storage.index import RecordingIndex

SECRET = b"k" * 32


class Receiver:
    """A minimal HTTP/1.1 server answering each request with the next status from a script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            lines = head.decode().split("\r\n")
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
            await writer.drain()
        writer.close()


def _run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coro(), 20))


def test_sign_and_verify_body() -> None:
    body = b'{"a":1}'
    header = sign_body(SECRET, body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify_body(SECRET, body, header)
    assert not verify_body(SECRET, body + b" ", header)
    assert not verify_body(b"other" * 8, body, header)


def test_event_is_signed_over_the_raw_body_and_logged(index: RecordingIndex) -> None:
    async def scenario() -> None:
        async with Receiver([200]) as receiver:
            hooks = WebhookDispatcher([receiver.url], SECRET, index, backoff_s=0.001)
            await hooks.start()
            hooks.emit("recording_available", {"id": "01HZX3Y5Q8K2M4N6P8R0S2T4V6", "state": "available"})
            await hooks.stop()
        ((headers, body),) = receiver.requests
        assert verify_body(SECRET, body, headers[SIGNATURE_HEADER.lower()])
        envelope = json.loads(body)
        assert envelope["event"] == "recording_available" and envelope["data"]["state"] == "available"
        assert headers["x-srs-event"] == "recording_available"
        assert headers["content-type"] == "application/json"

    _run(scenario)
    (delivery,) = index.admin.deliveries()
    assert (delivery["attempt"], delivery["status_code"], delivery["delivered"]) == (1, 200, True)
    assert delivery["subject_id"] == "01HZX3Y5Q8K2M4N6P8R0S2T4V6"


def test_server_errors_are_retried_with_growing_backoff(index: RecordingIndex) -> None:
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    async def scenario() -> None:
        async with Receiver([500, 503, 200]) as receiver:
            hooks = WebhookDispatcher([receiver.url], SECRET, index, backoff_s=1.0, sleep=no_wait)
            body = hooks.build_body("recording_finished", {"id": "x"})
            assert await hooks.deliver(receiver.url, body) is True
            assert [b for _, b in receiver.requests] == [body, body, body]

    _run(scenario)
    assert delays == [1.0, 2.0]
    assert [(d["attempt"], d["status_code"], d["delivered"]) for d in index.admin.deliveries()] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]


def test_client_errors_are_not_retried_and_attempts_are_bounded(index: RecordingIndex) -> None:
    async def no_wait(seconds: float) -> None:
        return None

    async def scenario() -> None:
        async with Receiver([404, 500, 500, 500]) as receiver:
            hooks = WebhookDispatcher([receiver.url], SECRET, index, max_attempts=3, sleep=no_wait)
            assert await hooks.deliver(receiver.url, hooks.build_body("recording_started", {})) is False
            assert len(receiver.requests) == 1
            assert await hooks.deliver(receiver.url, hooks.build_body("recording_started", {})) is False
            assert len(receiver.requests) == 4

    _run(scenario)


def test_unreachable_receiver_is_logged_as_error(index: RecordingIndex) -> None:
    async def no_wait(seconds: float) -> None:
        return None

    async def scenario() -> None:
        hooks = WebhookDispatcher(["http://127.0.0.1:9/"], SECRET, index, max_attempts=2, sleep=no_wait)
        assert await hooks.deliver("http://127.0.0.1:9/", hooks.build_body("export_available", {})) is False

    _run(scenario)
    deliveries = index.admin.deliveries()
    assert len(deliveries) == 2 and all(d["error"] and d["status_code"] is None for d in deliveries)


def test_unknown_event_and_unstarted_dispatcher() -> None:
    hooks = WebhookDispatcher(["http://127.0.0.1:9/"], SECRET)
    with pytest.raises(ValueError):
        hooks.emit("recording_exploded", {})
    with pytest.raises(RuntimeError):
        hooks.emit("recording_started", {})
    WebhookDispatcher([], SECRET).emit("recording_started", {})  # no URLs: nothing to do


class Hanging:
    """Accepts connections and reads requests, never answers: the worst receiver there is."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0

    async def __aenter__(self) -> Hanging:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/hook"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(Exception):
            await reader.read()  # until the client gives up


def test_failing_and_hanging_receivers_never_delay_a_healthy_one(index: RecordingIndex) -> None:
    """Before: one queue, events delivered one after the other to every URL: a receiver answering
    500 held every later event for its 5 attempts and their backoff (15 s)."""
    arrivals: list[float] = []

    async def scenario() -> None:
        async with Receiver([500] * 100) as failing, Hanging() as hanging, Receiver([]) as healthy:
            hooks = WebhookDispatcher(
                [failing.url, hanging.url, healthy.url], SECRET, index, backoff_s=1.0, timeout_s=10.0
            )
            await hooks.start()
            loop = asyncio.get_running_loop()
            for n in range(3):
                emitted = loop.time()
                hooks.emit("recording_finished", {"id": f"event-{n}"})
                while len(healthy.requests) <= n:
                    assert loop.time() - emitted < 5, "the healthy receiver never got its event"
                    await asyncio.sleep(0.01)
                arrivals.append(loop.time() - emitted)
            got = [json.loads(b)["data"]["id"] for _, b in healthy.requests]
            assert got == ["event-0", "event-1", "event-2"]
            assert len(failing.requests) >= 1 and hanging.connections >= 1
            await hooks.stop(drain_timeout_s=0.1)

    _run(scenario)
    assert max(arrivals) < 1.0, arrivals


def test_a_full_receiver_queue_drops_and_counts_for_that_receiver_only(index: RecordingIndex) -> None:
    dropped: list[str] = []

    async def scenario() -> None:
        async with Hanging() as hanging, Receiver([]) as healthy:
            hooks = WebhookDispatcher(
                [hanging.url, healthy.url], SECRET, index, queue_size=2, timeout_s=10.0,
                on_drop=dropped.append,
            )
            await hooks.start()
            hooks.emit("recording_started", {"id": "first"})
            while hanging.connections == 0:  # the hanging worker holds "first"
                await asyncio.sleep(0.01)
            for n in range(5):
                hooks.emit("recording_started", {"id": f"more-{n}"})
                await asyncio.sleep(0.05)  # the healthy worker keeps up
            while len(healthy.requests) < 6:
                await asyncio.sleep(0.01)
            labels = hooks.labels
            assert hooks.dropped_by_receiver() == {labels[0]: 3, labels[1]: 0}
            assert hooks.dropped == 3
            await hooks.stop(drain_timeout_s=0.1)

    with structlog.testing.capture_logs() as logs:
        _run(scenario)
    assert len(dropped) == 3 and all(label.endswith("/hook") and "127.0.0.1" in label for label in dropped)
    drops = [entry for entry in logs if entry["event"] == "webhook_dropped"]
    assert [(e["log_level"], e["receiver"], e["webhook_event"]) for e in drops] == [
        ("warning", label, "recording_started") for label in dropped
    ]
