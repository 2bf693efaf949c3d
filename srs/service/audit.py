"""The audit trail: every read of audio and every admin action, with who, what, when and from where.

Rows are written by the operation that does the thing (never by a log scraper), in the index, so a
compliance officer can ask "who fetched recording X" or "what did token T do last week" with one query.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from srs.service.errors import BadRequest
from srs.service.principal import Principal
from srs.service.timefmt import iso_utc, parse_instant
from srs.storage.admin import AdminStore, AuditQuery

MAX_AUDIT_PAGE = 1000


class Action(enum.StrEnum):
    DOWNLOAD = "download"  # GET of a recording's audio (whole file or ranges), by token or signed link
    HEAD = "head"  # HEAD of a recording's audio: learns its size and ETag
    LINK_CREATE = "link_create"
    LINK_USE = "link_use"  # the audio fetched through a signed link (detail says GET or HEAD, range)
    LINK_REVOKE = "link_revoke"
    EXPORT_CREATE = "export_create"
    EXPORT_DOWNLOAD = "export_download"
    EXPORT_PURGE = "export_purge"  # an archive removed: expired, or a recording in it was deleted
    LIVE_LISTEN = "live_listen"  # reserved: listening to a call while it is recorded
    DELETE = "delete"
    RETENTION_DELETE = "retention_delete"
    HOLD = "hold"
    RELEASE = "release"
    TOKEN_CREATE = "token_create"
    TOKEN_REVOKE = "token_revoke"


Actor = Principal | str
"""A principal of the API, or a plain name for the CLI and the daemon's own jobs ("retention")."""


def actor_fields(actor: Actor) -> tuple[str, str | None]:
    """(actor text, token id) for an audit row."""
    if isinstance(actor, Principal):
        return actor.actor, actor.token_id
    return actor, None


class AuditTrail:
    def __init__(self, admin: AdminStore) -> None:
        self.admin = admin

    def record(
        self,
        actor: Actor,
        action: Action,
        *,
        recording_id: str | None = None,
        export_id: str | None = None,
        client: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> None:
        text, token_id = actor_fields(actor)
        self.admin.audit(
            text, action.value, recording_id, detail or {}, token_id=token_id, export_id=export_id,
            client=client,
        )

    def query(
        self,
        values: Mapping[str, str | None],
        page: int = 1,
        max: int = 100,
    ) -> dict[str, Any]:
        """Newest first; ``values`` holds since/until (ISO 8601 or unix seconds), token, recording_id,
        export_id, action, as typed by a person."""
        if page < 1 or not 1 <= max <= MAX_AUDIT_PAGE:
            raise BadRequest(f"page must be 1 or more and max 1..{MAX_AUDIT_PAGE}")
        action = values.get("action") or None
        if action is not None and action not in {a.value for a in Action}:
            raise BadRequest(f"unknown action {action!r} (one of {', '.join(a.value for a in Action)})")
        since, until = values.get("since") or None, values.get("until") or None
        query = AuditQuery(
            since=parse_instant(since) if since is not None else None,
            until=parse_instant(until) if until is not None else None,
            token_id=values.get("token") or None,
            recording_id=values.get("recording_id") or None,
            action=action,
            export_id=values.get("export_id") or None,
        )
        rows, total = self.admin.audit_query(query, limit=max, offset=(page - 1) * max, newest_first=True)
        return {
            "items": [_represent(row) for row in rows],
            "pagination": {"pages": (total + max - 1) // max, "total": total, "current": page, "max": max},
        }


def _represent(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "at": iso_utc(row["at"]), "actor": row["actor"], "token_id": row["token_id"],
        "action": row["action"], "recording_id": row["recording_id"], "export_id": row["export_id"],
        "client": row["client"], "detail": row["detail"],
    }
