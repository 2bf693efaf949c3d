"""Everything the daemon serves over HTTP and does in the background for admins, in one start/stop pair.

It runs on the daemon's event loop but reads and writes through its own connection to the index
(SQLite in WAL mode), so a slow listing or an export never holds the lock the recording path takes.
SIGTERM/SIGINT stay with the daemon: the embedded server does not install signal handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

from srs.api.app import create_app
from srs.api.events import EventHub
from srs.api.guard import DEFAULT_MAX_BODY_BYTES
from srs.api.live import install_live_routes
from srs.daemon.logs import get_logger
from srs.daemon.metrics import DaemonMetrics
from srs.errors import ListenError
from srs.service.export_jobs import DEFAULT_EXPORT_TTL_S
from srs.service.exports import ExportManager
from srs.service.live_hub import LiveHub
from srs.service.recordings import RecordingService
from srs.service.retention import ExportSweeper, RetentionJob, sweep_interval
from srs.service.tokens import TokenService
from srs.service.webhooks import EVENTS, WebhookDispatcher
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import ObjectStore

log = get_logger("srs.http")
STOP_TIMEOUT_S = 5.0
RECORDING_EVENTS = (
    "recording_started",
    "recording_finished",
    "recording_available",
    "recording_no_media",
    "recording_source_changed",
)


def bind_http(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound before the daemon starts anything else: a taken or
    forbidden address is a :class:`ListenError` naming it, not uvicorn's log line and exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        raise ListenError("HTTP", where, exc) from None
    return sock


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon owns SIGTERM/SIGINT


def _embedded_server(
    app: Any, host: str, port: int, live: LiveHub | None, service: RecordingService
) -> _EmbeddedServer:
    """The API server, with the live audio routes when the daemon has a live hub."""
    if live is not None:
        install_live_routes(app, live, service)
    return _EmbeddedServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="off")
    )


class HttpRuntime:
    def __init__(
        self,
        *,
        index: RecordingIndex,
        service: RecordingService,
        webhooks: WebhookDispatcher,
        exports: ExportManager,
        retention: RetentionJob,
        metrics: DaemonMetrics,
        server: _EmbeddedServer | None,
        export_sweeper: ExportSweeper | None = None,
        listen_socket: socket.socket | None = None,
        events: EventHub | None = None,
    ) -> None:
        self.listen_socket = listen_socket
        self.index = index
        self.service = service
        self.webhooks = webhooks
        self.exports = exports
        self.retention = retention
        self.metrics = metrics
        self.server = server
        self.export_sweeper = export_sweeper
        self.events = events if events is not None else EventHub()
        self._serving: asyncio.Task[None] | None = None
        self._retention_task: asyncio.Task[None] | None = None
        self._export_task: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def port(self) -> int | None:
        """The bound TCP port (useful when listening on port 0)."""
        if self.server is None or not self.server.servers:
            return None
        for server in self.server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    async def _start(self) -> None:
        await self.webhooks.start()
        if self.server is not None:
            sockets = [self.listen_socket] if self.listen_socket is not None else None
            self._serving = asyncio.create_task(self.server.serve(sockets), name="srs-http")
            while not self.server.started:
                if self._serving.done():
                    self._serving.result()  # raises why it could not start (e.g. port in use)
                    raise OSError("HTTP server stopped before it started")
                await asyncio.sleep(0.01)
        if self.retention.enabled:
            self._retention_task = asyncio.create_task(self.retention.run(), name="srs-retention")
        if self.export_sweeper is not None:
            self._export_task = asyncio.create_task(self.export_sweeper.run(), name="srs-export-expiry")

    def emit(self, event: str, data: Mapping[str, Any]) -> None:
        """Queue a webhook event (never blocks; a no-op without webhook URLs)."""
        if self._stopped:
            return
        try:
            self.webhooks.emit(event, data)
        except Exception:
            log.exception("webhook_queue_failed", webhook_event=event)

    def recording_event(
        self, event: str, recording_id: str, details: Mapping[str, Any] | None = None
    ) -> None:
        """Emit ``event`` with the recording's current public representation, read off the loop.

        For the daemon: one call at each step, with nothing but the id in hand; ``details`` (what
        happened to which stream, for the media alerts) goes into the body as ``data.details``.
        """
        if event not in RECORDING_EVENTS:
            raise ValueError(f"not a recording event: {event!r}")
        if self._stopped or (not self.webhooks.urls and not self.events.subscribers):
            return
        task = asyncio.get_running_loop().create_task(self._recording_event(event, recording_id, details))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _recording_event(
        self, event: str, recording_id: str, details: Mapping[str, Any] | None = None
    ) -> None:
        try:
            data = await asyncio.to_thread(self.service.show, recording_id)
        except Exception:
            data = {"id": recording_id}
        if details is not None:
            data = {**data, "details": dict(details)}
        self.events.publish(event, data)
        if self.webhooks.urls:
            self.emit(event, data)

    async def stop(self) -> None:
        """Stop serving, stop retention, deliver queued webhooks (bounded), close the index connection."""
        if self._stopped:
            return
        self._stopped = True
        self.events.close()  # open event streams end, so the server's shutdown need not wait for them
        for task in (self._retention_task, self._export_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pending:
            await asyncio.wait(self._pending, timeout=STOP_TIMEOUT_S)
        if self.server is not None and self._serving is not None:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._serving), STOP_TIMEOUT_S)
            except (TimeoutError, asyncio.CancelledError):
                self.server.force_exit = True
                self._serving.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._serving
        await self.webhooks.stop(STOP_TIMEOUT_S)
        self.index.close()


async def _open_service(
    data_dir: Path, index_url: str | None, node: str | None, max_link_validity_s: int,
    export_ttl_s: float, objects: ObjectStore | None,
) -> RecordingService:
    """The API's own connection to the index (opened off the loop) and the service over it."""
    layout = DataLayout(data_dir)
    layout.ensure()
    target = index_url or layout.index_path
    index = await asyncio.to_thread(lambda: RecordingIndex(target, time.time, layout, node=node))
    return RecordingService(
        index, layout, layout.secret(), max_link_validity_s=max_link_validity_s, export_ttl_s=export_ttl_s,
        objects=objects,
    )


