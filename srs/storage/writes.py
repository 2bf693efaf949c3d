"""The daemon's per-call index writes, as named functions of a connection and plain values.

A write is ``(name, args)``: data, not a closure, so the same write runs in place (``run`` inside
a transaction of the caller) or in the index writer process, which receives it pickled. Every
argument is a str, number, bytes, None or a tuple of those; the JSON columns are encoded here, on
the writer's side, so the daemon's loop spends nothing on them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from srs.storage.backend import Connection
from srs.storage.errors import InvalidStateTransition, RecordingNotFound
from srs.storage.records import State, transition_allowed

Write = tuple[str, tuple[Any, ...]]

PREDECESSORS = {
    requested.value: tuple(s.value for s in State if transition_allowed(s, requested)) for requested in State
}
"""The states each state may be reached from, so a transition is one guarded UPDATE."""


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


def then(conn: Connection, check: Callable[[], None]) -> None:
    """Run ``check`` (it raises when a statement did not do what the write needs) now, or, inside
    a PostgreSQL batch (``PgConnection.batch``), once the batch's statements have all come back:
    a batch is one round trip, and a failed check rolls it back to be written one by one."""
    defer = getattr(conn, "defer", None)
    if defer is None:
        check()
    else:
        defer(check)


def lock_counts(conn: Connection) -> None:
    """Before a batch of writes on a shared (PostgreSQL) index: take the per-state count rows the
    triggers update, all of them (migration 5 makes one per state), in one order. Batches of
    several nodes touch those rows in whatever order their writes come, and two batches that take
    two rows in opposite orders deadlock (one is aborted after a second and written one write at
    a time); taken up front in
    state order they simply queue (single writes too: a state change takes the old state's row,
    then the new one's, in no fixed order). Once per transaction. SQLite needs nothing: a write
    transaction has the whole file."""
    if getattr(conn, "batch", None) is None or getattr(conn, "counts_locked", True):
        return
    conn.execute("SELECT state FROM recording_counts ORDER BY state FOR UPDATE")
    conn.counts_locked = True  # type: ignore[attr-defined]


def require(conn: Connection, recording_id: str) -> None:
    cursor = conn.execute("SELECT 1 FROM recordings WHERE id = ?", (recording_id,))

    def check() -> None:
        if cursor.fetchone() is None:
            raise RecordingNotFound(recording_id)

    then(conn, check)


def create(conn: Connection, values: tuple[Any, ...]) -> None:
    """``values``: id, call_recording_id, sip_call_id, source, tenant, state, started_at,
    file_format, sample_rate, channels, created_at, updated_at[, node] (writes queued by an older
    daemon run have no node)."""
    columns = (
        "id, call_recording_id, sip_call_id, source, tenant, state, started_at, file_format,"
        " sample_rate, channels, created_at, updated_at"
    )
    if len(values) > 12:
        columns += ", node"
    conn.execute(f"INSERT INTO recordings ({columns}) VALUES ({_marks(values)})", values)


def advance(conn: Connection, recording_id: str, state: str, now: float) -> None:
    """Forward only: the UPDATE matches only a state this one may follow."""
    predecessors = PREDECESSORS[state]
    cursor = conn.execute(
        f"UPDATE recordings SET state = ?, updated_at = ? WHERE id = ? AND state IN ({_marks(predecessors)})",
        (state, now, recording_id, *predecessors),
    )

    def check() -> None:
        if cursor.rowcount:
            return
        row = conn.execute("SELECT state FROM recordings WHERE id = ?", (recording_id,)).fetchone()
        if row is None:
            raise RecordingNotFound(recording_id)
        raise InvalidStateTransition(recording_id, row[0], state)

    then(conn, check)


def replace_metadata(
    conn: Connection,
    recording_id: str,
    call_recording_id: str | None,
    now: float,
    participants: tuple[tuple[str, str | None, str | None, tuple[str, ...], tuple[str, ...]], ...],
    extensions: tuple[tuple[str, str], ...],
    sessions: tuple[tuple[str, tuple[str, ...], str | None, str | None, str | None], ...],
    streams: tuple[tuple[Any, ...], ...],
) -> None:
    """Everything one rs-metadata version says, in place of what the previous version said."""
    cursor = conn.execute(
        "UPDATE recordings SET call_recording_id = COALESCE(?, call_recording_id), updated_at = ?"
        " WHERE id = ?",
        (call_recording_id, now, recording_id),
    )

    def check() -> None:
        if not cursor.rowcount:
            raise RecordingNotFound(recording_id)

    then(conn, check)
    for table in ("participants", "extensions", "sessions", "streams"):
        conn.execute(f"DELETE FROM {table} WHERE recording_id = ?", (recording_id,))
    conn.executemany(
        "INSERT INTO participants (recording_id, position, participant_id, aor, name, send, recv)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (recording_id, pos, pid, aor, name, json.dumps(list(send)), json.dumps(list(recv)))
            for pos, (pid, aor, name, send, recv) in enumerate(participants)
        ],
    )
    conn.executemany(
        "INSERT INTO extensions (recording_id, key, value, position) VALUES (?, ?, ?, ?)",
        [(recording_id, key, value, pos) for pos, (key, value) in enumerate(extensions)],
    )
    conn.executemany(
        "INSERT INTO sessions (recording_id, position, session_id, sip_session_ids, start_time,"
        " stop_time, group_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (recording_id, pos, sid, json.dumps(list(sip_ids)), start, stop, group)
            for pos, (sid, sip_ids, start, stop, group) in enumerate(sessions)
        ],
    )
    _insert_streams(conn, recording_id, streams)


def upsert_streams(conn: Connection, recording_id: str, streams: tuple[tuple[Any, ...], ...]) -> None:
    """Per-stream statistics by label (streams not mentioned are kept)."""
    require(conn, recording_id)
    _insert_streams(conn, recording_id, streams)


def _insert_streams(
    conn: Connection, recording_id: str, streams: tuple[tuple[Any, ...], ...]
) -> None:
    """``streams``: (label, stream_id, codec, packets_received, packets_lost, stats mapping items)."""
    conn.executemany(
        "INSERT INTO streams"
        " (recording_id, label, stream_id, codec, packets_received, packets_lost, stats)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (recording_id, label) DO UPDATE SET"
        " stream_id = COALESCE(excluded.stream_id, streams.stream_id),"
        " codec = COALESCE(excluded.codec, streams.codec),"
        " packets_received = excluded.packets_received, packets_lost = excluded.packets_lost,"
        " stats = excluded.stats",
        [
            (recording_id, label, sid, codec, received, lost, json.dumps(dict(stats), sort_keys=True))
            for label, sid, codec, received, lost, stats in streams
        ],
    )


def add_version(
    conn: Connection, recording_id: str, seq: int, received_at: float, xml: bytes
) -> None:
    conn.execute(
        "INSERT INTO metadata_versions (recording_id, seq, received_at, path, xml) VALUES (?, ?, ?, NULL, ?)",
        (recording_id, seq, received_at, xml),
    )


def finalize(
    conn: Connection,
    recording_id: str,
    state: str,
    now: float,
    values: tuple[Any, ...],
    warnings: tuple[str, ...],
    completeness: tuple[tuple[str, Any], ...],
    dtmf: tuple[tuple[str, str, int, int], ...],
) -> None:
    """``values``: ended_at, duration_ms, file_path, file_size, file_format, sample_rate, channels,
    sha256, incomplete, incomplete_reason."""
    advance(conn, recording_id, state, now)
    conn.execute(
        "UPDATE recordings SET ended_at = ?, duration_ms = ?, file_path = ?, file_size = ?,"
        " file_format = ?, sample_rate = ?, channels = ?, sha256 = ?, incomplete = ?,"
        " incomplete_reason = ?, warnings = ?, completeness = ?, updated_at = ? WHERE id = ?",
        (
            *values, json.dumps(list(warnings)), json.dumps(dict(completeness), sort_keys=True), now,
            recording_id,
        ),
    )  # fmt: skip
    conn.execute("DELETE FROM dtmf WHERE recording_id = ?", (recording_id,))
    conn.executemany(
        "INSERT INTO dtmf (recording_id, label, digit, offset_ms, duration_ms, position)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        [(recording_id, *event, pos) for pos, event in enumerate(dtmf)],
    )


WRITES: dict[str, Callable[..., None]] = {
    "create": create,
    "advance": advance,
    "metadata": replace_metadata,
    "streams": upsert_streams,
    "version": add_version,
    "finalize": finalize,
}


def run(conn: Connection, write: Write) -> None:
    """One write inside the caller's transaction."""
    lock_counts(conn)
    name, args = write
    WRITES[name](conn, *args)
