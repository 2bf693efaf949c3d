"""``GET /api/v1/recordings/{id}/vcon``: the recording as a vCon (see :mod:`srs.service.vcon`).

The dialog's ``url`` is a signed link valid ``validity`` minutes (its creation is audited like any
link); ``signed=1`` answers the JWS form (HS256 with the server key) instead of the plain JSON.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request

from srs.api.guard import PRINCIPAL_KEY
from srs.service.context import API_PREFIX
from srs.service.errors import BadRequest
from srs.service.recordings import RecordingService
from srs.service.vcon import build_vcon, content_hash_from_sha256, content_hash_sha512, sign_vcon

_CHUNK = 1 << 20


def _file_chunks(path: Path) -> Any:
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


def vcon_document(
    service: RecordingService, recording_id: str, *, base_url: str, validity_s: float, issuer: Any,
    client: str | None,
) -> dict[str, Any]:
    """Blocking (index reads, the file hash): run it off the loop."""
    recording = service.show(recording_id)
    versions = service.metadata_versions(recording_id)
    url = content_hash = None
    file = recording.get("file")
    if recording["state"] == "available" and file is not None:
        path, _ = service.sign_link(recording_id, validity_s, issuer=issuer, client=client)
        url = base_url.rstrip("/") + path
        local = Path(str(file["path"]))
        if file.get("location") == "local" and local.is_file():
            content_hash = content_hash_sha512(_file_chunks(local))
        elif file.get("sha256"):
            content_hash = content_hash_from_sha256(str(file["sha256"]))
    return build_vcon(recording, versions, url=url, content_hash=content_hash)


def install_vcon_routes(app: FastAPI, service: RecordingService, default_validity_min: float = 60) -> None:
    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/vcon", tags=["recordings"])
    async def recording_vcon(
        request: Request,
        recording_id: str,
        validity: float = Query(default_validity_min, gt=0, description="minutes the dialog's url is valid"),
        signed: int = Query(0, ge=0, le=1, description="1: the JWS (HS256, server key) form"),
    ) -> dict[str, Any]:
        if validity * 60 > service.max_link_validity_s:
            raise BadRequest(f"validity is at most {service.max_link_validity_s / 60:g} minutes")
        who = request.scope.get("state", {}).get(PRINCIPAL_KEY)
        client = request.client.host if request.client else None
        document = await asyncio.to_thread(
            vcon_document, service, recording_id, base_url=str(request.base_url), validity_s=validity * 60,
            issuer=who, client=client,
        )
        return sign_vcon(document, service.secret) if signed else document
