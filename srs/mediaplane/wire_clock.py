"""The wire's clock: when the kernel received a datagram, on the monotonic clock srs places media by.

A datagram's time is the moment it came off the wire, not the moment a process got round to
reading it: anything that waits in a socket's queue (a port not yet handed to its media worker, a
loop busy with other work, a stopped process) would otherwise be placed by its read time, and two
streams of one call drift apart by however much longer one of them waited.

Linux stamps every datagram of a socket with ``SO_TIMESTAMPNS`` set (a ``timespec`` on
``CLOCK_REALTIME``, handed over as ancillary data of ``recvmsg``). Recorders count on
``CLOCK_MONOTONIC`` (shared by every process of the machine, immune to wall-clock steps), so a
stamp is mapped with the realtime-minus-monotonic offset taken when it is read; a wall-clock step
between arrival and read would move it, so a stamp is never later than the read itself nor
earlier than :data:`MAX_QUEUE_AGE` before it. Where a socket carries no stamp (another platform,
or a socket not set up here) the read time stands in, as before.

The kernel turns stamping on when the first socket of the machine asks for it, from a work queue:
datagrams arriving in that moment are stamped when read. The daemon's SIP socket asks at start-up
and stays open, so RTP ports (set up later) never see that moment.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

SO_TIMESTAMPNS: int = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux's option number (also the ancillary message's type, ``SCM_TIMESTAMPNS``)."""
TIMESPEC = struct.Struct("@qq")
"""``struct timespec`` of a 64-bit Linux: seconds and nanoseconds, native longs."""
ANCILLARY_SIZE: int = socket.CMSG_SPACE(TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
MAX_QUEUE_AGE = 60.0
"""Seconds a datagram may have waited unread; an older stamp means the wall clock was stepped."""
SUPPORTED = sys.platform.startswith("linux") and hasattr(socket.socket, "recvmsg")

_SOL_SOCKET = socket.SOL_SOCKET
_unpack_timespec = TIMESPEC.unpack_from
_TIGHT_NS = 20_000
"""A bracket of the realtime read this narrow (ns) was not preempted: no further try is needed."""
_monotonic_ns = time.monotonic_ns


def _realtime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_REALTIME)


def enable_timestamps(sock: socket.socket) -> bool:
    """Have the kernel stamp every datagram ``sock`` receives; False where it cannot."""
    if not SUPPORTED:
        return False
    try:
        sock.setsockopt(_SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


def realtime_offset() -> int:
    """``CLOCK_REALTIME - CLOCK_MONOTONIC`` now, in integer nanoseconds (a float of realtime seconds
    only resolves a quarter of a microsecond): what maps a kernel stamp onto the monotonic clock.

    The realtime read is bracketed by two monotonic reads and the tightest of up to three tries
    is kept: a process preempted between two plain reads (a loaded machine) would otherwise take
    an offset wrong by however long it waited, and shift every stamp of its batch by that much.
    Taken once per batch of reads (it moves only with wall-clock adjustments)."""
    best = 0
    best_width = 1 << 62
    for _ in range(3):
        before = _monotonic_ns()
        real = _realtime_ns()
        after = _monotonic_ns()
        if after - before < best_width:
            best_width = after - before
            best = real - before - best_width // 2
        if best_width <= _TIGHT_NS:
            break
    return best


def stamp_of(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The kernel's realtime stamp (ns) in a ``recvmsg`` result's ancillary data, if any."""
    for level, kind, data in ancdata:
        if level == _SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = _unpack_timespec(data)
            return int(sec * 1_000_000_000 + nsec)
    return None


def to_monotonic(stamp: int | None, offset: int, read_at: float) -> float:
    """A realtime stamp (ns) as monotonic seconds, bounded by the read time ``read_at`` (see module
    doc); ``offset`` comes from :func:`realtime_offset`."""
    if stamp is None:
        return read_at
    arrival = (stamp - offset) * 1e-9
    if arrival > read_at or arrival < read_at - MAX_QUEUE_AGE:
        return read_at
    return arrival


def receiver(
    sock: socket.socket, size: int, clock: Callable[[], float] = time.monotonic
) -> Callable[[], tuple[bytes, Any, float]]:
    """A one-datagram reader of ``sock`` returning ``(data, address, arrival)``; raises like
    ``recvfrom`` (``BlockingIOError`` when the queue is empty). Convenience for paths that read
    one datagram at a time; batch readers call :func:`stamp_of` and :func:`to_monotonic` themselves."""
    recvmsg = sock.recvmsg

    def receive() -> tuple[bytes, Any, float]:
        data, ancdata, _flags, address = recvmsg(size, ANCILLARY_SIZE)
        read_at = clock()
        return data, address, to_monotonic(stamp_of(ancdata), realtime_offset(), read_at)

    return receive
