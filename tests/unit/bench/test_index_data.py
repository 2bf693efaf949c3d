from __future__ import annotations

from pathlib import Path

from bench.index_data import populate, run
from srs.storage.index import RecordingIndex
from srs.storage.records import RecordingFilter


def test_synthetic_rows_are_queryable(index_target: str) -> None:
    index = RecordingIndex(index_target)
    ids = populate(index, 200)
    assert index.find(RecordingFilter()).total == 200
    (only,) = index.find(RecordingFilter(extensions=(("vendor:ticket", "40"),))).items
    assert only["id"] == ids[40] and only["extensions"] == {"queue": "q0", "vendor:ticket": "40"}
    assert index.find(RecordingFilter(call_recording_id="crid-7")).total == 2
    counts = index.count_by_state()
    assert sum(counts.values()) == 200 and counts["available"] > counts["failed"]
    index.close()


def test_bench_reports_every_query(tmp_path: Path) -> None:
    results = run(50, repeat=1, directory=tmp_path)
    assert {"list_page1_max50", "extension_exact", "participant_substring_max50"} <= set(results)
    assert all(value >= 0 for value in results.values())
