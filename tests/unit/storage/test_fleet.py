"""A fleet of nodes on one index: nodes on recordings, jobs run once, portable migrations, outages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pgcluster import throwaway_cluster
from srs.service.recordings import RecordingService
from srs.storage import schema
from srs.storage.backend import POSTGRESQL, IndexUrl, to_pyformat
from srs.storage.db import Database
from srs.storage.errors import StorageError
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import FinalizedRecording, NewRecording, RecordingFilter, State
from tests.unit.conftest import FakeClock
from tests.unit.storage.factory import T0


@pytest.fixture
def two_nodes(
    index_target: str, layout: DataLayout, clock: FakeClock
) -> Iterator[tuple[RecordingIndex, ...]]:
    a = RecordingIndex(index_target, clock=clock, layout=layout, node="node-a")
    b = RecordingIndex(index_target, clock=clock, layout=layout, node="node-b")
    yield a, b
    a.close()
    b.close()


def test_each_recording_names_its_node_and_lists_filter_by_it(two_nodes: tuple[RecordingIndex, ...]) -> None:
    a, b = two_nodes
    ra = a.create_recording(NewRecording(started_at=T0, call_recording_id="x"))
    rb = b.create_recording(NewRecording(started_at=T0 + 1, call_recording_id="y"))
    assert a.get(rb)["node"] == "node-b" and b.get(ra)["node"] == "node-a"  # type: ignore[index]
    assert [r["id"] for r in a.find(RecordingFilter(node="node-a")).items] == [ra]
    assert [r["id"] for r in b.find(RecordingFilter(node="node-b")).items] == [rb]
    assert a.find(RecordingFilter(node="node-c")).total == 0
    assert a.find(RecordingFilter()).total == 2


def test_repair_at_start_sees_only_this_nodes_unfinished_recordings(
    two_nodes: tuple[RecordingIndex, ...],
) -> None:
    a, b = two_nodes
    mine = a.create_recording(NewRecording(started_at=T0, state=State.RECORDING))
    theirs = b.create_recording(NewRecording(started_at=T0, state=State.RECORDING))
    assert a.unfinished(node="node-a") == [mine]
    assert b.unfinished(node="node-b") == [theirs]
    assert sorted(a.unfinished()) == sorted([mine, theirs])


def test_a_fleet_wide_job_is_held_by_one_node_until_its_lease_runs_out(
    two_nodes: tuple[RecordingIndex, ...], clock: FakeClock
) -> None:
    a, b = two_nodes
    assert a.admin.acquire_lease("retention", "node-a/1", 60)
    assert not b.admin.acquire_lease("retention", "node-b/1", 60)
    clock.now += 30
    assert a.admin.acquire_lease("retention", "node-a/1", 60)  # renewed: now held until +90
    clock.now += 59
    assert not b.admin.acquire_lease("retention", "node-b/1", 60)
    clock.now += 2  # node a stopped renewing
    assert b.admin.acquire_lease("retention", "node-b/1", 60)
    assert not a.admin.acquire_lease("retention", "node-a/1", 60)
    b.admin.release_lease("retention", "node-b/1")
    assert a.admin.acquire_lease("retention", "node-a/1", 60)


def test_an_export_is_run_by_one_node_only(two_nodes: tuple[RecordingIndex, ...], layout: DataLayout) -> None:
    a, b = two_nodes
    service_a = RecordingService(a, layout, layout.secret(), a.clock)
    service_b = RecordingService(b, layout, layout.secret(), b.clock)
    job = service_a.create_export(ids=[])
    assert b.admin.claim_export(job["id"])
    assert service_a.run_export(job["id"])["state"] == "running"  # node a leaves it to node b
    assert not a.admin.claim_export(job["id"])
    assert service_b.export_status(job["id"])["state"] == "running"


def test_a_plain_portable_migration_runs_on_both_engines(
    index_target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What another developer's next migration looks like: plain SQL in the documented subset."""
    extra = """
    CREATE TABLE IF NOT EXISTS annotations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        recording_id TEXT NOT NULL REFERENCES recordings (id) ON DELETE CASCADE,
        at REAL NOT NULL,
        body BLOB
    );
    CREATE INDEX annotations_recording ON annotations (recording_id, at);
    ALTER TABLE recordings ADD COLUMN reviewed INTEGER NOT NULL DEFAULT 0;
    """
    Database(index_target).close()  # at the current version first, as a running fleet would be
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, extra))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    import srs.storage.db as db_module

    monkeypatch.setattr(db_module, "MIGRATIONS", schema.MIGRATIONS)
    monkeypatch.setattr(db_module, "SCHEMA_VERSION", schema.SCHEMA_VERSION)
    index = RecordingIndex(index_target)
    try:
        rid = index.create_recording(NewRecording(started_at=T0))
        with index.db.write() as conn:
            conn.execute(
                "INSERT INTO annotations (recording_id, at, body) VALUES (?, ?, ?)", (rid, T0 + 0.25, b"\0x")
            )
            conn.execute(
                "INSERT INTO annotations (recording_id, at, body) VALUES (?, ?, ?)", (rid, T0 + 0.5, None)
            )
        with index.db.read() as conn:
            rows = [tuple(r) for r in conn.execute("SELECT id, at, body FROM annotations ORDER BY id")]
            reviewed = conn.execute("SELECT reviewed FROM recordings WHERE id = ?", (rid,)).fetchone()[0]
        assert [(r[1], None if r[2] is None else bytes(r[2])) for r in rows] == [
            (T0 + 0.25, b"\0x"),
            (T0 + 0.5, None),
        ]
        assert rows[0][0] < rows[1][0] and reviewed == 0
    finally:
        index.close()


