"""Tables that are not about one call: API tokens, the audit log, webhook deliveries, export jobs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from srs.storage.db import Database


@dataclass(frozen=True)
class AuditQuery:
    """Filters of the audit log; ``None`` means any. ``since`` is inclusive, ``until`` exclusive."""

    since: float | None = None
    until: float | None = None
    token_id: str | None = None
    recording_id: str | None = None
    action: str | None = None
    export_id: str | None = None


class AdminStore:
    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    # ---- API tokens -------------------------------------------------------------------------

    def add_token(self, token_id: str, name: str | None, scope: str, token_hash: str) -> dict[str, Any]:
        now = self.clock()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO api_tokens (id, name, scope, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (token_id, name, scope, token_hash, now),
            )
        return {"id": token_id, "name": name, "scope": scope, "created_at": now, "revoked_at": None}

    def token_scope(self, token_hash: str) -> str | None:
        found = self.active_token(token_hash)
        return None if found is None else str(found["scope"])

    def active_token(self, token_hash: str) -> dict[str, Any] | None:
        """id, name and scope of the unrevoked token with this hash."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT id, name, scope FROM api_tokens WHERE hash = ? AND revoked_at IS NULL", (token_hash,)
            ).fetchone()
        return None if row is None else dict(row)

    def token_is_active(self, token_id: str) -> bool:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT 1 FROM api_tokens WHERE id = ? AND revoked_at IS NULL", (token_id,)
            ).fetchone()
        return row is not None

    def tokens(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT id, name, scope, created_at, revoked_at FROM api_tokens ORDER BY created_at, id"
            ).fetchall()
        return [dict(row) for row in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self.clock(), token_id),
            )
            return bool(cursor.rowcount > 0)

    # ---- audit log --------------------------------------------------------------------------

    def audit(
        self,
        actor: str,
        action: str,
        recording_id: str | None,
        detail: Mapping[str, Any],
        *,
        token_id: str | None = None,
        export_id: str | None = None,
        client: str | None = None,
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO audit_log (at, actor, action, recording_id, detail, token_id, export_id, client)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (self.clock(), actor, action, recording_id, json.dumps(dict(detail), sort_keys=True),
                 token_id, export_id, client),
            )

    def audit_entries(self, recording_id: str | None = None) -> list[dict[str, Any]]:
        rows, _ = self.audit_query(AuditQuery(recording_id=recording_id), limit=None)
        return rows

    def audit_query(
        self, query: AuditQuery, *, limit: int | None = 100, offset: int = 0, newest_first: bool = False
    ) -> tuple[list[dict[str, Any]], int]:
        """Matching rows (one page) and how many match in all."""
        clauses: list[str] = []
        args: list[Any] = []
        for column, op, value in (
            ("at", ">=", query.since), ("at", "<", query.until), ("token_id", "=", query.token_id),
            ("recording_id", "=", query.recording_id), ("action", "=", query.action),
            ("export_id", "=", query.export_id),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                args.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        order = " ORDER BY at DESC, id DESC" if newest_first else " ORDER BY at, id"
        page = "" if limit is None else f" LIMIT {int(limit)} OFFSET {int(offset)}"
        with self.db.read() as conn:
            total = int(conn.execute(f"SELECT COUNT(*) FROM audit_log{where}", args).fetchone()[0])
            rows = conn.execute(f"SELECT * FROM audit_log{where}{order}{page}", args).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows], total

    # ---- signed links -----------------------------------------------------------------------

    def add_link(
        self, link_id: str, recording_id: str, token_id: str | None, created_at: float, expires_at: float
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO signed_links (id, recording_id, token_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (link_id, recording_id, token_id, created_at, expires_at),
            )

    def link_state(self, link_id: str) -> dict[str, Any] | None:
        """The link row, with ``token_active`` (None for a link made without a token)."""
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT l.*, t.id IS NOT NULL AND t.revoked_at IS NULL AS token_active"
                " FROM signed_links l LEFT JOIN api_tokens t ON t.id = l.token_id WHERE l.id = ?",
                (link_id,),
            ).fetchone()
        if row is None:
            return None
        found = dict(row)
        found["token_active"] = bool(found["token_active"]) if found["token_id"] is not None else None
        return found

    def revoke_link(self, link_id: str) -> bool:
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE signed_links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (self.clock(), link_id),
            )
            return bool(cursor.rowcount > 0)

    def forget_links(self, expired_before: float) -> int:
        """Drop rows of links that expired (they are refused by their signature's time anyway)."""
        with self.db.write() as conn:
            cursor = conn.execute("DELETE FROM signed_links WHERE expires_at < ?", (expired_before,))
            return int(cursor.rowcount)

    # ---- webhook deliveries -----------------------------------------------------------------

    def log_delivery(
        self, event: str, url: str, subject_id: str | None, attempt: int, status_code: int | None,
        error: str | None, delivered: bool,
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO webhook_deliveries"
                " (event, url, subject_id, attempt, status_code, error, delivered, at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event, url, subject_id, attempt, status_code, error, int(delivered), self.clock()),
            )

    def deliveries(self) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute("SELECT * FROM webhook_deliveries ORDER BY id").fetchall()
        return [{**dict(row), "delivered": bool(row["delivered"])} for row in rows]

    # ---- export jobs ------------------------------------------------------------------------

    def add_export(self, export_id: str, fmt: str, request: Mapping[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO exports (id, state, format, request, created_at) VALUES (?, 'pending', ?, ?, ?)",
                (export_id, fmt, json.dumps(dict(request), sort_keys=True), self.clock()),
            )

    def update_export(self, export_id: str, **fields: Any) -> None:
        allowed = {"state", "path", "size", "count", "error", "finished_at", "expires_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown export fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.db.write() as conn:
            conn.execute(f"UPDATE exports SET {assignments} WHERE id = ?", [*fields.values(), export_id])

    def set_export_members(self, export_id: str, recording_ids: list[str]) -> None:
        with self.db.write() as conn:
            conn.executemany(
                "INSERT INTO export_members (export_id, recording_id) VALUES (?, ?)"
                " ON CONFLICT (export_id, recording_id) DO NOTHING",
                [(export_id, rid) for rid in recording_ids],
            )

    def exports_holding(self, recording_id: str) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT e.* FROM exports e JOIN export_members m ON m.export_id = e.id"
                " WHERE m.recording_id = ? AND e.state IN ('pending', 'running', 'done')",
                (recording_id,),
            ).fetchall()
        return [{**dict(row), "request": json.loads(row["request"])} for row in rows]

    def expired_exports(self, now: float) -> list[dict[str, Any]]:
        """Finished exports past their expiry; a job from before expiry was recorded counts as expired."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT * FROM exports WHERE state IN ('done', 'failed')"
                " AND (expires_at IS NULL OR expires_at <= ?)",
                (now,),
            ).fetchall()
        return [{**dict(row), "request": json.loads(row["request"])} for row in rows]

    def claim_export(self, export_id: str) -> bool:
        """Move a pending export to running; False if someone (another node) already did."""
        with self.db.write() as conn:
            cursor = conn.execute(
                "UPDATE exports SET state = 'running' WHERE id = ? AND state = 'pending'", (export_id,)
            )
            return bool(cursor.rowcount == 1)

    # ---- fleet-wide jobs --------------------------------------------------------------------

    def acquire_lease(self, job: str, holder: str, ttl_s: float) -> bool:
        """Hold ``job`` for ``ttl_s`` seconds (or renew it): True if ``holder`` has it now.

        One row per job, taken over only once it has expired, so of the nodes sharing an index
        exactly one runs a fleet-wide job (retention) per period, and another takes over when
        the holder stops renewing. Works the same on SQLite (one node) and PostgreSQL.
        """
        now = self.clock()
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO job_leases (job, holder, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE job_leases.expires_at <= ? OR job_leases.holder = ?",
                (job, holder, now + ttl_s, now, holder),
            )
            row = conn.execute("SELECT holder FROM job_leases WHERE job = ?", (job,)).fetchone()
        return row is not None and row[0] == holder

    def release_lease(self, job: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM job_leases WHERE job = ? AND holder = ?", (job, holder))

    def get_export(self, export_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM exports WHERE id = ?", (export_id,)).fetchone()
        if row is None:
            return None
        return {**dict(row), "request": json.loads(row["request"])}
