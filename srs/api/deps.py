"""What every route module shares: the scope a route needs, the caller's address, what a scope may
see of a recording, and the paging bounds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request

from srs.api.guard import PRINCIPAL_KEY
from srs.service.errors import Forbidden, Unauthorized
from srs.service.principal import Kind, Principal
from srs.service.tokens import scope_allows

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_PAGE = 1_000_000


def need(scope: str) -> Callable[[Request], Principal]:
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


Read = Annotated[Principal, Depends(need("read"))]
Admin = Annotated[Principal, Depends(need("admin"))]


def client_of(request: Request) -> str | None:
    """The peer address as the server saw it (a proxy in front would hide the real one)."""
    return request.client.host if request.client is not None else None


def for_scope(item: dict[str, Any], scope: str | None) -> dict[str, Any]:
    """A recording as ``scope`` may see it: the file's place on the server's disk only for admin
    tokens (a read token is given to people who listen to calls, not to people who run the host)."""
    file = item.get("file")
    if scope == "admin" or not isinstance(file, dict) or "path" not in file:
        return item
    return {**item, "file": {key: value for key, value in file.items() if key != "path"}}


def range_detail(request: Request, status: int) -> dict[str, Any]:
    """The audit detail of a file request: method, answer, and the Range asked for (cut to 200)."""
    detail: dict[str, Any] = {"method": request.method, "status": status}
    if request.headers.get("range") is not None:
        detail["range"] = request.headers["range"][:200]
    return detail
