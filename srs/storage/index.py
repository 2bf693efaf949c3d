"""The recording index: what the daemon writes while calls run and what admins query afterwards."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srs.storage.admin import AdminStore
from srs.storage.db import Database, ErrorHandler, Operation, WriteBehind
from srs.storage.errors import InvalidStateTransition, RecordingNotFound
from srs.storage.ids import new_id
from srs.storage.layout import DataLayout
from srs.storage.records import (
    UNFINISHED_STATES,
    FinalizedRecording,
    NewRecording,
    Page,
    Participant,
    RecordingFilter,
    SessionInfo,
    State,
    StreamInfo,
    transition_allowed,
)

Clock = Callable[[], float]
_MAX_IN_LIST = 500
_PREDECESSORS = {
    requested: tuple(s.value for s in State if transition_allowed(s, requested)) for requested in State
}
"""The states each state may be reached from, so a transition is one guarded UPDATE."""


def _marks(values: Sequence[object]) -> str:
    return ",".join("?" * len(values))


@dataclass(slots=True)
class _Queued:
    """What the write-behind path knows of a recording it created, so calls can be checked at once."""

    state: State
    started_at: float
    versions: int = 0


class RecordingIndex:
    """Sorted newest first (``started_at`` descending, ties by id descending) unless the filter asks
    for oldest first.

    After :meth:`start_write_behind` the daemon write API returns at once for the recordings it
    creates from then on: the writes go to one writer thread that commits them in order, many to a
    transaction, off the caller's thread. State transitions are still checked when called (and
    raise there); reads through any index on the same file in this process wait for the writes
    queued before them.
    """

    def __init__(self, path: Path | str, clock: Clock = time.time, layout: DataLayout | None = None) -> None:
        self.db = Database(path)
        self.clock = clock
        self.layout = layout
        self.admin = AdminStore(self.db, clock)
        self._writer: WriteBehind | None = None
        self._queued: dict[str, _Queued] = {}

    def close(self) -> None:
        """Commit what is queued, then close the connection."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.db.close()

    # ---- write-behind -----------------------------------------------------------------------

    def start_write_behind(self, on_error: ErrorHandler) -> None:
        """Queue the daemon's writes from now on (one caller thread); ``on_error(what, exc)`` hears of
        every write that had to be given up, and of metadata kept in the row when its file failed."""
        if self._writer is None:
            self._writer = WriteBehind(self.db, on_error)

    @property
    def write_behind(self) -> bool:
        return self._writer is not None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued so far is committed (or given up); False on timeout."""
        return True if self._writer is None else self._writer.wait(timeout)

    def _apply(self, recording_id: str, what: str, operation: Operation) -> None:
        if self._writer is not None and recording_id in self._queued:
            self._writer.submit(f"{what} {recording_id}", operation)
            return
        with self.db.write() as conn:
            operation(conn)

    def _checked(self, recording_id: str, requested: State) -> _Queued | None:
        """The queued recording, after checking the transition against its last requested state."""
        queued = self._queued.get(recording_id) if self._writer is not None else None
        if queued is not None and not transition_allowed(queued.state, requested):
            raise InvalidStateTransition(recording_id, queued.state.value, requested.value)
        return queued

    # ---- daemon write API -------------------------------------------------------------------

    def create_recording(self, new: NewRecording, recording_id: str | None = None) -> str:
        rid = recording_id or new_id(new.started_at)
        now = self.clock()
        state = State(new.state)
        values = (
            rid, new.call_recording_id, new.sip_call_id, new.source, new.tenant, state.value,
            new.started_at, new.file_format, new.sample_rate, new.channels, now, now,
        )

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO recordings (id, call_recording_id, sip_call_id, source, tenant, state,"
                " started_at,"
                " file_format, sample_rate, channels, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )

        if self._writer is not None and rid not in self._queued:
            self._queued[rid] = _Queued(state, new.started_at)
        self._apply(rid, "create", insert)
        return rid

    def advance_state(self, recording_id: str, state: State | str) -> None:
        requested = State(state)
        queued = self._checked(recording_id, requested)
        if queued is not None:
            queued.state = requested
        now = self.clock()
        self._apply(
            recording_id, f"advance to {requested.value}",
            lambda conn: self._advance(conn, recording_id, requested, now),
        )  # fmt: skip

    def _advance(
        self, conn: sqlite3.Connection, recording_id: str, requested: State, now: float | None = None
    ) -> None:
        predecessors = _PREDECESSORS[requested]
        changed = conn.execute(
            "UPDATE recordings SET state = ?, updated_at = ?"
            f" WHERE id = ? AND state IN ({_marks(predecessors)})",
            (requested.value, self.clock() if now is None else now, recording_id, *predecessors),
        ).rowcount
        if changed:
            return
        row = conn.execute("SELECT state FROM recordings WHERE id = ?", (recording_id,)).fetchone()
        if row is None:
            raise RecordingNotFound(recording_id)
        raise InvalidStateTransition(recording_id, row["state"], requested.value)

    def set_metadata(
        self,
        recording_id: str,
        call_recording_id: str | None,
        participants: Sequence[Participant],
        streams: Sequence[StreamInfo],
        extensions: Mapping[str, str] | Iterable[tuple[str, str]],
        sessions: Sequence[SessionInfo] = (),
    ) -> None:
        """Replace everything the rs-metadata says (called for every metadata version)."""
        pairs = list(extensions.items()) if isinstance(extensions, Mapping) else list(extensions)
        participants, streams, sessions = tuple(participants), tuple(streams), tuple(sessions)
        now = self.clock()

        def replace(conn: sqlite3.Connection) -> None:
            found = conn.execute(
                "UPDATE recordings SET call_recording_id = COALESCE(?, call_recording_id), updated_at = ?"
                " WHERE id = ?",
                (call_recording_id, now, recording_id),
            ).rowcount
            if not found:
                raise RecordingNotFound(recording_id)
            conn.execute("DELETE FROM participants WHERE recording_id = ?", (recording_id,))
            conn.executemany(
                "INSERT INTO participants (recording_id, position, participant_id, aor, name, send, recv)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (recording_id, pos, p.participant_id, p.aor, p.name, json.dumps(list(p.send)),
                     json.dumps(list(p.recv)))
                    for pos, p in enumerate(participants)
                ],
            )
            conn.execute("DELETE FROM extensions WHERE recording_id = ?", (recording_id,))
            conn.executemany(
                "INSERT INTO extensions (recording_id, key, value) VALUES (?, ?, ?)",
                [(recording_id, str(k), str(v)) for k, v in pairs],
            )
            conn.execute("DELETE FROM sessions WHERE recording_id = ?", (recording_id,))
            conn.executemany(
                "INSERT INTO sessions (recording_id, position, session_id, sip_session_ids, start_time,"
                " stop_time, group_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (recording_id, pos, s.session_id, json.dumps(list(s.sip_session_ids)), s.start_time,
                     s.stop_time, s.group_id)
                    for pos, s in enumerate(sessions)
                ],
            )
            conn.execute("DELETE FROM streams WHERE recording_id = ?", (recording_id,))
            self._insert_streams(conn, recording_id, streams)

        self._apply(recording_id, "metadata", replace)

    def update_streams(self, recording_id: str, streams: Sequence[StreamInfo]) -> None:
        """Upsert per-stream statistics by label (streams not mentioned are kept)."""
        streams = tuple(streams)

        def upsert(conn: sqlite3.Connection) -> None:
            self._require(conn, recording_id)
            self._insert_streams(conn, recording_id, streams)

        self._apply(recording_id, "streams", upsert)

    @staticmethod
    def _insert_streams(conn: sqlite3.Connection, recording_id: str, streams: Sequence[StreamInfo]) -> None:
        conn.executemany(
            "INSERT INTO streams"
            " (recording_id, label, stream_id, codec, packets_received, packets_lost, stats)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (recording_id, label) DO UPDATE SET"
            " stream_id = COALESCE(excluded.stream_id, stream_id), codec = COALESCE(excluded.codec, codec),"
            " packets_received = excluded.packets_received, packets_lost = excluded.packets_lost,"
            " stats = excluded.stats",
            [
                (recording_id, s.label, s.stream_id, s.codec, s.packets_received, s.packets_lost,
                 json.dumps(dict(s.stats), sort_keys=True))
                for s in streams
            ],
        )

    def add_metadata_version(self, recording_id: str, received_at: float, xml: bytes) -> int:
        """Keep one raw rs-metadata version; returns its sequence number (from 1).

        With a data layout the XML goes to ``<id>.metadata/NNN.xml`` beside the audio (the row keeps the
        path); without one it is stored in the row itself.
        """
        data = bytes(xml)
        queued = self._queued.get(recording_id) if self._writer is not None else None
        if queued is not None and self._writer is not None:
            queued.versions += 1
            seq, started_at, writer = queued.versions, queued.started_at, self._writer

            def store(conn: sqlite3.Connection) -> None:
                try:
                    self._store_version(conn, recording_id, started_at, seq, received_at, data)
                except OSError as exc:
                    # The XML is worth more than where it lives: keep it in the row.
                    self._insert_version(conn, recording_id, seq, received_at, None, data)
                    writer.on_error(f"metadata version {seq} of {recording_id} kept in the index", exc)

            writer.submit(f"metadata version {seq} {recording_id}", store)
            return seq
        with self.db.write() as conn:
            row = conn.execute("SELECT started_at FROM recordings WHERE id = ?", (recording_id,)).fetchone()
            if row is None:
                raise RecordingNotFound(recording_id)
            seq = self._next_seq(conn, recording_id)
            self._store_version(conn, recording_id, float(row["started_at"]), seq, received_at, data)
        return seq

    def _store_version(
        self, conn: sqlite3.Connection, recording_id: str, started_at: float, seq: int, received_at: float,
        xml: bytes,
    ) -> None:  # fmt: skip
        if self.layout is None:
            self._insert_version(conn, recording_id, seq, received_at, None, xml)
            return
        target = self.layout.metadata_version_path(recording_id, started_at, seq)
        self.layout.make_dirs(target.parent)
        target.write_bytes(xml)
        self._insert_version(conn, recording_id, seq, received_at, str(target), None)

    @staticmethod
    def _insert_version(
        conn: sqlite3.Connection, recording_id: str, seq: int, received_at: float, path: str | None,
        xml: bytes | None,
    ) -> None:  # fmt: skip
        conn.execute(
            "INSERT INTO metadata_versions (recording_id, seq, received_at, path, xml)"
            " VALUES (?, ?, ?, ?, ?)",
            (recording_id, seq, received_at, path, xml),
        )

    @staticmethod
    def _next_seq(conn: sqlite3.Connection, recording_id: str) -> int:
        row = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM metadata_versions WHERE recording_id = ?", (recording_id,)
        ).fetchone()
        return int(row[0]) + 1

    def metadata_versions(self, recording_id: str) -> list[dict[str, Any]]:
        """Every stored version, oldest first, as {seq, received_at, path, xml: bytes}."""
        with self.db.read() as conn:
            rows = conn.execute(
                "SELECT seq, received_at, path, xml FROM metadata_versions"
                " WHERE recording_id = ? ORDER BY seq",
                (recording_id,),
            ).fetchall()
        versions = []
        for row in rows:
            item = dict(row)
            if item["xml"] is None and item["path"] is not None:
                source = Path(item["path"])
                if self.layout is not None:
                    source = self.layout.contain(source)
                try:
                    item["xml"] = source.read_bytes()
                except OSError:
                    item["xml"] = None
            versions.append(item)
        return versions

    def finalize(self, recording_id: str, final: FinalizedRecording) -> None:
        if final.state not in (State.AVAILABLE, State.FAILED):
            raise ValueError("finalize needs state available or failed")
        state = State(final.state)
        queued = self._checked(recording_id, state)
        now = self.clock()

        def write(conn: sqlite3.Connection) -> None:
            self._advance(conn, recording_id, state, now)
            conn.execute(
                "UPDATE recordings SET ended_at = ?, duration_ms = ?, file_path = ?, file_size = ?,"
                " file_format = ?, sample_rate = ?, channels = ?, sha256 = ?, incomplete = ?,"
                " incomplete_reason = ?, warnings = ?, completeness = ?, updated_at = ? WHERE id = ?",
                (
                    final.ended_at, final.duration_ms, final.file_path, final.file_size, final.file_format,
                    final.sample_rate, final.channels, final.sha256, int(final.incomplete),
                    final.incomplete_reason, json.dumps(list(final.warnings)),
                    json.dumps(dict(final.completeness), sort_keys=True), now, recording_id,
                ),
            )
            conn.execute("DELETE FROM dtmf WHERE recording_id = ?", (recording_id,))
            conn.executemany(
                "INSERT INTO dtmf (recording_id, label, digit, offset_ms, duration_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                [(recording_id, d.label, d.digit, d.offset_ms, d.duration_ms) for d in final.dtmf],
            )

        self._apply(recording_id, f"finalize as {state.value}", write)
        if queued is not None:
            del self._queued[recording_id]

    def unfinished(self) -> list[str]:
        marks = ",".join("?" * len(UNFINISHED_STATES))
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT id FROM recordings WHERE state IN ({marks}) ORDER BY started_at, id",
                [s.value for s in UNFINISHED_STATES],
            ).fetchall()
        return [row["id"] for row in rows]

    def set_legal_hold(self, recording_id: str, on: bool) -> None:
        with self.db.write() as conn:
            self._require(conn, recording_id)
            conn.execute(
                "UPDATE recordings SET legal_hold = ?, updated_at = ? WHERE id = ?",
                (int(on), self.clock(), recording_id),
            )

    def delete(self, recording_id: str) -> None:
        self._queued.pop(recording_id, None)
        with self.db.write() as conn:
            self._require(conn, recording_id)
            conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))

    @staticmethod
    def _require(conn: sqlite3.Connection, recording_id: str) -> None:
        if conn.execute("SELECT 1 FROM recordings WHERE id = ?", (recording_id,)).fetchone() is None:
            raise RecordingNotFound(recording_id)

    # ---- query API --------------------------------------------------------------------------

    def get(self, recording_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM recordings WHERE id = ?", (recording_id,)).fetchone()
            if row is None:
                return None
            return self._hydrate(conn, [row])[0]

    def newest_by_call_recording_id(self, call_recording_id: str) -> dict[str, Any] | None:
        with self.db.read() as conn:
            row = conn.execute(
                "SELECT * FROM recordings WHERE call_recording_id = ?"
                " ORDER BY started_at DESC, id DESC LIMIT 1",
                (call_recording_id,),
            ).fetchone()
            if row is None:
                return None
            return self._hydrate(conn, [row])[0]

    def find(self, filt: RecordingFilter, page: int = 1, max: int | None = None) -> Page:
        where, params = _where(filt)
        order = "ASC" if filt.oldest_first else "DESC"
        page = 1 if page < 1 else page
        with self.db.read() as conn:
            total = self._total(conn, filt, where, params)
            sql = f"SELECT * FROM recordings r{where} ORDER BY r.started_at {order}, r.id {order}"
            args = list(params)
            if max is not None:
                sql += " LIMIT ? OFFSET ?"
                args += [max, (page - 1) * max]
            rows = conn.execute(sql, args).fetchall()
            items = self._hydrate(conn, rows)
        if max is None:
            pages, current = (1 if total else 0), 1
        else:
            pages, current = math.ceil(total / max) if max > 0 else 0, page
        return Page(items=items, total=total, pages=pages, current=current, max=max)

    @staticmethod
    def _total(conn: sqlite3.Connection, filt: RecordingFilter, where: str, params: list[Any]) -> int:
        """Unfiltered and state-only totals come from the trigger-kept counts, the rest from COUNT(*)."""
        if not where:
            return int(conn.execute("SELECT COALESCE(SUM(n), 0) FROM recording_counts").fetchone()[0])
        if filt.state is not None and where == " WHERE r.state = ?":
            row = conn.execute("SELECT n FROM recording_counts WHERE state = ?", params).fetchone()
            return int(row[0]) if row is not None else 0
        return int(conn.execute(f"SELECT COUNT(*) FROM recordings r{where}", params).fetchone()[0])

    def count_by_state(self) -> dict[str, int]:
        counts = {s.value: 0 for s in State}
        with self.db.read() as conn:
            for row in conn.execute("SELECT state, n FROM recording_counts"):
                counts[row["state"]] = int(row["n"])
        return counts

    def expired(
        self, cutoff: float, source: str | None, exclude_sources: Sequence[str] = ()
    ) -> list[dict[str, Any]]:
        """Final, not-held recordings that started before ``cutoff`` (for one source, or all others)."""
        sql = (
            "SELECT id, file_path, started_at, source FROM recordings"
            " WHERE started_at < ? AND legal_hold = 0 AND state IN ('available', 'failed')"
        )
        args: list[Any] = [cutoff]
        if source is not None:
            sql += " AND source = ?"
            args.append(source)
        elif exclude_sources:
            sql += f" AND (source IS NULL OR source NOT IN ({','.join('?' * len(exclude_sources))}))"
            args.extend(exclude_sources)
        with self.db.read() as conn:
            return [dict(row) for row in conn.execute(sql + " ORDER BY started_at, id", args)]

    def _hydrate(self, conn: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[dict[str, Any]]:
        items = [_recording(row) for row in rows]
        by_id = {item["id"]: item for item in items}
        ids = list(by_id)
        for chunk_start in range(0, len(ids), _MAX_IN_LIST):
            chunk = ids[chunk_start:chunk_start + _MAX_IN_LIST]
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT * FROM participants WHERE recording_id IN ({marks})"
                " ORDER BY recording_id, position",
                chunk,
            ):
                by_id[row["recording_id"]]["participants"].append({
                    "id": row["participant_id"], "aor": row["aor"], "name": row["name"],
                    "send": json.loads(row["send"]), "recv": json.loads(row["recv"]),
                })
            for row in conn.execute(
                f"SELECT * FROM streams WHERE recording_id IN ({marks}) ORDER BY recording_id, label", chunk
            ):
                stream: dict[str, Any] = {
                    "label": row["label"], "stream_id": row["stream_id"], "codec": row["codec"],
                    "packets_received": row["packets_received"], "packets_lost": row["packets_lost"],
                }
                for key, value in json.loads(row["stats"]).items():
                    stream.setdefault(key, value)
                by_id[row["recording_id"]]["streams"].append(stream)
            for row in conn.execute(
                f"SELECT * FROM sessions WHERE recording_id IN ({marks}) ORDER BY recording_id, position",
                chunk,
            ):
                by_id[row["recording_id"]]["sessions"].append({
                    "id": row["session_id"], "sip_session_ids": json.loads(row["sip_session_ids"]),
                    "start_time": row["start_time"], "stop_time": row["stop_time"], "group": row["group_id"],
                })
            for row in conn.execute(
                f"SELECT * FROM extensions WHERE recording_id IN ({marks}) ORDER BY rowid", chunk
            ):
                by_id[row["recording_id"]]["extensions"][row["key"]] = row["value"]
            for row in conn.execute(
                f"SELECT * FROM dtmf WHERE recording_id IN ({marks})"
                " ORDER BY recording_id, offset_ms, rowid",
                chunk,
            ):
                by_id[row["recording_id"]]["dtmf"].append({
                    "label": row["label"], "digit": row["digit"], "offset_ms": row["offset_ms"],
                    "duration_ms": row["duration_ms"],
                })
        return items


def _recording(row: sqlite3.Row) -> dict[str, Any]:
    item = dict(row)
    item["incomplete"] = bool(item["incomplete"])
    item["legal_hold"] = bool(item["legal_hold"])
    item["warnings"] = json.loads(item["warnings"])
    item["completeness"] = json.loads(item["completeness"])
    item["participants"] = []
    item["streams"] = []
    item["sessions"] = []
    item["extensions"] = {}
    item["dtmf"] = []
    return item


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(filt: RecordingFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if filt.state is not None:
        clauses.append("r.state = ?")
        params.append(State(filt.state).value)
    if filt.start is not None:
        clauses.append("r.started_at >= ?")
        params.append(filt.start)
    if filt.end is not None:
        clauses.append("r.started_at < ?")
        params.append(filt.end)
    for column in ("call_recording_id", "sip_call_id", "source"):
        value = getattr(filt, column)
        if value is not None:
            clauses.append(f"r.{column} = ?")
            params.append(value)
    if filt.min_duration_ms is not None:
        clauses.append("r.duration_ms >= ?")
        params.append(filt.min_duration_ms)
    if filt.max_duration_ms is not None:
        clauses.append("r.duration_ms <= ?")
        params.append(filt.max_duration_ms)
    if filt.participant:
        pattern = f"%{_like_escape(filt.participant)}%"
        clauses.append(
            "r.id IN (SELECT p.recording_id FROM participants p"
            " WHERE p.aor LIKE ? ESCAPE '\\' OR p.name LIKE ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    for key, value in filt.extensions:
        # IN (subquery) lets SQLite start from the (key, value) index instead of probing every row.
        clauses.append("r.id IN (SELECT e.recording_id FROM extensions e WHERE e.key = ? AND e.value = ?)")
        params += [key, value]
    if filt.ids is not None:
        if not filt.ids:
            clauses.append("0")
        else:
            clauses.append(f"r.id IN ({','.join('?' * len(filt.ids))})")
            params.extend(filt.ids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
