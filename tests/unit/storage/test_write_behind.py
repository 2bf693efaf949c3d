"""The index writer process: same rows as writing in place, in order, exactly once, readers never behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from srs.storage import writes
from srs.storage.db import Database
from srs.storage.errors import InvalidStateTransition, RecordingNotFound
from srs.storage.index import RecordingIndex
from srs.storage.index_writer import MAX_FRAME, Committer, FrameError, FrameReader, encode
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
from tests.unit.conftest import FakeClock
from tests.unit.storage.factory import T0

Errors = list[tuple[str, BaseException]]


@pytest.fixture
def errors() -> Errors:
    return []


@pytest.fixture
def queued(
    index_target: str, layout: DataLayout, clock: FakeClock, errors: Errors
) -> Iterator[RecordingIndex]:
    idx = RecordingIndex(index_target, clock=clock, layout=layout)
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


def hold_write_lock(target: str) -> Any:
    """Another process's write transaction on the index: the writer must wait behind it."""
    if target.startswith("postgresql://"):
        import psycopg

        conn = psycopg.connect(target, autocommit=True)
        conn.execute("BEGIN")
        conn.execute("LOCK TABLE recordings IN SHARE ROW EXCLUSIVE MODE")
        return conn
    other = sqlite3.connect(target, isolation_level=None, timeout=30, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_writes_wait_in_the_queue_until_the_writer_commits_them(
    index_target: str, queued: RecordingIndex
) -> None:
    other = hold_write_lock(index_target)
    rid = queued.create_recording(NewRecording(started_at=T0))
    queued.advance_state(rid, State.RECORDING)
    time.sleep(0.2)  # time enough to commit, were the database free
    assert tuple(other.execute("SELECT COUNT(*) FROM recordings").fetchone()) == (0,)
    other.execute("ROLLBACK")
    assert queued.flush(30)
    with queued.db.read() as conn:
        assert tuple(conn.execute("SELECT state FROM recordings WHERE id = ?", (rid,)).fetchone()) == (
            "recording",
        )
    other.close()


def test_a_reader_in_this_process_waits_for_the_writes_queued_before_it(
    index_target: str, layout: DataLayout, queued: RecordingIndex, clock: FakeClock
) -> None:
    api = RecordingIndex(index_target, clock=clock, layout=layout)  # the API's own connection
    other = hold_write_lock(index_target)
    rid = queued.create_recording(NewRecording(started_at=T0, call_recording_id="crid-9"))
    release = threading.Timer(0.5, lambda: other.execute("ROLLBACK"))
    release.start()
    began = time.monotonic()
    try:
        row = api.get(rid)  # only there if the read waited for the queue
        assert row is not None and row["call_recording_id"] == "crid-9"
        assert time.monotonic() - began >= 0.3
    finally:
        release.join()
        other.close()
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


def test_recordings_it_did_not_create_are_written_in_place(
    index_target: str, layout: DataLayout, clock: FakeClock
) -> None:
    """A recording left over from before a restart is finalized at once, with the usual errors."""
    before = RecordingIndex(index_target, clock=clock, layout=layout)
    rid = before.create_recording(NewRecording(started_at=T0, state=State.RECORDING))
    before.close()
    index = RecordingIndex(index_target, clock=clock, layout=layout)
    index.start_write_behind(lambda what, exc: None)
    try:
        index.finalize(rid, FinalizedRecording(T0 + 1, 1000, None, None, None, state=State.FAILED))
        assert index.get(rid)["state"] == "failed"  # type: ignore[index]
        with pytest.raises(RecordingNotFound):
            index.advance_state("01HZX3Y5Q8K2M4N6P8R0S2T4V6", State.RECORDING)
    finally:
        index.close()


def test_closing_commits_everything_still_queued(
    index_target: str, layout: DataLayout, clock: FakeClock
) -> None:
    index = RecordingIndex(index_target, clock=clock, layout=layout)
    index.start_write_behind(lambda what, exc: None)
    ids = [index.create_recording(NewRecording(started_at=T0 + i)) for i in range(50)]
    for rid in ids:
        index.advance_state(rid, State.RECORDING)
    index.close()
    reopened = RecordingIndex(index_target, clock=clock, layout=layout)
    try:
        assert reopened.count_by_state()["recording"] == 50
    finally:
        reopened.close()


def test_the_writer_is_a_child_in_the_daemons_process_group(queued: RecordingIndex) -> None:
    writer = queued._writer
    assert writer is not None and writer.process is not None
    assert os.getpgid(writer.process.pid) == os.getpgid(0)
    assert writer.process.poll() is None


def test_a_write_the_writer_gives_up_is_reported_and_costs_only_itself(
    index_target: str, queued: RecordingIndex, errors: Errors
) -> None:
    other = hold_write_lock(index_target)  # so all three land in one batch
    first = queued.create_recording(NewRecording(started_at=T0))
    writer = queued._writer
    assert writer is not None
    row = (first, None, None, None, None, "starting", T0, "wav", 8000, 1, T0, T0)
    writer.submit("duplicate", ("create", (row,)))
    second = queued.create_recording(NewRecording(started_at=T0 + 1))
    other.execute("ROLLBACK")
    other.close()
    assert queued.flush(30)
    assert queued.get(first) is not None and queued.get(second) is not None
    assert [what for what, _ in errors] == ["duplicate"]
    assert "IntegrityError" in str(errors[0][1]) or "UniqueViolation" in str(errors[0][1])


def test_a_writer_killed_mid_stream_is_started_again_and_every_write_lands_once(
    layout: DataLayout, queued: RecordingIndex, errors: Errors
) -> None:
    writer = queued._writer
    assert writer is not None and writer.process is not None
    ids = []
    for i in range(3000):
        ids.append(queued.create_recording(NewRecording(started_at=T0 + i)))
        if i == 1500:
            writer.process.send_signal(signal.SIGKILL)
    for rid in ids:
        queued.advance_state(rid, State.RECORDING)
    assert queued.flush(60)
    assert writer.restarts == 1
    assert queued.count_by_state()["recording"] == 3000
    assert [what for what, _ in errors] == ["index writer process"]
    assert "started again" in str(errors[0][1])


def test_a_writer_that_keeps_dying_is_given_up_and_the_daemon_writes_in_place(
    layout: DataLayout, queued: RecordingIndex, errors: Errors
) -> None:
    writer = queued._writer
    assert writer is not None
    rid = queued.create_recording(NewRecording(started_at=T0))
    for _ in range(4):
        process = writer.process
        assert process is not None
        process.kill()
        process.wait()
        deadline = time.monotonic() + 10
        while writer.process is process and writer._in_place is None and time.monotonic() < deadline:
            time.sleep(0.01)
    assert writer._in_place is not None
    queued.advance_state(rid, State.RECORDING)
    assert queued.get(rid)["state"] == "recording"  # type: ignore[index]
    assert "too often" in str(errors[-1][1])


def test_when_the_daemon_dies_the_writer_commits_what_it_was_sent(index_target: str) -> None:
    script = (
        "import os, sys\n"
        "from srs.storage.index import RecordingIndex\n"
        "from srs.storage.records import NewRecording\n"
        "index = RecordingIndex(sys.argv[1])\n"
        "index.start_write_behind(lambda what, exc: None)\n"
        "for i in range(500):\n"
        "    index.create_recording(NewRecording(started_at=1.7e9 + i))\n"
        "print(index._writer.process.pid, flush=True)\n"
        "os._exit(0)\n"  # no close: as after kill -9
    )
    done = subprocess.run(
        [sys.executable, "-c", script, index_target],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    writer_pid = int(done.stdout.split()[0])
    deadline = time.monotonic() + 30
    while _alive(writer_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(writer_pid)
    check = RecordingIndex(index_target)
    assert check.count_by_state()["starting"] == 500
    check.close()


def test_a_closed_writer_refuses_new_work(layout: DataLayout, clock: FakeClock) -> None:
    index = RecordingIndex(layout.index_path, clock=clock, layout=layout)
    index.start_write_behind(lambda what, exc: None)
    writer = index._writer
    assert writer is not None
    index.close()
    with pytest.raises(Exception, match="closed"):
        writer.submit("late", ("advance", ("x", "recording", 0.0)))
    assert writer.process is not None and writer.process.returncode == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie of a parent that is gone is reaped by init; ours: look at its state
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# ---- the committer and the stream, in process -------------------------------------------------


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    database = Database(tmp_path / "w.sqlite3")
    with database.write() as conn:
        conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    insert = "INSERT INTO t (n) VALUES (?)"
    monkeypatch.setitem(writes.WRITES, "insert", lambda conn, n: conn.execute(insert, (n,)))
    yield database
    database.close()


Reports = list[tuple[int, str, BaseException]]


def _committer(db: Database, reports: Reports, **kwargs: Any) -> Committer:
    return Committer(db, "run-1", lambda seq, what, exc: reports.append((seq, what, exc)), **kwargs)


def _rows(db: Database) -> list[int]:
    with db.read() as conn:
        return [row[0] for row in conn.execute("SELECT n FROM t ORDER BY n")]


def test_one_bad_write_in_a_batch_costs_only_itself(db: Database) -> None:
    reports: Reports = []
    committer = _committer(db, reports)
    committer.commit(
        [(1, "one", ("insert", (1,))), (2, "duplicate", ("insert", (1,))), (3, "two", ("insert", (2,)))]
    )
    assert _rows(db) == [1, 2]
    assert [(seq, what) for seq, what, _ in reports] == [(2, "duplicate")]
    assert isinstance(reports[0][2], sqlite3.IntegrityError)
    assert committer.committed() == 3


def test_a_busy_database_is_tried_again_not_given_up(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[int] = []

    def flaky(conn: sqlite3.Connection) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise sqlite3.OperationalError("database is locked")
        conn.execute("INSERT INTO t (n) VALUES (7)")

    monkeypatch.setitem(writes.WRITES, "flaky", flaky)
    reports: Reports = []
    _committer(db, reports, sleep=lambda s: None).commit([(1, "flaky", ("flaky", ()))])
    assert _rows(db) == [7] and reports == [] and len(attempts) == 3


def test_a_write_that_stays_busy_is_reported_once_it_is_given_up(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setitem(writes.WRITES, "locked", locked)
    reports: Reports = []
    clock = FakeClock(0.0)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    committer = _committer(db, reports, retry_for=1.0, sleep=sleep, clock=clock)
    committer.commit([(1, "locked", ("locked", ())), (2, "after", ("insert", (3,)))])
    assert [what for _, what, _ in reports] == ["locked"]
    assert _rows(db) == [3] and 0.5 <= clock.now <= 1.0


def test_a_broken_report_does_not_stop_the_committer(db: Database) -> None:
    def report(seq: int, what: str, exc: BaseException) -> None:
        raise RuntimeError("handler broke")

    committer = Committer(db, "run-1", report)
    committer.commit([(1, "bad", ("insert", ("not a number",))), (2, "good", ("insert", (5,)))])
    assert _rows(db) == [5] and committer.committed() == 2


def test_progress_is_kept_per_run_and_dropped_when_the_run_closes(db: Database) -> None:
    first, second = _committer(db, []), Committer(db, "run-2", lambda *a: None)
    first.commit([(1, "a", ("insert", (1,))), (2, "b", ("insert", (2,)))])
    second.commit([(1, "c", ("insert", (3,)))])
    assert (first.committed(), second.committed()) == (2, 1)
    first.forget_run()
    assert (first.committed(), second.committed()) == (0, 1)


def test_frames_are_read_whole_however_the_stream_splits_them() -> None:
    messages = [
        ("w", 1, "create x", ("create", ((1, None),))),
        ("flush",),
        ("w", 2, "v", ("version", (b"\x00" * 70000,))),
    ]
    stream = b"".join(encode(m) for m in messages)
    for step in (1, 3, 4096, len(stream)):
        reader = FrameReader()
        got = [m for i in range(0, len(stream), step) for m in reader.feed(stream[i : i + step])]
        assert got == messages


def test_a_frame_longer_than_any_write_is_refused() -> None:
    with pytest.raises(FrameError):
        FrameReader().feed((MAX_FRAME + 1).to_bytes(4, "big"))
