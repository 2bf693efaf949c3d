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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from srs.service.audit import Action, Actor, AuditTrail
from srs.service.copies import describe as describe_copies
from srs.service.copies import preferred as preferred_copy
from srs.service.errors import (
    BadRequest,
    BadSignature,
    Conflict,
    Gone,
    LinkExpired,
    LinkRevoked,
    NotAvailable,
    NotFound,
    ServiceError,
)
from srs.service.filters import filter_from_json, filter_to_json
from srs.service.principal import Kind, Principal
from srs.service.timefmt import iso_utc
from srs.service.vcon import build_vcon, content_hash_from_sha256
from srs.storage.errors import InvalidId, RecordingNotFound, UnsafePath
from srs.storage.ids import is_valid_id, new_id
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import ObjectStore, ObjectStoreError, StoreUnavailable, file_chunks
from srs.storage.records import RecordingFilter, State

Clock = Callable[[], float]
API_PREFIX = "/api/v1"
CONTENT_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "ogg-opus": "audio/ogg", "mp3": "audio/mpeg"}
EXPORT_FORMATS = ("tar.gz", "zip")
DEFAULT_LINK_VALIDITY_S = 300
MAX_LINK_VALIDITY_S = 86_400
DAY_S = 86_400.0
DEFAULT_EXPORT_TTL_S = 24 * 3600.0
EXPORT_GONE_STATES = ("expired", "purged")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A recording's audio and where it is: a local ``path`` or an object store ``key``."""

    recording_id: str
    size: int
    sha256: str | None
    format: str
    path: Path | None = None
    key: str | None = None

    @property
    def etag(self) -> str:
        if self.sha256:
            return f'"{self.sha256}"'
        assert self.path is not None  # an object is only ever stored with its sha256
        stat = self.path.stat()
        return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'


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
        self.index = index
        self.layout = layout
        self.secret = secret
        self.clock = clock
        self.max_link_validity_s = max_link_validity_s
        self.export_ttl_s = export_ttl_s
        self.audit = AuditTrail(index.admin)
        self.objects = objects

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
        uploaded = _uploaded(row)
        if file_path:
            absolute = Path(file_path)
            if not absolute.is_absolute():
                absolute = self.layout.data_dir / absolute
            location = str(absolute)
            if uploaded:
                base_url = self.objects.url if self.objects is not None else "object store"
                location = f"{base_url.rstrip('/')}/{row['object_key']}"
            file_info = {
                "path": location, "name": absolute.name, "size": row.get("file_size"), "format": fmt,
                "content_type": CONTENT_TYPES.get(fmt, "application/octet-stream"),
                "sample_rate": row.get("sample_rate"), "channels": row.get("channels"),
                "sha256": row.get("sha256"), "location": "object" if uploaded else "local",
            }
        upload: dict[str, Any] | None = None
        if row.get("upload_state"):
            upload = {
                "state": row["upload_state"], "reason": row.get("upload_error"),
                "attempts": row.get("upload_attempts") or 0, "key": row.get("object_key"),
                "uploaded_at": iso_utc(row.get("uploaded_at")),
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
            "upload": upload,
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

    def stored_file(self, recording_id: str) -> StoredFile:
        """Where the audio is (local file or object), only once the recording is available."""
        row = self._row(recording_id)
        state = row["state"]
        if state != State.AVAILABLE.value or not row.get("file_path"):
            raise NotAvailable(f"recording {recording_id} is {state}; no file to serve", state=state)
        fmt = row.get("file_format") or "wav"
        if _uploaded(row):
            if self.objects is None:
                raise NotAvailable(f"recording {recording_id} is in an object store this srs is not"
                                   " configured for", state=state)
            key = row["object_key"]
            try:
                # Asked before any byte is sent: a store that is down is a clean 503, not a cut stream.
                info = self.objects.head(key)
            except StoreUnavailable as exc:
                raise _store_down(exc) from exc
            except ObjectStoreError as exc:
                raise NotAvailable(f"recording {recording_id}: {exc}", state=state) from exc
            if info is None:
                raise NotAvailable(f"recording {recording_id}: object is missing from the store", state=state)
            return StoredFile(recording_id, info.size, row.get("sha256"), fmt, key=key)
        try:
            path = self.file_path(recording_id, row)
        except NotAvailable:
            fresh = self._row(recording_id)  # the uploader may have moved it a moment ago
            if not _uploaded(fresh):
                raise
            return self.stored_file(recording_id)
        return StoredFile(recording_id, path.stat().st_size, row.get("sha256"), fmt, path=path)

    def read(self, stored: StoredFile, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The bytes of a stored file from ``start`` (``length`` of them, or to the end), in chunks."""
        if stored.key is not None:
            assert self.objects is not None
            try:
                return self.objects.read(stored.key, start, length)
            except StoreUnavailable as exc:
                raise _store_down(exc) from exc
            except ObjectStoreError as exc:
                raise NotAvailable(f"recording {stored.recording_id}: {exc}", state="available") from exc
        assert stored.path is not None
        try:
            handle = stored.path.open("rb")  # opened now: once open, an unlink cannot cut the stream
        except FileNotFoundError:
            moved = self.stored_file(stored.recording_id)  # the uploader moved it meanwhile?
            if moved.key is None:
                raise
            return self.read(moved, start, length)
        return file_chunks(handle, start, length)

    def file_path(self, recording_id: str, row: Mapping[str, Any] | None = None) -> Path:
        """The local audio file, only once the recording is available (and not moved to the store)."""
        row = self._row(recording_id) if row is None else row
        state = row["state"]
        if state != State.AVAILABLE.value or not row.get("file_path"):
            raise NotAvailable(f"recording {recording_id} is {state}; no file to serve", state=state)
        if _uploaded(row):
            raise NotAvailable(f"recording {recording_id} is in the object store", state=state)
        try:
            path = self.layout.contain(row["file_path"])
        except UnsafePath as exc:
            raise NotAvailable(f"recording {recording_id}: file is outside the data directory",
                               state=state) from exc
        if not path.is_file():
            raise NotAvailable(f"recording {recording_id}: file is missing", state=state)
        return path

    def _export_vcon(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """The vCon of an exported recording; its dialog's url is the file's path inside the archive."""
        file = entry.get("file") or {}
        sha = file.get("sha256")
        return build_vcon(
            entry, self.metadata_versions(str(entry["id"])), url=entry.get("archive_path"),
            content_hash=content_hash_from_sha256(str(sha)) if sha and entry.get("archive_path") else None,
        )

    def metadata_versions(self, recording_id: str) -> builtins.list[dict[str, Any]]:
        self._row(recording_id)
        return [
            {"seq": v["seq"], "received_at": iso_utc(v["received_at"]),
             "xml": v["xml"].decode("utf-8", "replace") if v["xml"] is not None else None}
            for v in self.index.metadata_versions(recording_id)
        ]

    # ---- changes ----------------------------------------------------------------------------

    def delete(self, recording_id: str, actor: Actor, client: str | None = None) -> None:
        row = self._row(recording_id)
        if row.get("legal_hold"):
            raise Conflict(f"recording {recording_id} is on legal hold", code="legal_hold")
        if not State(row["state"]).is_final:
            raise Conflict(f"recording {recording_id} is still {row['state']}", code="recording_active")
        self._remove(row, actor, Action.DELETE, client)

    def _remove(
        self, row: Mapping[str, Any], actor: Actor, action: Action, client: str | None = None
    ) -> None:
        """Object first: if the store cannot delete it now, the index row stays to try again."""
        rid = row["id"]
        if row.get("object_key") and row.get("upload_state") in ("done", "pending"):
            if self.objects is None:
                if row.get("upload_state") == "done":
                    raise Conflict(f"recording {rid} is in an object store this srs is not configured for",
                                   code="store_not_configured")
            else:
                try:
                    self.objects.delete(row["object_key"])
                except StoreUnavailable as exc:
                    raise _store_down(exc) from exc
                except ObjectStoreError as exc:
                    raise ServiceError(f"recording {rid}: object store refused delete: {exc}",
                                       code="store_error", status=502) from exc
        if row.get("file_path"):
            with contextlib.suppress(UnsafePath, OSError):
                self.layout.contain(row["file_path"]).unlink(missing_ok=True)
        self._forget_peaks(row.get("sha256"))
        try:
            metadata_dir = self.layout.metadata_dir(rid, float(row["started_at"]))
            shutil.rmtree(metadata_dir, ignore_errors=True)
        except (InvalidId, UnsafePath):
            pass
        try:
            self.index.delete(rid)
        except RecordingNotFound:
            return
        self.audit.record(actor, action, recording_id=rid, client=client, detail={
            "call_recording_id": row.get("call_recording_id"), "sha256": row.get("sha256"),
        })
        # an archive holding the audio would outlive the deletion: it goes too
        for job in self.index.admin.exports_holding(rid):
            self._purge_export(job, "purged", actor, f"recording {rid} was deleted")

    def _forget_peaks(self, sha256: str | None) -> None:
        """The waveform outline cached for the console goes with the audio it was drawn from."""
        if not sha256 or not sha256.isalnum():
            return
        with contextlib.suppress(OSError):
            for cached in self.layout.peaks_dir.glob(f"{sha256}-*.json"):
                cached.unlink(missing_ok=True)

    def hold(
        self, recording_id: str, on: bool, actor: Actor = "cli", client: str | None = None
    ) -> dict[str, Any]:
        self._row(recording_id)
        self.index.set_legal_hold(recording_id, on)
        action = Action.HOLD if on else Action.RELEASE
        self.audit.record(actor, action, recording_id=recording_id, client=client)
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
            try:
                self._remove(full, actor, Action.RETENTION_DELETE)
            except ServiceError:
                continue  # the object store is down: this row stays for the next sweep
            deleted.append(row["id"])
        return deleted

    # ---- signed links -----------------------------------------------------------------------

    def _signature(self, recording_id: str, expires_at: int, link_id: str, token_id: str) -> str:
        message = f"{recording_id}\n{expires_at}\n{link_id}\n{token_id}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign_link(
        self,
        recording_id: str,
        validity_s: float = DEFAULT_LINK_VALIDITY_S,
        *,
        issuer: Actor = "cli",
        client: str | None = None,
    ) -> tuple[str, int]:
        """A token-less download path valid for ``validity_s`` seconds: (path with its query, expiry).

        The signed part holds the link's id and the id of the token that made it: revoking either
        (:meth:`revoke_link`, or revoking the token) kills the link before it expires.
        """
        if validity_s <= 0:
            raise BadRequest("link validity must be positive")
        if validity_s > self.max_link_validity_s:
            raise BadRequest(f"link validity is at most {self.max_link_validity_s} seconds")
        self.stored_file(recording_id)
        now = self.clock()
        expires_at = int(now + validity_s)
        link_id = new_id(now)
        token_id = issuer.token_id if isinstance(issuer, Principal) else None
        self.index.admin.add_link(link_id, recording_id, token_id, now, expires_at)
        sig = self._signature(recording_id, expires_at, link_id, token_id or "")
        self.audit.record(issuer, Action.LINK_CREATE, recording_id=recording_id, client=client,
                          detail={"link_id": link_id, "expires_at": iso_utc(expires_at)})
        query = {"exp": str(expires_at), "lid": link_id}
        if token_id:
            query["tok"] = token_id
        query["sig"] = sig
        return f"{API_PREFIX}/links/{quote(recording_id)}?{urlencode(query)}", expires_at

    def verify_link(
        self, recording_id: str, exp: str | int, sig: str, link_id: str = "", token_id: str = ""
    ) -> Principal:
        """The link's principal; raise BadSignature (403), LinkExpired (410) or LinkRevoked (403).

        A forged link never learns whether it expired or was revoked.
        """
        try:
            expires_at = int(str(exp)) if len(str(exp)) <= 12 else -1
        except (TypeError, ValueError) as exc:
            raise BadSignature("link signature is not valid") from exc
        ids = (recording_id, link_id, *((token_id,) if token_id else ()))
        if not all(is_valid_id(value) for value in ids):
            raise BadSignature("link signature is not valid")
        expected = self._signature(recording_id, expires_at, link_id, token_id)
        if not hmac.compare_digest(expected.encode(), str(sig).encode("utf-8", "replace")):
            raise BadSignature("link signature is not valid")
        if self.clock() >= expires_at:
            raise LinkExpired("link has expired", expired_at=iso_utc(expires_at))
        state = self.index.admin.link_state(link_id)
        if state is None or state["revoked_at"] is not None or state["recording_id"] != recording_id:
            raise LinkRevoked("this link was revoked")
        if token_id and state["token_active"] is not True:
            raise LinkRevoked("the token that made this link was revoked")
        return Principal(Kind.LINK, token_id=token_id or None, link_id=link_id)

    def revoke_link(self, link_id: str, actor: Actor = "cli", client: str | None = None) -> None:
        state = self.index.admin.link_state(link_id) if is_valid_id(link_id) else None
        if state is None or not self.index.admin.revoke_link(link_id):
            raise NotFound(f"no active link with id {link_id!r}")
        self.audit.record(actor, Action.LINK_REVOKE, recording_id=state["recording_id"], client=client,
                          detail={"link_id": link_id})

    # ---- exports ----------------------------------------------------------------------------

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
        export_id = new_id(self.clock())
        request = filter_to_json(selection)
        self.index.admin.add_export(export_id, fmt, request)
        self.audit.record(actor, Action.EXPORT_CREATE, export_id=export_id, client=client,
                          detail={"format": fmt, "selection": request})
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
            target.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            rows = self.index.find(filter_from_json(job["request"])).items
            entries: list[dict[str, Any]] = []
            files: list[tuple[StoredFile, str]] = []
            for row in rows:
                entry = self.represent(row)
                try:
                    source = self.stored_file(row["id"])
                except NotAvailable:
                    entry["archive_path"] = None
                else:
                    name = f"recordings/{row['id']}.{row.get('file_format') or 'wav'}"
                    entry["archive_path"] = name
                    files.append((source, name))
                entry["vcon"] = self._export_vcon(entry)
                entries.append(entry)
            manifest = json.dumps(
                {"export_id": export_id, "exported_at": iso_utc(self.clock()), "count": len(entries),
                 "recordings": entries},
                indent=2, sort_keys=True,
            ).encode()
            members = [entry["id"] for entry in entries if entry["archive_path"] is not None]
            # known before the archive exists, so a deletion from now on finds (and purges) it
            self.index.admin.set_export_members(export_id, members)
            _write_archive(temp, fmt, [(s, n, self.read) for s, n in files], manifest, self.clock())
            os.replace(temp, target)
        except Exception as exc:
            temp.unlink(missing_ok=True)
            self.index.admin.update_export(
                export_id, state="failed", error=str(exc), finished_at=self.clock()
            )
            raise
        now = self.clock()
        current = self.index.admin.get_export(export_id)
        deleted_meanwhile = [rid for rid in members if self.index.get(rid) is None]
        if current is None or current["state"] != "running" or deleted_meanwhile:
            target.unlink(missing_ok=True)
            if current is not None and current["state"] == "running":
                reason = "a recording in it was deleted while it was built"
                self._purge_export(current, "purged", "srs", reason)
            return self.export_status(export_id)
        self.index.admin.update_export(
            export_id, state="done", path=str(target), size=target.stat().st_size, count=len(entries),
            finished_at=now, expires_at=now + self.export_ttl_s,
        )
        return self.export_status(export_id)

    def _purge_export(self, job: Mapping[str, Any], state: str, actor: Actor, reason: str) -> None:
        with contextlib.suppress(UnsafePath, OSError):
            self.layout.export_path(job["id"], job["format"]).unlink(missing_ok=True)
        self.index.admin.update_export(job["id"], state=state, path=None)
        self.audit.record(actor, Action.EXPORT_PURGE, export_id=job["id"], detail={"reason": reason})

    def purge_expired_exports(self, actor: Actor = "retention") -> builtins.list[str]:
        """Remove the archives of exports past their expiry (and forget long-expired signed links)."""
        now = self.clock()
        expired = self.index.admin.expired_exports(now)
        for job in expired:
            self._purge_export(job, "expired", actor, "expired")
        self.index.admin.forget_links(now - DAY_S)
        return [job["id"] for job in expired]

    def export(
        self,
        ids: Sequence[str] | None = None,
        filt: RecordingFilter | None = None,
        fmt: str = "tar.gz",
        actor: Actor = "cli",
    ) -> dict[str, Any]:
        """Create and run an export in the calling thread (the CLI path)."""
        return self.run_export(self.create_export(ids, filt, fmt, actor=actor)["id"])

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
            "finished_at": iso_utc(job["finished_at"]), "expires_at": iso_utc(job["expires_at"]),
            "links": links,
        }

    def export_file(self, export_id: str) -> Path:
        status = self.export_status(export_id)
        job = self.index.admin.get_export(export_id)
        expires_at = job["expires_at"] if job is not None else None
        if status["state"] in EXPORT_GONE_STATES or (
            status["state"] == "done" and (expires_at is None or self.clock() >= expires_at)
        ):
            raise Gone(f"export {export_id} is gone ({status['state']})", state=status["state"])
        if status["state"] != "done":
            raise NotAvailable(f"export {export_id} is {status['state']}", state=status["state"])
        path = self.layout.export_path(export_id, status["format"])
        if not path.is_file():
            raise NotAvailable(f"export {export_id}: file is missing", state=status["state"])
        return path


def _uploaded(row: Mapping[str, Any]) -> bool:
    return row.get("upload_state") == "done" and bool(row.get("object_key"))


def _store_down(exc: Exception) -> ServiceError:
    return ServiceError(f"object store unavailable: {exc}", code="store_unavailable", status=503)


class _ChunkReader(io.RawIOBase):
    """A file-like view of a chunk iterator, for tarfile (which reads exactly ``size`` bytes)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._buffer = chunk
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


ArchiveSource = tuple[StoredFile, str, Callable[[StoredFile], Iterator[bytes]]]


def _write_archive(
    target: Path, fmt: str, files: Sequence[ArchiveSource], manifest: bytes, now: float
) -> None:
    """Audio is copied from wherever it is (local file or object store), streamed, never whole in memory."""
    # 0640 whatever the umask: an archive is as private as the recordings in it
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
    with os.fdopen(fd, "wb") as raw:
        if fmt == "zip":
            with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                archive.writestr("index.json", manifest)
                for source, name, read in files:
                    zinfo = zipfile.ZipInfo(name, time.gmtime(now)[:6])
                    zinfo.compress_type = zipfile.ZIP_DEFLATED
                    with archive.open(zinfo, "w", force_zip64=True) as sink:
                        for chunk in read(source):
                            sink.write(chunk)
            return
        with tarfile.open(fileobj=raw, mode="w:gz") as archive:
            info = tarfile.TarInfo("index.json")
            info.size = len(manifest)
            info.mtime = int(now)
            info.mode = 0o640
            archive.addfile(info, io.BytesIO(manifest))
            for source, name, read in files:
                entry = tarfile.TarInfo(name)
                entry.size = source.size
                entry.mtime = int(now)
                entry.mode = 0o640
                archive.addfile(entry, _ChunkReader(read(source)))
