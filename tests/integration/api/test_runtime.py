"""The HTTP runtime as the daemon starts it: its own index connection, the API on a real socket,
webhooks, the retention job, metrics, and a clean stop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from srs.daemon.http_runtime import HttpRuntime, start_http_runtime
from srs.daemon.metrics import DaemonMetrics
from srs.service.tokens import TokenService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from tests.unit.storage.factory import add_recording

DAY_S = 86_400.0


class Receiver:
    """A webhook endpoint on loopback that answers ``status`` and keeps every body."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.bodies.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def seed_index(data_dir: Path) -> tuple[RecordingIndex, DataLayout]:
    layout = DataLayout(data_dir)
    layout.ensure()
    return RecordingIndex(layout.index_path, layout=layout), layout


async def start(data_dir: Path, metrics: DaemonMetrics, **overrides: Any) -> HttpRuntime:
    options: dict[str, Any] = {
        "data_dir": data_dir, "listen_host": "127.0.0.1", "listen_port": 0, "link_max_validity_min": 60,
        "webhook_urls": (), "retention_days": 0, "retention_overrides": {}, "retention_interval_s": 3600,
        "metrics": metrics,
    }
    options.update(overrides)
    return await start_http_runtime(**options)


async def wait_until(predicate: Any, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def test_serves_the_api_with_its_own_index_and_stops(data_dir: Path) -> None:
    index, layout = seed_index(data_dir)
    rid = add_recording(index, layout, started_at=time.time())
    token, _ = TokenService(index).create("read")

    async def scenario() -> None:
        runtime = await start(data_dir, DaemonMetrics())
        assert runtime.index is not index and runtime.port
        base = f"http://127.0.0.1:{runtime.port}"
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as c:
            assert (await c.get("/healthz")).status_code == 200
            shown = await c.get(f"/api/v1/recordings/{rid}")
            assert shown.status_code == 200 and shown.json()["id"] == rid
            text = (await c.get("/metrics")).text
        names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and line[0] != "#"}
        assert all(name.startswith("srs_") for name in names), names
        assert 'srs_recordings{state="available"} 1.0' in text and "srs_disk_free_bytes" in text
        assert len([n for n in names if n == "srs_recordings"]) == 1
        await runtime.stop()
        await runtime.stop()  # idempotent
        with pytest.raises(httpx.HTTPError):
            async with httpx.AsyncClient() as c:
                await c.get(base + "/healthz", timeout=1)

    asyncio.run(scenario())
    index.close()


