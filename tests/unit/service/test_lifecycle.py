"""Legal hold, deletion and retention."""

from __future__ import annotations

import pytest

from srs.service.errors import Conflict, NotFound
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter, State
from tests.unit.storage.factory import T0, add_recording

DAY = 86_400.0


def test_delete_removes_file_metadata_row_and_writes_audit(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    rid = add_recording(index, layout)
    keep = add_recording(index, layout, seed=2)
    audio = layout.recording_path(rid, T0)
    metadata = layout.metadata_dir(rid, T0)  # as an older release left it
    metadata.mkdir()
    (metadata / "001.xml").write_bytes(b"<recording/>")
    assert audio.exists() and index.metadata_versions(rid) != []
    service.delete(rid, actor="cli:alice")
    assert not audio.exists() and not metadata.exists()
    assert index.get(rid) is None and index.metadata_versions(rid) == []
    assert layout.recording_path(keep, T0).exists()
    (entry,) = index.admin.audit_entries(rid)
    assert (entry["actor"], entry["action"]) == ("cli:alice", "delete")
    with pytest.raises(NotFound):
        service.delete(rid, actor="cli:alice")


def test_delete_refuses_held_and_active_recordings(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    held = add_recording(index, layout)
    service.hold(held, True, actor="admin")
    with pytest.raises(Conflict) as caught:
        service.delete(held, actor="x")
    assert caught.value.code == "legal_hold"
    assert service.hold(held, False)["legal_hold"] is False
    active = add_recording(index, layout, state=State.RECORDING)
    with pytest.raises(Conflict):
        service.delete(active, actor="x")
    assert [e["action"] for e in index.admin.audit_entries(held)] == ["hold", "release"]


def test_retention_sweep(service: RecordingService, index: RecordingIndex, layout: DataLayout) -> None:
    now = T0 + 40 * DAY
    old = add_recording(index, layout, started_at=T0)
    old_held = add_recording(index, layout, started_at=T0, seed=2)
    service.hold(old_held, True)
    old_failed = add_recording(index, layout, started_at=T0, state=State.FAILED)
    old_running = add_recording(index, layout, started_at=T0, state=State.RECORDING)
    young = add_recording(index, layout, started_at=now - 10 * DAY)
    vip_old = add_recording(index, layout, started_at=T0, source="203.0.113.5:5060")
    short_lived = add_recording(index, layout, started_at=now - 3 * DAY, source="203.0.113.9:5060")
    deleted = service.sweep(now, 30, {"203.0.113.5:5060": 0, "203.0.113.9:5060": 2})
    assert sorted(deleted) == sorted([old, old_failed, short_lived])
    remaining = {item["id"] for item in index.find(RecordingFilter()).items}
    assert remaining == {old_held, old_running, young, vip_old}
    assert not layout.recording_path(old, T0).exists()
    assert index.admin.audit_entries(old)[0]["action"] == "retention_delete"
    assert service.sweep(now, None) == []
