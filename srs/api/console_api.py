"""The API routes the web console needs beyond the recordings API: who am I, peaks, the live feed.

They are ordinary token-authenticated routes, documented in the OpenAPI schema, so integrators can
use them too (the events feed in particular).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse

from srs.api.events import EventHub
from srs.api.peaks import DEFAULT_WIDTH, MAX_WIDTH, MIN_WIDTH, PeaksCache, PeaksError
from srs.service.context import API_PREFIX
from srs.service.errors import Conflict
from srs.service.principal import Principal
from srs.service.recordings import RecordingService

Need = Callable[[Request], Principal]


def add_console_api(
    app: FastAPI, service: RecordingService, hub: EventHub, peaks: PeaksCache, need_read: Need
) -> None:
    read = Depends(need_read)  # a default value, not an annotation: these are closures' locals

    @app.get(f"{API_PREFIX}/whoami", tags=["tokens"])
    def whoami(who: Principal = read) -> dict[str, Any]:
        """The calling token's id, name and scope (a page decides which actions to offer from it)."""
        return {"token_id": who.token_id, "name": who.token_name, "scope": who.scope}

    @app.get(f"{API_PREFIX}/recordings/{{recording_id}}/peaks", tags=["recordings"])
    def recording_peaks(
        recording_id: str,
        _: Principal = read,
        width: int = Query(DEFAULT_WIDTH, ge=MIN_WIDTH, le=MAX_WIDTH, description="number of slices"),
    ) -> dict[str, Any]:
        """Min and max sample (int16, all channels) of each of ``width`` equal slices of the file."""
        path = service.file_path(recording_id)
        sha256 = (service.show(recording_id)["file"] or {}).get("sha256")
        try:
            result = peaks.get(path, sha256, width)
        except PeaksError as exc:
            raise Conflict(f"recording {recording_id}: {exc}", code="no_peaks") from exc
        return {"id": recording_id, "sha256": sha256, **result}

    @app.post(f"{API_PREFIX}/events/ticket", tags=["events"])
    def events_ticket(who: Principal = read) -> dict[str, Any]:
        """A short-lived ticket that opens the events feed (for clients that cannot send headers)."""
        ticket, ttl = hub.issue_ticket(who)
        return {"ticket": ticket, "expires_in": ttl, "url": f"{API_PREFIX}/events?ticket={ticket}"}

    @app.get(f"{API_PREFIX}/live", tags=["events"])
    async def live_calls(_: Principal = read) -> dict[str, Any]:
        """The calls being recorded now (the same snapshot the feed sends as ``live``)."""
        return hub.snapshot()

    # Not in the OpenAPI document: a stream that never ends cannot be described there (nor fuzzed);
    # the README documents it.
    @app.get(f"{API_PREFIX}/events", response_class=StreamingResponse, include_in_schema=False)
    async def events(
        _: Principal = read, ticket: str | None = Query(None, description="from POST /api/v1/events/ticket")
    ) -> StreamingResponse:
        """Server-sent events: ``live`` snapshots every second, then ``recording_started``,
        ``recording_finished`` and ``recording_available`` (the webhook payloads) as they happen."""
        return StreamingResponse(
            hub.stream(), media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
