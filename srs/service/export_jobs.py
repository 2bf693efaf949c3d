"""Export jobs: a selection of recordings becomes one archive (audio under ``recordings/`` plus an
``index.json`` with each recording's JSON and vCon), kept until it expires or a recording in it is
deleted. Blocking; :mod:`srs.service.exports` runs them off the event loop for the API."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from srs.service.archive_format import ArchiveSource, write_archive
from srs.service.audit import Action, Actor
from srs.service.catalog import RecordingCatalog
from srs.service.context import API_PREFIX, DAY_S, RecordingContext
from srs.service.errors import BadRequest, Gone, NotAvailable, NotFound
from srs.service.files import RecordingFiles
from srs.service.filters import filter_from_json, filter_to_json
from srs.service.timefmt import iso_utc
from srs.service.vcon import build_vcon, content_hash_from_sha256
from srs.storage.errors import UnsafePath
from srs.storage.ids import is_valid_id, new_id
from srs.storage.records import RecordingFilter

EXPORT_FORMATS = ("tar.gz", "zip")
DEFAULT_EXPORT_TTL_S = 24 * 3600.0
EXPORT_GONE_STATES = ("expired", "purged")


class ExportJobs:
    def __init__(
        self, context: RecordingContext, catalog: RecordingCatalog, files: RecordingFiles,
        ttl_s: float = DEFAULT_EXPORT_TTL_S,
    ) -> None:
        self.context = context
        self.catalog = catalog
        self.files = files
        self.ttl_s = ttl_s

    def create_export(
        self,
        ids: Sequence[str] | None = None,
        filt: RecordingFilter | None = None,
        fmt: str = "tar.gz",
        *,
        actor: Actor = "cli",
        client: str | None = None,
    ) -> dict[str, Any]:
        if fmt not in EXPORT_FORMATS:
            raise BadRequest(f"export format must be one of {', '.join(EXPORT_FORMATS)}")
        if ids is not None:
            bad = [i for i in ids if not is_valid_id(i)]
            if bad:
                raise BadRequest(f"invalid recording ids: {', '.join(map(repr, bad[:5]))}")
            selection = RecordingFilter(ids=tuple(ids))
        else:
            selection = filt if filt is not None else RecordingFilter()
        export_id = new_id(self.context.clock())
        request = filter_to_json(selection)
        self.context.index.admin.add_export(export_id, fmt, request)
        self.context.audit.record(actor, Action.EXPORT_CREATE, export_id=export_id, client=client,
                                  detail={"format": fmt, "selection": request})
        return self.export_status(export_id)

    def export(
        self,
        ids: Sequence[str] | None = None,
        filt: RecordingFilter | None = None,
        fmt: str = "tar.gz",
        actor: Actor = "cli",
    ) -> dict[str, Any]:
        """Create and run an export in the calling thread (the CLI path)."""
        return self.run_export(self.create_export(ids, filt, fmt, actor=actor)["id"])

    def run_export(self, export_id: str) -> dict[str, Any]:
        """Build the archive; run once per fleet (the node that claims the job builds it)."""
        admin = self.context.index.admin
        job = admin.get_export(export_id)
        if job is None:
            raise NotFound(f"no export with id {export_id!r}")
        fmt = job["format"]
        target = self.context.layout.export_path(export_id, fmt)
        temp = target.with_name(f".{target.name}.partial")
        if not admin.claim_export(export_id):
            return self.export_status(export_id)  # another node (or run) has it
        try:
            target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            entries, files = self._entries(filter_from_json(job["request"]))
            manifest = json.dumps(
                {"export_id": export_id, "exported_at": iso_utc(self.context.clock()), "count": len(entries),
                 "recordings": entries},
                indent=2, sort_keys=True,
            ).encode()
            members = [entry["id"] for entry in entries if entry["archive_path"] is not None]
            # known before the archive exists, so a deletion from now on finds (and purges) it
            admin.set_export_members(export_id, members)
            write_archive(temp, fmt, files, manifest, self.context.clock())
            os.replace(temp, target)
        except Exception as exc:
            temp.unlink(missing_ok=True)
            admin.update_export(export_id, state="failed", error=str(exc), finished_at=self.context.clock())
            raise
        return self._finish(export_id, target, members, len(entries))

    def _entries(self, selection: RecordingFilter) -> tuple[list[dict[str, Any]], list[ArchiveSource]]:
        """Each selected recording's JSON (with its place in the archive and its vCon) and the audio
        files to copy; a recording without a file to serve is listed with ``archive_path: null``."""
        entries: list[dict[str, Any]] = []
        files: list[ArchiveSource] = []
        for row in self.context.index.find(selection).items:
            entry = self.catalog.represent(row)
            try:
                source = self.files.stored_file(row["id"])
            except NotAvailable:
                entry["archive_path"] = None
            else:
                name = f"recordings/{row['id']}.{row.get('file_format') or 'wav'}"
                entry["archive_path"] = name
                files.append((source, name, self.files.read))
            entry["vcon"] = self._vcon(entry)
            entries.append(entry)
        return entries, files

    def _finish(self, export_id: str, target: Path, members: Sequence[str], count: int) -> dict[str, Any]:
        """Done, unless the job was purged or a recording in it deleted while it was built."""
        admin = self.context.index.admin
        now = self.context.clock()
        current = admin.get_export(export_id)
        deleted_meanwhile = [rid for rid in members if self.context.index.get(rid) is None]
        if current is None or current["state"] != "running" or deleted_meanwhile:
            target.unlink(missing_ok=True)
            if current is not None and current["state"] == "running":
                self.purge(current, "purged", "srs", "a recording in it was deleted while it was built")
            return self.export_status(export_id)
        admin.update_export(
            export_id, state="done", path=str(target), size=target.stat().st_size, count=count,
            finished_at=now, expires_at=now + self.ttl_s,
        )
        return self.export_status(export_id)

    def _vcon(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The vCon of an exported recording; its dialog's url is the file's path inside the archive."""
        file = entry.get("file") or {}
        sha = file.get("sha256")
        return build_vcon(
            entry, self.catalog.metadata_versions(str(entry["id"])), url=entry.get("archive_path"),
            content_hash=content_hash_from_sha256(str(sha)) if sha and entry.get("archive_path") else None,
        )

    def purge(self, job: Mapping[str, Any], state: str, actor: Actor, reason: str) -> None:
        """Remove an export's archive and mark the job ``state`` (expired, purged)."""
        with contextlib.suppress(UnsafePath, OSError):
            self.context.layout.export_path(job["id"], job["format"]).unlink(missing_ok=True)
        self.context.index.admin.update_export(job["id"], state=state, path=None)
        self.context.audit.record(actor, Action.EXPORT_PURGE, export_id=job["id"], detail={"reason": reason})

    def purge_expired_exports(self, actor: Actor = "retention") -> list[str]:
        """Remove the archives of exports past their expiry (and forget long-expired signed links)."""
        now = self.context.clock()
        admin = self.context.index.admin
        expired = admin.expired_exports(now)
        for job in expired:
            self.purge(job, "expired", actor, "expired")
        admin.forget_links(now - DAY_S)
        return [job["id"] for job in expired]

    def export_status(self, export_id: str) -> dict[str, Any]:
        job = self.context.index.admin.get_export(export_id) if is_valid_id(export_id) else None
        if job is None:
            raise NotFound(f"no export with id {export_id!r}")
        base = f"{API_PREFIX}/exports/{export_id}"
        links = {"self": base}
        if job["state"] == "done":
            links["file"] = f"{base}/file"
        return {
            "id": job["id"], "state": job["state"], "format": job["format"], "count": job["count"],
            "size": job["size"], "error": job["error"], "created_at": iso_utc(job["created_at"]),
            "finished_at": iso_utc(job["finished_at"]), "expires_at": iso_utc(job["expires_at"]),
            "links": links,
        }

    def export_file(self, export_id: str) -> Path:
        status = self.export_status(export_id)
        job = self.context.index.admin.get_export(export_id)
        expires_at = job["expires_at"] if job is not None else None
        if status["state"] in EXPORT_GONE_STATES or (
            status["state"] == "done" and (expires_at is None or self.context.clock() >= expires_at)
        ):
            raise Gone(f"export {export_id} is gone ({status['state']})", state=status["state"])
        if status["state"] != "done":
            raise NotAvailable(f"export {export_id} is {status['state']}", state=status["state"])
        path = self.context.layout.export_path(export_id, status["format"])
        if not path.is_file():
            raise NotAvailable(f"export {export_id}: file is missing", state=status["state"])
        return path
