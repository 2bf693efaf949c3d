"""The index writer thread: same rows as writing in place, in order, nothing lost, readers never behind."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from srs.storage.db import Database, WriteBehind
from srs.storage.errors import InvalidStateTransition, RecordingNotFound
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import (
    DtmfEvent,
    FinalizedRecording,
    NewRecording,
    Participant,
    SessionInfo,
    State,
    StreamInfo,
)
from tests.unit.storage.conftest import FakeClock
from tests.unit.storage.factory import T0

Errors = list[tuple[str, BaseException]]


@pytest.fixture
def errors() -> Errors:
    return []


@pytest.fixture
def queued(layout: DataLayout, clock: FakeClock, errors: Errors) -> Iterator[RecordingIndex]:
    idx = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    idx.start_write_behind(lambda what, exc: errors.append((what, exc)))
    yield idx
    idx.close()


def a_call(index: RecordingIndex, clock: FakeClock, rid: str) -> None:
    """What the daemon writes for one call, start to end."""
    index.create_recording(
        NewRecording(started_at=T0, sip_call_id="a84b4c76e66710", source="192.0.2.4:5060"), rid
    )
    clock.now += 1
    assert index.add_metadata_version(rid, T0, b"<recording/>") == 1
    index.set_metadata(
        rid,
        "crid-1",
        [Participant("p1", "sip:alice@example.com", "Alice", ("1",), ("2",))],
        [StreamInfo("1", "s1", "PCMU"), StreamInfo("2", "s2", "PCMU")],
        [("ac:ucid", "42")],
        [SessionInfo("sess", ("a84b4c76e66710",), "2026-11-21T12:00:00Z")],
    )
    index.advance_state(rid, State.RECORDING)
    index.update_streams(rid, [StreamInfo("1", "s1", "PCMU", packets_received=3)])
    clock.now += 1
    assert index.add_metadata_version(rid, T0 + 1, b"<recording><v2/></recording>") == 2
    index.advance_state(rid, State.STOPPING)
    index.update_streams(rid, [StreamInfo("2", packets_received=7, stats={"gaps": []})])
    index.finalize(
        rid,
        FinalizedRecording(
            ended_at=T0 + 2,
            duration_ms=2000,
            file_path=None,
            file_size=None,
            sha256=None,
            warnings=["late packets: 1"],
            dtmf=[DtmfEvent("1", "5", 200, 80)],
        ),
    )


def test_a_queued_call_leaves_the_same_rows_as_writing_in_place(
    tmp_path: Path, queued: RecordingIndex, clock: FakeClock, errors: Errors
) -> None:
    rid = "01HZX3Y5Q8K2M4N6P8R0S2T4V6"
    in_place = RecordingIndex(tmp_path / "in-place.sqlite3", clock=FakeClock(clock.now))
    try:
        a_call(in_place, in_place.clock, rid)  # type: ignore[arg-type]
        a_call(queued, clock, rid)
        assert queued.flush()
        expected = in_place.get(rid)
        got = queued.get(rid)
        assert got is not None and expected is not None
        assert got["state"] == "available" and got["call_recording_id"] == "crid-1"
        assert got == expected
        xml = [v["xml"] for v in queued.metadata_versions(rid)]
        assert xml == [b"<recording/>", b"<recording><v2/></recording>"]
        assert errors == []
    finally:
        in_place.close()


def test_writes_wait_in_the_queue_until_the_thread_commits_them(
    layout: DataLayout, queued: RecordingIndex
) -> None:
    gate = threading.Event()
    writer = queued._writer
    assert writer is not None
    writer.submit("gate", lambda conn: _wait(gate))
    rid = queued.create_recording(NewRecording(started_at=T0))
    queued.advance_state(rid, State.RECORDING)
    outside = sqlite3.connect(layout.index_path)  # another process's view: only what is committed
    try:
        assert outside.execute("SELECT COUNT(*) FROM recordings").fetchone() == (0,)
        gate.set()
        assert queued.flush()
        assert outside.execute("SELECT state FROM recordings WHERE id = ?", (rid,)).fetchone() == (
            "recording",
        )
    finally:
        outside.close()


def test_a_reader_in_this_process_waits_for_the_writes_queued_before_it(
    layout: DataLayout, queued: RecordingIndex, clock: FakeClock
) -> None:
    writer = queued._writer
    assert writer is not None
    # The first write holds the queue until somebody waits for it, so the read below can only
    # see the recording if it waited.
    writer.submit("hold", lambda conn: _until(lambda: writer._waiting > 0))
    rid = queued.create_recording(NewRecording(started_at=T0, call_recording_id="crid-9"))
    api = RecordingIndex(layout.index_path, clock=clock, layout=layout)  # the API's own connection
    try:
        row = api.get(rid)
        assert row is not None and row["call_recording_id"] == "crid-9"
    finally:
        api.close()


def test_transitions_are_still_checked_when_called(queued: RecordingIndex) -> None:
    rid = queued.create_recording(NewRecording(started_at=T0))
    queued.advance_state(rid, State.STOPPING)
    with pytest.raises(InvalidStateTransition):
        queued.advance_state(rid, State.RECORDING)
    with pytest.raises(ValueError):
        queued.finalize(rid, FinalizedRecording(0, 0, None, None, None, state=State.STOPPING))
    assert queued.get(rid)["state"] == "stopping"  # type: ignore[index]
    queued.finalize(rid, FinalizedRecording(T0, 0, None, None, None, state=State.FAILED))
    with pytest.raises(InvalidStateTransition):
        queued.advance_state(rid, State.AVAILABLE)
    assert queued.get(rid)["state"] == "failed"  # type: ignore[index]


def test_recordings_it_did_not_create_are_written_in_place(layout: DataLayout, clock: FakeClock) -> None:
    """A recording left over from before a restart is finalized at once, with the usual errors."""
    before = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    rid = before.create_recording(NewRecording(started_at=T0, state=State.RECORDING))
    before.close()
    index = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    index.start_write_behind(lambda what, exc: None)
    try:
        index.finalize(rid, FinalizedRecording(T0 + 1, 1000, None, None, None, state=State.FAILED))
        assert index.get(rid)["state"] == "failed"  # type: ignore[index]
        with pytest.raises(RecordingNotFound):
            index.advance_state("01HZX3Y5Q8K2M4N6P8R0S2T4V6", State.RECORDING)
    finally:
        index.close()


def test_metadata_whose_file_cannot_be_written_is_kept_in_the_row(
    layout: DataLayout, queued: RecordingIndex, errors: Errors
) -> None:
    rid = queued.create_recording(NewRecording(started_at=T0))
    blocker = layout.metadata_dir(rid, T0)
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"a file where the directory should be")
    queued.add_metadata_version(rid, T0, b"<recording/>")
    assert queued.flush()
    versions = queued.metadata_versions(rid)
    assert [(v["seq"], v["path"], v["xml"]) for v in versions] == [(1, None, b"<recording/>")]
    assert [what for what, _ in errors] == [f"metadata version 1 of {rid} kept in the index"]
    assert isinstance(errors[0][1], OSError)


def test_closing_commits_everything_still_queued(layout: DataLayout, clock: FakeClock) -> None:
    index = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    index.start_write_behind(lambda what, exc: None)
    ids = [index.create_recording(NewRecording(started_at=T0 + i)) for i in range(50)]
    for rid in ids:
        index.advance_state(rid, State.RECORDING)
    index.close()
    reopened = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    try:
        assert reopened.count_by_state()["recording"] == 50
    finally:
        reopened.close()


# ---- the writer itself -----------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "w.sqlite3")
    with database.write() as conn:
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    yield database
    database.close()


def _insert(n: int) -> Callable[[sqlite3.Connection], None]:
    def insert(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO t (n) VALUES (?)", (n,))

    return insert


def _rows(db: Database) -> list[int]:
    with db.read() as conn:
        return [row[0] for row in conn.execute("SELECT n FROM t ORDER BY n")]


def test_one_bad_write_in_a_batch_costs_only_itself(db: Database, errors: Errors) -> None:
    gate = threading.Event()
    writer = WriteBehind(db, lambda what, exc: errors.append((what, exc)))
    writer.submit("gate", lambda conn: _wait(gate))
    writer.submit("one", _insert(1))
    writer.submit("duplicate", _insert(1))
    writer.submit("two", _insert(2))
    gate.set()
    assert writer.wait()
    writer.close()
    assert _rows(db) == [1, 2]
    assert [what for what, _ in errors] == ["duplicate"]
    assert isinstance(errors[0][1], sqlite3.IntegrityError)


def test_a_busy_database_is_tried_again_not_given_up(db: Database, errors: Errors) -> None:
    attempts: list[int] = []

    def flaky(conn: sqlite3.Connection) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        conn.execute("INSERT INTO t (n) VALUES (7)")

    writer = WriteBehind(db, lambda what, exc: errors.append((what, exc)))
    writer.submit("flaky", flaky)
    writer.close()
    assert _rows(db) == [7]
    assert errors == [] and len(attempts) == 3


def test_a_write_that_stays_busy_is_reported_once_it_is_given_up(db: Database, errors: Errors) -> None:
    def locked(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    writer = WriteBehind(db, lambda what, exc: errors.append((what, exc)), retry_for=0.05)
    writer.submit("locked", locked)
    writer.submit("after", _insert(3))
    writer.close()
    assert [what for what, _ in errors] == ["locked"]
    assert _rows(db) == [3]


def test_a_closed_writer_refuses_new_work(db: Database) -> None:
    writer = WriteBehind(db, lambda what, exc: None)
    writer.close()
    with pytest.raises(Exception, match="closed"):
        writer.submit("late", _insert(1))


def test_a_broken_error_handler_does_not_stop_the_writer(db: Database) -> None:
    def handler(what: str, exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    writer = WriteBehind(db, handler)
    writer.submit("bad", lambda conn: _raise(ValueError("no")))
    writer.submit("good", _insert(5))
    writer.close()
    assert _rows(db) == [5]


def _wait(gate: threading.Event) -> None:
    assert gate.wait(30), "the test never opened the gate"


def _until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(3000):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("nobody waited for the queue")


def _raise(exc: Exception) -> Any:
    raise exc
