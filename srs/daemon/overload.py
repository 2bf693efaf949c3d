"""Load shedding by event-loop lag and by SIP queue: when the daemon falls behind, new calls get 503.

An SRS that accepts a call it cannot keep up with degrades every running recording
(late packets, gaps). The loop's scheduling lag is the honest measure of "behind" for
a single-threaded daemon: it grows with CPU saturation and with queued work alike.
SBCs fail over to another SRS on 503 with Retry-After, so refusing early is cheap.
"""

from __future__ import annotations


class LagMonitor:
    """Overloaded while the smoothed lag exceeds ``limit``; clears below half of it (hysteresis).

    Pure: the caller measures how late a periodic tick ran and passes it in.
    """

    def __init__(self, limit: float, smoothing: float = 0.3) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.smoothing = smoothing
        self.lag = 0.0
        self.overloaded = False

    def observe(self, lag: float) -> bool:
        """Feed one measured lag (seconds); returns whether new calls should be refused."""
        self.lag += self.smoothing * (max(0.0, lag) - self.lag)
        if self.overloaded:
            self.overloaded = self.lag > self.limit / 2
        else:
            self.overloaded = self.lag > self.limit
        return self.overloaded


class BacklogMonitor:
    """Overloaded while more than ``limit`` bytes of SIP wait unread in the kernel; clears below half.

    The loop's lag cannot see a flood that is still queued in the socket (the loop is busy with
    the datagrams it already has, each turn taking about as long as the last), and by the time
    it is read every INVITE in it is seconds old. Pure: the caller reads the queue and passes it in.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self.limit = limit
        self.backlog = 0
        self.overloaded = False

    def observe(self, backlog: int) -> bool:
        self.backlog = backlog
        if self.overloaded:
            self.overloaded = backlog > self.limit // 2
        else:
            self.overloaded = backlog > self.limit
        return self.overloaded
