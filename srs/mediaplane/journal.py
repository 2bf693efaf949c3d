"""The crash journal of one recording: datagrams that reached its media worker but not yet its file.

A recorder writes audio about once a second, half a second (the reorder window) behind the call,
so up to 1.5 s of received audio lives only in a worker's memory. The worker also appends every
datagram it hands to a track (after SRTP decryption) to a memory-mapped file beside the WAV; the
page cache outlives a killed process, and a store into a mapping costs no system call. After each
flush the journal forgets what the file now holds; at the next start (or when a dead worker is
replaced) the rest is replayed into the WAV (:mod:`srs.mediaplane.recovery`). Power loss is another
matter: pages reach the disk when the kernel writes them back, or at each ``fsync_interval``.

File layout (little-endian), built so a whole batch of received datagrams can be appended with
one copy: :meth:`Journal.append_batch` writes a run of the receiver's datagrams in one call of the
native ``append_records`` (``_batchrecv.c``: header, bytes and padding of each, straight from the
receive buffer), or of :func:`append_records_py`, its pure-Python reference (same bytes), where the
module is not built. The worker journals a whole batch's runs, of every journaled port, in one
call of :data:`journal_runs` (through each journal's :attr:`Journal.cursor`), and comes back to
:meth:`Journal.append_batch` only for a run that needs room made::

    0     8  magic b"SRSJRNL1"
    8     4  version (1)
    16   40  header slot A  } the valid slot with the higher generation counts: a slot is
    64   40  header slot B  } rewritten whole while the other still holds the previous state
    128      records, each 8-byte aligned:
             u16 magic 0x5352, u16 RTP port, u16 length, u16 kind,
             u32 sequence, u32 CRC-32 of the bytes, i64 arrival (CLOCK_MONOTONIC ns),
             then ``length`` bytes, zero-padded to a multiple of 8

Kind 0 is a received datagram (the bytes as the track got them); kind 1 a placement note written
at each flush: where the port's track put its newest packet (``PLACEMENT``: SSRC, sequence number,
RTP timestamp, timeline sample) and its packet counters, so a replay places packets exactly as the
lost track did and the counters go on from where they were.

A header slot holds (generation, offset of the first live record, its sequence number, timeline
samples written, file frames written, CRC-32 of the slot). Records follow one another with
consecutive sequence numbers; the first that does not (bad magic or sequence, a CRC mismatch, a
length past the end) ends the journal, so a record torn by a kill is simply not there.
Compaction copies the live records to the front only into space no live record occupies, then
switches the header: a crash at any point leaves one valid journal.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import time
import zlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from srs.errors import ParseError

FILE_MAGIC = b"SRSJRNL1"
VERSION = 1
RECORD_MAGIC = 0x5352
HEADER_SIZE = 128
_SLOT_OFFSETS = (16, 64)
_SLOT = struct.Struct("<QQqqI")
"""generation, head offset, written samples, written frames, head sequence."""
_CRC = struct.Struct("<I")
RECORD = struct.Struct("<HHHHIIq")
"""magic, port, length, kind, sequence, CRC-32 of the bytes, arrival ns."""
DATAGRAM = 0
PLACED = 1
PLACEMENT = struct.Struct("<IHIqQQ")
"""SSRC, sequence number, RTP timestamp, timeline sample, packets received and lost so far (the
bytes of a ``PLACED`` record)."""
RECORD_SIZE = RECORD.size
MAX_DATAGRAM = 0xFFFF
_PACKERS: dict[int, struct.Struct] = {}
"""Record header and bytes of one length as one struct (one store per datagram); at most one per
datagram length seen (receives are at most 2 KiB; negative keys: padded lengths, for the batch
writer's reference)."""
INITIAL_CAPACITY = 1 << 18
"""256 KiB: a two-stream G.711 call keeps about 80 KiB live; the file grows when needed."""


def append_records_py(
    journal: Any,
    tail: int,
    capacity: int,
    seq: int,
    port: int,
    buffer: Any,
    offsets: Any,
    lengths: Any,
    arrivals: Any,
    start: int,
    end: int,
) -> tuple[int, int, int]:
    """Datagrams ``start..end-1`` of a received batch as records at ``journal[tail:]`` (the bytes
    at ``buffer[offsets[i]:][:lengths[i]]``, arrival ``arrivals[i]`` ns), until one does not fit
    below ``capacity``; returns the new tail and sequence and the first datagram not written.

    The reference of the native ``append_records`` (same arguments, same bytes: zero padding
    included); used where the native module is not built."""
    data = memoryview(buffer).cast("B")
    for i in range(start, end):
        offset, length = int(offsets[i]), int(lengths[i])
        padded = (length + 7) & ~7
        if tail + RECORD_SIZE + padded > capacity:
            return tail, seq, i
        payload = data[offset : offset + length]
        packer = _PACKERS.get(-padded)
        if packer is None:
            packer = _PACKERS[-padded] = struct.Struct(f"<HHHHIIq{padded}s")
        packer.pack_into(
            journal, tail, RECORD_MAGIC, port, length, DATAGRAM, seq, zlib.crc32(payload), int(arrivals[i]),
            payload.tobytes(),
        )
        seq = (seq + 1) & 0xFFFFFFFF
        tail += RECORD_SIZE + padded
    return tail, seq, end


def journal_runs_py(
    targets: dict[int, tuple[Any, Any, int]],
    runs: list[tuple[Any, ...]],
    buffer: Any,
    offsets: Any,
    lengths: Any,
    arrivals: Any,
) -> list[tuple[int, int]]:
    """The datagrams of every run (``(slot, start, end, ...)``) whose slot has a target (journal
    mapping, cursor, RTP port; see :attr:`Journal.cursor`) as records, one call for a whole batch;
    returns (run index, first datagram not written) of each run that did not fit (the caller makes
    room: :meth:`Journal.append_batch`). The reference of the native ``journal_runs``."""
    left: list[tuple[int, int]] = []
    for r, run in enumerate(runs):
        target = targets.get(run[0])
        if target is None:
            continue
        mm, cursor, port = target
        tail, seq, written = append_records_py(
            mm, cursor[0], min(cursor[2], len(mm)), cursor[1], port, buffer, offsets, lengths, arrivals,
            run[1], run[2],
        )
        cursor[0], cursor[1] = tail, seq
        if written < run[2]:
            left.append((r, written))
    return left


def skip_records_py(journal: Any, offset: int, tail: int, cutoff_ns: int) -> tuple[int, int]:
    """From the record at ``offset``, pass every record (up to ``tail``) that arrived before
    ``cutoff_ns``; returns where the scan stopped and how many it passed (the reference of the
    native ``skip_records``)."""
    count = 0
    unpack = RECORD.unpack_from
    while offset + RECORD_SIZE <= tail:
        _magic, _port, length, _kind, _seq, _crc, arrival_ns = unpack(journal, offset)
        if arrival_ns >= cutoff_ns:
            break
        offset += RECORD_SIZE + ((length + 7) & ~7)
        count += 1
    return offset, count


def _native(name: str) -> Any:
    try:
        from srs.mediaplane import _batchrecv  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(_batchrecv, name, None)


append_records: Callable[..., tuple[int, int, int]] = _native("append_records") or append_records_py
"""The batch writer in use: the native one where built, else the reference."""
journal_runs: Callable[..., list[tuple[int, int]]] = _native("journal_runs") or journal_runs_py
"""The writer of a whole batch's runs in use: the native one where built, else the reference."""
skip_records: Callable[[Any, int, int, int], tuple[int, int]] = _native("skip_records") or skip_records_py
"""The scan of :meth:`Journal.mark` in use: the native one where built, else the reference."""


class JournalError(ParseError):
    """A file that is not a journal (wrong magic or version, no valid header)."""


def record_size(length: int) -> int:
    return RECORD_SIZE + ((length + 7) & ~7)


@dataclass(frozen=True, slots=True)
class JournalRecord:
    port: int
    arrival: float
    """CLOCK_MONOTONIC seconds."""
    data: bytes
    kind: int = DATAGRAM


@dataclass(frozen=True, slots=True)
class JournalContents:
    """What a journal holds: where its recording's file stood and the datagrams not yet in it."""

    written: int
    """Timeline samples the recording had written at the last mark."""
    frames: int
    """Frames its mix file held at the last mark."""
    records: tuple[JournalRecord, ...]
    end: int
    """Offset after the last valid record."""
    next_seq: int
    torn: bool
    """Bytes after the last valid record look like a record cut short (a kill mid-append)."""


def _slot_bytes(generation: int, head: int, written: int, frames: int, head_seq: int) -> bytes:
    body = _SLOT.pack(generation, head, written, frames, head_seq)
    return body + _CRC.pack(zlib.crc32(body))


def _read_slot(buf: bytes | mmap.mmap, offset: int) -> tuple[int, int, int, int, int] | None:
    body = bytes(buf[offset : offset + _SLOT.size])
    (crc,) = _CRC.unpack_from(buf, offset + _SLOT.size)
    if zlib.crc32(body) != crc:
        return None
    generation, head, written, frames, head_seq = _SLOT.unpack(body)
    return (generation, head, written, frames, head_seq) if generation else None


def parse(buf: bytes | mmap.mmap) -> JournalContents:
    """Read a journal's contents; bad input (truncated file, torn records, garbage) ends it early."""
    size = len(buf)
    if size < HEADER_SIZE or bytes(buf[:8]) != FILE_MAGIC:
        raise JournalError("not a recording journal")
    (version,) = struct.unpack_from("<I", buf, 8)
    if version != VERSION:
        raise JournalError(f"journal version {version} is not supported")
    slots = [s for s in (_read_slot(buf, off) for off in _SLOT_OFFSETS) if s is not None]
    if not slots:
        raise JournalError("journal has no valid header")
    _gen, head, written, frames, seq = max(slots)
    records: list[JournalRecord] = []
    offset = head if HEADER_SIZE <= head <= size else size
    torn = False
    unpack = RECORD.unpack_from
    while offset + RECORD_SIZE <= size:
        magic, port, length, kind, rseq, crc, arrival_ns = unpack(buf, offset)
        if magic != RECORD_MAGIC or rseq != seq:
            break
        end = offset + RECORD_SIZE + length
        data = bytes(buf[offset + RECORD_SIZE : end]) if end <= size else b""
        if end > size or zlib.crc32(data) != crc:
            torn = True
            break
        records.append(JournalRecord(port, arrival_ns / 1e9, data, kind))
        seq = (seq + 1) & 0xFFFFFFFF
        offset += record_size(length)
    return JournalContents(written, frames, tuple(records), min(offset, size), seq, torn)


def read(path: str | os.PathLike[str]) -> JournalContents:
    with open(path, "rb") as handle:
        return parse(handle.read())


def _touch(mm: mmap.mmap, start: int, end: int) -> None:
    """Store zeros into a new part of the mapping (its blocks are reserved, so it reads as zeros
    anyway): each page's first store is a page fault that costs the file system several µs (more
    when it is busy), paid here when a call is set up or its journal grows, not spread over its
    first seconds of datagrams in the receive loop."""
    mm[start:end] = bytes(end - start)


class Journal:
    """Appends one recording's datagrams to its memory-mapped journal file (one worker writes it).

    ``fsync_interval`` None leaves write-back to the kernel (survives any process's death, not
    power loss); a number makes :meth:`sync` write the pages out at most that often.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        capacity: int = INITIAL_CAPACITY,
        fsync_interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        resume: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        self.cursor = array("q", [HEADER_SIZE, 1, capacity])
        """(tail, next record's sequence, capacity): where the batch writer (:data:`journal_runs`)
        appends, and what it updates, without a Python call per run."""
        self.fsync_interval = fsync_interval
        self._clock = clock
        self._synced = clock()
        self._generation = 0
        self._written = 0
        self._frames = 0
        contents: JournalContents | None = None
        if resume:
            fd = os.open(self.path, os.O_RDWR)
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            if resume:
                capacity = max(os.fstat(fd).st_size, HEADER_SIZE + RECORD_SIZE)
                contents = parse(os.pread(fd, capacity, 0))
            # blocks reserved now: a store into a hole of a mapped file on a full disk is a SIGBUS
            os.posix_fallocate(fd, 0, capacity)
            self._mm = mmap.mmap(fd, capacity)
        finally:
            os.close(fd)
        self._capacity = capacity
        if contents is None:
            _touch(self._mm, 0, capacity)
            self._mm[:8] = FILE_MAGIC
            struct.pack_into("<I", self._mm, 8, VERSION)
            self._head = self._tail = HEADER_SIZE
            self._head_seq = self._seq = 1
            self._write_slot()
        else:
            slots = [s for s in (_read_slot(self._mm, off) for off in _SLOT_OFFSETS) if s is not None]
            self._generation, self._head, self._written, self._frames, self._head_seq = max(slots)
            self._tail, self._seq = contents.end, contents.next_seq
        self.contents = contents
        """What the journal held when it was opened with ``resume``."""

    @property
    def _tail(self) -> int:
        return self.cursor[0]

    @_tail.setter
    def _tail(self, value: int) -> None:
        self.cursor[0] = value

    @property
    def _seq(self) -> int:
        return self.cursor[1]

    @_seq.setter
    def _seq(self, value: int) -> None:
        self.cursor[1] = value

    @property
    def _capacity(self) -> int:
        return self.cursor[2]

    @_capacity.setter
    def _capacity(self, value: int) -> None:
        self.cursor[2] = value

    def target(self, port: int) -> tuple[mmap.mmap, array[int], int]:
        """What the batch writer (:data:`journal_runs`) takes for ``port``'s runs."""
        return self._mm, self.cursor, port

    @property
    def live_bytes(self) -> int:
        return self._tail - self._head

    @property
    def capacity(self) -> int:
        return self._capacity

    def append(self, port: int, arrival: float, data: bytes) -> None:
        """One datagram as it reached the worker: header and bytes in one store (a record cut short
        by a kill fails its CRC)."""
        length = len(data)
        size = RECORD_SIZE + ((length + 7) & ~7)
        offset = self._tail
        if offset + size > self._capacity:
            offset = self._make_room(size)
            if offset < 0:
                return  # cannot be kept (no room on the disk): the datagram still goes to its track
        packer = _PACKERS.get(length)
        if packer is None:
            packer = _PACKERS[length] = struct.Struct(f"<HHHHIIq{length}s")
        crc, arrival_ns = zlib.crc32(data), int(arrival * 1e9)
        packer.pack_into(self._mm, offset, RECORD_MAGIC, port, length, 0, self._seq, crc, arrival_ns, data)
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._tail = offset + size

    def append_batch(
        self, port: int, buffer: Any, offsets: Any, lengths: Any, arrivals: Any, start: int, end: int
    ) -> None:
        """Datagrams ``start..end-1`` of a received batch (the receiver's arrays; arrivals in ns),
        all of them in one call of the batch writer (:data:`append_records`), straight from the
        receive buffer. What does not fit makes room as :meth:`append` does, and a datagram that
        cannot be kept (no room on the disk) is left out, as there."""
        writer = append_records
        while start < end:
            self._tail, self._seq, start = writer(
                self._mm, self._tail, self._capacity, self._seq, port, buffer, offsets, lengths, arrivals,
                start, end,
            )
            if start < end:
                offset = self._make_room(record_size(int(lengths[start])))
                if offset < 0:
                    start += 1

    def note(self, port: int, arrival: float, kind: int, data: bytes) -> None:
        """A record other than a datagram (a placement note)."""
        length = len(data)
        size = RECORD_SIZE + ((length + 7) & ~7)
        offset = self._tail
        if offset + size > self._capacity:
            offset = self._make_room(size)
            if offset < 0:
                return
        self._mm[offset + RECORD_SIZE : offset + RECORD_SIZE + length] = data
        crc, arrival_ns = zlib.crc32(data), int(arrival * 1e9)
        RECORD.pack_into(self._mm, offset, RECORD_MAGIC, port, length, kind, self._seq, crc, arrival_ns)
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        self._tail = offset + size

    def mark(self, before: float, written: int, frames: int) -> None:
        """The recording's file now holds ``written`` timeline samples (``frames`` in the file):
        forget records that arrived before ``before`` (their place is written)."""
        offset, passed = skip_records(self._mm, self._head, self._tail, int(before * 1e9))
        self._head, self._head_seq = offset, (self._head_seq + passed) & 0xFFFFFFFF
        self._written, self._frames = written, frames
        self._write_slot()
        if self._head == self._tail and self._tail > HEADER_SIZE:
            # nothing live: start again at the front (the stale records fail the sequence check)
            self._head = self._tail = HEADER_SIZE
            self._write_slot()

    def sync(self) -> None:
        """With an fsync interval: write the journal's pages to the disk when the interval is over."""
        if self.fsync_interval is None:
            return
        now = self._clock()
        if now - self._synced >= self.fsync_interval:
            self._synced = now
            self._mm.flush()

    def close(self, *, remove: bool) -> None:
        """Unmap; ``remove`` deletes the file (its recording was finished)."""
        if not self._mm.closed:
            self._mm.close()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _write_slot(self) -> None:
        self._generation += 1
        slot = _slot_bytes(self._generation, self._head, self._written, self._frames, self._head_seq)
        offset = _SLOT_OFFSETS[self._generation & 1]
        self._mm[offset : offset + len(slot)] = slot

    def _make_room(self, size: int) -> int:
        """Compact (the live records to the front, when they fit where nothing live is) or grow;
        returns where the record goes (-1: nowhere)."""
        live = self._tail - self._head
        if HEADER_SIZE + live <= self._head and HEADER_SIZE + live + size <= self._capacity:
            self._mm[HEADER_SIZE : HEADER_SIZE + live] = self._mm[self._head : self._tail]
            self._head, self._tail = HEADER_SIZE, HEADER_SIZE + live
            self._write_slot()
            return self._tail
        capacity = self._capacity
        while self._tail + size > capacity:
            capacity *= 2
        try:
            fd = os.open(self.path, os.O_RDWR)
            try:
                os.posix_fallocate(fd, 0, capacity)
            finally:
                os.close(fd)
            self._mm.resize(capacity)
            _touch(self._mm, self._capacity, capacity)
        except (OSError, ValueError):
            # no room to grow (a full disk): forget what is live rather than fault on a hole
            if HEADER_SIZE + size > self._capacity:
                return -1
            self._head = self._tail = HEADER_SIZE
            self._head_seq = self._seq
            self._write_slot()
            return self._tail
        self._capacity = capacity
        return self._tail
