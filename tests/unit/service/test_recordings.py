"""The assembly of the recording services: one context shared by all of them."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.service.errors import NotAvailable
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.objects import FileObjectStore
from srs.storage.records import RecordingFilter
from tests.unit.storage.factory import add_recording


def test_open_on_a_fresh_directory(tmp_path: Path) -> None:
    opened = RecordingService.open(tmp_path / "fresh")
    assert opened.list(RecordingFilter())["items"] == []
    assert (tmp_path / "fresh" / "index.sqlite3").exists()
    opened.index.close()


def test_an_object_store_attached_later_reaches_every_service(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, tmp_path: Path
) -> None:
    """The daemon attaches the store after building the services: all of them must see it."""
    rid = add_recording(index, layout)
    row = {**index.get(rid), "upload_state": "done", "object_key": f"rec/{rid}.wav"}
    assert service.represent(row)["file"]["path"].startswith("object store/")
    with pytest.raises(NotAvailable, match="not configured"):
        service.files._stored_object(rid, row, "wav")
    store = FileObjectStore(tmp_path / "objects")
    service.objects = store
    assert service.files.context.objects is store and service.catalog.context.objects is store
    assert service.catalog.represent(row)["file"]["path"] == f"{store.url}/rec/{rid}.wav"
    with pytest.raises(NotAvailable, match="missing from the store"):
        service.files._stored_object(rid, row, "wav")
