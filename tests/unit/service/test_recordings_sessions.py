"""Recording sessions (RFC 7865 <session>) in the index, and the upgrade of an index made before them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import NewRecording, Participant, SessionInfo, StreamInfo
from srs.storage.schema import MIGRATIONS, SCHEMA_VERSION
from tests.unit.storage.factory import T0, add_recording

SESSION = SessionInfo("c2Vzc2lvbi0x", ("abc@sbc", "def@sbc"), "2023-11-14T22:13:20Z", None, "Z3JvdXAtMQ==")


def test_sessions_round_trip_in_order(index: RecordingIndex) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    second = SessionInfo("c2Vzc2lvbi0y")
    index.set_metadata(rid, "crid", [Participant("p1")], [StreamInfo("1")], {}, [SESSION, second])
    row = index.get(rid)
    assert row is not None
    assert row["sessions"] == [
        {"id": "c2Vzc2lvbi0x", "sip_session_ids": ["abc@sbc", "def@sbc"],
         "start_time": "2023-11-14T22:13:20Z", "stop_time": None, "group": "Z3JvdXAtMQ=="},
        {"id": "c2Vzc2lvbi0y", "sip_session_ids": [], "start_time": None, "stop_time": None, "group": None},
    ]


def test_each_metadata_version_replaces_the_sessions(index: RecordingIndex) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    index.set_metadata(rid, None, [], [], {}, [SESSION])
    index.set_metadata(rid, None, [], [], {})  # sessions default to none
    row = index.get(rid)
    assert row is not None and row["sessions"] == []


def test_deleting_a_recording_deletes_its_sessions(index: RecordingIndex, layout: DataLayout) -> None:
    rid = index.create_recording(NewRecording(started_at=T0))
    index.set_metadata(rid, None, [], [], {}, [SESSION])
    index.delete(rid)
    with index.db.read() as conn:
        assert tuple(conn.execute("SELECT COUNT(*) FROM sessions").fetchone()) == (0,)


def test_representation_lists_sessions(
    service: RecordingService, index: RecordingIndex, layout: DataLayout
) -> None:
    rid = add_recording(index, layout)
    assert service.show(rid)["sessions"] == []
    index.set_metadata(rid, "crid-1", [], [], {}, [SESSION])
    assert [s["id"] for s in service.show(rid)["sessions"]] == ["c2Vzc2lvbi0x"]


def test_an_index_from_before_sessions_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.executescript(MIGRATIONS[0])
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.execute(
        "INSERT INTO recordings (id, state, started_at, created_at, updated_at)"
        " VALUES ('01HZZZZZZZZZZZZZZZZZZZZZZZ', 'available', 1, 1, 1)"
    )
    conn.commit()
    conn.close()
    index = RecordingIndex(path)
    try:
        row = index.get("01HZZZZZZZZZZZZZZZZZZZZZZZ")
        assert row is not None and row["sessions"] == []
        index.set_metadata("01HZZZZZZZZZZZZZZZZZZZZZZZ", None, [], [], {}, [SESSION])
        check = sqlite3.connect(path)
        assert check.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
        assert check.execute("SELECT session_id FROM sessions").fetchall() == [("c2Vzc2lvbi0x",)]
        check.close()
    finally:
        index.close()
