"""Both object stores (a folder and a real S3-compatible server) pass the same tests."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from srs.storage.objects import (
    ChecksumMismatch,
    FileObjectStore,
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    StoreUnavailable,
    digest_file,
)
from srs.storage.s3_store import S3ObjectStore, S3Options, options_from_env
from srs.storage.stores import open_store
from tests.integration.objects.conftest import backing_file, s3_options, s3_store
from tests.s3server import RcloneS3

KEY = "recordings/2026/12/01/0000000000-abcdef.wav"


def _file(tmp_path: Path, size: int, seed: int = 1) -> tuple[Path, bytes, str]:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    data = bytes(b ^ (i & 0xFF) for i, b in enumerate(data[:size]))
    path = tmp_path / f"local-{seed}-{size}.wav"
    path.write_bytes(data)
    return path, data, hashlib.sha256(data).hexdigest()


def _read(store: ObjectStore, key: str, start: int = 0, length: int | None = None) -> bytes:
    return b"".join(store.read(key, start, length))


def test_put_head_read_ranges_delete(store: ObjectStore, tmp_path: Path) -> None:
    path, data, sha = _file(tmp_path, 100_003)
    info = store.put(KEY, path, sha)
    assert info.size == len(data)
    head = store.head(KEY)
    assert head is not None and head.size == len(data) and head.etag
    if store.remote:
        assert head.sha256 == sha  # carried as object metadata
    assert _read(store, KEY) == data
    assert _read(store, KEY, 10, 20) == data[10:30]
    assert _read(store, KEY, len(data) - 7) == data[-7:]
    assert _read(store, KEY, 0, 1) == data[:1]
    assert _read(store, KEY, 5, 0) == b""
    store.verify(KEY, sha)
    store.delete(KEY)
    assert store.head(KEY) is None
    store.delete(KEY)  # deleting what is gone is fine
    with pytest.raises(ObjectNotFound):
        _read(store, KEY)


def test_put_refuses_a_local_file_that_does_not_match(store: ObjectStore, tmp_path: Path) -> None:
    path, _, _ = _file(tmp_path, 5000)
    with pytest.raises(ChecksumMismatch, match="local file"):
        store.put(KEY, path, "0" * 64)
    assert store.head(KEY) is None


def test_verify_detects_an_object_changed_in_the_store(
    store: ObjectStore, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    path, data, sha = _file(tmp_path, 4096)
    store.put(KEY, path, sha)
    server = request.getfixturevalue("s3_server") if store.remote else None
    stored = backing_file(store, server, KEY)
    assert stored.read_bytes() == data
    stored.write_bytes(bytes(reversed(data)))  # same size, other bytes
    with pytest.raises(ChecksumMismatch):
        store.verify(KEY, sha)


def test_keys_cannot_leave_the_store(store: ObjectStore, tmp_path: Path) -> None:
    path, _, sha = _file(tmp_path, 100)
    for bad in ("../x.wav", "/etc/passwd", "a/../../b", "", "a//b", ".hidden/x"):
        with pytest.raises(ObjectStoreError):
            store.put(bad, path, sha)


def test_multipart_upload_of_a_large_file(s3_server: RcloneS3, tmp_path: Path) -> None:
    store = s3_store(s3_server, multipart_threshold=5 * 1024 * 1024, part_size=5 * 1024 * 1024)
    path, data, sha = _file(tmp_path, 11 * 1024 * 1024 + 5)
    info = store.put(KEY, path, sha)
    assert info.size == len(data) and info.sha256 == sha
    assert len(digest_file(path, 5 * 1024 * 1024).part_md5s) == 3
    assert _read(store, KEY, 5 * 1024 * 1024 - 3, 6) == data[5 * 1024 * 1024 - 3 : 5 * 1024 * 1024 + 3]
    store.verify(KEY, sha)
    store.close()


def test_presigned_url_serves_the_object_and_ranges(s3_server: RcloneS3, tmp_path: Path) -> None:
    store = s3_store(s3_server)
    path, data, sha = _file(tmp_path, 20_000)
    store.put(KEY, path, sha)
    url = store.presign(KEY, 60, filename="rec.wav")
    assert url is not None and "X-Amz-Signature" in url
    assert httpx.get(url).content == data
    assert httpx.get(url, headers={"Range": "bytes=100-199"}).content == data[100:200]
    forged = url.replace("X-Amz-Signature=", "X-Amz-Signature=0")
    assert httpx.get(forged).status_code == 403
    assert FileObjectStore(tmp_path / "f").presign(KEY, 60) is None
    store.close()


def test_store_down_is_unavailable_not_missing(tmp_path: Path) -> None:
    server = RcloneS3(tmp_path / "root")
    server.start()
    store = S3ObjectStore(server.bucket_name(), "", s3_options(server))
    store.ensure_bucket()
    path, _, sha = _file(tmp_path, 1000)
    store.put(KEY, path, sha)
    server.stop()
    with pytest.raises(StoreUnavailable):
        store.head(KEY)
    with pytest.raises(StoreUnavailable):
        store.put("other.wav", path, sha)
    server.start()  # same port, same folder: everything is back
    assert store.head(KEY) is not None
    store.close()
    server.stop()


def test_open_store_by_url(s3_server: RcloneS3, tmp_path: Path) -> None:
    folder = open_store((tmp_path / "o").as_uri())
    assert isinstance(folder, FileObjectStore) and folder.root == (tmp_path / "o").resolve()
    bucket = s3_server.bucket_name()
    s3 = open_store(f"s3://{bucket}/a/b", s3_options(s3_server))
    assert isinstance(s3, S3ObjectStore) and s3.bucket == bucket and s3.prefix == "a/b"
    s3.ensure_bucket()
    path, _, sha = _file(tmp_path, 10)
    s3.put("k.wav", path, sha)
    assert (s3_server.root / bucket / "a" / "b" / "k.wav").is_file()
    s3.close()
    for bad in ("ftp://x/y", "file://host/x", "file://"):
        with pytest.raises(ObjectStoreError):
            open_store(bad)


def test_credentials_from_the_environment() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret", "AWS_REGION": "eu-west-3",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    merged = options_from_env(S3Options(), env)
    assert (merged.access_key, merged.secret_key, merged.region, merged.endpoint) == (
        "id", "secret", "eu-west-3", "http://127.0.0.1:9"
    )
    configured = options_from_env(S3Options(endpoint="http://127.0.0.1:1", region="r"), env)
    assert configured.endpoint == "http://127.0.0.1:1" and configured.region == "r"
    assert options_from_env(S3Options(), {}).region == "us-east-1"
    assert os.environ.get("SRS_NEVER_SET") is None
