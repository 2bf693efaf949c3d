"""The background uploader against both stores: confirmed uploads only, retries while the store is
down, checksum mismatches caught, local files kept until the store has them, restarts resumed."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog.testing

from srs.service.uploader import MAX_MISMATCHES, Uploader, UploaderOptions
from srs.storage.db import Database
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import FileObjectStore, ObjectStore
from srs.storage.s3_store import S3ObjectStore
from srs.storage.uploads import UploadJob, UploadLedger, object_key
from tests.integration.objects.conftest import s3_options
from tests.integration.objects.faulty import CorruptingRelay
from tests.s3server import RcloneS3
from tests.unit.storage.factory import T0, add_recording

WAIT_S = 30.0


class Node:
    """A data dir with an index and an uploader, as the daemon wires them."""

    def __init__(self, tmp_path: Path, store: ObjectStore, **options: float) -> None:
        self.layout = DataLayout(tmp_path / "data")
        self.layout.ensure()
        self.index = RecordingIndex(self.layout.index_path, layout=self.layout)
        self.store = store
        self.events: list[tuple[str, str, str | None]] = []
        self.uploader = self._uploader(options)

    def _uploader(self, options: dict[str, float]) -> Uploader:
        ledger = UploadLedger(Database(self.layout.index_path))
        uploader = Uploader(
            ledger, self.store, self.layout.data_dir,
            UploaderOptions(
                concurrency=2, backoff_min_s=0.1, backoff_max_s=options.get("backoff_max_s", 0.5)
            ),
            listener=lambda event, rid, job, reason: self.events.append((event, rid, reason)),
        )
        return uploader

    def record(self, seed: int) -> tuple[str, UploadJob, bytes]:
        rid = add_recording(
            self.index, self.layout, started_at=T0 + seed, seed=seed, call_recording_id=f"c{seed}"
        )
        row = self.index.get(rid)
        assert row is not None
        path = Path(row["file_path"])
        key = object_key(self.layout.data_dir, path)
        job = UploadJob(rid, str(path), key, row["sha256"], row["file_size"])
        return rid, job, path.read_bytes()

    def row(self, rid: str) -> dict[str, object]:
        row = self.index.get(rid)
        assert row is not None
        return row

    def wait(self, predicate: Callable[[], bool], within: float = WAIT_S) -> None:
        deadline = time.monotonic() + within
        while not predicate():
            assert time.monotonic() < deadline, f"timed out; events {self.events[-5:]}"
            time.sleep(0.02)

    def close(self) -> None:
        self.uploader.stop(10)
        self.index.close()


@pytest.fixture
def node(tmp_path: Path, store: ObjectStore) -> Iterator[Node]:
    made = Node(tmp_path, store)
    yield made
    made.close()


def _object_bytes(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.read(key))


def test_uploads_confirmed_then_local_file_removed(node: Node) -> None:
    jobs = [node.record(seed) for seed in range(1, 6)]
    node.uploader.start()
    for _, job, _ in jobs:
        node.uploader.submit(job)
    node.wait(lambda: all(node.row(rid)["upload_state"] == "done" for rid, _, _ in jobs))
    for rid, job, data in jobs:
        row = node.row(rid)
        assert row["object_key"] == job.key and row["upload_error"] is None and row["uploaded_at"]
        assert _object_bytes(node.store, job.key) == data
        assert hashlib.sha256(_object_bytes(node.store, job.key)).hexdigest() == row["sha256"]
        assert not Path(job.path).exists()
    assert node.uploader.backlog() == (0, 0)
    assert node.uploader.stats.uploaded == 5
    assert node.uploader.stats.uploaded_bytes == sum(j.size for _, j, _ in jobs)


def test_local_file_that_no_longer_matches_is_failed_and_kept(node: Node) -> None:
    rid, job, data = node.record(7)
    Path(job.path).write_bytes(data[:-2] + b"\x00\x01")  # changed on disk after finalize
    with structlog.testing.capture_logs() as logs:
        node.uploader.start()
        node.uploader.submit(job)
        node.wait(lambda: node.row(rid)["upload_state"] == "failed")
    row = node.row(rid)
    failed = [e for e in logs if e["event"] == "upload_failed"]
    assert [(e["log_level"], e["recording"], e["reason"]) for e in failed] == [
        ("error", rid, row["upload_error"])
    ]
    assert "does not match its sha256" in str(row["upload_error"])
    assert Path(job.path).exists(), "the local file is kept when the upload fails"
    assert node.store.head(job.key) is None
    assert ("failed", rid, row["upload_error"]) in node.events
    assert node.uploader.stats.failed == 1 and node.uploader.backlog() == (0, 0)


def test_pending_uploads_are_resumed_after_a_restart(node: Node) -> None:
    first = node.record(11)
    second = node.record(12)
    ledger = UploadLedger(Database(node.layout.index_path))
    ledger.pending(first[0], first[1].key)  # queued by a daemon that stopped before uploading
    # second: finished but never heard of by an uploader (crash between finalize and submit)
    assert node.uploader.resume() == 2
    assert node.uploader.backlog() == (2, first[1].size + second[1].size)
    node.uploader.start()
    node.wait(lambda: node.uploader.idle())
    for rid, job, data in (first, second):
        assert node.row(rid)["upload_state"] == "done"
        assert _object_bytes(node.store, job.key) == data
    assert node.uploader.resume() == 0, "nothing left to resume once done"


def test_store_down_keeps_files_and_retries_until_it_returns(tmp_path: Path) -> None:
    server = RcloneS3(tmp_path / "s3root")
    server.start()
    store = S3ObjectStore(server.bucket_name(), "p", s3_options(server))
    store.ensure_bucket()
    node = Node(tmp_path, store, backoff_max_s=0.5)
    try:
        node.uploader.start()
        server.stop()
        jobs = [node.record(seed) for seed in range(20, 24)]
        for _, job, _ in jobs:
            node.uploader.submit(job)
        node.wait(lambda: all(node.row(rid)["upload_attempts"] for rid, _, _ in jobs[:1]))
        time.sleep(1.5)  # several retry rounds against a dead store
        for rid, job, _ in jobs:
            row = node.row(rid)
            assert row["upload_state"] == "pending"
            assert Path(job.path).exists(), "never deleted locally before the store confirms"
        assert "store unreachable" in str(node.row(jobs[0][0])["upload_error"])
        count, size = node.uploader.backlog()
        assert count == 4 and size == sum(job.size for _, job, _ in jobs)
        assert node.uploader.stats.attempt_failures >= 2
        server.start()  # same port, same folder
        node.wait(lambda: node.uploader.idle())
        for rid, job, data in jobs:
            row = node.row(rid)
            assert row["upload_state"] == "done" and row["upload_error"] is None
            assert _object_bytes(store, job.key) == data
            assert not Path(job.path).exists()
    finally:
        node.close()
        store.close()
        server.stop()


def test_a_recording_deleted_locally_and_absent_from_the_store_is_failed(node: Node) -> None:
    rid, job, _ = node.record(30)
    Path(job.path).unlink()
    node.uploader.start()
    node.uploader.submit(job)
    node.wait(lambda: node.row(rid)["upload_state"] == "failed")
    assert "missing" in str(node.row(rid)["upload_error"])


@pytest.fixture
def relay(s3_server: RcloneS3) -> Iterator[CorruptingRelay]:
    made = CorruptingRelay(s3_server.endpoint)
    made.start()
    yield made
    made.stop()


def _relayed_store(relay: CorruptingRelay, s3_server: RcloneS3) -> S3ObjectStore:
    options = dataclasses.replace(s3_options(s3_server), endpoint=relay.endpoint)
    store = S3ObjectStore(s3_server.bucket_name(), "relayed", options)
    store.ensure_bucket()
    return store


def test_bytes_damaged_on_the_way_are_refused_and_sent_again(
    tmp_path: Path, s3_server: RcloneS3, relay: CorruptingRelay
) -> None:
    store = _relayed_store(relay, s3_server)
    node = Node(tmp_path, store)
    try:
        rid, job, data = node.record(40)
        relay.corrupt_next = 1
        node.uploader.start()
        node.uploader.submit(job)
        node.wait(lambda: node.row(rid)["upload_state"] == "done")
        assert relay.corrupted == 1
        retries = [reason for event, _, reason in node.events if event == "retry"]
        assert len(retries) == 1 and "refused the bytes" in str(retries[0]), node.events
        assert _object_bytes(store, job.key) == data
        assert node.row(rid)["upload_attempts"] == 2
    finally:
        node.close()
        store.close()


def test_bytes_damaged_every_time_end_failed_with_the_local_file_kept(
    tmp_path: Path, s3_server: RcloneS3, relay: CorruptingRelay
) -> None:
    store = _relayed_store(relay, s3_server)
    node = Node(tmp_path, store)
    try:
        rid, job, data = node.record(41)
        relay.corrupt_next = 100
        node.uploader.start()
        node.uploader.submit(job)
        node.wait(lambda: node.row(rid)["upload_state"] == "failed")
        assert relay.corrupted == MAX_MISMATCHES
        row = node.row(rid)
        assert "refused the bytes" in str(row["upload_error"]) and f"{MAX_MISMATCHES} attempts" in str(
            row["upload_error"]
        )
        assert Path(job.path).read_bytes() == data, "the local file is kept"
        assert store.head(job.key) is None, "the store kept none of the damaged uploads"
    finally:
        node.close()
        store.close()


def test_a_large_local_archive_is_taken_in_batches(node: Node) -> None:
    recorded = [node.record(seed) for seed in range(50, 57)]
    assert node.uploader.resume(batch=3) == 3
    assert node.uploader.backlog()[0] == 3, "only one batch in memory"
    node.uploader.start()
    node.wait(lambda: all(node.row(rid)["upload_state"] == "done" for rid, _, _ in recorded))
    for _, job, data in recorded:
        assert _object_bytes(node.store, job.key) == data


def test_a_recording_deleted_while_uploading_leaves_no_object(
    tmp_path: Path, s3_server: RcloneS3, relay: CorruptingRelay
) -> None:
    from srs.service.recordings import RecordingService

    store = _relayed_store(relay, s3_server)
    node = Node(tmp_path, store)
    service = RecordingService(node.index, node.layout, node.layout.secret(), objects=store)
    try:
        rid, job, _ = node.record(60)
        relay.hold_puts = True
        node.uploader.start()
        node.uploader.submit(job)
        assert relay.put_arrived.wait(20), "the upload never reached the store"
        service.delete(rid, "test")  # while the PUT is in flight
        assert node.index.get(rid) is None and not Path(job.path).exists()
        relay.release_puts.set()
        node.wait(lambda: node.uploader.idle())
        assert store.head(job.key) is None, "the finished upload's object was removed"
        assert ("done", rid, None) in node.events
    finally:
        relay.release_puts.set()
        node.close()
        store.close()


def test_a_missing_bucket_is_retried_until_it_exists(tmp_path: Path, s3_server: RcloneS3) -> None:
    store = S3ObjectStore(s3_server.bucket_name(), "late", s3_options(s3_server))
    node = Node(tmp_path, store)
    try:
        rid, job, data = node.record(70)
        node.uploader.start()
        node.uploader.submit(job)
        node.wait(lambda: "NoSuchBucket" in str(node.row(rid)["upload_error"]))
        row = node.row(rid)
        assert row["upload_state"] == "pending" and str(row["upload_error"]).startswith("store refused")
        assert Path(job.path).exists()
        store.ensure_bucket()  # the operator creates it
        node.wait(lambda: node.row(rid)["upload_state"] == "done")
        assert _object_bytes(store, job.key) == data
    finally:
        node.close()
        store.close()


def test_two_nodes_share_one_bucket_and_prefix(tmp_path: Path, s3_server: RcloneS3) -> None:
    bucket = s3_server.bucket_name()
    stores = [S3ObjectStore(bucket, "fleet", s3_options(s3_server)) for _ in range(2)]
    stores[0].ensure_bucket()
    nodes = [Node(tmp_path / name, store) for name, store in zip("ab", stores, strict=True)]
    try:
        made = [[node.record(80 + 10 * n + i) for i in range(3)] for n, node in enumerate(nodes)]
        for node, recordings in zip(nodes, made, strict=True):
            node.uploader.start()
            for _, job, _ in recordings:
                node.uploader.submit(job)
        for node in nodes:
            node.wait(node.uploader.idle)
        keys = {job.key for recordings in made for _, job, _ in recordings}
        assert len(keys) == 6, "ids are unique across nodes, so keys never collide"
        for recordings in made:
            for _, job, data in recordings:
                assert _object_bytes(stores[0], job.key) == data  # either node's client reads all
                assert _object_bytes(stores[1], job.key) == data
        assert not list((tmp_path / "a" / "data" / "recordings").rglob("*.wav"))
        assert not list((tmp_path / "b" / "data" / "recordings").rglob("*.wav"))
    finally:
        for node in nodes:
            node.close()
        for store in stores:
            store.close()


def test_on_a_shared_index_each_node_uploads_only_its_own_recordings(
    tmp_path: Path, index_url_postgresql: str
) -> None:
    """Two machines of a fleet, each with the same data dir path, share one PostgreSQL index: a
    node's uploader resumes its own recordings and leaves the other node's alone (their files are on
    the other machine: taking them would fail them as missing), and its ``done`` lands in the shared
    index, where every node's API reads where the file is."""
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    indexes = {name: RecordingIndex(index_url_postgresql, layout=layout, node=name) for name in ("a", "b")}
    store = FileObjectStore(tmp_path / "objects")
    database = Database(index_url_postgresql)
    try:
        ours = [
            add_recording(indexes["a"], layout, started_at=T0 + n, seed=n, call_recording_id=f"a{n}")
            for n in range(2)
        ]
        theirs = [
            add_recording(
                indexes["b"], layout, started_at=T0 - 10 + n, seed=10 + n, call_recording_id=f"b{n}"
            )
            for n in range(2)
        ]
        for rid in theirs:  # on node b's disk, not here
            row = indexes["b"].get(rid)
            assert row is not None
            Path(row["file_path"]).unlink()
        ledger = UploadLedger(database, node="a")
        assert {job.recording_id for job in ledger.to_upload(layout.data_dir, 10)} == set(ours)
        assert len(UploadLedger(database).to_upload(layout.data_dir, 10)) == 4, "no node: every row"
        uploader = Uploader(ledger, store, layout.data_dir, UploaderOptions(concurrency=2))
        uploader.start()
        assert uploader.resume() == 2
        deadline = time.monotonic() + WAIT_S
        while not uploader.idle():
            assert time.monotonic() < deadline, "uploads did not finish"
            time.sleep(0.02)
        uploader.stop(10)
        reader = RecordingIndex(index_url_postgresql)  # any node's view of the shared index
        try:
            for rid in ours:
                row = reader.get(rid)
                assert row is not None and row["upload_state"] == "done" and row["node"] == "a"
                assert store.head(row["object_key"]) is not None
            for rid in theirs:
                row = reader.get(rid)
                assert row is not None and row["upload_state"] is None and row["upload_attempts"] == 0
        finally:
            reader.close()
    finally:
        database.close()
        store.close()
        for index in indexes.values():
            index.close()
