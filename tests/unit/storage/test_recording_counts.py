"""The trigger-kept per-state counts agree with COUNT(*) after every kind of write."""

from __future__ import annotations

from pathlib import Path

from srs.storage.index import RecordingIndex
from srs.storage.records import NewRecording, RecordingFilter, State


def new_recording(call_recording_id: str) -> NewRecording:
    return NewRecording(started_at=1_700_000_000.0, call_recording_id=call_recording_id)


def _truth(index: RecordingIndex) -> dict[str, int]:
    with index.db.read() as conn:
        rows = conn.execute("SELECT state, COUNT(*) FROM recordings GROUP BY state").fetchall()
    counts = {s.value: 0 for s in State}
    counts.update({row[0]: int(row[1]) for row in rows})
    return counts


def test_counts_follow_inserts_state_changes_and_deletes(tmp_path: Path) -> None:
    index = RecordingIndex(tmp_path / "index.sqlite")
    ids = [index.create_recording(new_recording(call_recording_id=f"c{i}")) for i in range(7)]
    assert index.count_by_state() == _truth(index)
    for recording_id in ids[:4]:
        index.advance_state(recording_id, State.RECORDING)
    index.advance_state(ids[0], State.STOPPING)
    assert index.count_by_state() == _truth(index)
    index.delete(ids[1])
    index.delete(ids[5])
    truth = _truth(index)
    assert index.count_by_state() == truth
    assert index.find(RecordingFilter(), max=2).total == 5
    assert index.find(RecordingFilter(state=State.RECORDING), max=2).total == truth["recording"] == 2
    assert index.find(RecordingFilter(state=State.STARTING), max=2).total == truth["starting"] == 2
    # a filter the counts cannot answer still counts rows
    assert index.find(RecordingFilter(call_recording_id="c2"), max=2).total == 1
    index.close()


def test_counts_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    index = RecordingIndex(path)
    for i in range(3):
        index.create_recording(new_recording(call_recording_id=f"c{i}"))
    index.close()
    again = RecordingIndex(path)
    assert again.count_by_state() == _truth(again)
    assert again.find(RecordingFilter(), max=10).total == 3
    again.close()
