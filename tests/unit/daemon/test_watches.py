"""The daemon's watches: each crossing refuses (or takes again) new calls and is logged once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from srs.daemon.overload import BacklogMonitor, LagMonitor
from srs.daemon.watches import DiskWatch, IndexWatch, OverloadWatch
from srs.storage.diskspace import DiskSpace, disk_space
from srs.storage.index import MAX_BACKLOG, IndexHealth

MB = 1024 * 1024


class Lines:
    """The log lines a watch wrote: (level, event)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Any:
        def write(event: str, **fields: Any) -> None:
            self.lines.append((level, event))

        return write


def disk(free_mb: list[int], refused: list[str | None], log: Lines) -> DiskWatch:
    return DiskWatch(
        "/unused", min_free_mb=100, warn_free_mb=500, refuse=refused.append, log=log,
        space=lambda path: DiskSpace(free_mb[0] * MB, 10_000 * MB),
    )


def test_disk_watch_refuses_below_the_minimum_warns_once_and_recovers() -> None:
    free, refused, log = [1000], [], Lines()
    watch = disk(free, refused, log)
    watch.check()
    assert (watch.low, refused, log.lines) == (False, [], [])
    free[0] = 400
    watch.check()
    watch.check()
    assert (watch.low, refused, log.lines) == (False, [], [("warning", "disk_low")])
    free[0] = 50
    watch.check()
    watch.check()
    assert watch.low and refused == ["low on disk: 50 MB free"]
    assert log.lines[1:] == [("error", "disk_full")]
    free[0] = 2000
    watch.check()
    assert not watch.low and refused == ["low on disk: 50 MB free", None]
    assert log.lines[2:] == [("info", "disk_recovered")]


def test_disk_watch_reads_the_real_file_system_and_treats_an_unreadable_one_as_full(tmp_path: Path) -> None:
    measured = disk_space(tmp_path)
    assert measured is not None and 0 <= measured.free <= measured.total
    assert disk_space(tmp_path / "missing") is None
    refused: list[str | None] = []
    huge = measured.free // MB + 1  # more than this file system has free
    real = DiskWatch(tmp_path, min_free_mb=huge, warn_free_mb=huge, refuse=refused.append, log=Lines())
    real.check()
    assert real.low and refused and refused[0] is not None
    gone = DiskWatch(tmp_path / "missing", min_free_mb=1, warn_free_mb=1, refuse=refused.append, log=Lines())
    gone.check()
    assert gone.low and refused[-1] == "low on disk: 0 MB free"


def test_overload_watch_sheds_on_lag_and_on_queued_sip_and_clears_with_hysteresis() -> None:
    queued = [0]
    refused: list[str | None] = []
    log = Lines()
    watch = OverloadWatch(
        lag=LagMonitor(0.2, smoothing=1.0), backlog=BacklogMonitor(64 * 1024),
        read_backlog=lambda: queued[0], refuse=refused.append, log=log,
    )
    assert watch.enabled
    assert watch.observe(0.01) is None
    assert watch.observe(0.5) == "overloaded: event loop 500 ms behind"
    assert watch.observe(0.15) == "overloaded: event loop 150 ms behind"  # above half the limit
    assert watch.observe(0.05) is None
    queued[0] = 100 * 1024
    assert watch.observe(0.0) == "overloaded: 100 KB of SIP queued"
    queued[0] = 0
    assert watch.observe(0.0) is None
    assert refused[-1] is None
    assert log.lines == [("warning", "overload"), ("warning", "overload_cleared")] * 2


def test_overload_watch_measures_the_loops_own_lateness() -> None:
    refused: list[str | None] = []
    watch = OverloadWatch(
        lag=LagMonitor(0.05, smoothing=1.0), backlog=None, read_backlog=lambda: None,
        refuse=refused.append, log=Lines(), period=0.01,
    )

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(watch.run(loop.time))
        await asyncio.sleep(0.05)
        time.sleep(0.2)  # the loop is held: the next tick runs late by about this much
        await asyncio.sleep(0.03)
        task.cancel()

    asyncio.run(main())
    assert any(reason is not None and reason.startswith("overloaded: event loop") for reason in refused)
    assert not OverloadWatch(
        lag=None, backlog=None, read_backlog=lambda: None, refuse=refused.append, log=Lines()
    ).enabled


def test_index_watch_refuses_while_the_index_is_unreachable_or_far_behind() -> None:
    health = [IndexHealth(True, 0, "")]
    refused: list[str | None] = []
    log = Lines()
    watch = IndexWatch(lambda: health[0], refuse=refused.append, log=log)
    assert watch.check() is None
    health[0] = IndexHealth(False, 3, "connection refused")
    assert watch.check() == "index unreachable: connection refused"
    health[0] = IndexHealth(True, MAX_BACKLOG + 1, "")
    assert watch.check() == f"index behind: {MAX_BACKLOG + 1} writes waiting"
    health[0] = IndexHealth(True, 0, "")
    assert watch.check() is None
    behind = f"index behind: {MAX_BACKLOG + 1} writes waiting"
    assert refused == [None, "index unreachable: connection refused", behind, None]
    assert log.lines == [("error", "index_unavailable"), ("warning", "index_available")]
