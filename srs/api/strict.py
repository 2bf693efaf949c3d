"""Every API route refuses query parameters it does not declare, with the parameter named.

``?callrecordingid=X`` (a typo of ``call_recording_id``) used to be dropped silently and the list
answered with every recording. One app-wide dependency reads the matched route's declared query
parameters, so routes stay as they are and a new parameter is allowed by declaring it.
"""

from __future__ import annotations

from typing import Any

from fastapi.requests import HTTPConnection
from fastapi.routing import APIRoute

from srs.service.filters import EXTENSION_KEY, EXTENSION_PREFIX, check_keys

_CACHE = "_srs_allowed_query"


def _declared(dependant: Any) -> set[str]:
    names = {str(getattr(param, "alias", None) or param.name) for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


def allowed_query(route: APIRoute) -> frozenset[str]:
    """The query parameter names ``route`` takes (its own and its dependencies'), kept on the route
    itself (an ``id()``-keyed cache would hand a new route the set of a collected one)."""
    allowed: frozenset[str] | None = getattr(route, _CACHE, None)
    if allowed is None:
        allowed = frozenset(_declared(route.dependant))
        setattr(route, _CACHE, allowed)
    return allowed


def strict_query(request: HTTPConnection) -> None:
    """A dependency for the whole app: 400 naming any undeclared query parameter (websocket routes,
    not APIRoutes, check their own)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = allowed_query(route)
    prefixes = (EXTENSION_PREFIX,) if EXTENSION_KEY in allowed else ()
    check_keys(request.query_params.keys(), allowed, what="query parameter", prefixes=prefixes)
