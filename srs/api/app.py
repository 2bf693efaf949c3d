"""The HTTP API, an ASGI app that runs inside the daemon's own event loop.

Endpoints that touch SQLite or the disk are plain functions so the framework runs them in its thread
pool; only export submission is a coroutine because it schedules work on the loop. The routes live
in one module per resource (``routes_*``); this module only puts them together, in the order that
fixes the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry

import srs
from srs.api.console import add_console
from srs.api.console_api import add_console_api
from srs.api.deps import need
from srs.api.errors import install_error_handlers
from srs.api.events import EventHub
from srs.api.guard import DEFAULT_MAX_BODY_BYTES, Guard
from srs.api.metrics import MetricsExporter
from srs.api.peaks import PeaksCache
from srs.api.routes_admin import install_admin_routes
from srs.api.routes_exports import install_export_routes
from srs.api.routes_links import install_link_routes
from srs.api.routes_ops import install_ops_routes
from srs.api.routes_recordings import install_recording_routes
from srs.api.strict import strict_query
from srs.api.vcon import install_vcon_routes
from srs.service.exports import ExportManager
from srs.service.principal import Principal
from srs.service.recordings import RecordingService
from srs.service.tokens import TokenService
from srs.service.webhooks import WebhookDispatcher


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
    app = FastAPI(
        title="srs", version=srs.__version__, description="SIPREC recording server API",
        dependencies=[Depends(strict_query)],  # unknown query parameters are refused by name
        redoc_url=None, swagger_ui_oauth2_redirect_url=None,  # public: /openapi.json and /docs only
    )
    hub = events if events is not None else EventHub()
    app.state.webhooks, app.state.tokens, app.state.events = webhooks, tokens, hub

    def verify_link(recording_id: str, query: Mapping[str, str]) -> Principal:
        return service.links.verify_link(
            recording_id, query.get("exp", ""), query.get("sig", ""), query.get("lid", ""),
            query.get("tok", ""),
        )

    app.add_middleware(
        Guard, identify=tokens.identify, verify_link=verify_link, max_body_bytes=max_body_bytes,
        verify_ticket=hub.redeem,
    )
    install_error_handlers(app)
    install_ops_routes(app, MetricsExporter(service, metrics_provider, include_store=store_metrics))
    install_recording_routes(app, service.catalog, service.files, service.audit)
    install_link_routes(app, service.links, service.files, service.audit,
                        default_validity_min=default_link_validity_min, max_validity_min=max_link_min)
    install_admin_routes(app, service.lifecycle, service.audit)
    install_export_routes(app, service.exports, exports, service.audit)
    add_console(app)
    add_console_api(app, service, hub, PeaksCache(service.layout.peaks_dir), need("read"))
    install_vcon_routes(app, service, min(60.0, max_link_min))
    return app
