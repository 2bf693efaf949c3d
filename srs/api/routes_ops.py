"""``/healthz`` (public: is the process up) and ``/metrics`` (Prometheus text, read scope)."""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, Query
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

import srs
from srs.api.deps import Read
from srs.api.metrics import MetricsExporter


def install_ops_routes(app: FastAPI, metrics: MetricsExporter) -> None:
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
