"""The end of a recording: legal hold, deletion by an operator, deletion by retention.

Deleting removes the object first (if the store cannot delete it now, the index row stays to try
again), then the local audio, its cached waveform, its metadata, its index row, and any export
archive that holds it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Mapping
from typing import Any

from srs.service.audit import Action, Actor
from srs.service.catalog import RecordingCatalog
from srs.service.context import DAY_S, RecordingContext, store_down
from srs.service.errors import Conflict, ServiceError
from srs.service.export_jobs import ExportJobs
from srs.storage.errors import InvalidId, RecordingNotFound, UnsafePath
from srs.storage.objects import ObjectStoreError, StoreUnavailable
from srs.storage.records import State


class RecordingLifecycle:
    def __init__(self, context: RecordingContext, catalog: RecordingCatalog, exports: ExportJobs) -> None:
        self.context = context
        self.catalog = catalog
        self.exports = exports

    def hold(
        self, recording_id: str, on: bool, actor: Actor = "cli", client: str | None = None
    ) -> dict[str, Any]:
        self.context.row(recording_id)
        self.context.index.set_legal_hold(recording_id, on)
        action = Action.HOLD if on else Action.RELEASE
        self.context.audit.record(actor, action, recording_id=recording_id, client=client)
        return self.catalog.show(recording_id)

    def delete(self, recording_id: str, actor: Actor, client: str | None = None) -> None:
        row = self.context.row(recording_id)
        if row.get("legal_hold"):
            raise Conflict(f"recording {recording_id} is on legal hold", code="legal_hold")
        if not State(row["state"]).is_final:
            raise Conflict(f"recording {recording_id} is still {row['state']}", code="recording_active")
        self._remove(row, actor, Action.DELETE, client)

    def sweep(
        self,
        now: float,
        retention_days: float | None,
        per_source_overrides: Mapping[str, float] | None = None,
        actor: str = "retention",
    ) -> list[str]:
        """Delete final recordings older than their retention; legal holds and unfinished ones stay.

        A retention of ``None`` or ``<= 0`` days means "keep forever" (for the default or one source).
        """
        index = self.context.index
        overrides = dict(per_source_overrides or {})
        doomed: list[dict[str, Any]] = []
        if retention_days is not None and retention_days > 0:
            doomed += index.expired(now - retention_days * DAY_S, None, tuple(overrides))
        for source, days in overrides.items():
            if days is not None and days > 0:
                doomed += index.expired(now - days * DAY_S, source)
        deleted = []
        for row in doomed:
            full = index.get(row["id"])
            if full is None or full.get("legal_hold"):
                continue
            try:
                self._remove(full, actor, Action.RETENTION_DELETE)
            except ServiceError:
                continue  # the object store is down: this row stays for the next sweep
            deleted.append(row["id"])
        return deleted

    def _remove(
        self, row: Mapping[str, Any], actor: Actor, action: Action, client: str | None = None
    ) -> None:
        rid = row["id"]
        self._remove_object(row)
        layout = self.context.layout
        if row.get("file_path"):
            with contextlib.suppress(UnsafePath, OSError):
                layout.contain(row["file_path"]).unlink(missing_ok=True)
        self._forget_peaks(row.get("sha256"))
        with contextlib.suppress(InvalidId, UnsafePath):
            shutil.rmtree(layout.metadata_dir(rid, float(row["started_at"])), ignore_errors=True)
        try:
            self.context.index.delete(rid)
        except RecordingNotFound:
            return
        self.context.audit.record(actor, action, recording_id=rid, client=client, detail={
            "call_recording_id": row.get("call_recording_id"), "sha256": row.get("sha256"),
        })
        # an archive holding the audio would outlive the deletion: it goes too
        for job in self.context.index.admin.exports_holding(rid):
            self.exports.purge(job, "purged", actor, f"recording {rid} was deleted")

    def _remove_object(self, row: Mapping[str, Any]) -> None:
        rid = row["id"]
        if not (row.get("object_key") and row.get("upload_state") in ("done", "pending")):
            return
        objects = self.context.objects
        if objects is None:
            if row.get("upload_state") == "done":
                raise Conflict(f"recording {rid} is in an object store this srs is not configured for",
                               code="store_not_configured")
            return
        try:
            objects.delete(row["object_key"])
        except StoreUnavailable as exc:
            raise store_down(exc) from exc
        except ObjectStoreError as exc:
            raise ServiceError(f"recording {rid}: object store refused delete: {exc}",
                               code="store_error", status=502) from exc

    def _forget_peaks(self, sha256: str | None) -> None:
        """The waveform outline cached for the console goes with the audio it was drawn from."""
        if not sha256 or not sha256.isalnum():
            return
        with contextlib.suppress(OSError):
            for cached in self.context.layout.peaks_dir.glob(f"{sha256}-*.json"):
                cached.unlink(missing_ok=True)
