"""Finding recordings and their public JSON shape (the CLI's ``--json`` and the API answer the same)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from srs.service.context import API_PREFIX, CONTENT_TYPES, RecordingContext, uploaded
from srs.service.copies import describe as describe_copies
from srs.service.copies import preferred as preferred_copy
from srs.service.errors import BadRequest, NotFound
from srs.service.timefmt import iso_utc
from srs.storage.records import RecordingFilter, State


class RecordingCatalog:
    def __init__(self, context: RecordingContext) -> None:
        self.context = context

    def list(self, filt: RecordingFilter, page: int = 1, max: int | None = None) -> dict[str, Any]:
        if page < 1:
            raise BadRequest("page must be 1 or more")
        if max is not None and max < 1:
            raise BadRequest("max must be 1 or more")
        index = self.context.index
        result = index.find(filt, page=page, max=max)
        crids = sorted({item["call_recording_id"] for item in result.items if item["call_recording_id"]})
        copies = index.copies(crids) if crids else {}
        return {
            "items": [
                self.represent(item, copies.get(item["call_recording_id"] or "")) for item in result.items
            ],
            "pagination": {"pages": result.pages, "total": result.total, "current": result.current,
                           "max": result.max},
        }

    def show(self, recording_id: str) -> dict[str, Any]:
        row = self.context.row(recording_id)
        crid = row.get("call_recording_id")
        return self.represent(row, self.context.index.copies([crid])[crid] if crid else None)

    def show_by_call_recording_id(self, call_recording_id: str) -> dict[str, Any]:
        """The logical recording: of the copies nodes made of this session, the most complete
        (see :mod:`srs.service.copies`); one copy alone is simply that copy (the newest, if the
        same id was reused for several sessions on one node)."""
        index = self.context.index
        copies = index.copies([call_recording_id])[call_recording_id]
        nodes = {c.get("node") for c in copies}
        if len(copies) > 1 and len(nodes) > 1:
            row = index.get(preferred_copy(copies)["id"])
        else:
            row = index.newest_by_call_recording_id(call_recording_id)
        if row is None:
            raise NotFound(f"no recording with call-recording-id {call_recording_id!r}")
        return self.represent(row, copies)

    def metadata_versions(self, recording_id: str) -> builtins.list[dict[str, Any]]:
        self.context.row(recording_id)
        return [
            {"seq": v["seq"], "received_at": iso_utc(v["received_at"]),
             "xml": v["xml"].decode("utf-8", "replace") if v["xml"] is not None else None}
            for v in self.context.index.metadata_versions(recording_id)
        ]

    def represent(
        self, row: Mapping[str, Any], copies: Sequence[Mapping[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The public JSON shape of a recording; with the ``copies`` of its session, ``copies``
        lists them all, the preferred one first."""
        rid = row["id"]
        file_info = self._file_info(row)
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
            "upload": _upload_info(row),
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

    def _file_info(self, row: Mapping[str, Any]) -> dict[str, Any] | None:
        file_path = row.get("file_path")
        if not file_path:
            return None
        fmt = row.get("file_format") or "wav"
        absolute = Path(file_path)
        if not absolute.is_absolute():
            absolute = self.context.layout.data_dir / absolute
        location = str(absolute)
        in_store = uploaded(row)
        if in_store:
            objects = self.context.objects
            base_url = objects.url if objects is not None else "object store"
            location = f"{base_url.rstrip('/')}/{row['object_key']}"
        return {
            "path": location, "name": absolute.name, "size": row.get("file_size"), "format": fmt,
            "content_type": CONTENT_TYPES.get(fmt, "application/octet-stream"),
            "sample_rate": row.get("sample_rate"), "channels": row.get("channels"),
            "sha256": row.get("sha256"), "location": "object" if in_store else "local",
        }


def _upload_info(row: Mapping[str, Any]) -> dict[str, Any] | None:
    if not row.get("upload_state"):
        return None
    return {
        "state": row["upload_state"], "reason": row.get("upload_error"),
        "attempts": row.get("upload_attempts") or 0, "key": row.get("object_key"),
        "uploaded_at": iso_utc(row.get("uploaded_at")),
    }
