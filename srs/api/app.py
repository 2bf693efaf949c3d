"""The HTTP API, an ASGI app that runs inside the daemon's own event loop.

Endpoints that touch SQLite or the disk are plain functions so the framework runs them in its thread
pool; only export submission is a coroutine because it schedules work on the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import srs
from srs.api.console import add_console
from srs.api.console_api import add_console_api
from srs.api.events import EventHub
from srs.api.files import file_response, make_etag, ranged_response
from srs.api.guard import DEFAULT_MAX_BODY_BYTES, PRINCIPAL_KEY, Guard
from srs.api.metrics import MetricsExporter
from srs.api.peaks import PeaksCache
from srs.api.strict import strict_query
from srs.api.vcon import install_vcon_routes
from srs.service.audit import Action
from srs.service.errors import BadRequest, Forbidden, NotFound, ServiceError, Unauthorized
from srs.service.exports import ExportManager
from srs.service.filters import FILTER_KEYS, build_filter, filter_from_mapping, split_extension
from srs.service.principal import Kind, Principal
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
    """Either ``ids`` or ``filter`` (the same keys as the list endpoint's query parameters);
    any other key (``filters``, say) is refused by name."""

    model_config = ConfigDict(extra="forbid")

    ids: list[str] | None = None
    filter: dict[str, Any] | None = None
    format: str = Field(default="tar.gz", pattern=r"^(tar\.gz|zip)$")


def _error(exc: ServiceError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.to_json(), status_code=exc.status, headers=headers)


def _need(scope: str) -> Callable[[Request], Principal]:
    """A dependency that admits a principal with ``scope`` (admin implies read).

    The guard in front of the app has already identified the caller, before the body was read; this
    is the route's own check of the scope it needs.
    """

    def check(request: Request) -> Principal:
        principal = getattr(request.state, PRINCIPAL_KEY, None)
        if not isinstance(principal, Principal) or principal.kind is not Kind.TOKEN:
            raise Unauthorized("a valid bearer token is required")
        if not scope_allows(principal.scope or "", scope):
            raise Forbidden(f"this token has scope {principal.scope!r}; {scope!r} is needed")
        return principal

    return check


def _client(request: Request) -> str | None:
    """The peer address as the server saw it (a proxy in front would hide the real one)."""
    return request.client.host if request.client is not None else None


def for_scope(item: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """A recording as ``scope`` may see it: the file's place on the server's disk only for admin
    tokens (a read token is given to people who listen to calls, not to people who run the host)."""
    file = item.get("file")
    if scope == "admin" or not isinstance(file, dict) or "path" not in file:
        return item
    return {**item, "file": {key: value for key, value in file.items() if key != "path"}}


Read = Annotated[Principal, Depends(_need("read"))]
Admin = Annotated[Principal, Depends(_need("admin"))]


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
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    events: EventHub | None = None,
) -> FastAPI:
    max_link_min = max_link_validity_min if max_link_validity_min is not None else (
        service.max_link_validity_s / 60
    )
    metrics = MetricsExporter(service, metrics_provider, include_store=store_metrics)
    app = FastAPI(
        title="srs", version=srs.__version__, description="SIPREC recording server API",
        dependencies=[Depends(strict_query)],  # unknown query parameters are refused by name
        redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # public: /openapi.json and /docs only
    )
    app.state.webhooks = webhooks
    app.state.tokens = tokens
    hub = events if events is not None else EventHub()
    app.state.events = hub

    def verify_link(recording_id: str, query: Mapping[str, str]) -> Principal:
        return service.verify_link(
            recording_id, query.get("exp", ""), query.get("sig", ""), query.get("lid", ""),
            query.get("tok", ""),
        )

    app.add_middleware(
        Guard, identify=tokens.identify, verify_link=verify_link, max_body_bytes=max_body_bytes,
        verify_ticket=hub.redeem,
    )

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
        result = service.list(filt, page=page, max=max)
        return {**result, "items": [for_scope(item, who.scope) for item in result["items"]]}

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}", tags=["recordings"])
    def show_recording(recording_id: str, who: Read) -> dict[str, Any]:
        return for_scope(service.show(recording_id), who.scope)

    @app.get(f"{API_PREFIX}/sessions/{{call_recording_id}}", tags=["recordings"])
    def show_session(
        call_recording_id: Annotated[str, Path(max_length=256)], _: Read
    ) -> dict[str, Any]:
        """The logical recording of one SIPREC session: of the copies nodes made of it, the most
        complete, with ``copies`` naming them all (its ``links.file`` serves that copy)."""
        return service.show_by_call_recording_id(call_recording_id)

    def serve_recording(request: Request, recording_id: str, download: bool, who: Principal) -> Response:
        """Streamed through the API from the local disk or the object store alike: same auth, audit,
        Range and ETag whichever holds the file (see README, "Recordings in object storage")."""
        stored = service.stored_file(recording_id)
        response = ranged_response(
            request, stored.size, lambda start, length: service.read(stored, start, length),
            content_type=CONTENT_TYPES.get(stored.format, "application/octet-stream"),
            etag=stored.etag, filename=f"{recording_id}.{stored.format}", download=download,
        )
        if who.kind is Kind.LINK:
            action = Action.LINK_USE
        else:
            action = Action.HEAD if request.method == "HEAD" else Action.DOWNLOAD
        detail: dict[str, Any] = {"method": request.method, "status": response.status_code}
        if request.headers.get("range") is not None:
            detail["range"] = request.headers["range"][:200]
        service.audit.record(who, action, recording_id=recording_id, client=_client(request), detail=detail)
        return response

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="get_file")
    @app.head(f"{API_PREFIX}/recordings/{{recording_id}}/file", tags=["recordings"], operation_id="head_file")
    def recording_file(request: Request, recording_id: str, who: Read, download: bool = False) -> Response:
        return serve_recording(request, recording_id, download, who)

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
        who: Read,
        validity: float = Query(default_link_validity_min, gt=0, description="minutes"),
        download: int = Query(
            0, ge=0, le=1,
            description="1: answer 303 See Other with the signed link in Location (a browser or "
                        "`curl -L` fetches the file at once) instead of the JSON body",
        ),
    ) -> Response:
        if validity > max_link_min:
            raise BadRequest(f"validity is at most {max_link_min:g} minutes")
        path, expires_at = service.sign_link(recording_id, validity * 60, issuer=who, client=_client(request))
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
            who = service.verify_link(recording_id, exp, sig, lid, tok)
        return serve_recording(request, recording_id, download, who)

    @app.post(f"{API_PREFIX}/links/{{link_id}}/revoke", status_code=204, tags=["links"])
    def revoke_link(request: Request, link_id: str, who: Admin) -> Response:
        service.revoke_link(link_id, who, _client(request))
        return Response(status_code=204)

    @app.post(f"{API_PREFIX}/recordings/{{recording_id}}/hold", tags=["recordings"])
    def hold_recording(request: Request, recording_id: str, who: Admin, on: bool = True) -> dict[str, Any]:
        return service.hold(recording_id, on, actor=who, client=_client(request))

    @app.delete(f"{API_PREFIX}/recordings/{{recording_id}}", status_code=204, tags=["recordings"])
    def delete_recording(request: Request, recording_id: str, who: Admin) -> Response:
        service.delete(recording_id, actor=who, client=_client(request))
        return Response(status_code=204)

    @app.get(f"{API_PREFIX}/audit", tags=["audit"])
    def audit_log(
        _: Admin,
        since: str | None = Query(None, description="ISO 8601 or unix seconds; at >= since"),
        until: str | None = Query(None, description="ISO 8601 or unix seconds; at < until"),
        token: str | None = Query(None, description="token id"),
        recording_id: str | None = None,
        export_id: str | None = None,
        action: str | None = None,
        page: int = Query(1, ge=1, le=MAX_PAGE),
        max: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    ) -> dict[str, Any]:
        values = {"since": since, "until": until, "token": token, "recording_id": recording_id,
                  "export_id": export_id, "action": action}
        return service.audit.query(values, page=page, max=max)

    @app.post(f"{API_PREFIX}/exports", status_code=202, tags=["exports"])
    async def create_export(request: Request, body: ExportRequest, who: Admin) -> JSONResponse:
        if (body.ids is None) == (body.filter is None):
            raise BadRequest("give exactly one of ids or filter")
        filt: RecordingFilter | None = None
        if body.filter is not None:
            filt = filter_from_mapping(body.filter)
        job = await exports.submit(body.ids, filt, body.format, actor=who, client=_client(request))
        return JSONResponse(job, status_code=202, headers={"Location": job["links"]["self"]})

    @app.get(f"{API_PREFIX}/exports/{{export_id}}", tags=["exports"])
    def export_status(export_id: str, _: Admin) -> dict[str, Any]:
        return exports.status(export_id)

    @app.get(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="get_export_file")
    @app.head(f"{API_PREFIX}/exports/{{export_id}}/file", tags=["exports"], operation_id="head_export_file")
    def export_file(request: Request, export_id: str, who: Admin) -> Response:
        path = service.export_file(export_id)
        fmt = exports.status(export_id)["format"]
        response = file_response(
            request, path, content_type=ARCHIVE_TYPES[fmt], etag=make_etag(path, None),
            filename=f"srs-export-{export_id}.{fmt}", download=True,
        )
        detail: dict[str, Any] = {"method": request.method, "status": response.status_code}
        if request.headers.get("range") is not None:
            detail["range"] = request.headers["range"][:200]
        service.audit.record(
            who, Action.EXPORT_DOWNLOAD, export_id=export_id, client=_client(request), detail=detail
        )
        return response

    add_console(app)
    add_console_api(app, service, hub, PeaksCache(service.layout.peaks_dir), _need("read"))
    install_vcon_routes(app, service, min(60.0, max_link_min))
    return app
