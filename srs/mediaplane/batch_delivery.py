"""A received batch cut into runs, and a run handed to its track: the worker's per-batch work.

:func:`cut_runs` cuts a batch (in the order it was received) into *runs*: stretches of one slot's
datagrams each of which continues the one before it exactly (plain 12-byte header, same second
header byte, SSRC, source address and payload size, sequence number plus one, timestamp plus the
payload size; IPv4 sources only, see below). The native receiver does it in C while the rows are
still in the cache (``Receiver.runs``); :func:`cut_runs_py` is the reference, with numpy, and the
fallback. :func:`push_runs` then gives every run that is the in-order common case of its track to
it in one call each (:meth:`StreamTrack.push_run`; natively for the whole batch, since at a
thousand calls these calls were the largest Python cost of the worker), and :func:`deliver_run`
the others, datagram by datagram (:meth:`StreamTrack.push`) where needed, so the result is always
what per-datagram delivery gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from srs.media.fast_state import native_push_runs
from srs.media.track import StreamTrack
from srs.mediaplane.batch_receiver import BatchReceiver

_NS = 1e-9
_MAX_NAMES = 4096
_V4 = np.uint64(4 << 56)
_FAMILY = np.uint64(0xFF << 56)

Run = tuple[int, int, int, bool, int, int, int, int, int, int]
"""``(slot, start, end, clean, seq, ts, ssrc, b1, size, key)``: rows ``start:end`` of the batch, of
``slot``; ``clean`` (the common case: plain header, a payload), the first datagram's sequence
number, timestamp, SSRC, second header byte, payload size and source key. The payloads and
arrival times stay in the batch (:func:`run_payload`, :func:`run_arrivals`): the native fast path
copies a taken run's payloads from the receive buffer straight into its track's waiting entry.

The batch is not reordered: the receiver reads each ready socket whole, one after another, so a
slot's datagrams already lie together, in the order they came. Where a slot does appear twice (a
socket read again in :meth:`BatchReceiver.drain`), its runs are simply more, still in order."""


def cut_runs(batch: BatchReceiver, count: int) -> list[Run]:
    """The batch's first ``count`` datagrams as runs: the native cut where built, else the reference."""
    if batch.native:
        runs: list[Run] = batch.engine.runs(count)  # type: ignore[attr-defined]
        return runs
    return cut_runs_py(batch, count)


def cut_runs_py(batch: BatchReceiver, count: int) -> list[Run]:
    """The reference of ``Receiver.runs`` (same list), from the receiver's arrays with numpy."""
    s = batch.slots[:count]
    b0 = batch.b0[:count]
    b1 = batch.b1[:count]
    seq = batch.seq[:count]
    ts = batch.ts[:count]
    ssrc = batch.ssrc[:count]
    size = batch.lengths[:count].astype(np.int64) - 12
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
    starts = np.flatnonzero(~cont).tolist()
    ends = [*starts[1:], count] if starts else []
    runs: list[Run] = []
    for a, b in zip(starts, ends, strict=True):
        runs.append((
            int(s[a]), a, b, bool(plain[a]), int(seq[a]), int(ts[a]), int(ssrc[a]), int(b1[a]), int(size[a]),
            int(source[a]),
        ))
    return runs


def run_payload(batch: BatchReceiver, run: Run) -> bytes:
    """A clean run's payloads end to end."""
    return batch.rows[run[1] : run[2], 12 : 12 + run[8]].tobytes()


def run_arrivals(batch: BatchReceiver, run: Run) -> list[float]:
    """Each datagram's arrival in seconds (monotonic)."""
    arrivals: list[float] = (batch.arrivals[run[1] : run[2]] * _NS).tolist()
    return arrivals


def push_runs(
    native: bool,
    tracks: dict[int, StreamTrack],
    states: dict[int, Any],
    names: dict[int, tuple[str, int]],
    runs: list[Run],
    batch: BatchReceiver,
) -> list[int]:
    """Every run its track takes whole (:meth:`StreamTrack.push_run`), taken; returns the indices
    of the others, untouched, for :func:`deliver_run` (with every later run of their slots: a
    slot's runs go to its track in order). ``tracks``: slot to track, and ``states`` the same
    slots to each track's :attr:`~StreamTrack.fast_state`; ``names``: source key to the address
    tuple (a run of an unnamed source is left to :func:`deliver_run`, which names it). Native
    where built (on the states: ``srs/media/_trackstate.c``), else :func:`push_runs_py`."""
    if native and native_push_runs is not None:
        arrays = (batch.buffer, batch.offsets, batch.lengths, batch.arrivals)
        rest: list[int] = native_push_runs(states, names, runs, *arrays)
        return rest
    return push_runs_py(tracks, names, runs, batch)


def push_runs_py(
    tracks: dict[int, StreamTrack], names: dict[int, tuple[str, int]], runs: list[Run], batch: BatchReceiver
) -> list[int]:
    """The reference of the native ``push_runs``: the same runs taken, the same indices left."""
    rest: list[int] = []
    held: set[int] = set()
    for i, run in enumerate(runs):
        slot, a, b, clean, seq, ts, ssrc, b1, _size, key = run
        track = tracks.get(slot)
        source = names.get(key)
        if (
            slot in held
            or track is None
            or not clean
            or source is None
            or not track.push_run(
                seq, ts, ssrc, b1, run_payload(batch, run), b - a, run_arrivals(batch, run), source
            )
        ):
            rest.append(i)
            held.add(slot)
    return rest


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


def deliver_run(track: StreamTrack, batch: BatchReceiver, run: Run, names: SourceNames) -> None:
    """``run`` to ``track``: at once when it is the common case, else one by one. A run whose first
    datagram the track must see alone (it latches a source or an SSRC, or follows a loss) is taken
    whole after that one."""
    _slot, a, b, clean, seq, ts, ssrc, b1, _size, key = run
    source = names.names.get(key) or names.of(batch, key, a)
    arrivals = run_arrivals(batch, run)
    if clean:
        payload = run_payload(batch, run)
        if track.push_run(seq, ts, ssrc, b1, payload, b - a, arrivals, source):
            return
        deliver_rest(track, batch, run, source, payload, arrivals)
        return
    push = track.push
    for j in range(a, b):  # one source: runs never mix them
        push(batch.datagram(j), source, arrivals[j - a])


def deliver_rest(
    track: StreamTrack, batch: BatchReceiver, run: Run, source: Any, payload: bytes, arrivals: list[float]
) -> None:
    """A clean run the track did not take whole (``payload`` and ``arrivals`` its own): its first
    datagram alone, then the rest as a run (their header fields follow from the first's) or,
    failing that, one by one."""
    _slot, a, b, _clean, seq, ts, ssrc, b1, size, _key = run
    track.push(batch.datagram(a), source, arrivals[0])
    rest = b - a - 1
    if rest > 1 and track.push_run(
        (seq + 1) & 0xFFFF, (ts + size) & 0xFFFFFFFF, ssrc, b1, payload[size:], rest, arrivals[1:], source
    ):
        return
    push = track.push
    for j in range(a + 1, b):
        push(batch.datagram(j), source, arrivals[j - a])
