"""Batch receive for the media worker: one call waits on epoll and drains every ready socket.

The worker's Python cost should be per batch, not per datagram, so datagrams land in preallocated
numpy arrays: the bytes (one fixed-size row per datagram) and, per datagram, the slot of the socket
it came from, its kernel arrival on the monotonic clock in ns (:mod:`srs.mediaplane.wire_clock`), its offset
and length, and a 64-bit key of its source address (cheap to compare; :meth:`BatchReceiver.source`
gives the address tuple). The RTP header fields are strided views of the rows, so the worker can
route and check a whole batch with a few numpy operations.

Two implementations fill the arrays, with one interface: the native module
``srs.mediaplane._batchrecv`` (``recvmmsg``, built from ``_batchrecv.c`` by ``pip install``) and
:class:`PyReceiver`, a ``recvmsg`` loop in Python, used where the module is missing and as the
reference the native one is tested against.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import select
import socket
import time
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from srs.mediaplane.wire_clock import (
    ANCILLARY_SIZE,
    MAX_QUEUE_AGE,
    enable_timestamps,
    realtime_offset,
    stamp_of,
)

WATCHED = -1
_MAX_AGE_NS = int(MAX_QUEUE_AGE * 1_000_000_000)


class Engine(Protocol):
    """What the native module's ``Receiver`` and :class:`PyReceiver` both offer."""

    def add(self, fd: int, slot: int) -> None: ...
    def watch(self, fd: int) -> None: ...
    def remove(self, fd: int) -> None: ...
    def wait(self, timeout_ms: int) -> tuple[int, list[int]]: ...
    def pending(self) -> int: ...
    def drain(self, fd: int, slot: int) -> int: ...
    def source(self, i: int) -> Any: ...
    def close(self) -> None: ...


def source_key(address: Any) -> int:
    """The 64-bit key the native module gives an address tuple (IPv4 exact, IPv6 hashed)."""
    host, port = address[0], address[1]
    if len(address) == 2:
        return (4 << 56) | (int.from_bytes(socket.inet_aton(host), "big") << 16) | int(port)
    ip = ipaddress.ip_address(host.split("%", 1)[0])
    h = 1469598103934665603
    mask = (1 << 64) - 1
    for byte in ip.packed:
        h = ((h ^ byte) * 1099511628211) & mask
    h = ((h ^ socket.htons(port)) * 1099511628211) & mask
    scope = address[3] if len(address) > 3 else 0
    h = ((h ^ scope) * 1099511628211) & mask
    return (6 << 56) | (h & 0x00FFFFFFFFFFFFFF)


class PyReceiver:
    """The reference engine: ``select.epoll`` and one ``recvmsg`` per datagram."""

    def __init__(
        self,
        buffer: NDArray[np.uint8],
        slots: NDArray[np.int32],
        arrivals: NDArray[np.int64],
        offsets: NDArray[np.int64],
        lengths: NDArray[np.int32],
        sources: NDArray[np.uint64],
        stride: int,
        per_socket: int = 256,
        max_events: int = 4096,
    ) -> None:
        self.buffer = memoryview(buffer.data).cast("B")
        self.slots, self.arrivals, self.offsets = slots, arrivals, offsets
        self.lengths, self.sources = lengths, sources
        self.stride = stride
        self.capacity = len(slots)
        self.per_socket = per_socket
        self.max_events = max_events
        self.epoll = select.epoll()
        self._sockets: dict[int, tuple[socket.socket, int]] = {}
        self._addresses: list[Any] = [None] * self.capacity
        self._ready: list[int] = []
        """Ready sockets of the last poll not yet drained."""

    def add(self, fd: int, slot: int) -> None:
        sock = socket.socket(fileno=os.dup(fd))
        sock.setblocking(False)
        enable_timestamps(sock)
        self.epoll.register(fd, select.EPOLLIN)
        self._sockets[fd] = (sock, slot)

    def watch(self, fd: int) -> None:
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, fd: int) -> None:
        self._ready = [ready for ready in self._ready if ready != fd]
        with contextlib.suppress(OSError, ValueError):
            self.epoll.unregister(fd)
        entry = self._sockets.pop(fd, None)
        if entry is not None:
            entry[0].close()

    def wait(self, timeout_ms: int) -> tuple[int, list[int]]:
        watched: list[int] = []
        if not self._ready:
            try:
                events = self.epoll.poll(timeout_ms / 1000 if timeout_ms >= 0 else -1, self.max_events)
            except InterruptedError:
                events = []
            for fd, _mask in events:
                if fd in self._sockets:
                    self._ready.append(fd)
                else:
                    watched.append(fd)
            self._ready.reverse()  # taken from the end, in the order the poll gave
        count = 0
        while self._ready and count < self.capacity:
            fd = self._ready[-1]
            sock, slot = self._sockets[fd]
            count = self._drain(sock, slot, count)
            if count >= self.capacity:
                break  # full: this socket may hold more, the next wait goes on here
            self._ready.pop()
        return count, watched

    def pending(self) -> int:
        return len(self._ready)

    def drain(self, fd: int, slot: int) -> int:
        entry = self._sockets.get(fd)
        if entry is None:
            return 0
        return self._drain(entry[0], slot, 0)

    def _drain(self, sock: socket.socket, slot: int, count: int) -> int:
        taken = 0
        stride = self.stride
        offset = realtime_offset()
        while count < self.capacity and taken < self.per_socket:
            try:
                data, ancdata, _flags, address = sock.recvmsg(stride, ANCILLARY_SIZE)
            except OSError:
                break
            read_mono = time.monotonic_ns()
            stamp = stamp_of(ancdata)
            arrival = read_mono
            if stamp is not None and read_mono - _MAX_AGE_NS <= stamp - offset <= read_mono:
                arrival = stamp - offset
            at = count * stride
            size = len(data)
            self.buffer[at : at + size] = data
            self.slots[count] = slot
            self.arrivals[count] = arrival
            self.offsets[count] = at
            self.lengths[count] = size
            self.sources[count] = source_key(address)
            self._addresses[count] = address
            count += 1
            taken += 1
        return count

    def source(self, i: int) -> Any:
        return self._addresses[i]

    def close(self) -> None:
        for sock, _slot in self._sockets.values():
            sock.close()
        self._sockets.clear()
        self.epoll.close()


