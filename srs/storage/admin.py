"""Tables that are not about one call: API tokens, the audit log, webhook deliveries, export jobs."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from srs.storage.db import Database


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
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT scope FROM api_tokens WHERE hash = ? AND revoked_at IS NULL", (token_hash,)
            ).fetchone()
        return None if row is None else str(row["scope"])

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

    def audit(self, actor: str, action: str, recording_id: str | None, detail: Mapping[str, Any]) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO audit_log (at, actor, action, recording_id, detail) VALUES (?, ?, ?, ?, ?)",
                (self.clock(), actor, action, recording_id, json.dumps(dict(detail), sort_keys=True)),
            )

    def audit_entries(self, recording_id: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit_log"
        args: list[Any] = []
        if recording_id is not None:
            sql += " WHERE recording_id = ?"
            args.append(recording_id)
        with self.db.read() as conn:
            rows = conn.execute(sql + " ORDER BY id", args).fetchall()
        return [{**dict(row), "detail": json.loads(row["detail"])} for row in rows]

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
        allowed = {"state", "path", "size", "count", "error", "finished_at"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"unknown export fields {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.db.write() as conn:
            conn.execute(f"UPDATE exports SET {assignments} WHERE id = ?", [*fields.values(), export_id])

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
