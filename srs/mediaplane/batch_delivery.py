"""A received batch cut into runs, and a run handed to its track: the worker's per-batch numpy work.

:func:`split_runs` cuts a batch (in the order it was received) into *runs*: stretches of one
slot's datagrams each of which continues the one before it exactly (plain 12-byte header, same
payload type, SSRC, source address and payload size, sequence number plus one, timestamp plus the
payload size; IPv4 sources only, see below). All of that is a handful of numpy operations per
batch, whatever its size. :func:`deliver_run` then gives a run to its track in one call
(:meth:`StreamTrack.push_run`) when it is the in-order common case, and datagram by datagram
(:meth:`StreamTrack.push`) otherwise, so the result is always what per-datagram delivery gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srs.media.track import StreamTrack
from srs.mediaplane.batch_receiver import BatchReceiver

_NS = 1e-9
_MAX_NAMES = 4096
_V4 = np.uint64(4 << 56)
_FAMILY = np.uint64(0xFF << 56)


@dataclass(frozen=True, slots=True)
class Runs:
    """One batch cut into runs: rows ``starts[r]:ends[r]`` are run ``r``, of slot ``slots[r]``;
    ``arrivals`` (seconds, monotonic) is indexed by row. Per run: ``clean`` (the common case:
    plain header, payload), and its first datagram's sequence number, timestamp, SSRC, second
    header byte, payload size and source key. ``payloads`` holds every payload of the batch end to
    end when all have one size, so a run's is one slice of it.

    The batch is not reordered: the receiver reads each ready socket whole, one after another, so
    a slot's datagrams already lie together, in the order they came. Where a slot does appear
    twice (a socket read again in :meth:`BatchReceiver.drain`), its runs are simply more, still
    in order."""

    arrivals: list[float]
    slots: list[int]
    starts: list[int]
    ends: list[int]
    clean: list[bool]
    seq: list[int]
    ts: list[int]
    ssrc: list[int]
    pt: list[int]
    size: list[int]
    keys: list[int]
    payloads: bytes | None


def split_runs(batch: BatchReceiver, count: int) -> Runs:
    s = batch.slots[:count]
    b0 = batch.b0[:count]
    b1 = batch.b1[:count]
    seq = batch.seq[:count]
    ts = batch.ts[:count]
    ssrc = batch.ssrc[:count]
    size = batch.lengths[:count] - 12
    source = batch.sources[:count]
    plain = (b0 == 0x80) & (size > 0)
    # an IPv4 source key is the address itself; an IPv6 one is a hash, which a sender could make
    # collide with the latched source's: such datagrams never share a run (each is pushed with
    # its own address tuple)
    exact = (source & _FAMILY) == _V4
    cont = np.zeros(count, dtype=bool)
    if count > 1:
        cont[1:] = (
            (s[1:] == s[:-1])
            & plain[1:]
            & plain[:-1]
            & (b1[1:] == b1[:-1])
            & (ssrc[1:] == ssrc[:-1])
            & (source[1:] == source[:-1])
            & exact[1:]
            & (size[1:] == size[:-1])
            & ((seq[1:] - seq[:-1]).astype(np.uint16) == 1)
            & ((ts[1:] - ts[:-1]).astype(np.uint32).astype(np.int64) == size[:-1])
        )
    starts = np.flatnonzero(~cont)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    if len(ends):
        ends[-1] = count
    payloads = None
    if count and int(size.min()) == int(size.max()) > 0:
        payloads = batch.rows[:count, 12 : 12 + int(size[0])].tobytes()
    return Runs(
        (batch.arrivals[:count] * _NS).tolist(),
        s[starts].tolist(),
        starts.tolist(),
        ends.tolist(),
        plain[starts].tolist(),
        seq[starts].tolist(),
        ts[starts].tolist(),
        ssrc[starts].tolist(),
        b1[starts].tolist(),
        size[starts].tolist(),
        source[starts].tolist(),
        payloads,
    )


class SourceNames:
    """Source keys to address tuples, remembered for IPv4 keys (exact; bounded: cleared past
    ``_MAX_NAMES``); an IPv6 key is a hash, so its tuple is always read from the batch."""

    def __init__(self) -> None:
        self.names: dict[int, tuple[str, int]] = {}

    def of(self, batch: BatchReceiver, key: int, row: int) -> tuple[str, int]:
        name = self.names.get(key)
        if name is None:
            name = batch.source(row)
            if key >> 56 == 4:
                if len(self.names) >= _MAX_NAMES:
                    self.names.clear()
                self.names[key] = name
        return name


def deliver_run(track: StreamTrack, batch: BatchReceiver, runs: Runs, r: int, names: SourceNames) -> None:
    """Run ``r`` of ``runs`` to ``track``: at once when it is the common case, else one by one. A
    run whose first datagram the track must see alone (it latches a source or an SSRC, or follows a
    loss) is taken whole after that one."""
    a, b = runs.starts[r], runs.ends[r]
    arrivals = runs.arrivals
    source = names.of(batch, runs.keys[r], a)
    if b - a > 1 and runs.clean[r]:
        size = runs.size[r]
        if runs.payloads is not None:
            payload = runs.payloads[a * size : b * size]
        else:
            payload = batch.rows[a:b, 12 : 12 + size].tobytes()
        if track.push_run(
            runs.seq[r], runs.ts[r], runs.ssrc[r], runs.pt[r], payload, b - a, arrivals[a:b], source
        ):
            return
        track.push(batch.datagram(a), source, arrivals[a])
        a += 1
        # the rest continues the first exactly: its header fields follow from the first's
        if b - a > 1 and track.push_run(
            (runs.seq[r] + 1) & 0xFFFF,
            (runs.ts[r] + size) & 0xFFFFFFFF,
            runs.ssrc[r],
            runs.pt[r],
            payload[size:],
            b - a,
            arrivals[a:b],
            source,
        ):
            return
    push = track.push
    for j in range(a, b):  # one source: runs never mix them
        push(batch.datagram(j), source, arrivals[j])
