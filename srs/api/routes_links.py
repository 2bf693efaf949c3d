"""Signed links: made with a read token, used with no token at all (the signature is the
credential, checked by the guard before the route runs), revoked with an admin token."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from srs.api.audio import serve_recording
from srs.api.deps import Admin, Read, client_of
from srs.api.guard import PRINCIPAL_KEY
from srs.service.audit import AuditTrail
from srs.service.context import API_PREFIX
from srs.service.errors import BadRequest
from srs.service.files import RecordingFiles
from srs.service.links import LinkSigner
from srs.service.principal import Kind, Principal
from srs.service.timefmt import iso_utc


def install_link_routes(
    app: FastAPI, links: LinkSigner, files: RecordingFiles, audit: AuditTrail, *,
    default_validity_min: float, max_validity_min: float,
) -> None:
    @app.post(f"{API_PREFIX}/recordings/{{recording_id}}/link", tags=["links"])
    def create_link(
        request: Request,
        recording_id: str,
        who: Read,
        validity: float = Query(default_validity_min, gt=0, description="minutes"),
        download: int = Query(
            0, ge=0, le=1,
            description="1: answer 303 See Other with the signed link in Location (a browser or "
                        "`curl -L` fetches the file at once) instead of the JSON body",
        ),
    ) -> Response:
        if validity > max_validity_min:
            raise BadRequest(f"validity is at most {max_validity_min:g} minutes")
        path, expires_at = links.sign_link(recording_id, validity * 60, issuer=who, client=client_of(request))
        link = str(request.base_url).rstrip("/") + path
        if download:
            return RedirectResponse(link, status_code=303)
        link_id = parse_qs(urlsplit(path).query)["lid"][0]
        return JSONResponse({"link": link, "path": path, "id": link_id, "expires_at": iso_utc(expires_at)})

    @app.get(f"{API_PREFIX}/links/{{recording_id}}", tags=["links"], operation_id="get_signed_file")
    @app.head(f"{API_PREFIX}/links/{{recording_id}}", tags=["links"], operation_id="head_signed_file")
    def signed_file(
        request: Request, recording_id: str, exp: str = "", sig: str = "", lid: str = "", tok: str = "",
        download: bool = False,
    ) -> Response:
        who = getattr(request.state, PRINCIPAL_KEY, None)
        if not isinstance(who, Principal) or who.kind is not Kind.LINK:
            who = links.verify_link(recording_id, exp, sig, lid, tok)
        return serve_recording(files, audit, request, recording_id, download, who)

    @app.post(f"{API_PREFIX}/links/{{link_id}}/revoke", status_code=204, tags=["links"])
    def revoke_link(request: Request, link_id: str, who: Admin) -> Response:
        links.revoke_link(link_id, who, client_of(request))
        return Response(status_code=204)