def _webhooks(
    service: RecordingService, urls: Sequence[str], metrics: DaemonMetrics, **options: Any
) -> WebhookDispatcher:
    """The webhook dispatcher, its failures and drops counted in the daemon's metrics."""
    webhooks = WebhookDispatcher(
        urls, service.secret, service.index,
        on_failure=lambda event, url: metrics.webhook_failed(), on_drop=metrics.webhook_dropped, **options,
    )
    for label in webhooks.labels:
        metrics.webhook_receiver(label)
    return webhooks


async def start_http_runtime(
    *,
    data_dir: Path,
    listen_host: str | None,
    listen_port: int,
    link_max_validity_min: int,
    webhook_urls: Sequence[str],
    retention_days: int,
    webhook_queue_size: int = 1000,
    webhook_timeout_s: float = 5.0,
    webhook_max_attempts: int = 5,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    export_ttl_s: float = DEFAULT_EXPORT_TTL_S,
    retention_overrides: Mapping[str, int],
    retention_interval_s: float,
    metrics: DaemonMetrics,
    listen_socket: socket.socket | None = None,
    objects: ObjectStore | None = None,
    live: LiveHub | None = None,
    index_url: str | None = None,
    node: str | None = None,
) -> HttpRuntime:
    """Open a second index connection, start webhooks, the API server and the retention job.

    ``listen_host=None`` runs webhooks and retention without serving HTTP; ``listen_socket`` is
    one :func:`bind_http` made (else uvicorn binds ``listen_host:listen_port`` itself);
    ``index_url`` names a shared index; ``node`` makes retention one fleet-wide job.
    """
    service = await _open_service(
        data_dir, index_url, node, link_max_validity_min * 60, export_ttl_s, objects
    )
    index = service.index
    metrics.data_dir = service.layout.data_dir
    metrics.set_state_source(index.count_by_state)
    webhooks = _webhooks(
        service, webhook_urls, metrics, queue_size=webhook_queue_size, timeout_s=webhook_timeout_s,
        max_attempts=webhook_max_attempts,
    )
    exports = ExportManager(service, webhooks)
    retention = RetentionJob(
        service, retention_days, dict(retention_overrides), max(0.05, retention_interval_s),
        metrics.retention_swept, holder=f"{node}/{os.getpid()}" if node is not None else None,
    )
    events = EventHub()
    server = None
    if listen_host is not None:
        app = create_app(
            service, TokenService(index), exports, webhooks, metrics.registry, events=events,
            max_link_validity_min=link_max_validity_min, store_metrics=False, max_body_bytes=max_body_bytes,
        )
        server = _embedded_server(app, listen_host, listen_port, live, service)
    runtime = HttpRuntime(
        index=index, service=service, webhooks=webhooks, exports=exports, retention=retention,
        metrics=metrics, server=server,
        export_sweeper=ExportSweeper(service, sweep_interval(export_ttl_s)), events=events,
        listen_socket=listen_socket if server is not None else None,
    )
    try:
        await runtime._start()
    except BaseException:
        await runtime.stop()
        raise
    return runtime


__all__ = ["EVENTS", "ExportSweeper", "HttpRuntime", "RetentionJob", "start_http_runtime"]
