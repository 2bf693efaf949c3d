"""Background deletion: recordings past their retention, export archives past their expiry.

Both run as tasks of the daemon's loop, each sweep in a thread (the index and the file system
block); a sweep that fails is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from srs.service.recordings import RecordingService

log = structlog.get_logger(__name__)


@dataclass
class RetentionJob:
    """Deletes expired recordings every ``interval_s``; legal holds stay; each deletion is audit-logged."""

    service: RecordingService
    retention_days: int
    overrides: Mapping[str, int]
    interval_s: float
    on_swept: Callable[[int], None] | None = None
    """Told how many recordings each sweep deleted (the daemon's metrics)."""
    holder: str | None = None
    """With a name (the node's), sweep only while holding the fleet-wide ``retention`` lease."""
    sweeps: int = 0
    skipped: int = 0
    deleted: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.retention_days > 0 or any(days > 0 for days in self.overrides.values())

    def sweep_once(self) -> list[str]:
        if self.holder is not None:
            admin = self.service.index.admin
            if not admin.acquire_lease("retention", self.holder, self.interval_s * 1.5):
                self.skipped += 1  # another node of the fleet holds it
                return []
        overrides = {source: float(days) for source, days in self.overrides.items()}
        removed = self.service.sweep(time.time(), float(self.retention_days), overrides, actor="retention")
        self.sweeps += 1
        self.deleted.extend(removed)
        if self.on_swept is not None:
            self.on_swept(len(removed))
        if removed:
            log.info("retention_deleted", recordings=len(removed))
        return removed

    async def run(self) -> None:
        await _every(self.interval_s, self.sweep_once, "retention_sweep_failed")


@dataclass
class ExportSweeper:
    """Deletes export archives past their expiry (``[http] export_ttl_hours``), audit-logged."""

    service: RecordingService
    interval_s: float
    purged: list[str] = field(default_factory=list)

    def sweep_once(self) -> list[str]:
        removed = self.service.purge_expired_exports()
        self.purged.extend(removed)
        if removed:
            log.info("exports_expired", exports=len(removed))
        return removed

    async def run(self) -> None:
        await _every(self.interval_s, self.sweep_once, "export_sweep_failed")


def sweep_interval(ttl_s: float) -> float:
    """Often enough that an archive outlives its TTL by a fraction of it, at most a minute."""
    return min(60.0, max(0.2, ttl_s / 10))


async def _every(interval_s: float, sweep: Callable[[], object], failed: str) -> None:
    while True:
        try:
            await asyncio.to_thread(sweep)
        except Exception:
            log.exception(failed)
        await asyncio.sleep(interval_s)
