"""Signed download links: a token-less path to one recording's audio, valid for a while.

The signed part holds the link's id and the id of the token that made it: revoking either kills
the link before it expires. A forged link never learns whether it expired or was revoked.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

from srs.service.audit import Action, Actor
from srs.service.context import API_PREFIX, RecordingContext
from srs.service.errors import BadRequest, BadSignature, LinkExpired, LinkRevoked, NotFound
from srs.service.files import RecordingFiles
from srs.service.principal import Kind, Principal
from srs.service.timefmt import iso_utc
from srs.storage.ids import is_valid_id, new_id

DEFAULT_LINK_VALIDITY_S = 300
MAX_LINK_VALIDITY_S = 86_400


class LinkSigner:
    def __init__(
        self, context: RecordingContext, files: RecordingFiles, secret: bytes,
        max_validity_s: int = MAX_LINK_VALIDITY_S,
    ) -> None:
        self.context = context
        self.files = files
        self.secret = secret
        self.max_validity_s = max_validity_s

    def _signature(self, recording_id: str, expires_at: int, link_id: str, token_id: str) -> str:
        message = f"{recording_id}\n{expires_at}\n{link_id}\n{token_id}".encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def sign_link(
        self,
        recording_id: str,
        validity_s: float = DEFAULT_LINK_VALIDITY_S,
        *,
        issuer: Actor = "cli",
        client: str | None = None,
    ) -> tuple[str, int]:
        """A token-less download path valid for ``validity_s`` seconds: (path with its query, expiry)."""
        if validity_s <= 0:
            raise BadRequest("link validity must be positive")
        if validity_s > self.max_validity_s:
            raise BadRequest(f"link validity is at most {self.max_validity_s} seconds")
        self.files.stored_file(recording_id)
        now = self.context.clock()
        expires_at = int(now + validity_s)
        link_id = new_id(now)
        token_id = issuer.token_id if isinstance(issuer, Principal) else None
        self.context.index.admin.add_link(link_id, recording_id, token_id, now, expires_at)
        sig = self._signature(recording_id, expires_at, link_id, token_id or "")
        self.context.audit.record(issuer, Action.LINK_CREATE, recording_id=recording_id, client=client,
                                  detail={"link_id": link_id, "expires_at": iso_utc(expires_at)})
        query = {"exp": str(expires_at), "lid": link_id}
        if token_id:
            query["tok"] = token_id
        query["sig"] = sig
        return f"{API_PREFIX}/links/{quote(recording_id)}?{urlencode(query)}", expires_at

    def verify_link(
        self, recording_id: str, exp: str | int, sig: str, link_id: str = "", token_id: str = ""
    ) -> Principal:
        """The link's principal; raise BadSignature (403), LinkExpired (410) or LinkRevoked (403)."""
        try:
            expires_at = int(str(exp)) if len(str(exp)) <= 12 else -1
        except (TypeError, ValueError) as exc:
            raise BadSignature("link signature is not valid") from exc
        ids = (recording_id, link_id, *((token_id,) if token_id else ()))
        if not all(is_valid_id(value) for value in ids):
            raise BadSignature("link signature is not valid")
        expected = self._signature(recording_id, expires_at, link_id, token_id)
        if not hmac.compare_digest(expected.encode(), str(sig).encode("utf-8", "replace")):
            raise BadSignature("link signature is not valid")
        if self.context.clock() >= expires_at:
            raise LinkExpired("link has expired", expired_at=iso_utc(expires_at))
        state = self.context.index.admin.link_state(link_id)
        if state is None or state["revoked_at"] is not None or state["recording_id"] != recording_id:
            raise LinkRevoked("this link was revoked")
        if token_id and state["token_active"] is not True:
            raise LinkRevoked("the token that made this link was revoked")
        return Principal(Kind.LINK, token_id=token_id or None, link_id=link_id)

    def revoke_link(self, link_id: str, actor: Actor = "cli", client: str | None = None) -> None:
        admin = self.context.index.admin
        state = admin.link_state(link_id) if is_valid_id(link_id) else None
        if state is None or not admin.revoke_link(link_id):
            raise NotFound(f"no active link with id {link_id!r}")
        self.context.audit.record(actor, Action.LINK_REVOKE, recording_id=state["recording_id"],
                                  client=client, detail={"link_id": link_id})
