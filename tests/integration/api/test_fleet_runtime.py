"""Two nodes' background jobs on one real PostgreSQL index: retention runs on one node at a time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from srs.daemon.http_runtime import HttpRuntime
from srs.daemon.metrics import DaemonMetrics
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from tests.integration.api.test_runtime import start, wait_until
from tests.unit.storage.factory import add_recording

DAY_S = 86_400.0


def test_retention_of_a_fleet_runs_on_one_node_and_deletes_each_recording_once(
    tmp_path: Path, index_url_postgresql: str
) -> None:
    layout = DataLayout(tmp_path / "data-a")
    layout.ensure()
    index = RecordingIndex(index_url_postgresql, layout=layout)
    old = [add_recording(index, layout, started_at=time.time() - 10 * DAY_S, seed=i) for i in range(4)]
    fresh = add_recording(index, layout, started_at=time.time() - DAY_S, seed=9)

    async def scenario() -> tuple[HttpRuntime, HttpRuntime]:
        runtimes = [
            await start(
                tmp_path / f"data-{name}", DaemonMetrics(), listen_host=None, retention_days=7,
                retention_interval_s=2.0, index_url=index_url_postgresql, node=name,
            )
            for name in ("a", "b")
        ]  # fmt: skip
        a, b = runtimes
        attempts = lambda: sum(r.retention.sweeps + r.retention.skipped for r in runtimes)  # noqa: E731
        assert await wait_until(lambda: attempts() >= 4, within=20)
        for runtime in runtimes:
            await runtime.stop()
        return a, b

    a, b = asyncio.run(scenario())
    swept = [r for r in (a, b) if r.retention.sweeps]
    # the holder renews every 2 s a lease of 3 s: the other node never gets it
    assert len(swept) == 1, (a.retention.sweeps, b.retention.sweeps)
    idle = b if swept[0] is a else a
    assert idle.retention.skipped >= 1 and idle.retention.deleted == []
    assert sorted(swept[0].retention.deleted) == sorted(old)
    audit = [e["recording_id"] for e in index.admin.audit_entries() if e["action"] == "retention_delete"]
    assert sorted(audit) == sorted(old)  # each deleted once, by one node
    assert index.get(fresh) is not None and all(index.get(rid) is None for rid in old)
    index.close()
