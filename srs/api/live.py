"""``GET /api/v1/recordings/{id}/live``: a call being recorded, streamed over a websocket.

``{id}`` is the recording id or the call's RFC 7865 call-recording-id. The format is chosen by
subprotocol (``audio.jambonz.org``) or by ``?format=jambonz|twilio``; jambonz takes
``mix=mono|stereo|streams`` and ``rate=8000|16000``. The bearer token was checked by the guard
(:mod:`srs.api.guard`) from the upgrade request's headers before this runs; every listen is an
audit row (``live_listen``) with how long it lasted and what it sent and lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from srs.api.guard import PRINCIPAL_KEY, SERVER_SEND_KEY
from srs.service.audit import Action
from srs.service.context import API_PREFIX
from srs.service.live_formats import JAMBONZ_SUBPROTOCOL
from srs.service.live_hub import FORMATS, Listener, LiveHub
from srs.service.recordings import RecordingService

CLOSE_NOT_LIVE = 4404
CLOSE_BAD_REQUEST = 4400


def install_live_routes(app: FastAPI, hub: LiveHub, service: RecordingService) -> None:
    @app.websocket(f"{API_PREFIX}/recordings/{{recording_id}}/live")
    async def live(websocket: WebSocket, recording_id: str) -> None:
        protocols = websocket.scope.get("subprotocols") or []
        query = websocket.query_params
        chosen = query.get("format") or "jambonz"
        mix = query.get("mix", "mono")
        rate = query.get("rate", "8000")
        if chosen not in FORMATS or mix not in ("mono", "mixed", "stereo", "streams") or rate not in (
            "8000", "16000"
        ):
            await _refuse(websocket, CLOSE_BAD_REQUEST, "format, mix or rate not supported")
            return
        info = hub.describe(recording_id)
        if info is None:
            await _refuse(websocket, CLOSE_NOT_LIVE, "no call with this id is being recorded")
            return
        listener = Listener(
            info, format=chosen, mix=mix, sample_rate=int(rate), queue_frames=hub.queue_frames
        )
        if not hub.attach(info.key, listener):
            await _refuse(websocket, CLOSE_NOT_LIVE, "this call cannot be tapped (no media worker)")
            return
        principal = websocket.scope.get("state", {}).get(PRINCIPAL_KEY)
        client = websocket.client.host if websocket.client else None
        started = time.monotonic()
        subprotocol = JAMBONZ_SUBPROTOCOL if JAMBONZ_SUBPROTOCOL in protocols else None
        reason = "call ended"
        try:
            await websocket.accept(subprotocol=subprotocol)
            _limit_kernel_buffer(websocket)
            reader = asyncio.ensure_future(_drain_input(websocket))
            try:
                while True:
                    getter = asyncio.ensure_future(listener.next())
                    await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if not getter.done():
                        getter.cancel()
                        reason = "client closed"
                        break
                    kind, payload = getter.result()
                    if kind == "close":
                        break
                    if kind == "text":
                        await websocket.send_text(payload)
                    else:
                        await websocket.send_bytes(payload)
            finally:
                reader.cancel()
            with contextlib.suppress(Exception):
                await websocket.close(1000, reason)
        except (WebSocketDisconnect, RuntimeError, OSError):
            reason = "client went away"
        finally:
            hub.detach(info.key, listener)
            if principal is not None:
                detail = {
                    "format": chosen, "mix": mix, "rate": int(rate),
                    "seconds": round(time.monotonic() - started, 3),
                    "messages_sent": listener.sent, "frames_dropped": listener.dropped, "end": reason,
                }
                await asyncio.to_thread(
                    service.audit.record, principal, Action.LIVE_LISTEN, recording_id=info.recording_id,
                    client=client, detail=detail,
                )


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept, then close with a code and reason the client can read (a close before the accept
    would reach it as a bare HTTP 403)."""
    await websocket.accept()
    await websocket.close(code, reason)


SEND_BUFFER_BYTES = 64 * 1024


def _limit_kernel_buffer(websocket: WebSocket) -> None:
    """Cap the kernel's send buffer of this connection (best effort, where the server exposes it).

    Linux grows a TCP send buffer up to megabytes on its own, so a consumer that stops reading
    would have minutes of audio parked in the kernel before the listener's own bounded queue
    (which counts what it drops) ever filled. With the buffer fixed at 64 KB the stall reaches the
    queue within about a second, and what is lost is counted.
    """
    send = websocket.scope.get("state", {}).get(SERVER_SEND_KEY)
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


async def _drain_input(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, so its close is noticed."""
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
