"""API bearer tokens: shown once, stored only as a hash, checked against the index on every request.

Looking the hash up per request (one indexed SELECT) is what lets a running daemon honour a token
created or revoked by the CLI a moment ago, without a restart or a cache to invalidate.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from srs.service.errors import BadRequest, NotFound
from srs.service.principal import Kind, Principal
from srs.storage.ids import new_id
from srs.storage.index import RecordingIndex

SCOPES = ("read", "admin")
TOKEN_PREFIX = "srs_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def scope_allows(granted: str, needed: str) -> bool:
    """admin can do everything read can."""
    return granted == needed or granted == "admin"


class TokenService:
    def __init__(self, index: RecordingIndex) -> None:
        self.index = index

    def create(self, scope: str, name: str | None = None) -> tuple[str, dict[str, Any]]:
        if scope not in SCOPES:
            raise BadRequest(f"scope must be one of {', '.join(SCOPES)}")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = self.index.admin.add_token(new_id(self.index.clock()), name, scope, hash_token(token))
        return token, record

    def verify(self, token: str | None) -> str | None:
        principal = self.identify(token)
        return None if principal is None else principal.scope

    def identify(self, token: str | None) -> Principal | None:
        """The principal of an active token, or None (unknown, revoked, malformed)."""
        if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        found = self.index.admin.active_token(hash_token(token))
        if found is None:
            return None
        return Principal(
            Kind.TOKEN, scope=str(found["scope"]), token_id=str(found["id"]), token_name=found["name"]
        )

    def list(self) -> list[dict[str, Any]]:
        return self.index.admin.tokens()

    def revoke(self, token_id: str) -> None:
        if not self.index.admin.revoke_token(token_id):
            raise NotFound(f"no active token with id {token_id!r}")
