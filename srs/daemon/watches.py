"""What the daemon watches while it runs, and how each turns into admission control.

Each watch is a small object the composition root starts as a task: disk free space, event-loop
lag and SIP queue (overload), the index writer's health. Each tells the SIP user agent why new
calls are refused (``reason`` or None) through the ``refuse`` callback it is given, and logs each
crossing once, not each tick.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from srs.daemon.overload import BacklogMonitor, LagMonitor
from srs.storage.diskspace import DiskSpace, disk_space
from srs.storage.index import IndexHealth

Refuse = Callable[[str | None], None]
"""Tells the user agent why new calls are refused now (None: take them)."""

_MB = 1024 * 1024


class DiskWatch:
    """Refuse new calls below ``min_free_mb``; warn once per crossing of ``warn_free_mb``."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        min_free_mb: int,
        warn_free_mb: int,
        refuse: Refuse,
        log: Any,
        space: Callable[[str | os.PathLike[str]], DiskSpace | None] = disk_space,
        period: float = 2.0,
    ) -> None:
        self.path = path
        self.min_free_mb = min_free_mb
        self.warn_free_mb = warn_free_mb
        self.refuse = refuse
        self.log = log
        self.space = space
        self.period = period
        self.low = False
        self.warned = False

    def check(self) -> None:
        measured = self.space(self.path)
        free = measured.free if measured is not None else 0  # unreadable: as good as full
        low = free < self.min_free_mb * _MB
        warn = free < self.warn_free_mb * _MB
        if low != self.low:
            self.low = low
            self.refuse(f"low on disk: {free // _MB} MB free" if low else None)
            if low:
                self.log.error("disk_full", free_bytes=free, min_free_mb=self.min_free_mb)
            else:
                self.log.info("disk_recovered", free_bytes=free)
        if warn != self.warned:
            self.warned = warn
            if warn:
                self.log.warning("disk_low", free_bytes=free, warn_free_mb=self.warn_free_mb)

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.period)


class OverloadWatch:
    """Every ``period``: how late this tick ran and how much SIP waits unread; while either
    monitor says overloaded, the user agent refuses new INVITEs (503) before reading their bodies."""

    def __init__(
        self,
        *,
        lag: LagMonitor | None,
        backlog: BacklogMonitor | None,
        read_backlog: Callable[[], int | None],
        refuse: Refuse,
        log: Any,
        period: float = 0.1,
    ) -> None:
        self.lag = lag
        self.backlog = backlog
        self.read_backlog = read_backlog
        self.refuse = refuse
        self.log = log
        self.period = period
        self.reason: str | None = None

    @property
    def enabled(self) -> bool:
        return self.lag is not None or self.backlog is not None

    def observe(self, late: float) -> str | None:
        """One tick that ran ``late`` seconds after it was due; returns why calls are refused."""
        reason: str | None = None
        if self.lag is not None and self.lag.observe(late):
            reason = f"overloaded: event loop {round(self.lag.lag * 1000)} ms behind"
        queued = self.read_backlog() if self.backlog is not None else None
        if self.backlog is not None and queued is not None and self.backlog.observe(queued):
            reason = reason or f"overloaded: {queued // 1024} KB of SIP queued"
        self.refuse(reason)
        if (reason is None) != (self.reason is None):
            self.log.warning(
                "overload" if reason else "overload_cleared",
                loop_lag_ms=round(self.lag.lag * 1000) if self.lag is not None else None,
                sip_backlog_kb=queued // 1024 if queued is not None else None,
                reason=reason or self.reason,
            )
        self.reason = reason
        return reason

    async def run(self, clock: Callable[[], float]) -> None:
        while True:
            due = clock() + self.period
            await asyncio.sleep(self.period)
            self.observe(clock() - due)


class IndexWatch:
    """While the index writer cannot reach the index (or is far behind), new INVITEs and OPTIONS
    pings get 503 + Retry-After; running calls keep recording and their writes wait in the queue,
    to be committed when the database answers again."""

    def __init__(
        self, health: Callable[[], IndexHealth], *, refuse: Refuse, log: Any, period: float = 0.25
    ) -> None:
        self.health = health
        self.refuse = refuse
        self.log = log
        self.period = period
        self.reason: str | None = None

    def check(self) -> str | None:
        health = self.health()
        reason = health.refuse_calls
        self.refuse(reason)
        if (reason is None) != (self.reason is None):
            if reason is not None:
                self.log.error("index_unavailable", reason=reason, queued_writes=health.backlog)
            else:
                self.log.warning("index_available", queued_writes=health.backlog)
        self.reason = reason
        return reason

    async def run(self) -> None:
        while True:
            self.check()
            await asyncio.sleep(self.period)
