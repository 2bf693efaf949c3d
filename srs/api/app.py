"""The HTTP API, an ASGI app that runs inside the daemon's own event loop.

Endpoints that touch SQLite or the disk are plain functions so the framework runs them in its thread
pool; only export submission is a coroutine because it schedules work on the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import srs
from srs.api.files import file_response, make_etag
from srs.api.metrics import MetricsExporter
from srs.service.errors import BadRequest, Forbidden, NotFound, ServiceError, Unauthorized
from srs.service.exports import ExportManager
from srs.service.filters import FILTER_KEYS, build_filter, split_extension
from srs.service.recordings import API_PREFIX, CONTENT_TYPES, RecordingService
from srs.service.timefmt import iso_utc
from srs.service.tokens import TokenService, scope_allows
from srs.service.webhooks import WebhookDispatcher
from srs.storage.errors import IndexUnavailable
from srs.storage.records import RecordingFilter

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE = 1_000_000
ARCHIVE_TYPES = {"tar.gz": "application/gzip", "zip": "application/zip"}


class ExportRequest(BaseModel):
    """Either ``ids`` or ``filter`` (the same keys as the list endpoint's query parameters)."""

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    format: str = Field(default="tar.gz", pattern=r"^(tar\.gz|zip)$")


def _error(exc: ServiceError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _need(scope: str) -> Callable[[Request], str]:
    """A dependency that admits a bearer token with ``scope`` (admin implies read); checked per request."""

    def check(request: Request) -> str:
        tokens: TokenService = request.app.state.tokens
        token = _bearer(request)
        granted = tokens.verify(token) if token else None
        if granted is None:
            raise Unauthorized("a valid bearer token is required")
        if not scope_allows(granted, scope):
            raise Forbidden(f"this token has scope {granted!r}; {scope!r} is needed")
        return granted

    return check


Read = Annotated[str, Depends(_need("read"))]
Admin = Annotated[str, Depends(_need("admin"))]


def create_app(
    service: RecordingService,
    tokens: TokenService,
    exports: ExportManager,
    webhooks: WebhookDispatcher | None = None,
    metrics_provider: CollectorRegistry | None = None,
    *,
    default_link_validity_min: float = 5,
    max_link_validity_min: float | None = None,
    store_metrics: bool = True,
) -> FastAPI:
    max_link_min = max_link_validity_min if max_link_validity_min is not None else (
        service.max_link_validity_s / 60
    )
    metrics = MetricsExporter(service, metrics_provider, include_store=store_metrics)
    app = FastAPI(title="srs", version=srs.__version__, description="SIPREC recording server API")
    app.state.webhooks = webhooks
    app.state.tokens = tokens

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(IndexUnavailable)
    async def _index_unavailable(request: Request, exc: IndexUnavailable) -> JSONResponse:
        """The shared index is down or unreachable: a state to retry, not a server bug."""
        message = "the recording index cannot be reached now"
        body = {"error": {"code": "index_unavailable", "message": message}}
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors()
        )
        return _error(BadRequest(details or "invalid request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            {"error": {"code": code, "message": str(exc.detail)}}, status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": srs.__version__}

    @app.get("/metrics", tags=["ops"], response_class=Response)
    def metrics_endpoint(
        _: Read,
        node: Annotated[
            str | None,
            Query(max_length=64, pattern=r"^[A-Za-z0-9._-]+$", description="adds this node's recordings"),
        ] = None,
    ) -> Response:
        return Response(metrics.render(node), media_type=CONTENT_TYPE_LATEST)

    @app.get(f"{API_PREFIX}/recordings", tags=["recordings"])
    def list_recordings(
        request: Request,
        _: Read,
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
        return service.list(filt, page=page, max=max)

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}", tags=["recordings"])
    def show_recording(recording_id: str, _: Read) -> dict[str, Any]:
        return service.show(recording_id)

    @app.get(f"{API_PREFIX}/sessions/{{call_recording_id}}", tags=["recordings"])
    def show_session(
        call_recording_id: Annotated[str, Path(max_length=256)], _: Read
    ) -> dict[str, Any]:
        """The logical recording of one SIPREC session: of the copies nodes made of it, the most
        complete, with ``copies`` naming them all (its ``links.file`` serves that copy)."""
        return service.show_by_call_recording_id(call_recording_id)

    def serve_recording(request: Request, recording_id: str, download: bool) -> Response:
        path = service.file_path(recording_id)
        row = service.show(recording_id)
        fmt = (row["file"] or {}).get("format") or "wav"
        return file_response(
            request, path, content_type=CONTENT_TYPES.get(fmt, "application/octet-stream"),
            etag=make_etag(path, (row["file"] or {}).get("sha256")), filename=f"{recording_id}.{fmt}",
            download=download,
        )

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="get_file")
    @app.head(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="head_file")
    def recording_file(request: Request, recording_id: str, _: Read, download: bool = False) -> Response:
        return serve_recording(request, recording_id, download)

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/metadata", tags=["recordings"])
    def recording_metadata(recording_id: str, _: Read, seq: int | None = None) -> Any:
        versions = service.metadata_versions(recording_id)
        if seq is None:
            return {"id": recording_id, "versions": versions}
        for version in versions:
            if version["seq"] == seq and version["xml"] is not None:
                return Response(version["xml"], media_type="application/rs-metadata+xml")
        raise NotFound(f"recording {recording_id} has no metadata version {seq}")

    @app.post(f"{API_PREFIX}/recordings/{{recording_id}}/link", tags=["links"])
    def create_link(
        request: Request,
        recording_id: str,
        _: Read,
        validity: float = Query(default_link_validity_min, gt=0, description="minutes"),
        download: int = Query(0, ge=0, le=1),
    ) -> Response:
        if validity > max_link_min:
            raise BadRequest(f"validity is at most {max_link_min:g} minutes")
        path, expires_at = service.sign_link(recording_id, validity * 60)
        link = str(request.base_url).rstrip("/") + path
        if download:
            return RedirectResponse(link, status_code=303)
        return JSONResponse({"link": link, "path": path, "expires_at": iso_utc(expires_at)})

    @app.get(f"{API_PREFIX}/links/{{recording_id}}", tags=["links"], operation_id="get_signed_file")
    @app.head(f"{API_PREFIX}/links/{{recording_id}}", tags=["links"], operation_id="head_signed_file")
    def signed_file(
        request: Request, recording_id: str, exp: str = "", sig: str = "", download: bool = False
    ) -> Response:
        service.verify_link(recording_id, exp, sig)
        return serve_recording(request, recording_id, download)

    @app.post(f"{API_PREFIX}/recordings/{{recording_id}}/hold", tags=["recordings"])
    def hold_recording(recording_id: str, scope: Admin, on: bool = True) -> dict[str, Any]:
        return service.hold(recording_id, on, actor=f"api:{scope}")

    @app.delete(f"{API_PREFIX}/recordings/{{recording_id}}", status_code=204, tags=["recordings"])
    def delete_recording(recording_id: str, scope: Admin) -> Response:
        service.delete(recording_id, actor=f"api:{scope}")
        return Response(status_code=204)

    @app.post(f"{API_PREFIX}/exports", status_code=202, tags=["exports"])
    async def create_export(body: ExportRequest, _: Admin) -> JSONResponse:
        if (body.ids is None) == (body.filter is None):
            raise BadRequest("give exactly one of ids or filter")
        filt: RecordingFilter | None = None
        if body.filter is not None:
            raw = dict(body.filter)
            pairs = [split_extension(str(item)) for item in raw.pop("extension", None) or []]
            unknown = set(raw) - set(FILTER_KEYS)
            if unknown:
                raise BadRequest(f"unknown filter keys: {', '.join(sorted(unknown))}")
            filt = build_filter(raw, pairs)
        job = await exports.submit(body.ids, filt, body.format)
        return JSONResponse(job, status_code=202, headers={"Location": job["links"]["self"]})

    @app.get(f"{API_PREFIX}/exports/{{export_id}}", tags=["exports"])
    def export_status(export_id: str, _: Admin) -> dict[str, Any]:
        return exports.status(export_id)

    @app.get(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="get_export_file")
    @app.head(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="head_export_file")
    def export_file(request: Request, export_id: str, _: Admin) -> Response:
        path = service.export_file(export_id)
        fmt = exports.status(export_id)["format"]
        return file_response(
            request, path, content_type=ARCHIVE_TYPES[fmt], etag=make_etag(path, None),
            filename=f"srs-export-{export_id}.{fmt}", download=True,
        )

    return app
