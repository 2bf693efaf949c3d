"""`srs recordings …` on a data dir whose recordings are in the object store (both stores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.cli.main import build_parser
from srs.service.recordings import RecordingService
from srs.storage.objects import FileObjectStore, ObjectStore
from srs.storage.s3_store import S3ObjectStore
from tests.integration.objects.conftest import upload_all
from tests.s3server import ACCESS_KEY, SECRET_KEY
from tests.unit.storage.factory import add_recording, wav_bytes


def run(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    result: int = args.func(args)
    return result


def _url(store: ObjectStore) -> str:
    if isinstance(store, FileObjectStore):
        return store.root.as_uri()
    assert isinstance(store, S3ObjectStore)
    return f"s3://{store.bucket}/{store.prefix}"


def test_show_download_and_delete_from_the_store(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "var"
    service = RecordingService.open(data)
    rid = add_recording(service.index, service.layout, seed=4)
    service.index.close()
    if isinstance(store, S3ObjectStore):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_ENDPOINT_URL", str(store.options.endpoint))
    upload_all(service.layout, store)
    reopened = RecordingService.open(data)
    key = reopened.index.get(rid)["object_key"]  # type: ignore[index]
    reopened.index.close()
    assert run("recordings", "show", rid, "--data-dir", str(data)) == 0
    assert "upload: done" in capsys.readouterr().out
    target = tmp_path / "out.wav"
    assert run("recordings", "download", rid, "-o", str(target), "--data-dir", str(data)) == 1, (
        "without the store the CLI cannot read it"
    )
    capsys.readouterr()
    common = ["--data-dir", str(data), "--objects", _url(store)]
    assert run("recordings", "download", rid, "-o", str(target), *common) == 0
    assert target.read_bytes() == wav_bytes(seed=4)
    assert run("recordings", "delete", rid, *common) == 0
    assert store.head(key) is None
