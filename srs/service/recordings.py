"""The operations on recordings, shared by the CLI and the HTTP API so both behave the same."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import io
import json
import os
import shutil
import tarfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from srs.service.copies import describe as describe_copies
from srs.service.copies import preferred as preferred_copy
from srs.service.errors import BadRequest, BadSignature, Conflict, LinkExpired, NotAvailable, NotFound
from srs.service.filters import filter_from_json, filter_to_json
from srs.service.timefmt import iso_utc
from srs.storage.errors import InvalidId, RecordingNotFound, UnsafePath
from srs.storage.ids import is_valid_id, new_id
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter, State

Clock = Callable[[], float]
API_PREFIX = "/api/v1"
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg-opus": "audio/ogg", "mp3": "audio/mpeg"}
EXPORT_FORMATS = ("tar.gz", "zip")
DEFAULT_LINK_VALIDITY_S = 300
MAX_LINK_VALIDITY_S = 86_400
DAY_S = 86_400.0


class RecordingService:
    def __init__(
        self,
        index: RecordingIndex,
        layout: DataLayout,
        secret: bytes,
        clock: Clock = time.time,
        *,
        max_link_validity_s: int = MAX_LINK_VALIDITY_S,
    ) -> None:
        self.index = index
        self.layout = layout
        self.secret = secret
        self.clock = clock
        self.max_link_validity_s = max_link_validity_s

    @classmethod
    def open(
        cls, data_dir: Path | str, clock: Clock = time.time, *, index: str | None = None
    ) -> RecordingService:
        """Open the data directory directly (CLI use: works whether the daemon runs or not);
        ``index`` names a shared index (``postgresql://…``) instead of the directory's own file."""
        layout = DataLayout(Path(data_dir))
        layout.ensure()
        opened = RecordingIndex(index or layout.index_path, clock=clock, layout=layout)
        return cls(opened, layout, layout.secret(), clock)

    # ---- queries ----------------------------------------------------------------------------

    def list(self, filt: RecordingFilter, page: int = 1, max: int | None = None) -> dict[str, Any]:
        if page < 1:
            raise BadRequest("page must be 1 or more")
        if max is not None and max < 1:
            raise BadRequest("max must be 1 or more")
        result = self.index.find(filt, page=page, max=max)
        crids = sorted({item["call_recording_id"] for item in result.items if item["call_recording_id"]})
        copies = self.index.copies(crids) if crids else {}
        return {
            "items": [
                self.represent(item, copies.get(item["call_recording_id"] or "")) for item in result.items
            ],
            "pagination": {"pages": result.pages, "total": result.total, "current": result.current,
                           "max": result.max},
        }

    def _row(self, recording_id: str) -> dict[str, Any]:
        if not is_valid_id(recording_id):
            raise NotFound(f"no recording with id {recording_id!r}")
        row = self.index.get(recording_id)
        if row is None:
            raise NotFound(f"no recording with id {recording_id!r}")
        return row

    def show(self, recording_id: str) -> dict[str, Any]:
        row = self._row(recording_id)
        crid = row.get("call_recording_id")
        return self.represent(row, self.index.copies([crid])[crid] if crid else None)

    def show_by_call_recording_id(self, call_recording_id: str) -> dict[str, Any]:
        """The logical recording: of the copies nodes made of this session, the most complete
        (see :mod:`srs.service.copies`); one copy alone is simply that copy (the newest, if the
        same id was reused for several sessions on one node)."""
        copies = self.index.copies([call_recording_id])[call_recording_id]
        nodes = {c.get("node") for c in copies}
        if len(copies) > 1 and len(nodes) > 1:
            row = self.index.get(preferred_copy(copies)["id"])
        else:
            row = self.index.newest_by_call_recording_id(call_recording_id)
        if row is None:
            raise NotFound(f"no recording with call-recording-id {call_recording_id!r}")
        return self.represent(row, copies)

    def represent(
        self, row: Mapping[str, Any], copies: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The public JSON shape of a recording (CLI ``--json`` and API answer the same); with the
        ``copies`` of its session, ``copies`` lists them all, the preferred one first."""
        rid = row["id"]
        fmt = row.get("file_format") or "wav"
        file_path = row.get("file_path")
        file_info: dict[str, Any] | None = None
        if file_path:
            absolute = Path(file_path)
            if not absolute.is_absolute():
                absolute = self.layout.data_dir / absolute
            file_info = {
                "path": str(absolute), "name": absolute.name, "size": row.get("file_size"), "format": fmt,
                "content_type": CONTENT_TYPES.get(fmt, "application/octet-stream"),
                "sample_rate": row.get("sample_rate"), "channels": row.get("channels"),
                "sha256": row.get("sha256"),
            }
        base = f"{API_PREFIX}/recordings/{rid}"
        links = {"self": base, "metadata": f"{base}/metadata"}
        if row["state"] == State.AVAILABLE.value and file_info is not None:
            links["file"] = f"{base}/file"
        return {
            "id": rid,
            "call_recording_id": row.get("call_recording_id"),
            "state": row["state"],
            "sip_call_id": row.get("sip_call_id"),
            "source": row.get("source"),
            "tenant": row.get("tenant"),
            "node": row.get("node"),
            "started_at": iso_utc(row.get("started_at")),
            "ended_at": iso_utc(row.get("ended_at")),
            "duration_ms": row.get("duration_ms"),
            "incomplete": bool(row.get("incomplete")),
            "incomplete_reason": row.get("incomplete_reason"),
            "legal_hold": bool(row.get("legal_hold")),
            "file": file_info,
            "participants": list(row.get("participants", [])),
            "streams": list(row.get("streams", [])),
            "sessions": list(row.get("sessions", [])),
            "extensions": dict(row.get("extensions", {})),
            "dtmf": list(row.get("dtmf", [])),
            "completeness": row.get("completeness") or {},
            "warnings": list(row.get("warnings") or []),
            "copies": describe_copies(copies) if copies else [],
            "links": links,
        }

    def file_path(self, recording_id: str) -> Path:
        """The audio file, only once the recording is available."""
        row = self._row(recording_id)
        state = row["state"]
        if state != State.AVAILABLE.value or not row.get("file_path"):
            raise NotAvailable(f"recording {recording_id} is {state}; no file to serve", state=state)
        try:
            path = self.layout.contain(row["file_path"])
        except UnsafePath as exc:
            raise NotAvailable(f"recording {recording_id}: file is outside the data directory",
                               state=state) from exc
        if not path.is_file():
            raise NotAvailable(f"recording {recording_id}: file is missing", state=state)
        return path

    def metadata_versions(self, recording_id: str) -> builtins.list[dict[str, Any]]:
        self._row(recording_id)
        return [
            {"seq": v["seq"], "received_at": iso_utc(v["received_at"]),
             "xml": v["xml"].decode("utf-8", "replace") if v["xml"] is not None else None}
            for v in self.index.metadata_versions(recording_id)
        ]

    # ---- changes ----------------------------------------------------------------------------

    def delete(self, recording_id: str, actor: str) -> None:
        row = self._row(recording_id)
        if row.get("legal_hold"):
            raise Conflict(f"recording {recording_id} is on legal hold", code="legal_hold")
        if not State(row["state"]).is_final:
            raise Conflict(f"recording {recording_id} is still {row['state']}", code="recording_active")
        self._remove(row, actor, "delete")

    def _remove(self, row: Mapping[str, Any], actor: str, action: str) -> None:
        rid = row["id"]
        if row.get("file_path"):
            with contextlib.suppress(UnsafePath, OSError):
                self.layout.contain(row["file_path"]).unlink(missing_ok=True)
        try:
            metadata_dir = self.layout.metadata_dir(rid, float(row["started_at"]))
            shutil.rmtree(metadata_dir, ignore_errors=True)
        except (InvalidId, UnsafePath):
            pass
        try:
            self.index.delete(rid)
        except RecordingNotFound:
            return
        self.index.admin.audit(actor, action, rid, {
            "call_recording_id": row.get("call_recording_id"), "sha256": row.get("sha256"),
        })

    def hold(self, recording_id: str, on: bool, actor: str = "cli") -> dict[str, Any]:
        self._row(recording_id)
        self.index.set_legal_hold(recording_id, on)
        self.index.admin.audit(actor, "hold" if on else "release", recording_id, {})
        return self.show(recording_id)

    def sweep(
        self,
        now: float,
        retention_days: float | None,
        per_source_overrides: Mapping[str, float] | None = None,
        actor: str = "retention",
    ) -> builtins.list[str]:
        """Delete final recordings older than their retention; legal holds and unfinished ones stay.

        A retention of ``None`` or ``<= 0`` days means "keep forever" (for the default or one source).
        """
        overrides = dict(per_source_overrides or {})
        doomed: list[dict[str, Any]] = []
        if retention_days is not None and retention_days > 0:
            doomed += self.index.expired(now - retention_days * DAY_S, None, tuple(overrides))
        for source, days in overrides.items():
            if days is not None and days > 0:
                doomed += self.index.expired(now - days * DAY_S, source)
        deleted = []
        for row in doomed:
            full = self.index.get(row["id"])
            if full is None or full.get("legal_hold"):
                continue
            self._remove(full, actor, "retention_delete")
            deleted.append(row["id"])
        return deleted

    # ---- signed links -----------------------------------------------------------------------

    def _signature(self, recording_id: str, expires_at: int) -> str:
        message = f"{recording_id}\n{expires_at}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign_link(self, recording_id: str, validity_s: float = DEFAULT_LINK_VALIDITY_S) -> tuple[str, int]:
        """A token-less download path valid for ``validity_s`` seconds: (path with exp and sig, expiry)."""
        if validity_s <= 0:
            raise BadRequest("link validity must be positive")
        if validity_s > self.max_link_validity_s:
            raise BadRequest(f"link validity is at most {self.max_link_validity_s} seconds")
        self.file_path(recording_id)
        expires_at = int(self.clock() + validity_s)
        sig = self._signature(recording_id, expires_at)
        return f"{API_PREFIX}/links/{quote(recording_id)}?exp={expires_at}&sig={sig}", expires_at

    def verify_link(self, recording_id: str, exp: str | int, sig: str) -> None:
        """Raise BadSignature (403) or LinkExpired (410); a forged link never learns whether it expired."""
        try:
            expires_at = int(exp)
        except (TypeError, ValueError) as exc:
            raise BadSignature("link signature is not valid") from exc
        if not is_valid_id(recording_id):
            raise BadSignature("link signature is not valid")
        expected = self._signature(recording_id, expires_at)
        if not hmac.compare_digest(expected.encode(), str(sig).encode("utf-8", "replace")):
            raise BadSignature("link signature is not valid")
        if self.clock() >= expires_at:
            raise LinkExpired("link has expired", expired_at=iso_utc(expires_at))

    # ---- exports ----------------------------------------------------------------------------

    def create_export(
        self, ids: Sequence[str] | None = None, filt: RecordingFilter | None = None, fmt: str = "tar.gz"
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
        export_id = new_id(self.clock())
        self.index.admin.add_export(export_id, fmt, filter_to_json(selection))
        return self.export_status(export_id)

    def run_export(self, export_id: str) -> dict[str, Any]:
        """Build the archive (audio under ``recordings/`` plus ``index.json``); blocking."""
        job = self.index.admin.get_export(export_id)
        if job is None:
            raise NotFound(f"no export with id {export_id!r}")
        fmt = job["format"]
        target = self.layout.export_path(export_id, fmt)
        temp = target.with_name(f".{target.name}.partial")
        if not self.index.admin.claim_export(export_id):
            return self.export_status(export_id)  # another node (or run) has it: run once per fleet
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            rows = self.index.find(filter_from_json(job["request"])).items
            entries: list[dict[str, Any]] = []
            files: list[tuple[Path, str]] = []
            for row in rows:
                entry = self.represent(row)
                try:
                    source = self.file_path(row["id"])
                except NotAvailable:
                    entry["archive_path"] = None
                else:
                    name = f"recordings/{row['id']}.{row.get('file_format') or 'wav'}"
                    entry["archive_path"] = name
                    files.append((source, name))
                entries.append(entry)
            manifest = json.dumps(
                {"export_id": export_id, "exported_at": iso_utc(self.clock()), "count": len(entries),
                 "recordings": entries},
                indent=2, sort_keys=True,
            ).encode()
            _write_archive(temp, fmt, files, manifest, self.clock())
            os.replace(temp, target)
        except Exception as exc:
            temp.unlink(missing_ok=True)
            self.index.admin.update_export(
                export_id, state="failed", error=str(exc), finished_at=self.clock()
            )
            raise
        self.index.admin.update_export(
            export_id, state="done", path=str(target), size=target.stat().st_size, count=len(entries),
            finished_at=self.clock(),
        )
        return self.export_status(export_id)

    def export(
        self, ids: Sequence[str] | None = None, filt: RecordingFilter | None = None, fmt: str = "tar.gz"
    ) -> dict[str, Any]:
        """Create and run an export in the calling thread (the CLI path)."""
        return self.run_export(self.create_export(ids, filt, fmt)["id"])

    def export_status(self, export_id: str) -> dict[str, Any]:
        job = self.index.admin.get_export(export_id) if is_valid_id(export_id) else None
        if job is None:
            raise NotFound(f"no export with id {export_id!r}")
        base = f"{API_PREFIX}/exports/{export_id}"
        links = {"self": base}
        if job["state"] == "done":
            links["file"] = f"{base}/file"
        return {
            "id": job["id"], "state": job["state"], "format": job["format"], "count": job["count"],
            "size": job["size"], "error": job["error"], "created_at": iso_utc(job["created_at"]),
            "finished_at": iso_utc(job["finished_at"]), "links": links,
        }

    def export_file(self, export_id: str) -> Path:
        status = self.export_status(export_id)
        if status["state"] != "done":
            raise NotAvailable(f"export {export_id} is {status['state']}", state=status["state"])
        path = self.layout.export_path(export_id, status["format"])
        if not path.is_file():
            raise NotAvailable(f"export {export_id}: file is missing", state=status["state"])
        return path


def _write_archive(
    target: Path, fmt: str, files: Sequence[tuple[Path, str]], manifest: bytes, now: float
) -> None:
    if fmt == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            archive.writestr("index.json", manifest)
            for source, name in files:
                archive.write(source, name)
        return
    with tarfile.open(target, "w:gz") as archive:
        info = tarfile.TarInfo("index.json")
        info.size = len(manifest)
        info.mtime = int(now)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(manifest))
        for source, name in files:
            archive.add(source, arcname=name, recursive=False)