def test_without_webhook_urls_events_are_a_no_op(data_dir: Path) -> None:
    async def scenario() -> None:
        runtime = await start(data_dir, DaemonMetrics(), listen_host=None)
        assert runtime.server is None and runtime.port is None
        assert runtime.webhooks.urls == ()
        runtime.emit("recording_started", {"id": "x"})
        runtime.emit("no_such_event", {})  # logged, never raised into the daemon
        runtime.recording_event("recording_finished", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
        assert not runtime._pending
        with pytest.raises(ValueError):
            runtime.recording_event("export_available", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
        await runtime.stop()
        runtime.emit("recording_started", {"id": "after stop"})

    asyncio.run(scenario())


def test_recording_events_are_signed_and_carry_the_representation(data_dir: Path, receiver: Receiver) -> None:
    index, layout = seed_index(data_dir)
    rid = add_recording(index, layout, started_at=time.time(), call_recording_id="crid-hook")
    secret = layout.secret()

    async def scenario() -> None:
        runtime = await start(data_dir, DaemonMetrics(), listen_host=None, webhook_urls=[receiver.url])
        for event in ("recording_started", "recording_finished", "recording_available"):
            runtime.recording_event(event, rid)
        assert await wait_until(lambda: len(receiver.bodies) == 3)
        await runtime.stop()

    asyncio.run(scenario())
    events = []
    for headers, body in receiver.bodies:
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        assert headers["x-srs-signature"] == expected
        envelope = json.loads(body)
        assert envelope["data"]["id"] == rid and envelope["data"]["call_recording_id"] == "crid-hook"
        assert envelope["data"]["file"]["sha256"]
        events.append(envelope["event"])
    assert sorted(events) == ["recording_available", "recording_finished", "recording_started"]
    with index.db.read() as conn:
        deliveries = conn.execute("SELECT event, delivered FROM webhook_deliveries").fetchall()
    assert sorted(tuple(row) for row in deliveries) == sorted((e, 1) for e in events)
    index.close()


def test_failed_deliveries_are_counted(data_dir: Path) -> None:
    refusing = Receiver(status=400)  # permanent: no retry
    metrics = DaemonMetrics()

    async def scenario() -> None:
        runtime = await start(data_dir, metrics, listen_host=None, webhook_urls=[refusing.url])
        runtime.emit("recording_started", {"id": "a"})
        runtime.emit("recording_started", {"id": "b"})
        failures = metrics.webhook_failures
        assert await wait_until(lambda: failures._value.get() == 2)
        await runtime.stop()

    try:
        asyncio.run(scenario())
    finally:
        refusing.close()
    assert len(refusing.bodies) == 2


def test_retention_deletes_expired_keeps_held_and_honours_overrides(data_dir: Path) -> None:
    index, layout = seed_index(data_dir)
    now = time.time()
    old_default = add_recording(index, layout, started_at=now - 10 * DAY_S, source="a:5060", seed=1)
    old_held = add_recording(index, layout, started_at=now - 10 * DAY_S, source="a:5060", seed=2)
    index.set_legal_hold(old_held, True)
    fresh = add_recording(index, layout, started_at=now - 1 * DAY_S, source="a:5060", seed=3)
    long_kept = add_recording(index, layout, started_at=now - 10 * DAY_S, source="vip:5060", seed=4)
    short_kept = add_recording(index, layout, started_at=now - 2 * DAY_S, source="brief:5060", seed=5)
    metrics = DaemonMetrics()

    async def scenario() -> HttpRuntime:
        runtime = await start(
            data_dir, metrics, listen_host=None, retention_days=7,
            retention_overrides={"vip:5060": 30, "brief:5060": 1}, retention_interval_s=0.05,
        )
        assert await wait_until(lambda: runtime.retention.sweeps >= 2)
        await runtime.stop()
        return runtime

    runtime = asyncio.run(scenario())
    assert sorted(runtime.retention.deleted) == sorted([old_default, short_kept])
    for rid in (old_held, fresh, long_kept):
        assert index.get(rid) is not None
    for rid in (old_default, short_kept):
        assert index.get(rid) is None
    audit = [(e["actor"], e["action"], e["recording_id"]) for e in index.admin.audit_entries()]
    assert ("retention", "retention_delete", old_default) in audit
    assert ("retention", "retention_delete", short_kept) in audit
    text = metrics.render().decode()
    assert "srs_retention_deleted_total 2.0" in text
    index.close()


def test_retention_disabled_never_sweeps(data_dir: Path) -> None:
    index, layout = seed_index(data_dir)
    old = add_recording(index, layout, started_at=time.time() - 1000 * DAY_S)

    async def scenario() -> HttpRuntime:
        runtime = await start(data_dir, DaemonMetrics(), listen_host=None, retention_interval_s=0.05)
        await asyncio.sleep(0.2)
        await runtime.stop()
        return runtime

    runtime = asyncio.run(scenario())
    assert runtime.retention.sweeps == 0 and index.get(old) is not None
    index.close()


def test_port_in_use_fails_start(data_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises((OSError, SystemExit)):
            asyncio.run(start(data_dir, DaemonMetrics(), listen_port=port))


def test_webhook_drops_are_counted_per_receiver_in_metrics(data_dir: Path, receiver: Receiver) -> None:
    """A receiver that never answers fills its own queue; its drops show in /metrics by receiver,
    and the healthy receiver beside it loses nothing."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (in the kernel's backlog) and never answers
    silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
    metrics = DaemonMetrics()
    index, _ = seed_index(data_dir)
    token, _ = TokenService(index).create("read")

    async def scenario() -> None:
        runtime = await start(
            data_dir, metrics, webhook_urls=(silent_url, receiver.url), webhook_queue_size=2,
            webhook_timeout_s=30.0,
        )
        try:
            for n in range(6):
                runtime.emit("recording_started", {"id": f"e{n}"})
                await asyncio.sleep(0.05)
            assert await wait_until(lambda: len(receiver.bodies) == 6)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.port}") as c:
                text = (await c.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
        finally:
            await runtime.stop()
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                   for line in text.splitlines() if line.startswith("srs_webhook_events_dropped_total")}
        silent_label = silent_url
        healthy_label = receiver.url
        assert samples == {
            f'srs_webhook_events_dropped_total{{receiver="{silent_label}"}}': 3.0,
            f'srs_webhook_events_dropped_total{{receiver="{healthy_label}"}}': 0.0,
        }, samples

    try:
        asyncio.run(scenario())
    finally:
        silent.close()
        index.close()
