"""Serving a recording's audio: streamed through the API from the local disk or the object store
alike, with the same auth, audit, Range and ETag whichever holds the file (see README,
"Recordings in object storage"). Used by the token route and the signed-link route."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from srs.api.deps import client_of, range_detail
from srs.api.files import ranged_response
from srs.service.audit import Action, AuditTrail
from srs.service.context import CONTENT_TYPES
from srs.service.files import RecordingFiles
from srs.service.principal import Kind, Principal


def serve_recording(
    files: RecordingFiles, audit: AuditTrail, request: Request, recording_id: str, download: bool,
    who: Principal,
) -> Response:
    stored = files.stored_file(recording_id)
    response = ranged_response(
        request, stored.size, lambda start, length: files.read(stored, start, length),
        content_type=CONTENT_TYPES.get(stored.format, "application/octet-stream"),
        etag=stored.etag, filename=f"{recording_id}.{stored.format}", download=download,
    )
    if who.kind is Kind.LINK:
        action = Action.LINK_USE
    else:
        action = Action.HEAD if request.method == "HEAD" else Action.DOWNLOAD
    audit.record(who, action, recording_id=recording_id, client=client_of(request),
                 detail=range_detail(request, response.status_code))
    return response
