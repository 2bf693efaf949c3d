"""Sequence accounting of one stream (RFC 3550 §A.1): which packets came, which are missing, which
are duplicates, and the extended sequence numbers and timestamps the timeline is built on.

Sequence numbers are extended into one space per SSRC (a restart moves to the next ``0x10000``
block above the old one, so packets still waiting to be rendered keep their order); timestamps
are extended with :func:`srs.rtp.seq.unwrap32` against the newest in-order one. The receive fast
path of :class:`~srs.media.track.StreamTrack` updates ``max_seq``, ``last_ts`` and ``unique``
inline for the next in-order packet (they are kept in the track's shared
:class:`~srs.media.fast_state.FastState`); everything else comes here.
"""

from __future__ import annotations

from typing import Any

from srs.media.fast_state import FastState, Shared, shared
from srs.rtp.seq import unwrap32

MAX_DROPOUT = 3000
"""A sequence jump larger than this (60 s of 20 ms packets) is a sender restart, not loss."""
FIRST_SEQ_BASE = 0x10000
MISSING_KEPT = 1024
"""Holes remembered behind the newest packet; an older straggler is counted as a duplicate."""


class SequenceTracker:
    """Extended sequence numbers and timestamps of the current SSRC, and the loss bookkeeping."""

    __slots__ = (
        "base_seq", "expected_before", "fast", "missing", "packets_duplicate", "space_floor",
        "ssrc_changes", "ssrcs", "unique_before",
    )

    ssrc: Shared[int] = shared("ssrc")
    max_seq: Shared[int] = shared("max_seq")
    """Extended sequence number of the newest in-order packet (0 before the first)."""
    last_ts: Shared[int] = shared("last_ts")
    """Extended timestamp of the newest in-order packet."""
    unique: Shared[int] = shared("unique")
    """Distinct packets of the current sequence space."""

    def __init__(self, fast: Any = None) -> None:
        self.fast = FastState() if fast is None else fast
        """Where ``ssrc``, ``max_seq``, ``last_ts`` and ``unique`` are kept (the track's, shared
        with its other parts: see :mod:`srs.media.fast_state`)."""
        self.ssrc = -1
        self.ssrcs: list[int] = []
        self.ssrc_changes = 0
        self.max_seq = 0
        self.base_seq = 0
        self.last_ts = 0
        self.unique = 0
        self.expected_before = 0
        self.unique_before = 0
        self.missing: set[int] = set()
        """Sequence numbers skipped by in-order packets: a later packet with one of them fills a hole,
        any other older packet is a duplicate."""
        self.space_floor = 0
        """Below any reordered packet of the current space and above every packet of the previous one."""
        self.packets_duplicate = 0

    def new_ssrc(self, ssrc: int) -> None:
        if self.ssrc >= 0:
            self.ssrc_changes += 1
        self.ssrc = ssrc
        if ssrc not in self.ssrcs:
            self.ssrcs.append(ssrc)

    def restart(self, seq: int, ts: int) -> None:
        """Start a sequence space above the old one; the next packet with ``seq`` is in order."""
        if self.unique:
            self.expected_before += self.max_seq - self.base_seq + 1
            self.unique_before += self.unique
        base = (self.max_seq + 0x20000) & ~0xFFFF if self.max_seq else FIRST_SEQ_BASE
        self.space_floor = base - 0x8000
        self.unique = 0
        self.missing.clear()
        self.base_seq = base + seq
        self.max_seq = base + seq - 1
        self.last_ts = ts

    def delta(self, seq: int) -> int:
        """How far ``seq`` is ahead of the newest packet, modulo 2^16 (1: the next one)."""
        return (seq - self.max_seq) & 0xFFFF

    def extend_ts(self, ts: int) -> int:
        return unwrap32(self.last_ts, ts)

    def advance(self, d: int, ts: int) -> tuple[int, int]:
        """A packet ``d`` (1..MAX_DROPOUT) ahead: the skipped numbers become holes; returns its
        extended sequence number and timestamp."""
        ext = self.max_seq + d
        if d != 1:
            self.missing.update(range(self.max_seq + 1, ext))
        self.max_seq = ext
        ext_ts = self.last_ts = unwrap32(self.last_ts, ts)
        self.unique += 1
        return ext, ext_ts

    def behind(self, d: int) -> int:
        """The extended sequence number of an older packet (``d`` as :meth:`delta` gave it)."""
        if d >= 0x8000:
            d -= 0x10000
        return self.max_seq + d

    def fill(self, ext: int) -> bool:
        """An older packet: True when it fills a hole (or extends the space downwards), False when
        it is a duplicate (counted)."""
        if ext < self.base_seq:
            self.missing.update(range(ext + 1, self.base_seq))
            self.base_seq = ext
        elif ext in self.missing:
            self.missing.discard(ext)
        else:
            self.packets_duplicate += 1
            return False
        self.unique += 1
        return True

    def fill_late(self, ext: int) -> None:
        """An older packet whose place is already written: received (late, not lost) when it
        fills a hole, otherwise not counted again."""
        if ext < self.base_seq:
            self.missing.update(range(ext + 1, self.base_seq))
            self.base_seq = ext
            self.unique += 1
        elif ext in self.missing:
            self.missing.discard(ext)
            self.unique += 1

    def prune(self) -> None:
        """Forget holes far behind the newest packet (bounds what one sender can make us hold)."""
        if len(self.missing) > MISSING_KEPT:
            horizon = self.max_seq - MISSING_KEPT
            self.missing = {s for s in self.missing if s > horizon}

    @property
    def received(self) -> int:
        """Packets accepted (including duplicates)."""
        return self.unique_before + self.unique + self.packets_duplicate

    @property
    def lost(self) -> int:
        """Sequence numbers not received so far."""
        lost = self.expected_before - self.unique_before
        if self.unique:
            lost += (self.max_seq - self.base_seq + 1) - self.unique
        return max(0, lost)
