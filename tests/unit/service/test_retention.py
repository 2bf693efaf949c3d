"""The retention job: what one sweep deletes, keeps, counts and how a fleet shares it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from srs.service.recordings import RecordingService
from srs.service.retention import ExportSweeper, RetentionJob, sweep_interval
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from tests.unit.storage.factory import add_recording

DAY = 86_400.0


@pytest.fixture
def local(tmp_path: Path) -> Iterator[RecordingService]:
    layout = DataLayout(tmp_path / "data")
    layout.ensure()
    index = RecordingIndex(layout.index_path, layout=layout)
    yield RecordingService(index, layout, layout.secret())
    index.close()


def test_a_sweep_deletes_expired_keeps_held_and_fresh_and_reports_the_count(local: RecordingService) -> None:
    index, layout, now = local.index, local.layout, time.time()
    old = add_recording(index, layout, started_at=now - 10 * DAY, source="a:5060", seed=1)
    held = add_recording(index, layout, started_at=now - 10 * DAY, source="a:5060", seed=2)
    index.set_legal_hold(held, True)
    fresh = add_recording(index, layout, started_at=now - DAY, source="a:5060", seed=3)
    vip = add_recording(index, layout, started_at=now - 10 * DAY, source="vip:5060", seed=4)
    counted: list[int] = []
    job = RetentionJob(local, 7, {"vip:5060": 30}, 60.0, on_swept=counted.append)
    assert job.enabled
    assert job.sweep_once() == [old]
    assert job.sweep_once() == []
    assert (job.sweeps, job.deleted, counted) == (2, [old], [1, 0])
    assert index.get(old) is None
    assert all(index.get(rid) is not None for rid in (held, fresh, vip))
    audit = [(e["actor"], e["action"], e["recording_id"]) for e in index.admin.audit_entries()]
    assert ("retention", "retention_delete", old) in audit


def test_without_any_retention_the_job_is_off(local: RecordingService) -> None:
    assert not RetentionJob(local, 0, {}, 60.0).enabled
    assert not RetentionJob(local, 0, {"a:5060": 0}, 60.0).enabled
    assert RetentionJob(local, 0, {"a:5060": 3}, 60.0).enabled


def test_a_node_sweeps_only_while_it_holds_the_fleet_lease(local: RecordingService) -> None:
    old = add_recording(local.index, local.layout, started_at=time.time() - 10 * DAY, seed=1)
    first = RetentionJob(local, 7, {}, 60.0, holder="rec-1/100")
    second = RetentionJob(local, 7, {}, 60.0, holder="rec-2/200")
    assert first.sweep_once() == [old]
    assert second.sweep_once() == []
    assert (first.sweeps, second.sweeps, second.skipped) == (1, 0, 1)


def test_export_sweeper_interval_and_an_empty_sweep(local: RecordingService) -> None:
    assert sweep_interval(3600) == 60.0 and sweep_interval(1) == 0.2 and sweep_interval(100) == 10.0
    sweeper = ExportSweeper(local, 1.0)
    assert sweeper.sweep_once() == [] and sweeper.purged == []
