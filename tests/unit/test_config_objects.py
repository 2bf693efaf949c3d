"""The object store keys of [storage]: validated at start, and turned into a store by the daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.config import build_config
from srs.daemon.app import open_objects
from srs.errors import ConfigError
from srs.storage.objects import FileObjectStore
from srs.storage.s3_store import S3ObjectStore


def test_default_keeps_recordings_local() -> None:
    config = build_config({})
    assert config.storage.objects == ""
    assert open_objects(config) is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("objects", "ftp://host/dir", "objects"),
        ("objects", "s3://", "objects"),
        ("objects", "file://relative", "objects"),
        ("objects_endpoint", "minio:9000", "objects_endpoint"),
        ("upload_concurrency", 0, "upload_concurrency"),
        ("upload_concurrency", 65, "upload_concurrency"),
        ("upload_retry_max_s", 0, "upload_retry_max_s"),
        ("upload_multipart_mb", 4, "upload_multipart_mb"),
    ],
)
def test_bad_values_are_refused_by_name(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[storage\] {message}"):
        build_config({"storage": {key: value}})


def test_urls_open_the_matching_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = open_objects(build_config({"storage": {"objects": (tmp_path / "archive").as_uri()}}))
    assert isinstance(folder, FileObjectStore) and folder.root == (tmp_path / "archive").resolve()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-env")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    store = open_objects(build_config({"storage": {
        "objects": "s3://bucket/a/prefix", "objects_endpoint": "http://127.0.0.1:9",
        "upload_multipart_mb": 32,
    }}))
    assert isinstance(store, S3ObjectStore)
    assert (store.bucket, store.prefix, store.url) == ("bucket", "a/prefix", "s3://bucket/a/prefix")
    options = store.options
    assert (options.endpoint, options.region, options.access_key) == (
        "http://127.0.0.1:9", "eu-central-1", "from-env"
    )
    assert options.multipart_threshold == 32 * 1024 * 1024
    store.close()
