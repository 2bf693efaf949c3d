"""A received batch cut into runs, and a run handed to its track: the worker's per-batch numpy work.

:func:`split_runs` orders a batch by slot (keeping receive order within a slot) and cuts it into
*runs*: stretches of one slot's datagrams each of which continues the one before it exactly (plain
12-byte header, same payload type, SSRC, source address and payload size, sequence number plus one,
timestamp plus the payload size; IPv4 sources only, see below). All of that is a handful of numpy
operations per batch, whatever its size. :func:`deliver_run` then gives a run to its track in one
call (:meth:`StreamTrack.push_run`) when it is the in-order common case, and datagram by datagram
(:meth:`StreamTrack.push`) otherwise, so the result is always what per-datagram delivery gives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from srs.media.track import StreamTrack
from srs.mediaplane.batch_receiver import BatchReceiver

_NS = 1e-9


@dataclass(frozen=True, slots=True)
class Runs:
    """One batch in slot order: ``order[starts[r]:ends[r]]`` are the rows of run ``r``, of slot
    ``slots[r]``; ``arrivals`` (seconds, monotonic) and ``clean`` (the run is the common case) are
    indexed like ``order`` and like the runs."""

    order: NDArray[np.intp]
    slots: list[int]
    starts: list[int]
    ends: list[int]
    arrivals: NDArray[np.float64]
    clean: list[bool]


def split_runs(batch: BatchReceiver, count: int) -> Runs:
    slots = batch.slots[:count]
    order = np.argsort(slots, kind="stable")
    s = slots[order]
    b0 = batch.b0[order]
    b1 = batch.b1[order]
    seq = batch.seq[order].astype(np.uint16)
    ts = batch.ts[order].astype(np.uint32)
    ssrc = batch.ssrc[order]
    size = batch.lengths[order] - 12
    source = batch.sources[order]
    plain = (b0 == 0x80) & (size > 0)
    # an IPv4 source key is the address itself; an IPv6 one is a hash, which a sender could make
    # collide with the latched source's: such datagrams never share a run (each is pushed with
    # its own address tuple)
    exact = (source >> np.uint64(56)) == 4
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
            & ((seq[1:] - seq[:-1]) == 1)
            & ((ts[1:] - ts[:-1]).astype(np.int64) == size[:-1])
        )
    starts = np.flatnonzero(~cont)
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    if len(ends):
        ends[-1] = count
    return Runs(
        order,
        s[starts].tolist(),
        starts.tolist(),
        ends.tolist(),
        (batch.arrivals[order] * _NS).astype(np.float64),
        plain[starts].tolist(),
    )


def deliver_run(track: StreamTrack, batch: BatchReceiver, runs: Runs, r: int) -> None:
    """Run ``r`` of ``runs`` to ``track``: at once when it is the common case, else one by one. A
    run whose first datagram the track must see alone (it latches a source or an SSRC, or follows a
    loss) is taken whole after that one."""
    a, b = runs.starts[r], runs.ends[r]
    order = runs.order
    arrivals = runs.arrivals
    source = batch.source(int(order[a]))
    push = track.push
    if b - a > 1 and runs.clean[r]:
        if _take_whole(track, batch, order, arrivals, a, b, source):
            return
        push(batch.datagram(int(order[a])), source, float(arrivals[a]))
        a += 1
        if b - a > 1 and _take_whole(track, batch, order, arrivals, a, b, source):
            return
    for j in range(a, b):  # one source: runs never mix them
        push(batch.datagram(int(order[j])), source, float(arrivals[j]))


def _take_whole(
    track: StreamTrack,
    batch: BatchReceiver,
    order: NDArray[np.intp],
    arrivals: NDArray[np.float64],
    a: int,
    b: int,
    source: tuple[str, int],
) -> bool:
    first = int(order[a])
    length = int(batch.lengths[first])
    if int(order[b - 1]) - first == b - a - 1:  # one socket's rows lie together: a strided copy
        payload = batch.rows[first : first + b - a, 12:length].tobytes()
    else:
        payload = batch.rows[order[a:b], 12:length].tobytes()
    return track.push_run(
        int(batch.seq[first]),
        int(batch.ts[first]),
        int(batch.ssrc[first]),
        int(batch.b1[first]),
        payload,
        b - a,
        arrivals[a:b].tolist(),
        source,
    )
