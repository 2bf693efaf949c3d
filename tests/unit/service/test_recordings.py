from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from srs.service.errors import BadRequest, BadSignature, Conflict, LinkExpired, NotAvailable, NotFound
from srs.service.filters import build_filter, filter_from_json, filter_to_json, split_extension
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import RecordingFilter, State
from tests.unit.conftest import FakeClock
from tests.unit.storage.factory import T0, add_recording, wav_bytes

DAY = 86_400.0


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


@pytest.mark.parametrize("state", [State.STARTING, State.RECORDING, State.STOPPING, State.FAILED])
def test_file_path_only_when_available(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, state: State
) -> None:
    rid = add_recording(index, layout, state=state)
    with pytest.raises(NotAvailable) as caught:
        service.file_path(rid)
    assert caught.value.details == {"state": state.value}
    assert service.show(rid)["links"].get("file") is None


def test_file_path_outside_data_dir_is_never_served(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    rid = add_recording(index, layout)
    with index.db.write() as conn:
        conn.execute("UPDATE recordings SET file_path = '/etc/passwd' WHERE id = ?", (rid,))
    with pytest.raises(NotAvailable):
        service.file_path(rid)


def test_signed_link_round_trip_and_expiry(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, clock: FakeClock
) -> None:
    rid = add_recording(index, layout)
    path, expires_at = service.sign_link(rid, 300)
    assert expires_at == int(clock.now + 300)
    query = dict(part.split("=") for part in path.split("?", 1)[1].split("&"))
    assert path.startswith(f"/api/v1/links/{rid}?")
    assert "tok" not in query  # made by the CLI: tied to no token
    service.verify_link(rid, query["exp"], query["sig"], query["lid"])
    clock.now += 299
    service.verify_link(rid, query["exp"], query["sig"], query["lid"])
    clock.now += 1
    with pytest.raises(LinkExpired):
        service.verify_link(rid, query["exp"], query["sig"], query["lid"])


def test_signed_link_tampering(
    service: RecordingService, index: RecordingIndex, layout: DataLayout, clock: FakeClock
) -> None:
    rid = add_recording(index, layout)
    other = add_recording(index, layout, seed=2)
    path, expires_at = service.sign_link(rid, 60)
    sig = path.rsplit("sig=", 1)[1]
    lid = path.split("lid=", 1)[1].split("&", 1)[0]
    flipped = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    service.verify_link(rid, str(expires_at), sig, lid)
    for args in [
        (rid, str(expires_at + 1), sig, lid),
        (rid, str(expires_at), flipped, lid),
        (other, str(expires_at), sig, lid),
        (rid, "soon", sig, lid),
        (rid, str(expires_at), "", lid),
        ("../x", str(expires_at), sig, lid),
        (rid, str(expires_at), sig, ""),
        (rid, str(expires_at), sig, lid, lid),  # claims a token the signature does not cover
    ]:
        with pytest.raises(BadSignature):
            service.verify_link(*args)
    clock.now += 3600  # a forged link is "bad", never "expired": it learns nothing
    with pytest.raises(BadSignature):
        service.verify_link(rid, str(expires_at), flipped, lid)
    foreign = RecordingService(index, layout, b"another secret of enough length", clock)
    with pytest.raises(BadSignature):
        foreign.verify_link(rid, str(expires_at), sig, lid)


def test_link_validity_bounds(service: RecordingService, index: RecordingIndex, layout: DataLayout) -> None:
    rid = add_recording(index, layout)
    with pytest.raises(BadRequest):
        service.sign_link(rid, 0)
    with pytest.raises(BadRequest):
        service.sign_link(rid, service.max_link_validity_s + 1)
    unfinished = add_recording(index, layout, state=State.RECORDING)
    with pytest.raises(NotAvailable):
        service.sign_link(unfinished, 60)


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


def test_open_on_a_fresh_directory(tmp_path: Path) -> None:
    opened = RecordingService.open(tmp_path / "fresh")
    assert opened.list(RecordingFilter())["items"] == []
    assert (tmp_path / "fresh" / "index.sqlite3").exists()
    opened.index.close()


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("queue=sales", ("queue", "sales")),
        ("queue:sales", ("queue", "sales")),
        ("vendor:agent=42", ("vendor:agent", "42")),
        ("k:sip:a@b", ("k", "sip:a@b")),
        ("k=", ("k", "")),
    ],
)
def test_extension_filter_syntax(text: str, pair: tuple[str, str]) -> None:
    assert split_extension(text) == pair


@pytest.mark.parametrize("text", ["", "novalue", "=x", ":x"])
def test_extension_filter_syntax_errors(text: str) -> None:
    with pytest.raises(BadRequest):
        split_extension(text)


def test_filter_from_strings_and_json_round_trip() -> None:
    filt = build_filter(
        {
            "state": "available",
            "start": "2023-11-14T22:13:20Z",
            "end": "1700000060",
            "min_duration": "1.5",
            "participant": "+1555",
        },
        [("queue", "sales")],
    )
    assert (filt.state, filt.start, filt.end, filt.min_duration_ms) == (State.AVAILABLE, T0, T0 + 60, 1500)
    assert filter_from_json(filter_to_json(filt)) == filt
