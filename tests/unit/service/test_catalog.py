"""Finding recordings and their JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.service.errors import BadRequest, NotFound
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter
from tests.unit.storage.factory import T0, add_recording, wav_bytes


def test_representation_shape(service: RecordingService, index: RecordingIndex, layout: DataLayout) -> None:
    rid = add_recording(index, layout)
    item = service.show(rid)
    assert item["id"] == rid and item["state"] == "available" and item["call_recording_id"] == "crid-1"
    assert item["started_at"] == "2023-11-14T22:13:20.000Z" and item["ended_at"] == "2023-11-14T22:13:21.000Z"
    assert item["duration_ms"] == 1000 and item["incomplete"] is False
    file = item["file"]
    assert file["path"] == str(layout.recording_path(rid, T0)) and Path(file["path"]).is_absolute()
    assert file["name"] == f"{rid}.wav" and file["format"] == "wav" and file["content_type"] == "audio/wav"
    assert (file["sample_rate"], file["channels"], file["size"]) == (8000, 1, len(wav_bytes()))
    assert item["participants"][0] == {
        "id": "p1",
        "aor": "sip:+15551230001@example.com",
        "name": "Alice",
        "send": ["s1"],
        "recv": ["s2"],
    }
    assert item["streams"][1] == {
        "label": "2",
        "stream_id": "s2",
        "codec": "PCMA",
        "packets_received": 49,
        "packets_lost": 1,
        "jitter_ms": 2.5,
    }
    assert item["extensions"] == {"vendor:agent": "42"}
    assert item["dtmf"] == [{"label": "1", "digit": "5", "offset_ms": 200, "duration_ms": 80}]
    assert item["links"]["file"] == f"/api/v1/recordings/{rid}/file"
    json.dumps(item)


def test_show_unknown_and_malformed_ids(service: RecordingService) -> None:
    with pytest.raises(NotFound):
        service.show("01HZX3Y5Q8K2M4N6P8R0S2T4V6")
    with pytest.raises(NotFound):
        service.show("../../etc/passwd")
    with pytest.raises(NotFound):
        service.show_by_call_recording_id("nope")


def test_show_by_call_recording_id_takes_the_newest(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    add_recording(index, layout, started_at=T0)
    newer = add_recording(index, layout, started_at=T0 + 10)
    assert service.show_by_call_recording_id("crid-1")["id"] == newer


def test_metadata_versions_as_text(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    rid = add_recording(index, layout)
    index.add_metadata_version(rid, T0 + 3, b"<second/>")
    versions = service.metadata_versions(rid)
    assert [v["seq"] for v in versions] == [1, 2]
    assert versions[1] == {"seq": 2, "received_at": "2023-11-14T22:13:23.000Z", "xml": "<second/>"}


def test_list_pagination_shape(service: RecordingService, index: RecordingIndex, layout: DataLayout) -> None:
    for i in range(3):
        add_recording(index, layout, started_at=T0 + i)
    result = service.list(RecordingFilter(), page=2, max=2)
    assert result["pagination"] == {"pages": 2, "total": 3, "current": 2, "max": 2}
    assert len(result["items"]) == 1
    with pytest.raises(BadRequest):
        service.list(RecordingFilter(), page=0)