def native_engine() -> Any:
    """The native module's ``Receiver`` class, or None where it was not built."""
    try:
        from srs.mediaplane import _batchrecv  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _batchrecv.Receiver


class BatchReceiver:
    """The arrays of one receiver and the engine that fills them; see the module doc."""

    def __init__(
        self, capacity: int = 4096, stride: int = 2048, *, native: bool | None = None, per_socket: int = 256
    ) -> None:
        self.capacity = capacity
        self.stride = stride
        self.buffer = np.zeros(capacity * stride, dtype=np.uint8)
        self.rows = self.buffer.reshape(capacity, stride)
        self.slots = np.zeros(capacity, dtype=np.int32)
        self.arrivals = np.zeros(capacity, dtype=np.int64)
        self.offsets = np.zeros(capacity, dtype=np.int64)
        self.lengths = np.zeros(capacity, dtype=np.int32)
        self.sources = np.zeros(capacity, dtype=np.uint64)
        # the fixed RTP header of every row, as strided views (no copies)
        self.b0 = self.rows[:, 0]
        self.b1 = self.rows[:, 1]
        self.seq = _field(self.buffer, ">u2", 2, capacity, stride)
        self.ts = _field(self.buffer, ">u4", 4, capacity, stride)
        self.ssrc = _field(self.buffer, ">u4", 8, capacity, stride)
        engine_class = native_engine() if native is not False else None
        if native and engine_class is None:
            raise ImportError("srs.mediaplane._batchrecv is not built")
        self.native = engine_class is not None
        arrays = (self.buffer, self.slots, self.arrivals, self.offsets, self.lengths, self.sources)
        self.engine: Engine = (engine_class or PyReceiver)(*arrays, stride, per_socket)
        self.count = 0

    def add(self, fd: int, slot: int) -> None:
        """Read ``fd``'s datagrams as ``slot`` (a number the caller routes by)."""
        self.engine.add(fd, slot)

    def watch(self, fd: int) -> None:
        """Report ``fd``'s readiness from :meth:`wait`, never read it (the command socket)."""
        self.engine.watch(fd)

    def remove(self, fd: int) -> None:
        self.engine.remove(fd)

    def wait(self, timeout: float) -> list[int]:
        """Wait up to ``timeout`` s for readiness, then take every ready datagram (up to the
        capacity: the rest stays queued, level-triggered); :attr:`count` says how many. Returns the
        watched descriptors that are ready."""
        count, watched = self.engine.wait(max(0, int(timeout * 1000 + 0.999)) if timeout > 0 else 0)
        self.count = count
        return watched

    @property
    def pending(self) -> int:
        """Ready sockets of the last poll not drained yet: the next :meth:`wait` goes on with them
        instead of polling again (so a round drains every socket once, whole)."""
        return self.engine.pending()

    def drain(self, fd: int, slot: int) -> int:
        """Read what is queued on one socket now (rows from 0); sets and returns :attr:`count`."""
        self.count = self.engine.drain(fd, slot)
        return self.count

    def source(self, i: int) -> Any:
        """The source address tuple of datagram ``i`` of the current batch."""
        return self.engine.source(i)

    def datagram(self, i: int) -> bytes:
        return self.rows[i, : self.lengths[i]].tobytes()

    def close(self) -> None:
        self.engine.close()


def _field(buffer: NDArray[np.uint8], dtype: str, offset: int, count: int, stride: int) -> NDArray[Any]:
    return np.ndarray((count,), dtype=dtype, buffer=buffer, offset=offset, strides=(stride,))
