"""Publishing a recording once its call ended: wait for the media plane to close the file, hash it
off the loop, mark it available (or failed) in the index, hand it to the uploader, announce it."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from srs.daemon.alerts import Announce, MediaAlerts
from srs.daemon.finalize import file_sha256
from srs.daemon.metrics import DaemonMetrics
from srs.daemon.recordings import Finished, LiveRecordings
from srs.service.uploader import Uploader
from srs.storage.uploads import UploadJob, object_key


class Publisher:
    def __init__(
        self,
        *,
        live: LiveRecordings,
        metrics: DaemonMetrics,
        log: Any,
        alerts: MediaAlerts,
        announce: Announce,
        uploader: Uploader | None,
        data_dir: Path,
    ) -> None:
        self.live = live
        self.metrics = metrics
        self.log = log
        self.alerts = alerts
        self.announce = announce
        self.uploader = uploader
        self.data_dir = data_dir
        self.publishing: set[asyncio.Task[None]] = set()

    def start(self, pending: Awaitable[Finished]) -> None:
        task = asyncio.get_running_loop().create_task(self.publish(pending))
        self.publishing.add(task)
        task.add_done_callback(self.publishing.discard)

    async def drain(self) -> None:
        """Wait for every recording being published (at shutdown)."""
        if self.publishing:
            await asyncio.gather(*self.publishing, return_exceptions=True)

    async def publish(self, pending: Awaitable[Finished]) -> None:
        finished = await pending
        for change in finished.source_changes:
            self.alerts.source_changed(change, finished.recording_id)
        for stream in finished.streams:
            self.metrics.packets(
                received=stream.stats.packets_received,
                lost=stream.stats.packets_lost,
                dropped=stream.packets_dropped,
            )
        self.announce("recording_finished", finished.recording_id, None)
        final = finished.final
        if final is not None and final.file_path:
            digest = await asyncio.to_thread(file_sha256, final.file_path)
            final = dataclasses.replace(final, sha256=digest)
            finished = dataclasses.replace(finished, final=final)
        self.live.publish(finished)
        if final is not None:
            self._upload(finished.recording_id, final.file_path, final.sha256, final.file_size or 0)
            self.announce("recording_available", finished.recording_id, None)
        self.log.info(
            "recording_available" if final else "recording_failed",
            recording=finished.recording_id,
            reason=finished.failure,
        )

    def _upload(self, recording_id: str, path: str | None, sha256: str | None, size: int) -> None:
        if self.uploader is None or not path or not sha256:
            return
        try:
            key = object_key(self.data_dir, path)
        except ValueError:
            self.log.error("upload_skipped", recording=recording_id, reason="outside data dir")
            return
        self.uploader.submit(UploadJob(recording_id, path, key, sha256, size))
