"""What every recording operation shares: the index, the data directory, the clock, the audit trail
and the object store, plus the few helpers that read an index row the same way everywhere.

The context is mutable on purpose: the object store can be attached after the services are built
(the daemon opens it once the index is up), and every service sees the change at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from srs.service.audit import AuditTrail
from srs.service.errors import NotFound, ServiceError
from srs.storage.ids import is_valid_id
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import ObjectStore

Clock = Callable[[], float]
API_PREFIX = "/api/v1"
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg-opus": "audio/ogg", "mp3": "audio/mpeg"}
DAY_S = 86_400.0


@dataclass(slots=True)
class RecordingContext:
    index: RecordingIndex
    layout: DataLayout
    clock: Clock
    audit: AuditTrail
    objects: ObjectStore | None = None

    def row(self, recording_id: str) -> dict[str, Any]:
        """The index row of ``recording_id``; a malformed id is simply not found."""
        if not is_valid_id(recording_id):
            raise NotFound(f"no recording with id {recording_id!r}")
        row = self.index.get(recording_id)
        if row is None:
            raise NotFound(f"no recording with id {recording_id!r}")
        return row


def uploaded(row: Mapping[str, Any]) -> bool:
    """The audio lives in the object store (the local copy is gone or about to go)."""
    return row.get("upload_state") == "done" and bool(row.get("object_key"))


def store_down(exc: Exception) -> ServiceError:
    return ServiceError(f"object store unavailable: {exc}", code="store_unavailable", status=503)
