"""The API's front door, a pure ASGI middleware: who is asking is settled before any body is read.

FastAPI reads and parses a request body before it runs the dependencies that check the token, so a
100 MB POST without a token used to be buffered and JSON-decoded on the daemon's event loop (the
SIP loop) before its 401. Here the bearer token or the signed link's signature is checked from the
headers and the query alone; a refusal is sent without reading a byte of the body and closes the
connection. Only an admitted request has its body read, and never more than ``max_body_bytes``
of it (413 past that, whatever Content-Length claims).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import anyio.to_thread

from srs.service.context import API_PREFIX
from srs.service.errors import Forbidden, PayloadTooLarge, ServiceError, Unauthorized
from srs.service.principal import ANONYMOUS, Principal
from srs.service.tokens import scope_allows
from srs.storage.errors import IndexUnavailable

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Identify = Callable[[str], Principal | None]
VerifyLink = Callable[[str, Mapping[str, str]], Principal]

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
PRINCIPAL_KEY = "principal"
SERVER_SEND_KEY = "server_send"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
LINKS_PREFIX = f"{API_PREFIX}/links/"
CONSOLE_PREFIX = "/console"
EVENTS_PATH = f"{API_PREFIX}/events"
VerifyTicket = Callable[[str], Principal | None]


class Need(enum.Enum):
    PUBLIC = "public"
    READ = "read"
    ADMIN = "admin"
    SIGNED_LINK = "signed_link"
    READ_OR_TICKET = "read_or_ticket"


def required(method: str, path: str) -> Need:
    """What a request must show, from its method and path only.

    The routes check the scope again; this table makes sure a body is never read for a request that
    the route would refuse. Anything unknown needs a read token, so a typo never opens a door.
    """
    if path in PUBLIC_PATHS:
        return Need.PUBLIC
    if (path == CONSOLE_PREFIX or path.startswith(f"{CONSOLE_PREFIX}/")) and method in ("GET", "HEAD"):
        return Need.PUBLIC  # the console's static files; every call it makes carries a token
    if path == EVENTS_PATH and method == "GET":
        return Need.READ_OR_TICKET  # EventSource cannot send a header: a ticket in the query will do
    if path.startswith(LINKS_PREFIX):
        if method in ("GET", "HEAD") and "/" not in path[len(LINKS_PREFIX):]:
            return Need.SIGNED_LINK
        return Need.ADMIN
    if path.startswith((f"{API_PREFIX}/exports", f"{API_PREFIX}/audit")):
        return Need.ADMIN
    if method == "DELETE" or (method == "POST" and path.endswith("/hold")):
        return Need.ADMIN
    if method == "GET" and path.startswith(f"{API_PREFIX}/recordings/") and path.endswith(("/live", "/vcon")):
        return Need.READ  # listening live (websocket upgrade) and the vCon: a read token, as for the audio
    return Need.READ


def bearer(headers: Mapping[str, str]) -> str | None:
    header = headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify,
        verify_link: VerifyLink,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        verify_ticket: VerifyTicket | None = None,
    ) -> None:
        self.app = app
        self.identify = identify
        self.verify_link = verify_link
        self.verify_ticket = verify_ticket
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        try:
            principal = await self._admit(scope, headers)
            declared = _content_length(headers)
        except ServiceError as exc:
            await _refuse(send, exc)
            return
        except IndexUnavailable:  # tokens live in the index: a state to retry, as the routes answer it
            unavailable = ServiceError(
                "the recording index cannot be reached now", code="index_unavailable", status=503
            )
            await _refuse(send, unavailable, retry_after=5)
            return
        if declared is not None and declared > self.max_body_bytes:
            await _refuse(send, self._too_large())
            return
        scope.setdefault("state", {})[PRINCIPAL_KEY] = principal
        if declared is None and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)  # no body (RFC 9112 §6.3)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await _refuse(send, self._too_large())
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _admit(self, scope: Scope, headers: Mapping[str, str]) -> Principal:
        need = required(scope["method"], scope["path"])
        if need is Need.PUBLIC:
            return ANONYMOUS
        if need is Need.SIGNED_LINK:
            recording_id = scope["path"][len(LINKS_PREFIX):]
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            return await anyio.to_thread.run_sync(self.verify_link, recording_id, query)
        token = bearer(headers)
        if need is Need.READ_OR_TICKET and token is None and self.verify_ticket is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
            ticketed = self.verify_ticket(query.get("ticket", ""))  # in memory: no thread needed
            if ticketed is None:
                raise Unauthorized("a valid bearer token or events ticket is required")
            return ticketed
        if need is Need.READ_OR_TICKET:
            need = Need.READ
        principal = await anyio.to_thread.run_sync(self.identify, token) if token else None
        if principal is None:
            raise Unauthorized("a valid bearer token is required")
        if not scope_allows(principal.scope or "", need.value):
            raise Forbidden(f"this token has scope {principal.scope!r}; {need.value!r} is needed")
        return principal

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket upgrade is a GET: the same table, the same token, refused before it is accepted
        (with the HTTP status where the server can send one, else a close that becomes a 403)."""
        try:
            principal = await self._admit({**scope, "method": "GET"}, _headers(scope))
        except ServiceError as exc:
            if "websocket.http.response" in scope.get("extensions", {}):
                body = json.dumps(exc.to_json()).encode()
                length = str(len(body)).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", length)]
                start = {"type": "websocket.http.response.start", "status": exc.status, "headers": headers}
                await send(start)
                await send({"type": "websocket.http.response.body", "body": body})
            else:
                await send({"type": "websocket.close", "code": 1008})
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_KEY] = principal
        state[SERVER_SEND_KEY] = send  # the server's own send (its transport), before any wrapping
        await self.app(scope, receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request body is larger than {self.max_body_bytes} bytes")


def _headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in scope.get("headers", ()):
        key = name.decode("latin-1").lower()
        if key not in found:  # the first of repeated headers; Content-Length twice is refused below
            found[key] = value.decode("latin-1")
        elif key == "content-length":
            found[key] = "invalid"
    return found


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("content-length")
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ServiceError("invalid Content-Length", code="bad_request", status=400)
    return int(value)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read so far, in one message; then whatever the server says next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _refuse(send: Send, exc: ServiceError, retry_after: int | None = None) -> None:
    """Answer without reading the body; ``Connection: close`` so the unread rest is never received."""
    body = json.dumps(exc.to_json()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
