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

from srs.storage import writes
from srs.storage.admin import AdminStore
from srs.storage.backend import Connection, Dialect, Engine
from srs.storage.db import Database
from srs.storage.errors import InvalidStateTransition
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
from srs.storage.write_behind import MAX_BACKLOG, ErrorHandler, Soon, WriteBehind, replay_spool

Clock = Callable[[], float]
_MAX_IN_LIST = 500
TRIGRAM = 3
"""Shortest participant search the trigram index answers; shorter ones scan with LIKE."""


def _stream_rows(streams: Sequence[StreamInfo]) -> tuple[tuple[Any, ...], ...]:
    return tuple(
        (s.label, s.stream_id, s.codec, s.packets_received, s.packets_lost, tuple(dict(s.stats).items()))
        for s in streams
    )


@dataclass(frozen=True)
class IndexHealth:
    reachable: bool
    backlog: int
    """Writes queued and not yet committed."""
    detail: str

    @property
    def refuse_calls(self) -> str | None:
        """Why new calls should be refused now (None: take them)."""
        if not self.reachable:
            return f"index unreachable: {self.detail}" if self.detail else "index unreachable"
        if self.backlog > MAX_BACKLOG:
            return f"index behind: {self.backlog} writes waiting"
        return None


@dataclass(slots=True)
class _Queued:
    """What the write-behind path knows of a recording it created, so calls can be checked at once."""

    state: State
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

    def __init__(
        self,
        path: Path | str,
        clock: Clock = time.time,
        layout: DataLayout | None = None,
        *,
        node: str | None = None,
        spool_dir: Path | None = None,
    ) -> None:
        """``path``: a SQLite file or an index URL (``sqlite:///…``, ``postgresql://…``); ``node``:
        the name this srs records under (recordings it creates carry it; repair looks at its own)."""
        self.db = Database(path)
        self.clock = clock
        self.layout = layout
        self.node = node
        self.spool_dir = spool_dir
        """Where the write-behind keeps writes an unreachable index could not take before a stop."""
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

    def start_write_behind(self, on_error: ErrorHandler, soon: Soon | None = None) -> None:
        """Queue the daemon's writes from now on (one caller thread) to the index writer process;
        ``on_error(what, exc)`` hears of every write that had to be given up; ``soon`` (the loop's
        ``call_soon``) sends a loop turn's writes together."""
        if self._writer is None:
            self._writer = WriteBehind(self.db, on_error, soon=soon, spool_dir=self.spool_dir)

    def health(self) -> IndexHealth:
        """Can the daemon's writes reach the index now, and how many wait (for admission control)."""
        writer = self._writer
        if writer is None:
            return IndexHealth(True, 0, "")
        return IndexHealth(writer.reachable, writer.backlog, writer.unreachable_detail)

    def replay_spool(self, on_error: ErrorHandler) -> int:
        """Commit writes spooled by a run that stopped while the index was unreachable."""
        if self.spool_dir is None:
            return 0
        return replay_spool(self.db, self.spool_dir, on_error)

    @property
    def write_behind(self) -> bool:
        return self._writer is not None

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every write queued so far is committed (or given up); False on timeout."""
        return True if self._writer is None else self._writer.wait(timeout)

    def _apply(self, recording_id: str, what: str, write: writes.Write) -> None:
        if self._writer is not None and recording_id in self._queued:
            self._writer.submit(f"{what} {recording_id}", write)
            return
        with self.db.write() as conn:
            writes.run(conn, write)

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
            new.started_at, new.file_format, new.sample_rate, new.channels, now, now, self.node,
        )  # fmt: skip
        if self._writer is not None and rid not in self._queued:
            self._queued[rid] = _Queued(state)
        self._apply(rid, "create", ("create", (values,)))
        return rid

    def advance_state(self, recording_id: str, state: State | str) -> None:
        requested = State(state)
        queued = self._checked(recording_id, requested)
        if queued is not None:
            queued.state = requested
        write = ("advance", (recording_id, requested.value, self.clock()))
        self._apply(recording_id, f"advance to {requested.value}", write)

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
        pairs = extensions.items() if isinstance(extensions, Mapping) else extensions
        write = (
            "metadata",
            (
                recording_id, call_recording_id, self.clock(),
                tuple((p.participant_id, p.aor, p.name, tuple(p.send), tuple(p.recv)) for p in participants),
                tuple((str(k), str(v)) for k, v in pairs),
                tuple(
                    (s.session_id, tuple(s.sip_session_ids), s.start_time, s.stop_time, s.group_id)
                    for s in sessions
                ),
                _stream_rows(streams),
            ),
        )  # fmt: skip
        self._apply(recording_id, "metadata", write)

    def update_streams(self, recording_id: str, streams: Sequence[StreamInfo]) -> None:
        """Upsert per-stream statistics by label (streams not mentioned are kept)."""
        self._apply(recording_id, "streams", ("streams", (recording_id, _stream_rows(streams))))

    def add_metadata_version(self, recording_id: str, received_at: float, xml: bytes) -> int:
        """Keep one raw rs-metadata version; returns its sequence number (from 1).

        The XML lives in the index row: one INSERT in the writer's transaction, where a file per
        version cost a directory, an open and a write per call (half the writer's time at 300
        setups/s). Rows from older releases that name a file under ``<id>.metadata/`` are still read.
        """
        data = bytes(xml)
        queued = self._queued.get(recording_id) if self._writer is not None else None
        if queued is not None and self._writer is not None:
            queued.versions += 1
            seq = queued.versions
            self._writer.submit(
                f"metadata version {seq} {recording_id}", ("version", (recording_id, seq, received_at, data))
            )
            return seq
        with self.db.write() as conn:
            writes.require(conn, recording_id)
            row = conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM metadata_versions WHERE recording_id = ?", (recording_id,)
            ).fetchone()
            seq = int(row[0]) + 1
            writes.add_version(conn, recording_id, seq, received_at, data)
        return seq

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
        values = (
            final.ended_at, final.duration_ms, final.file_path, final.file_size, final.file_format,
            final.sample_rate, final.channels, final.sha256, int(final.incomplete), final.incomplete_reason,
        )  # fmt: skip
        write = (
            "finalize",
            (
                recording_id, state.value, self.clock(), values, tuple(final.warnings),
                tuple(dict(final.completeness).items()),
                tuple((d.label, d.digit, d.offset_ms, d.duration_ms) for d in final.dtmf),
            ),
        )  # fmt: skip
        self._apply(recording_id, f"finalize as {state.value}", write)
        if queued is not None:
            del self._queued[recording_id]

    def unfinished(self, node: str | None = None) -> list[str]:
        """Recordings not yet final; with ``node``, only those that node recorded (a fleet shares
        one index: another node's running calls are not this node's to repair). Rows from before
        nodes were recorded (no node) count as this node's."""
        marks = ",".join("?" * len(UNFINISHED_STATES))
        sql = f"SELECT id FROM recordings WHERE state IN ({marks})"
        args: list[Any] = [s.value for s in UNFINISHED_STATES]
        if node is not None:
            sql += " AND (node = ? OR node IS NULL)"
            args.append(node)
        with self.db.read() as conn:
            rows = conn.execute(sql + " ORDER BY started_at, id", args).fetchall()
        return [row["id"] for row in rows]

    def set_legal_hold(self, recording_id: str, on: bool) -> None:
        with self.db.write() as conn:
            writes.require(conn, recording_id)
            conn.execute(
                "UPDATE recordings SET legal_hold = ?, updated_at = ? WHERE id = ?",
                (int(on), self.clock(), recording_id),
            )

    def delete(self, recording_id: str) -> None:
        self._queued.pop(recording_id, None)
        with self.db.write() as conn:
            writes.require(conn, recording_id)
            conn.execute("DELETE FROM recordings WHERE id = ?", (recording_id,))

    # ---- query API --------------------------------------------------------------------------

    def get(self, recording_id: str) -> dict[str, Any] | None:
        _, items = self._select("SELECT * FROM recordings r WHERE r.id = ?", (recording_id,))
        return items[0] if items else None

    def newest_by_call_recording_id(self, call_recording_id: str) -> dict[str, Any] | None:
        _, items = self._select(
            "SELECT * FROM recordings r WHERE r.call_recording_id = ?"
            " ORDER BY r.started_at DESC, r.id DESC LIMIT 1",
            (call_recording_id,),
            order="m.started_at DESC, m.id DESC",
        )
        return items[0] if items else None

    def copies(self, call_recording_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Every recording of each call-recording-id (the copies nodes made of one SIPREC session):
        id, node, state, incomplete, duration_ms, completeness."""
        found: dict[str, list[dict[str, Any]]] = {crid: [] for crid in call_recording_ids}
        wanted = list(found)
        for start in range(0, len(wanted), _MAX_IN_LIST):
            chunk = wanted[start:start + _MAX_IN_LIST]
            for row in self._rows(
                "SELECT id, call_recording_id, node, state, incomplete, duration_ms, completeness"
                f" FROM recordings WHERE call_recording_id IN ({','.join('?' * len(chunk))})"
                " ORDER BY started_at, id",
                chunk,
            ):
                item = dict(row)
                item["incomplete"] = bool(item["incomplete"])
                item["completeness"] = json.loads(item["completeness"])
                found[item["call_recording_id"]].append(item)
        return found

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One SELECT in a read transaction of its own (on PostgreSQL: one round trip in all)."""
        with self.db.read() as conn:
            fetch = getattr(conn, "fetch_each", None)
            if fetch is not None:
                rows: list[Any] = fetch([(sql, params)], last=True)[0]
                return rows
            return list(conn.execute(sql, params).fetchall())

    def find(self, filt: RecordingFilter, page: int = 1, max: int | None = None) -> Page:
        where, params = _where(filt, self.db.dialect)
        order = "ASC" if filt.oldest_first else "DESC"
        page = 1 if page < 1 else page
        if self.db.dialect.engine is Engine.SQLITE:
            # SQLite: the trigram index, counts of the one participant/extension condition, and a
            # walk by start time when matches are common (see _walk_by_time)
            with self.db.read() as conn:
                total = self._total(conn, filt, where, params)
                if max is not None and _walk_by_time(conn, filt, total, page * max):
                    where, params = _where(filt, self.db.dialect, correlated=True)
                sql = f"SELECT * FROM recordings r{where} ORDER BY r.started_at {order}, r.id {order}"
                args = list(params)
                if max is not None:
                    sql += " LIMIT ? OFFSET ?"
                    args += [max, (page - 1) * max]
                items = self._hydrate(conn, conn.execute(sql, args).fetchall())
        else:
            sql = f"SELECT * FROM recordings r{where} ORDER BY r.started_at {order}, r.id {order}"
            args = list(params)
            if max is not None:
                sql += " LIMIT ? OFFSET ?"
                args += [max, (page - 1) * max]
            counted, items = self._select(
                sql, args, _total_query(filt, where, params), order=f"m.started_at {order}, m.id {order}"
            )
            total = int(counted[0][0]) if counted else 0
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
        alone = _only_related(filt)
        if alone is not None:
            # one participant or extension condition and nothing else: count its distinct
            # recordings where they are indexed, without looking each recording up
            sql, args = alone
            return int(conn.execute(f"SELECT COUNT(DISTINCT recording_id) FROM ({sql})", args).fetchone()[0])
        return int(conn.execute(f"SELECT COUNT(*) FROM recordings r{where}", params).fetchone()[0])

    def count_by_state(self, node: str | None = None) -> dict[str, int]:
        """Recordings per state: the fleet's (trigger-kept, one row per state), or one node's (a
        count over that node's rows: for a scrape that asks for it, not for every request)."""
        counts = {s.value: 0 for s in State}
        if node is None:
            rows = self._rows("SELECT state, n FROM recording_counts")
        else:
            sql = "SELECT state, COUNT(*) AS n FROM recordings WHERE node = ? GROUP BY state"
            rows = self._rows(sql, (node,))
        for row in rows:
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

    def _hydrate(self, conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
        items = [_recording(row) for row in rows]
        ids = [item["id"] for item in items]
        for chunk_start in range(0, len(ids), _MAX_IN_LIST):
            chunk = ids[chunk_start:chunk_start + _MAX_IN_LIST]
            queries = self._child_queries(",".join("?" * len(chunk)), chunk)
            _attach(items, *[conn.execute(sql, args).fetchall() for sql, args in queries])
        return items

    def _child_queries(self, ids: str, params: Sequence[Any]) -> list[tuple[str, Sequence[Any]]]:
        """The participants, streams, sessions, extensions and DTMF of ``recording_id IN (ids)``."""
        tie = self.db.dialect.insertion_order
        where = f"WHERE recording_id IN ({ids}) ORDER BY recording_id"
        return [
            (f"SELECT * FROM participants {where}, position", params),
            (f"SELECT * FROM streams {where}, label", params),
            (f"SELECT * FROM sessions {where}, position", params),
            (f"SELECT recording_id, key, value FROM extensions {where}, position, {tie}", params),
            (f"SELECT recording_id, label, digit, offset_ms, duration_ms FROM dtmf {where}, offset_ms,"
             f" position, {tie}", params),
        ]  # fmt: skip

    def _select(
        self,
        sql: str,
        params: Sequence[Any],
        first: tuple[str, Sequence[Any]] | None = None,
        order: str = "",
    ) -> tuple[list[Any], list[dict[str, Any]]]:
        """Recordings by ``sql`` (``SELECT * FROM recordings r …``) with all their children, and the
        rows of ``first`` (run before it, in the same snapshot). On PostgreSQL the recordings and
        their children come back from one statement (children aggregated to JSON per recording),
        sent in one pipeline with ``first`` and the transaction's BEGIN and COMMIT (no transaction
        at all for a lone statement): the whole read is one round trip and one or two statements."""
        with self.db.read() as conn:
            fetch = getattr(conn, "fetch_each", None)
            if fetch is None:
                before = conn.execute(*first).fetchall() if first is not None else []
                return before, self._hydrate(conn, conn.execute(sql, params).fetchall())
            queries = [*([first] if first is not None else []), (_with_children(sql, order), params)]
            results: list[list[Any]] = fetch(queries, last=True)
        before = results.pop(0) if first is not None else []
        items = []
        children: list[list[Any]] = [[], [], [], [], []]
        for row in results[0]:
            record = dict(row)
            for i, name in enumerate(_CHILDREN):
                children[i].extend(record.pop(f"_{name}") or ())
            items.append(_recording(record))
        _attach(items, *children)
        return before, items


_CHILDREN = ("participants", "streams", "sessions", "extensions", "dtmf")


def _with_children(sql: str, order: str) -> str:
    """PostgreSQL: the recordings of ``sql`` (in ``order``, over its columns as ``m.``) with their
    children as JSON arrays, in the order :meth:`RecordingIndex._child_queries` gives (one
    statement instead of six)."""
    aggregate = (
        "(SELECT json_agg(c ORDER BY {order}) FROM {table} c WHERE c.recording_id = m.id) AS _{table}"
    )
    columns = ", ".join(
        aggregate.format(table=table, order=order)
        for table, order in (
            ("participants", "c.position"),
            ("streams", "c.label"),
            ("sessions", "c.position"),
            ("extensions", "c.position, c.ctid"),
            ("dtmf", "c.offset_ms, c.position, c.ctid"),
        )
    )
    return f"SELECT m.*, {columns} FROM ({sql}) AS m" + (f" ORDER BY {order}" if order else "")


def _attach(
    items: list[dict[str, Any]],
    participants: Iterable[Any],
    streams: Iterable[Any],
    sessions: Iterable[Any],
    extensions: Iterable[Any],
    dtmf: Iterable[Any],
) -> None:
    by_id = {item["id"]: item for item in items}
    for row in participants:
        by_id[row["recording_id"]]["participants"].append({
            "id": row["participant_id"], "aor": row["aor"], "name": row["name"],
            "send": json.loads(row["send"]), "recv": json.loads(row["recv"]),
        })
    for row in streams:
        stream: dict[str, Any] = {
            "label": row["label"], "stream_id": row["stream_id"], "codec": row["codec"],
            "packets_received": row["packets_received"], "packets_lost": row["packets_lost"],
        }
        for key, value in json.loads(row["stats"]).items():
            stream.setdefault(key, value)
        by_id[row["recording_id"]]["streams"].append(stream)
    for row in sessions:
        by_id[row["recording_id"]]["sessions"].append({
            "id": row["session_id"], "sip_session_ids": json.loads(row["sip_session_ids"]),
            "start_time": row["start_time"], "stop_time": row["stop_time"], "group": row["group_id"],
        })
    for row in extensions:
        by_id[row["recording_id"]]["extensions"][row["key"]] = row["value"]
    for row in dtmf:
        by_id[row["recording_id"]]["dtmf"].append({
            "label": row["label"], "digit": row["digit"], "offset_ms": row["offset_ms"],
            "duration_ms": row["duration_ms"],
        })


def _recording(row: Any) -> dict[str, Any]:
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


def _total_query(filt: RecordingFilter, where: str, params: list[Any]) -> tuple[str, list[Any]]:
    """Unfiltered and state-only totals come from the trigger-kept counts, the rest from COUNT(*)."""
    if not where:
        return "SELECT COALESCE(SUM(n), 0) FROM recording_counts", []
    if filt.state is not None and where == " WHERE r.state = ?":
        return "SELECT COALESCE(SUM(n), 0) FROM recording_counts WHERE state = ?", params
    return f"SELECT COUNT(*) FROM recordings r{where}", params


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


_FTS_ROWIDS = "SELECT rowid FROM participants_fts WHERE participants_fts MATCH ?"


def _phrase(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def _only_related(filt: RecordingFilter) -> tuple[str, list[Any]] | None:
    """The rows of the one indexed participant or extension condition, if it is the only filter."""
    others = (filt.state, filt.start, filt.end, filt.call_recording_id, filt.sip_call_id, filt.source,
              filt.min_duration_ms, filt.max_duration_ms, filt.ids)
    if any(value is not None for value in others):
        return None
    participant = filt.participant and len(filt.participant) >= TRIGRAM
    if participant and not filt.extensions:
        assert filt.participant is not None
        return (f"SELECT recording_id FROM participants WHERE rowid IN ({_FTS_ROWIDS})",
                [_phrase(filt.participant)])
    if not filt.participant and len(filt.extensions) == 1:
        key, value = filt.extensions[0]
        return "SELECT recording_id FROM extensions WHERE key = ? AND value = ?", [key, value]
    return None


def _walk_by_time(conn: sqlite3.Connection, filt: RecordingFilter, total: int, wanted: int) -> bool:
    """Whether a page is found faster walking recordings by start time, testing each one, than by
    collecting every match and sorting them: so when matches are common (1 in 20 recordings carry
    a queue name) and the page is early. A rare match is always collected (a walk would read all)."""
    if not (filt.participant or filt.extensions) or total == 0:
        return False
    rows = int(conn.execute("SELECT COALESCE(SUM(n), 0) FROM recording_counts").fetchone()[0])
    return wanted * rows < total * total


def _where(
    filt: RecordingFilter, dialect: Dialect, *, correlated: bool = False
) -> tuple[str, list[Any]]:
    """The WHERE clause of ``filt``; ``correlated`` tests participants and extensions per recording
    (EXISTS) instead of collecting the recordings that have them (IN), for :func:`_walk_by_time`."""
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
    for column in ("call_recording_id", "sip_call_id", "source", "node"):
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
    if filt.participant and len(filt.participant) >= TRIGRAM and dialect.engine is Engine.SQLITE:
        # the trigram index (SQLite only; PostgreSQL searches with ILIKE) finds the substring
        # (case-insensitively, as LIKE does for ASCII)
        if correlated:
            clauses.append(
                "EXISTS (SELECT 1 FROM participants p WHERE p.recording_id = r.id"
                f" AND p.rowid IN ({_FTS_ROWIDS}))"
            )
        else:
            clauses.append(
                f"r.id IN (SELECT p.recording_id FROM participants p WHERE p.rowid IN ({_FTS_ROWIDS}))"
            )
        params.append(_phrase(filt.participant))
    elif filt.participant:
        pattern = f"%{_like_escape(filt.participant)}%"
        clauses.append(
            "r.id IN (SELECT p.recording_id FROM participants p"
            f" WHERE p.aor {dialect.like} ? ESCAPE '\\' OR p.name {dialect.like} ? ESCAPE '\\')"
        )
        params += [pattern, pattern]
    for key, value in filt.extensions:
        # IN (subquery) lets SQLite start from the (key, value) index instead of probing every row.
        if correlated:
            clauses.append(
                "EXISTS (SELECT 1 FROM extensions e"
                " WHERE e.recording_id = r.id AND e.key = ? AND e.value = ?)"
            )
        else:
            clauses.append(
                "r.id IN (SELECT e.recording_id FROM extensions e WHERE e.key = ? AND e.value = ?)"
            )
        params += [key, value]
    if filt.ids is not None:
        if not filt.ids:
            clauses.append("1 = 0")
        else:
            clauses.append(f"r.id IN ({','.join('?' * len(filt.ids))})")
            params.extend(filt.ids)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params
