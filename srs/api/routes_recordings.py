"""Reading recordings (read scope): the list with its filters, one recording, one SIPREC session's
logical recording, the audio file and the metadata versions."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import Response

from srs.api.audio import serve_recording
from srs.api.deps import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, Read, for_scope
from srs.service.audit import AuditTrail
from srs.service.catalog import RecordingCatalog
from srs.service.context import API_PREFIX
from srs.service.errors import NotFound
from srs.service.files import RecordingFiles
from srs.service.filters import FILTER_KEYS, build_filter, split_extension


def install_recording_routes(
    app: FastAPI, catalog: RecordingCatalog, files: RecordingFiles, audit: AuditTrail
) -> None:
    @app.get(f"{API_PREFIX}/recordings", tags=["recordings"])
    def list_recordings(
        request: Request,
        who: Read,
        state: str | None = None,
        start: str | None = Query(None, description="ISO 8601 or unix seconds; started_at >= start"),
        end: str | None = Query(None, description="ISO 8601 or unix seconds; started_at < end"),
        call_recording_id: str | None = None,
        participant: str | None = Query(None, description="substring of a participant AOR or name"),
        sip_call_id: str | None = None,
        source: str | None = None,
        node: str | None = Query(None, description="recorded by this srs node ([node] id)"),
        min_duration: float | None = Query(None, description="seconds"),
        max_duration: float | None = Query(None, description="seconds"),
        extension: Annotated[
            list[str] | None, Query(description="KEY:VALUE (also accepted: ext.KEY=VALUE)")
        ] = None,
        order: str = Query("newest", pattern="^(newest|oldest)$"),
        page: int = Query(1, ge=1, le=MAX_PAGE),
        max: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> dict[str, Any]:
        pairs = [split_extension(item) for item in extension or []]
        pairs += [(key[4:], value) for key, value in request.query_params.multi_items()
                  if key.startswith("ext.") and len(key) > 4]
        values = {k: request.query_params.get(k) for k in FILTER_KEYS}
        filt = build_filter(values, pairs, oldest_first=order == "oldest")
        result = catalog.list(filt, page=page, max=max)
        return {**result, "items": [for_scope(item, who.scope) for item in result["items"]]}

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}", tags=["recordings"])
    def show_recording(recording_id: str, who: Read) -> dict[str, Any]:
        return for_scope(catalog.show(recording_id), who.scope)

    @app.get(f"{API_PREFIX}/sessions/{{call_recording_id}}", tags=["recordings"])
    def show_session(
        call_recording_id: Annotated[str, Path(max_length=256)], _: Read
    ) -> dict[str, Any]:
        """The logical recording of one SIPREC session: of the copies nodes made of it, the most
        complete, with ``copies`` naming them all (its ``links.file`` serves that copy)."""
        return catalog.show_by_call_recording_id(call_recording_id)

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="get_file")
    @app.head(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="head_file")
    def recording_file(request: Request, recording_id: str, who: Read, download: bool = False) -> Response:
        return serve_recording(files, audit, request, recording_id, download, who)

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/metadata", tags=["recordings"])
    def recording_metadata(recording_id: str, _: Read, seq: int | None = None) -> Any:
        versions = catalog.metadata_versions(recording_id)
        if seq is None:
            return {"id": recording_id, "versions": versions}
        for version in versions:
            if version["seq"] == seq and version["xml"] is not None:
                return Response(version["xml"], media_type="application/rs-metadata+xml")
        raise NotFound(f"recording {recording_id} has no metadata version {seq}")
