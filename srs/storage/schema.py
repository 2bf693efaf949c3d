"""The index schema as a list of migrations; version N is the state after applying the first N.

The same migrations build the index on SQLite and on PostgreSQL. Write them once, in this
portable subset, and :meth:`srs.storage.backend.Dialect.migration` does the rest:

* Types: ``TEXT``, ``INTEGER`` (64-bit on both: becomes ``BIGINT``), ``REAL`` (double precision:
  becomes ``DOUBLE PRECISION``, never PostgreSQL's 4-byte ``REAL``), ``BLOB`` (becomes ``BYTEA``).
  Booleans are ``INTEGER`` 0/1. No ``BOOLEAN``, ``JSON``, ``SERIAL`` or ``DATETIME``: JSON is
  ``TEXT`` encoded by Python, times are unix seconds in ``REAL``.
* Surrogate keys: ``INTEGER PRIMARY KEY AUTOINCREMENT`` (becomes an identity column); never rely
  on ``rowid`` in a migration or a query (there is no rowid on PostgreSQL; order by a column).
* ``WITHOUT ROWID`` may end a ``CREATE TABLE`` (dropped on PostgreSQL).
* Triggers: SQLite's ``CREATE TRIGGER name AFTER … ON table [WHEN cond] BEGIN …; END;`` with
  ``NEW.``/``OLD.`` and plain statements inside (becomes a PL/pgSQL function plus a row trigger;
  ``IS NOT`` in the ``WHEN`` becomes ``IS DISTINCT FROM``).
* Upserts: ``INSERT … ON CONFLICT (cols) DO UPDATE SET col = excluded.col``; qualify the old value
  with the table name (``SET n = recording_counts.n + 1``): PostgreSQL refuses a bare ``n``.
* ``ALTER TABLE … ADD COLUMN`` with a constant default (or none); no column drops or renames
  (SQLite cannot drop a column that an index uses, and other nodes still read it).
* ``CREATE INDEX [IF NOT EXISTS]``, ``CREATE TABLE [IF NOT EXISTS]``, ``INSERT … SELECT``: as is.
* No ``PRAGMA``; no ``%`` or ``?`` in a migration (placeholder characters of the two drivers).
* SQLite-only structures (the FTS5 participant index: ``CREATE VIRTUAL TABLE`` and whatever names
  ``participants_fts``) are skipped on PostgreSQL; queries must then not need them there.

In queries (not migrations) use ``?`` placeholders on both engines, ``LIKE … ESCAPE '\\'`` through
``Dialect.like`` for case-insensitive matching, ``1 = 0`` rather than ``0`` for "false", and
``COALESCE(SUM(…), 0)`` wrapped in ``int()`` (PostgreSQL sums are decimals).

A fleet of nodes shares one PostgreSQL index: a new migration runs on the first node started with
it (under an advisory lock); older nodes refuse to start on a newer schema, so upgrade every node.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE recordings (
        id TEXT PRIMARY KEY,
        call_recording_id TEXT,
        sip_call_id TEXT,
        source TEXT,
        tenant TEXT,
        state TEXT NOT NULL,
        started_at REAL NOT NULL,
        ended_at REAL,
        duration_ms INTEGER,
        file_path TEXT,
        file_size INTEGER,
        file_format TEXT,
        sample_rate INTEGER,
        channels INTEGER,
        sha256 TEXT,
        incomplete INTEGER NOT NULL DEFAULT 0,
        incomplete_reason TEXT,
        warnings TEXT NOT NULL DEFAULT '[]',
        completeness TEXT NOT NULL DEFAULT '{}',
        legal_hold INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX recordings_call_recording_id ON recordings (call_recording_id, started_at);
    CREATE INDEX recordings_sip_call_id ON recordings (sip_call_id);
    CREATE INDEX recordings_started_at ON recordings (started_at, id);
    CREATE INDEX recordings_state ON recordings (state, started_at);
    CREATE INDEX recordings_source ON recordings (source, started_at);

    CREATE TABLE participants (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        participant_id TEXT NOT NULL,
        aor TEXT,
        name TEXT,
        send TEXT NOT NULL DEFAULT '[]',
        recv TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (recording_id, position)
    );
    CREATE INDEX participants_aor ON participants (aor);

    CREATE TABLE streams (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        stream_id TEXT,
        codec TEXT,
        packets_received INTEGER NOT NULL DEFAULT 0,
        packets_lost INTEGER NOT NULL DEFAULT 0,
        stats TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (recording_id, label)
    );

    CREATE TABLE extensions (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL
    );
    CREATE INDEX extensions_key_value ON extensions (key, value);
    CREATE INDEX extensions_recording ON extensions (recording_id);

    CREATE TABLE dtmf (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        label TEXT NOT NULL,
        digit TEXT NOT NULL,
        offset_ms INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL
    );
    CREATE INDEX dtmf_recording ON dtmf (recording_id);

    CREATE TABLE metadata_versions (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        received_at REAL NOT NULL,
        path TEXT,
        xml BLOB,
        PRIMARY KEY (recording_id, seq)
    );

    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        name TEXT,
        scope TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );

    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        event TEXT NOT NULL,
        url TEXT NOT NULL,
        subject_id TEXT,
        attempt INTEGER NOT NULL,
        status_code INTEGER,
        error TEXT,
        delivered INTEGER NOT NULL DEFAULT 0,
        at REAL NOT NULL
    );

    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        recording_id TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_log_recording ON audit_log (recording_id);

    CREATE TABLE exports (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        format TEXT NOT NULL,
        request TEXT NOT NULL,
        path TEXT,
        size INTEGER,
        count INTEGER,
        error TEXT,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    """,
    # 2: the recording sessions (RFC 7865 <session>) each recording's metadata describes.
    """
    CREATE TABLE IF NOT EXISTS sessions (
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        sip_session_ids TEXT NOT NULL DEFAULT '[]',
        start_time TEXT,
        stop_time TEXT,
        group_id TEXT,
        PRIMARY KEY (recording_id, position)
    );
    """,
    # 3: recordings per state, kept by triggers, so the unfiltered (or state-only) list's total is
    # one row read instead of a COUNT(*) over millions of rows.
    """
    CREATE TABLE recording_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO recording_counts (state, n) SELECT state, COUNT(*) FROM recordings GROUP BY state;
    CREATE TRIGGER recording_counts_insert AFTER INSERT ON recordings BEGIN
        INSERT INTO recording_counts (state, n) VALUES (NEW.state, 1)
            ON CONFLICT (state) DO UPDATE SET n = recording_counts.n + 1;
    END;
    CREATE TRIGGER recording_counts_delete AFTER DELETE ON recordings BEGIN
        UPDATE recording_counts SET n = n - 1 WHERE state = OLD.state;
    END;
    CREATE TRIGGER recording_counts_state AFTER UPDATE OF state ON recordings
        WHEN OLD.state IS NOT NEW.state BEGIN
        UPDATE recording_counts SET n = n - 1 WHERE state = OLD.state;
        INSERT INTO recording_counts (state, n) VALUES (NEW.state, 1)
            ON CONFLICT (state) DO UPDATE SET n = recording_counts.n + 1;
    END;
    """,
    # 4: how far the index writer process has committed the queue of its daemon run, in the same
    # transactions as the writes: a writer started again after a crash skips what is already in.
    """
    CREATE TABLE index_writer_progress (
        run TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 5: hardening. The audit log says who (token id), on what (export id) and from where (client
    # address), and is queried by time, token and action. Signed links are recorded so they die with
    # the token that made them or by an explicit revoke. Exports expire, and remember which
    # recordings they hold so that deleting a recording also purges the archives it is in.
    """
    ALTER TABLE audit_log ADD COLUMN token_id TEXT;
    ALTER TABLE audit_log ADD COLUMN export_id TEXT;
    ALTER TABLE audit_log ADD COLUMN client TEXT;
    CREATE INDEX audit_log_at ON audit_log (at, id);
    CREATE INDEX audit_log_token ON audit_log (token_id, at);
    CREATE INDEX audit_log_action ON audit_log (action, at);

    CREATE TABLE signed_links (
        id TEXT PRIMARY KEY,
        recording_id TEXT NOT NULL,
        token_id TEXT,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE INDEX signed_links_expires ON signed_links (expires_at);

    ALTER TABLE exports ADD COLUMN expires_at REAL;
    CREATE TABLE export_members (
        export_id TEXT NOT NULL,
        recording_id TEXT NOT NULL,
        PRIMARY KEY (export_id, recording_id)
    ) WITHOUT ROWID;
    CREATE INDEX export_members_recording ON export_members (recording_id);
    """,
    # 6: where a finished recording's file lives once it leaves the local disk for the object
    # store: its key there, and the upload's state (pending, done, failed) with the last reason.
    # NULL upload_state: the file stays in the local folder (no object store configured).
    """
    ALTER TABLE recordings ADD COLUMN object_key TEXT;
    ALTER TABLE recordings ADD COLUMN upload_state TEXT;
    ALTER TABLE recordings ADD COLUMN upload_error TEXT;
    ALTER TABLE recordings ADD COLUMN upload_attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE recordings ADD COLUMN uploaded_at REAL;
    CREATE INDEX recordings_upload_state ON recordings (upload_state);
    """,
    # 7: a fleet of nodes on one index. Which node recorded each recording; an explicit order for
    # extensions and DTMF events (no rowid on PostgreSQL); leases so that a fleet-wide job (retention,
    # exports) runs on one node at a time; a count row for every state from the start, so writers
    # that lock the count rows up front (srs.storage.writes.lock_counts) lock all there will be.
    """
    INSERT INTO recording_counts (state, n) VALUES ('available', 0) ON CONFLICT (state) DO NOTHING;
    INSERT INTO recording_counts (state, n) VALUES ('failed', 0) ON CONFLICT (state) DO NOTHING;
    INSERT INTO recording_counts (state, n) VALUES ('recording', 0) ON CONFLICT (state) DO NOTHING;
    INSERT INTO recording_counts (state, n) VALUES ('starting', 0) ON CONFLICT (state) DO NOTHING;
    INSERT INTO recording_counts (state, n) VALUES ('stopping', 0) ON CONFLICT (state) DO NOTHING;
    ALTER TABLE recordings ADD COLUMN node TEXT;
    CREATE INDEX recordings_node ON recordings (node, started_at);
    ALTER TABLE extensions ADD COLUMN position INTEGER;
    ALTER TABLE dtmf ADD COLUMN position INTEGER;
    CREATE TABLE job_leases (
        job TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # 8: a participant search is a substring of a name or AOR; LIKE '%x%' reads every participant row
    # (seconds at a million recordings). A trigram index answers substrings of 3+ characters. SQLite only:
    # these statements are skipped on PostgreSQL (see srs.storage.backend), whose search uses ILIKE.
    """
    CREATE VIRTUAL TABLE participants_fts USING fts5(
        aor, name, content='participants', content_rowid='rowid', tokenize='trigram'
    );
    CREATE TRIGGER participants_fts_insert AFTER INSERT ON participants BEGIN
        INSERT INTO participants_fts (rowid, aor, name) VALUES (new.rowid, new.aor, new.name);
    END;
    CREATE TRIGGER participants_fts_delete AFTER DELETE ON participants BEGIN
        INSERT INTO participants_fts (participants_fts, rowid, aor, name)
        VALUES ('delete', old.rowid, old.aor, old.name);
    END;
    CREATE TRIGGER participants_fts_update AFTER UPDATE ON participants BEGIN
        INSERT INTO participants_fts (participants_fts, rowid, aor, name)
        VALUES ('delete', old.rowid, old.aor, old.name);
        INSERT INTO participants_fts (rowid, aor, name) VALUES (new.rowid, new.aor, new.name);
    END;
    INSERT INTO participants_fts (participants_fts) VALUES ('rebuild');
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


def split_statements(script: str) -> list[str]:
    """Statements of a migration script; a trigger body's inner ``;`` does not end its statement."""
    statements: list[str] = []
    pending = ""
    for part in script.split(";"):
        pending += part + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending.strip())
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending.strip())
    return statements