def test_placeholders_and_triggers_are_translated_explicitly() -> None:
    assert to_pyformat("SELECT '?%' , x LIKE ? ESCAPE '\\' WHERE a = ? AND b LIKE '50%'") == (
        "SELECT '?%%' , x LIKE %s ESCAPE '\\' WHERE a = %s AND b LIKE '50%%'"
    )
    function, trigger = POSTGRESQL.migration(
        "CREATE TRIGGER t_state AFTER UPDATE OF state ON recordings WHEN OLD.state IS NOT NEW.state BEGIN"
        " UPDATE c SET n = c.n - 1 WHERE state = OLD.state; END;"
    )
    assert function.startswith("CREATE OR REPLACE FUNCTION t_state_fn() RETURNS trigger LANGUAGE plpgsql")
    assert "UPDATE c SET n = c.n - 1 WHERE state = OLD.state; RETURN NULL;" in function
    assert trigger == (
        "CREATE TRIGGER t_state AFTER UPDATE OF state ON recordings FOR EACH ROW"
        " WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION t_state_fn()"
    )
    (table,) = POSTGRESQL.migration(
        "CREATE TABLE p (run TEXT PRIMARY KEY, seq INTEGER, at REAL) WITHOUT ROWID;"
    )
    assert table == "CREATE TABLE p (run TEXT PRIMARY KEY, seq BIGINT, at DOUBLE PRECISION)"


def test_index_urls_are_parsed_strictly_and_shown_without_password() -> None:
    assert IndexUrl.parse("sqlite:///var/srs/index.sqlite3").target == "/var/srs/index.sqlite3"
    assert IndexUrl.parse("var/index.sqlite3").target == "var/index.sqlite3"
    url = IndexUrl.parse("postgresql://srs:s3cret@db.example.net:5432/srs")
    assert url.shown == "postgresql://srs:***@db.example.net:5432/srs"
    for bad in ("mysql://x/y", "sqlite://relative", "postgresql:///nohost"):
        with pytest.raises(StorageError):
            IndexUrl.parse(bad)


