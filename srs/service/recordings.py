"""One handle on the operations on recordings, shared by the CLI and the HTTP API so both behave
the same.

The work is done by one service per responsibility, all over one :class:`RecordingContext`:
:class:`~srs.service.catalog.RecordingCatalog` (find, show, JSON shape),
:class:`~srs.service.files.RecordingFiles` (where the audio is, its bytes),
:class:`~srs.service.links.LinkSigner` (signed links),
:class:`~srs.service.export_jobs.ExportJobs` (archives) and
:class:`~srs.service.lifecycle.RecordingLifecycle` (hold, delete, retention). This class builds
them from the daemon's plain values and names their operations in one place for the daemon's
housekeeping and for scripts; new code can take the one service it needs.
"""

from __future__ import annotations

import time
from pathlib import Path

from srs.service.audit import AuditTrail
from srs.service.catalog import RecordingCatalog
from srs.service.context import Clock, RecordingContext
from srs.service.export_jobs import DEFAULT_EXPORT_TTL_S, ExportJobs
from srs.service.files import RecordingFiles
from srs.service.lifecycle import RecordingLifecycle
from srs.service.links import MAX_LINK_VALIDITY_S, LinkSigner
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import ObjectStore


class RecordingService:
    def __init__(
        self,
        index: RecordingIndex,
        layout: DataLayout,
        secret: bytes,
        clock: Clock = time.time,
        *,
        max_link_validity_s: int = MAX_LINK_VALIDITY_S,
        export_ttl_s: float = DEFAULT_EXPORT_TTL_S,
        objects: ObjectStore | None = None,
    ) -> None:
        self.context = RecordingContext(index, layout, clock, AuditTrail(index.admin), objects)
        self.secret = secret
        self.catalog = RecordingCatalog(self.context)
        self.files = RecordingFiles(self.context)
        self.links = LinkSigner(self.context, self.files, secret, max_link_validity_s)
        self.exports = ExportJobs(self.context, self.catalog, self.files, export_ttl_s)
        self.lifecycle = RecordingLifecycle(self.context, self.catalog, self.exports)
        self.list, self.show, self.represent = self.catalog.list, self.catalog.show, self.catalog.represent
        self.show_by_call_recording_id = self.catalog.show_by_call_recording_id
        self.metadata_versions = self.catalog.metadata_versions
        self.stored_file, self.read = self.files.stored_file, self.files.read
        self.file_path = self.files.file_path
        self.sign_link, self.verify_link = self.links.sign_link, self.links.verify_link
        self.revoke_link = self.links.revoke_link
        self.hold, self.delete, self.sweep = self.lifecycle.hold, self.lifecycle.delete, self.lifecycle.sweep
        self.create_export, self.run_export, self.export = (
            self.exports.create_export, self.exports.run_export, self.exports.export
        )
        self.export_status, self.export_file = self.exports.export_status, self.exports.export_file
        self.purge_expired_exports = self.exports.purge_expired_exports

    @classmethod
    def open(
        cls, data_dir: Path | str, clock: Clock = time.time, objects: ObjectStore | None = None,
        *, index: str | None = None,
    ) -> RecordingService:
        """Open the data directory directly (CLI use: works whether the daemon runs or not);
        ``index`` names a shared index (``postgresql://…``) instead of the directory's own file."""
        layout = DataLayout(Path(data_dir))
        layout.ensure()
        opened = RecordingIndex(index or layout.index_path, clock=clock, layout=layout)
        return cls(opened, layout, layout.secret(), clock, objects=objects)

    @property
    def index(self) -> RecordingIndex:
        return self.context.index

    @property
    def layout(self) -> DataLayout:
        return self.context.layout

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def audit(self) -> AuditTrail:
        return self.context.audit

    @property
    def objects(self) -> ObjectStore | None:
        return self.context.objects

    @objects.setter
    def objects(self, store: ObjectStore | None) -> None:
        self.context.objects = store

    @property
    def max_link_validity_s(self) -> int:
        return self.links.max_validity_s

    @property
    def export_ttl_s(self) -> float:
        return self.exports.ttl_s
