"""Export archives: by ids or by filter, tar.gz and zip."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from srs.service.errors import BadRequest, NotAvailable, NotFound
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter, State
from tests.unit.storage.factory import T0, add_recording, wav_bytes


def _export_members(path: Path) -> dict[str, bytes]:
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist()}
    with tarfile.open(path, "r:gz") as archive:
        out = {}
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            assert handle is not None
            out[member.name] = handle.read()
        return out


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_export_by_ids(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, fmt: str
) -> None:
    first = add_recording(index, layout, seed=1)
    second = add_recording(index, layout, seed=2, started_at=T0 + 1)
    running = add_recording(index, layout, state=State.RECORDING, started_at=T0 + 2)
    add_recording(index, layout, seed=3, started_at=T0 + 3)  # not selected
    job = service.export(ids=[first, second, running], fmt=fmt)
    assert job["state"] == "done" and job["count"] == 3 and job["format"] == fmt
    path = service.export_file(job["id"])
    assert path.parent == layout.exports_dir
    members = _export_members(path)
    assert set(members) == {"index.json", f"recordings/{first}.wav", f"recordings/{second}.wav"}
    assert members[f"recordings/{first}.wav"] == wav_bytes(seed=1)
    assert members[f"recordings/{second}.wav"] == wav_bytes(seed=2)
    manifest = json.loads(members["index.json"])
    assert manifest["count"] == 3
    by_id = {entry["id"]: entry for entry in manifest["recordings"]}
    assert (
        by_id[running]["archive_path"] is None and by_id[first]["archive_path"] == f"recordings/{first}.wav"
    )


def test_export_by_filter_and_bad_requests(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    add_recording(index, layout, call_recording_id="A")
    wanted = add_recording(index, layout, call_recording_id="B", seed=5)
    job = service.export(filt=RecordingFilter(call_recording_id="B"))
    members = _export_members(service.export_file(job["id"]))
    assert set(members) == {"index.json", f"recordings/{wanted}.wav"}
    with pytest.raises(BadRequest):
        service.export(ids=["../etc"])
    with pytest.raises(BadRequest):
        service.export(ids=[wanted], fmt="rar")
    pending = service.create_export(ids=[wanted])
    with pytest.raises(NotAvailable):
        service.export_file(pending["id"])
    with pytest.raises(NotFound):
        service.export_status("01HZX3Y5Q8K2M4N6P8R0S2T4V6")
