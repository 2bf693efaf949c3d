"""Recordings moved to an object store are served, linked, exported, held and deleted through the
real API exactly like local ones (both stores: a folder and a real S3-compatible server)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from srs.storage.objects import ObjectStore
from srs.storage.s3_store import S3ObjectStore
from tests.integration.api.conftest import Api
from tests.integration.objects.conftest import s3_options, upload_all
from tests.s3server import RcloneS3
from tests.unit.storage.factory import T0, add_recording, wav_bytes

PREFIX = "/api/v1"


@pytest.fixture
def api(tmp_path: Path, store: ObjectStore) -> Iterator[Api]:
    instance = Api(tmp_path)
    instance.service.objects = store
    yield instance
    instance.close()


def _uploaded(api: Api, store: ObjectStore, seed: int = 1, **kwargs: object) -> tuple[str, bytes]:
    rid = add_recording(api.index, api.layout, seed=seed, **kwargs)  # type: ignore[arg-type]
    upload_all(api.layout, store)
    return rid, wav_bytes(seed=seed)


def test_show_says_where_the_file_is(api: Api, store: ObjectStore) -> None:
    rid, data = _uploaded(api, store)
    shown = api.request("GET", f"{PREFIX}/recordings/{rid}", token="admin").json()
    assert "path" not in api.request("GET", f"{PREFIX}/recordings/{rid}").json()["file"]  # admin only
    assert shown["state"] == "available"
    assert shown["upload"]["state"] == "done" and shown["upload"]["reason"] is None
    assert shown["upload"]["key"].startswith("recordings/") and shown["upload"]["uploaded_at"]
    assert shown["file"]["location"] == "object"
    assert shown["file"]["path"] == f"{store.url.rstrip('/')}/{shown['upload']['key']}"
    assert shown["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list(api.layout.recordings_dir.rglob("*.wav")), "nothing left on the local disk"


def test_download_head_etag_and_ranges_from_the_store(api: Api, store: ObjectStore) -> None:
    rid, data = _uploaded(api, store)
    url = f"{PREFIX}/recordings/{rid}/file"
    full = api.request("GET", url)
    assert full.status_code == 200 and full.content == data
    etag = full.headers["etag"]
    assert etag == f'"{hashlib.sha256(data).hexdigest()}"'
    assert full.headers["content-length"] == str(len(data)) and full.headers["accept-ranges"] == "bytes"
    head = api.request("HEAD", url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data))
    part = api.request("GET", url, headers={"Range": "bytes=44-143"})
    assert part.status_code == 206 and part.content == data[44:144]
    assert part.headers["content-range"] == f"bytes 44-143/{len(data)}"
    tail = api.request("GET", url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    multi = api.request("GET", url, headers={"Range": "bytes=0-3,100-103"})
    assert multi.status_code == 206 and multi.headers["content-type"].startswith("multipart/byteranges")
    assert data[0:4] in multi.content and data[100:104] in multi.content
    assert api.request("GET", url, headers={"If-None-Match": etag}).status_code == 304
    unsatisfiable = api.request("GET", url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert unsatisfiable.status_code == 416


def test_signed_link_streams_the_object(api: Api, store: ObjectStore) -> None:
    rid, data = _uploaded(api, store)
    link = api.request("POST", f"{PREFIX}/recordings/{rid}/link").json()["link"]
    parts = urlsplit(link)
    response = api.request("GET", f"{parts.path}?{parts.query}", token=None)
    assert response.status_code == 200 and response.content == data
    ranged = api.request("GET", f"{parts.path}?{parts.query}", token=None, headers={"Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.content == data[:10]


def test_delete_removes_the_object(api: Api, store: ObjectStore) -> None:
    rid, _ = _uploaded(api, store)
    key = api.index.get(rid)["object_key"]  # type: ignore[index]
    assert store.head(key) is not None
    assert api.request("POST", f"{PREFIX}/recordings/{rid}/hold", token="admin").status_code == 200
    assert api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin").status_code == 409
    assert store.head(key) is not None, "a legal hold keeps the object"
    api.request("POST", f"{PREFIX}/recordings/{rid}/hold?on=false", token="admin")
    assert api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin").status_code == 204
    assert store.head(key) is None
    assert api.request("GET", f"{PREFIX}/recordings/{rid}").status_code == 404


def test_retention_removes_objects_but_not_held_ones(api: Api, store: ObjectStore) -> None:
    old = add_recording(api.index, api.layout, started_at=T0, seed=1, call_recording_id="old")
    held = add_recording(api.index, api.layout, started_at=T0 + 1, seed=2, call_recording_id="held")
    fresh = add_recording(api.index, api.layout, started_at=T0 + 20 * 86_400, seed=3, call_recording_id="new")
    upload_all(api.layout, store)
    keys = {rid: api.index.get(rid)["object_key"] for rid in (old, held, fresh)}  # type: ignore[index]
    api.index.set_legal_hold(held, True)
    deleted = api.service.sweep(T0 + 21 * 86_400, 10)
    assert deleted == [old]
    assert store.head(keys[old]) is None
    assert store.head(keys[held]) is not None and store.head(keys[fresh]) is not None


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_export_reads_the_objects(api: Api, store: ObjectStore, fmt: str) -> None:
    first, first_data = _uploaded(api, store, seed=1, call_recording_id="A")
    local = add_recording(api.index, api.layout, seed=2, call_recording_id="A", started_at=T0 + 5)
    job = api.service.export(filt=None, fmt=fmt)
    assert job["state"] == "done" and job["count"] == 2
    archive = api.service.export_file(job["id"]).read_bytes()
    if fmt == "zip":
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            assert zipped.read(f"recordings/{first}.wav") == first_data
            assert zipped.read(f"recordings/{local}.wav") == wav_bytes(seed=2)
    else:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            member = tar.extractfile(f"recordings/{first}.wav")
            assert member is not None and member.read() == first_data
            other = tar.extractfile(f"recordings/{local}.wav")
            assert other is not None and other.read() == wav_bytes(seed=2)


def test_store_down_answers_503_and_keeps_the_row(tmp_path: Path) -> None:
    server = RcloneS3(tmp_path / "s3root")
    server.start()
    store = S3ObjectStore(server.bucket_name(), "", s3_options(server))
    store.ensure_bucket()
    api = Api(tmp_path / "node")
    api.service.objects = store
    try:
        rid, data = _uploaded(api, store, started_at=T0)
        server.stop()
        response = api.request("GET", f"{PREFIX}/recordings/{rid}/file")
        assert response.status_code == 503 and response.json()["error"]["code"] == "store_unavailable"
        deleting = api.request("DELETE", f"{PREFIX}/recordings/{rid}", token="admin")
        assert deleting.status_code == 503
        assert api.service.sweep(T0 + 30 * 86_400, 1) == [], "retention retries at its next sweep"
        assert api.index.get(rid) is not None
        server.start()
        assert api.request("GET", f"{PREFIX}/recordings/{rid}/file").content == data
        key = api.index.get(rid)["object_key"]  # type: ignore[index]
        assert api.service.sweep(T0 + 30 * 86_400, 1) == [rid]
        assert store.head(key) is None and api.index.get(rid) is None
    finally:
        api.close()
        store.close()
        server.stop()


def test_a_file_moved_to_the_store_between_lookup_and_read_is_read_from_the_store(
    api: Api, store: ObjectStore
) -> None:
    rid = add_recording(api.index, api.layout, seed=9)
    before = api.service.stored_file(rid)
    assert before.path is not None and before.key is None
    opened = api.service.read(before, 0, 100)  # opened before the move: keeps reading the old file
    upload_all(api.layout, store)
    assert not before.path.exists()
    assert b"".join(opened) == wav_bytes(seed=9)[:100]
    assert b"".join(api.service.read(before, 100, 50)) == wav_bytes(seed=9)[100:150]
