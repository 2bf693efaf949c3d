"""A real S3-compatible server (rclone) for the session, and each store under test on a fresh bucket."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from srs.service.uploader import Uploader, UploaderOptions
from srs.storage.db import Database
from srs.storage.layout import DataLayout
from srs.storage.objects import FileObjectStore, ObjectStore
from srs.storage.s3_store import S3ObjectStore, S3Options
from srs.storage.uploads import UploadLedger
from tests.s3server import ACCESS_KEY, SECRET_KEY, RcloneS3, s3_server

__all__ = ["s3_server"]


def s3_options(server: RcloneS3, **overrides: int) -> S3Options:
    return S3Options(
        endpoint=server.endpoint, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        connect_timeout_s=2.0, read_timeout_s=10.0, **overrides,
    )


def s3_store(server: RcloneS3, prefix: str = "fleet/node-a", **overrides: int) -> S3ObjectStore:
    store = S3ObjectStore(server.bucket_name(), prefix, s3_options(server, **overrides))
    store.ensure_bucket()
    return store


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """The same tests run against the folder store and the S3 store."""
    made: ObjectStore
    if request.param == "file":
        made = FileObjectStore(tmp_path / "objects")
    else:
        made = s3_store(request.getfixturevalue("s3_server"))
    yield made
    made.close()


def backing_file(store: ObjectStore, server: RcloneS3 | None, key: str) -> Path:
    """Where the object's bytes sit on disk (the folder store, or rclone's served folder)."""
    if isinstance(store, FileObjectStore):
        return store.root / key
    assert isinstance(store, S3ObjectStore) and server is not None
    return server.root / store.bucket / store.prefix / key


def upload_all(layout: DataLayout, store: ObjectStore) -> None:
    """What the daemon's uploader does after each call, for every recording in the index."""
    database = Database(layout.index_path)
    uploader = Uploader(UploadLedger(database), store, layout.data_dir, UploaderOptions(concurrency=2))
    uploader.start()
    assert uploader.resume() > 0
    deadline = time.monotonic() + 30
    while not uploader.idle():
        assert time.monotonic() < deadline, "uploads did not finish"
        time.sleep(0.02)
    uploader.stop()
    database.close()