@pytest.mark.slow
def test_postgresql_restarted_during_calls_loses_no_row(tmp_path: Path) -> None:
    """The index writer waits for the server (pg_ctl stop … start) and commits every queued write,
    exactly once; meanwhile the index reports itself unreachable (the daemon answers 503)."""
    errors: list[tuple[str, BaseException]] = []
    with throwaway_cluster() as cluster:
        url = cluster.create_database("failover")
        index = RecordingIndex(url, node="node-a")
        index.start_write_behind(lambda what, exc: errors.append((what, exc)))
        try:
            ids = [
                index.create_recording(NewRecording(started_at=T0 + i, call_recording_id=f"c{i}"))
                for i in range(100)
            ]
            for rid in ids:
                index.advance_state(rid, State.RECORDING)
            assert index.flush(30)
            cluster.stop("fast")
            during = [index.create_recording(NewRecording(started_at=T0 + 1000 + i)) for i in range(200)]
            for rid in ids[:50] + during[:100]:
                index.advance_state(rid, State.STOPPING)
                index.finalize(rid, FinalizedRecording(T0 + 2000, 1000, None, None, None))
            deadline = time.monotonic() + 20
            while index.health().reachable and time.monotonic() < deadline:
                time.sleep(0.05)
            health = index.health()
            assert not health.reachable and health.refuse_calls is not None and health.backlog > 0
            time.sleep(1.0)  # a real outage: a few retries pass
            cluster.start()
            assert index.flush(60)
            assert index.health().reachable and index.health().backlog == 0
        finally:
            index.close()
        check = RecordingIndex(url)
        try:
            counts = check.count_by_state()
            assert counts["available"] == 150 and counts["recording"] == 50 and counts["starting"] == 100
            assert check.find(RecordingFilter(node="node-a")).total == 300
            with check.db.read() as conn:
                assert conn.execute("SELECT COUNT(*) FROM recordings").fetchone()[0] == 300
        finally:
            check.close()
    assert errors == []


def _finish(index: RecordingIndex, rid: str, received: int, incomplete: bool) -> None:
    index.advance_state(rid, State.RECORDING)
    index.finalize(
        rid,
        FinalizedRecording(
            T0 + 10, received * 20, None, None, None, incomplete=incomplete,
            completeness={"streams": {"1": {"packets_received": received, "packets_lost": 0}}},
        ),
    )  # fmt: skip


def test_copies_of_one_session_on_two_nodes_are_one_logical_recording(
    two_nodes: tuple[RecordingIndex, ...], layout: DataLayout
) -> None:
    a, b = two_nodes
    copy_b = b.create_recording(NewRecording(started_at=T0, call_recording_id="rs-1"))
    copy_a = a.create_recording(NewRecording(started_at=T0 + 0.01, call_recording_id="rs-1"))
    other = a.create_recording(NewRecording(started_at=T0 + 5, call_recording_id="rs-2"))
    _finish(b, copy_b, 120, incomplete=True)  # node b went away mid-call
    _finish(a, copy_a, 500, incomplete=False)
    service = RecordingService(a, layout, layout.secret(), a.clock)
    logical = service.show_by_call_recording_id("rs-1")
    assert logical["id"] == copy_a and logical["node"] == "node-a"
    assert [(c["id"], c["node"], c["complete"], c["preferred"]) for c in logical["copies"]] == [
        (copy_a, "node-a", True, True),
        (copy_b, "node-b", False, False),
    ]
    listed = service.list(RecordingFilter(), max=10)["items"]
    assert [item["id"] for item in listed] == [other, copy_a, copy_b]  # one row per copy, each marked
    assert [len(item["copies"]) for item in listed] == [1, 2, 2]
    assert [c["id"] for c in listed[2]["copies"] if c["preferred"]] == [copy_a]
    assert service.show(copy_b)["copies"][0]["id"] == copy_a


@pytest.mark.slow
def test_writes_still_waiting_for_postgresql_at_stop_are_spooled_and_committed_at_the_next_start(
    tmp_path: Path,
) -> None:
    spool = tmp_path / "index-spool"
    errors: list[tuple[str, BaseException]] = []
    with throwaway_cluster() as cluster:
        url = cluster.create_database("spool")
        index = RecordingIndex(url, node="node-a", spool_dir=spool)
        index.start_write_behind(lambda what, exc: errors.append((what, exc)))
        first = index.create_recording(NewRecording(started_at=T0, call_recording_id="before"))
        assert index.flush(30)
        cluster.stop("fast")
        late = [index.create_recording(NewRecording(started_at=T0 + 1 + i)) for i in range(20)]
        index.advance_state(first, State.RECORDING)
        writer = index._writer
        assert writer is not None
        writer.close_timeout = 2.0
        index.close()  # the server is still down: the queue goes to the spool
        assert [p.suffix for p in spool.iterdir()] == [".spool"]
        assert any("spooled" in str(exc) for _, exc in errors)
        cluster.start()
        restarted = RecordingIndex(url, node="node-a", spool_dir=spool)
        try:
            assert restarted.replay_spool(lambda what, exc: errors.append((what, exc))) == 1
            assert list(spool.iterdir()) == []
            assert restarted.get(first)["state"] == "recording"  # type: ignore[index]
            assert all(restarted.get(rid) is not None for rid in late)
            assert restarted.count_by_state()["starting"] == 20
            assert restarted.replay_spool(lambda what, exc: None) == 0  # exactly once
        finally:
            restarted.close()


