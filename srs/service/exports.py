"""Export jobs for the HTTP API: archives are built in a worker thread so the event loop stays free."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import structlog

from srs.service.audit import Actor
from srs.service.recordings import RecordingService
from srs.service.webhooks import WebhookDispatcher
from srs.storage.records import RecordingFilter

log = structlog.get_logger(__name__)


class ExportManager:
    def __init__(self, service: RecordingService, webhooks: WebhookDispatcher | None = None) -> None:
        self.service = service
        self.webhooks = webhooks
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def submit(
        self,
        ids: Sequence[str] | None = None,
        filt: RecordingFilter | None = None,
        fmt: str = "tar.gz",
        *,
        actor: Actor = "api",
        client: str | None = None,
    ) -> dict[str, Any]:
        job = await asyncio.to_thread(
            functools.partial(self.service.create_export, ids, filt, fmt, actor=actor, client=client)
        )
        self._tasks[job["id"]] = asyncio.create_task(self._run(job["id"]), name=f"srs-export-{job['id']}")
        return job

    async def _run(self, export_id: str) -> None:
        try:
            status = await asyncio.to_thread(self.service.run_export, export_id)
        except Exception:
            log.exception("export_failed", export_id=export_id)
            return
        finally:
            self._tasks.pop(export_id, None)
        if self.webhooks is not None:
            try:
                self.webhooks.emit("export_available", status)
            except Exception:
                log.exception("export_webhook_failed", export_id=export_id, webhook="export_available")

    async def wait(self, export_id: str) -> None:
        """Wait for a job this process started (no-op if it already finished)."""
        task = self._tasks.get(export_id)
        if task is not None:
            await asyncio.shield(task)

    def status(self, export_id: str) -> dict[str, Any]:
        return self.service.export_status(export_id)
