"""What only an admin token may do to recordings: put on or release a legal hold, delete, and read
the audit log of who did what."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from srs.api.deps import DEFAULT_PAGE_SIZE, MAX_PAGE, MAX_PAGE_SIZE, Admin, client_of
from srs.service.audit import AuditTrail
from srs.service.context import API_PREFIX
from srs.service.lifecycle import RecordingLifecycle


def install_admin_routes(app: FastAPI, lifecycle: RecordingLifecycle, audit: AuditTrail) -> None:
    @app.post(f"{API_PREFIX}/recordings/{{recording_id}}/hold", tags=["recordings"])
    def hold_recording(request: Request, recording_id: str, who: Admin, on: bool = True) -> dict[str, Any]:
        return lifecycle.hold(recording_id, on, actor=who, client=client_of(request))

    @app.delete(f"{API_PREFIX}/recordings/{{recording_id}}", status_code=204, tags=["recordings"])
    def delete_recording(request: Request, recording_id: str, who: Admin) -> Response:
        lifecycle.delete(recording_id, actor=who, client=client_of(request))
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
        return audit.query(values, page=page, max=max)
