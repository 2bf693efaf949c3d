"""Where a packet lands on the recording's timeline: RTP timestamp to output sample position.

The first packet of an SSRC is placed where it arrived (its *anchor*); later ones at
``anchor_pos + (ts - anchor_ts) * rate // clock`` (for an 8 kHz clock simply ``ts + offset``).
Placing by timestamp rather than arrival removes network jitter. Three things move the anchor:

* re-anchoring: a packet placed more than ``jump_threshold`` seconds from its arrival (the
  sender's timeline jumped), or in-order packets that keep landing on already written samples
  for ``late_reanchor_after`` seconds (its timestamps fell behind);
* slow-clock correction: the least-delayed packet of each ``resync_every`` seconds measures the
  sender's clock; when even that one is ``resync_threshold`` behind two windows in a row, the
  sender's clock is slower than ours and placement moves later;
* sender reports (:meth:`Placement.shift_earlier`): alignment by the sender's NTP clock.

The receive fast path of :class:`~srs.media.track.StreamTrack` reads ``unit``, ``offset``,
``rate``, ``drift_hi``, ``drift_lo`` and updates ``best_drift`` inline; this class is the
reference it is held to.
"""

from __future__ import annotations

import math
from typing import Any

from srs.media.fast_state import FastState, Shared, shared


class Placement:
    """The anchor, the drift window and the clock tracking of one stream."""

    __slots__ = (
        "anchor_pos", "anchor_shift", "anchor_ts", "best_since", "clock", "clock_adjustments",
        "drift_lo", "fast", "lagging", "late_reanchor_after", "late_run_seq", "late_run_since",
        "packets_late", "reanchors", "resync_every", "resync_threshold", "sample_rate",
        "sender_shift", "start", "unit",
    )

    offset: Shared[int] = shared("offset")
    rate: Shared[float] = shared("rate")
    drift_hi: Shared[float] = shared("drift_hi")
    best_drift: Shared[float] = shared("best_drift")

    def __init__(
        self,
        *,
        fast: Any = None,
        start: float,
        sample_rate: int,
        clock: int,
        jump_threshold: float,
        late_reanchor_after: float,
        resync_threshold: float,
        resync_every: float,
    ) -> None:
        self.fast = FastState() if fast is None else fast
        """Where ``offset``, ``rate``, ``drift_hi`` and ``best_drift`` are kept (the track's, shared
        with its other parts: see :mod:`srs.media.fast_state`)."""
        self.start = start
        self.sample_rate = sample_rate
        self.rate = float(sample_rate)
        # drift of a placement from its arrival, as ``pos - arrival * rate``, must stay inside these
        self.drift_hi = jump_threshold * sample_rate - start * sample_rate
        self.drift_lo = -jump_threshold * sample_rate - start * sample_rate
        self.resync_threshold = resync_threshold * sample_rate
        self.resync_every = resync_every
        self.late_reanchor_after = late_reanchor_after
        self.clock = clock
        self.unit = clock == sample_rate
        self.offset = 0
        self.anchor_pos = 0
        self.anchor_ts = 0
        self.best_drift = -math.inf
        self.best_since = 0.0
        self.lagging: float | None = None
        """The lag of the previous resync window when it was over the threshold."""
        self.late_run_seq = -1
        self.late_run_since = 0.0
        self.anchor_shift = 0
        """Samples the current anchor was moved earlier by sender reports: packets arriving that much
        later than their place is the alignment working, not a slow sender clock."""
        self.sender_shift = 0
        self.reanchors = 0
        self.clock_adjustments = 0
        self.packets_late = 0

    def position(self, ext_ts: int) -> int:
        if self.unit:
            return ext_ts + self.offset
        return self.anchor_pos + (ext_ts - self.anchor_ts) * self.sample_rate // self.clock

    def exact_position(self, ext_ts: int) -> float:
        """:meth:`position` without rounding (sender-report alignment compares fractions)."""
        return self.anchor_pos + (ext_ts - self.anchor_ts) * self.sample_rate / self.clock

    def set_clock(self, clock: int) -> None:
        """Another audio payload type with another clock rate (the caller re-anchors)."""
        self.clock = clock
        self.unit = clock == self.sample_rate

    def anchor(self, ext_ts: int, arrival: float, rendered_until: int) -> int:
        """Place ``ext_ts`` at ``arrival`` (never before what is written); returns that position."""
        pos = max(round((arrival - self.start) * self.sample_rate), rendered_until)
        self.anchor_pos = pos
        self.anchor_ts = ext_ts
        self.offset = pos - ext_ts
        self.best_drift = -math.inf
        self.best_since = arrival
        self.anchor_shift = 0
        return pos

    def jumped(self, pos: int, arrival: float, rendered_until: int) -> bool:
        """Whether an in-order packet placed at ``pos`` needs a new anchor: too early, or so late
        that its place is written. Late but still placeable is the receiver's own delay (a stall,
        a disk write): kept, and otherwise the packet's drift feeds the slow-clock measurement."""
        drift = pos - arrival * self.rate
        if drift > self.drift_hi or (drift < self.drift_lo and pos < rendered_until):
            return True
        if drift > self.best_drift:
            self.best_drift = drift
        return False

    def late(self, ext: int, arrival: float, in_order: bool) -> bool:
        """A packet whose place was already written. True: in-order packets have kept landing on
        written samples for ``late_reanchor_after`` seconds (the sender's timestamps fell behind)
        and this one should be re-anchored; False: it is dropped as late (counted)."""
        if in_order:
            if ext == self.late_run_seq + 1 and arrival - self.late_run_since >= self.late_reanchor_after:
                self.late_run_seq = -1
                return True
            if ext != self.late_run_seq + 1:
                self.late_run_since = arrival
            self.late_run_seq = ext
        self.packets_late += 1
        return False

    def resync_due(self, last_arrival: float) -> bool:
        return last_arrival - self.best_since >= self.resync_every and self.best_drift > -math.inf

    def resync(self, last_arrival: float) -> None:
        """Move placement later when the sender's clock has fallen behind (see ``resync_threshold``);
        moving it earlier would overwrite audio, so a fast clock waits for the jump threshold."""
        lag = -(self.best_drift + self.start * self.rate) - self.anchor_shift
        if lag > self.resync_threshold:
            # a slow clock keeps lagging; a receiver stall (every packet of the window read late)
            # does not: move only after two windows in a row, by what both agree on
            if self.lagging is not None:
                shift = round(min(lag, self.lagging))
                self.offset += shift
                self.anchor_pos += shift
                self.clock_adjustments += 1
                self.lagging = None
            else:
                self.lagging = lag
        else:
            self.lagging = None
        self.best_drift = -math.inf
        self.best_since = last_arrival

    def shift_earlier(self, samples: int) -> None:
        """Place the current anchor's packets ``samples`` earlier (the caller moves waiting ones)."""
        self.offset -= samples
        self.anchor_pos -= samples
        if self.best_drift > -math.inf:
            self.best_drift -= samples
        self.sender_shift += samples
        self.anchor_shift += samples
