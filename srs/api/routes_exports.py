"""Exports (admin scope): submit a job (202; it is built off the event loop), poll it, download
the archive. Submission is the one coroutine route: it schedules work on the loop."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from srs.api.deps import Admin, client_of, range_detail
from srs.api.files import file_response, make_etag
from srs.service.audit import Action, AuditTrail
from srs.service.context import API_PREFIX
from srs.service.errors import BadRequest
from srs.service.export_jobs import ExportJobs
from srs.service.exports import ExportManager
from srs.service.filters import filter_from_mapping
from srs.storage.records import RecordingFilter

ARCHIVE_TYPES = {"tar.gz": "application/gzip", "zip": "application/zip"}


class ExportRequest(BaseModel):
    """Either ``ids`` or ``filter`` (the same keys as the list endpoint's query parameters);
    any other key (``filters``, say) is refused by name."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    format: str = Field(default="tar.gz", pattern=r"^(tar\.gz|zip)$")


def install_export_routes(app: FastAPI, jobs: ExportJobs, exports: ExportManager, audit: AuditTrail) -> None:
    @app.post(f"{API_PREFIX}/exports", status_code=202, tags=["exports"])
    async def create_export(request: Request, body: ExportRequest, who: Admin) -> JSONResponse:
        if (body.ids is None) == (body.filter is None):
            raise BadRequest("give exactly one of ids or filter")
        filt: RecordingFilter | None = None
        if body.filter is not None:
            filt = filter_from_mapping(body.filter)
        job = await exports.submit(body.ids, filt, body.format, actor=who, client=client_of(request))
        return JSONResponse(job, status_code=202, headers={"Location": job["links"]["self"]})

    @app.get(f"{API_PREFIX}/exports/{{export_id}}", tags=["exports"])
    def export_status(export_id: str, _: Admin) -> dict[str, Any]:
        return exports.status(export_id)

    @app.get(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="get_export_file")
    @app.head(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="head_export_file")
    def export_file(request: Request, export_id: str, who: Admin) -> Response:
        path = jobs.export_file(export_id)
        fmt = exports.status(export_id)["format"]
        response = file_response(
            request, path, content_type=ARCHIVE_TYPES[fmt], etag=make_etag(path, None),
            filename=f"srs-export-{export_id}.{fmt}", download=True,
        )
        audit.record(who, Action.EXPORT_DOWNLOAD, export_id=export_id, client=client_of(request),
                     detail=range_detail(request, response.status_code))
        return response