def test_a_batch_with_a_write_whose_check_fails_commits_the_others_and_reports_that_one(
    index_target: str,
) -> None:
    """On PostgreSQL a batch is one pipeline and the checks run after it: a failed check must still
    cost only its own write (the batch is rolled back and written one by one)."""
    from srs.storage.index_writer import Committer

    index = RecordingIndex(index_target)
    reports: list[tuple[int, str, BaseException]] = []
    committer = Committer(index.db, "run-x", lambda seq, what, exc: reports.append((seq, what, exc)))
    row = ("01HZX3Y5Q8K2M4N6P8R0S2T4V6", None, None, None, None, "starting", T0, "wav", 8000, 1, T0, T0, "n")
    other = ("01HZX3Y5Q8K2M4N6P8R0S2T4V7", *row[1:])
    batch = [
        (1, "create a", ("create", (row,))),
        (2, "advance a", ("advance", (row[0], "recording", T0 + 1))),
        (3, "advance missing", ("advance", ("01HZX3Y5Q8K2M4N6P8R0S2T4V8", "recording", T0 + 1))),
        (4, "backwards a", ("advance", (row[0], "starting", T0 + 2))),
        (5, "create b", ("create", (other,))),
        (6, "streams missing", ("streams", ("01HZX3Y5Q8K2M4N6P8R0S2T4V8", ()))),
    ]
    try:
        committer.commit(batch)
        assert [(seq, type(exc).__name__) for seq, _, exc in reports] == [
            (3, "RecordingNotFound"),
            (4, "InvalidStateTransition"),
            (6, "RecordingNotFound"),
        ]
        assert index.get(row[0])["state"] == "recording"  # type: ignore[index]
        assert index.get(other[0]) is not None and committer.committed() == 6
    finally:
        index.close()


def _deadlocks(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_two_nodes_writing_batches_at_once_never_deadlock_on_the_shared_counts(
    index_url_postgresql: str,
) -> None:
    """Node A's batches create then finalize, node B's finalize then create: without the count rows
    taken in one order up front, the two would take them in opposite orders and deadlock."""
    import threading

    from srs.storage.ids import new_id
    from srs.storage.index_writer import Committer

    setup = RecordingIndex(index_url_postgresql)
    stopping = [
        setup.create_recording(NewRecording(started_at=T0 + i, state=State.STOPPING)) for i in range(120)
    ]
    setup.close()
    final = (T0 + 9, 1000, None, None, "wav", 8000, 1, None, 0, None)
    reports: list[BaseException] = []

    def node(name: str, finalize_first: bool, mine: list[str]) -> None:
        db = Database(index_url_postgresql)
        committer = Committer(db, f"run-{name}", lambda seq, what, exc: reports.append(exc), retry_for=60)
        seq = 0
        for rid in mine:
            new = (new_id(T0), None, None, None, None, "starting", T0, "wav", 8000, 1, T0, T0, name)
            pair = [("create", (new,)), ("finalize", (rid, "available", T0 + 9, final, (), (), ()))]
            if finalize_first:
                pair.reverse()
            items = []
            for write in pair:
                seq += 1
                items.append((seq, write[0], write))
            committer.commit(items)
        db.close()

    before = _deadlocks(index_url_postgresql)
    threads = [
        threading.Thread(target=node, args=("a", False, stopping[0::2])),
        threading.Thread(target=node, args=("b", True, stopping[1::2])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    check = RecordingIndex(index_url_postgresql)
    try:
        counts = check.count_by_state()
        assert counts["available"] == 120 and counts["starting"] == 120 and counts["stopping"] == 0
    finally:
        check.close()
    assert reports == []
    assert _deadlocks(index_url_postgresql) == before
