"""One received audio stream (one SDP m-line) placed on the recording timeline.

The timeline counts output samples from the recording start. A packet's place is its RTP
timestamp relative to an anchor: the first packet of an SSRC lands where it arrived, later ones at
``anchor + (ts - ts0) * rate / clock``. Placing by timestamp rather than arrival removes network
jitter and puts reordered packets where they belong; holes stay silent for exactly the missing time.

A datagram goes through a pipeline of small parts, each in its own module and tested on its own:

1. :class:`~srs.media.latch.SourceLatch`: is it from the address the stream is latched to (or may
   it take the stream over)? RTCP multiplexed on the port goes to :meth:`StreamTrack.push_rtcp`.
2. :class:`~srs.media.sequence.SequenceTracker`: new SSRC or sequence restart, in order, a hole
   filled, a duplicate; extended sequence number and timestamp.
3. payload type: audio goes on; comfort noise and DTMF events are noted at their place.
4. :class:`~srs.media.placement.Placement`: extended timestamp to timeline position; re-anchoring,
   late packets, slow-clock correction, sender-report alignment.
5. :class:`~srs.media.rendering.Renderer`: the entry waits; about once a second :meth:`render`
   decodes, places and conceals a whole block with numpy, and reports the covered runs to the
   :class:`~srs.media.statistics.Coverage` behind :meth:`StreamTrack.stats`.

``push`` runs for every datagram, so the next in-order packet of the latched source (the common
case) takes steps 1-4 inline without calls, and ``push_run`` takes a whole run of them as one
entry; property tests hold both to the parts (a track whose every datagram takes the
general path is the reference).

Arrival anchoring places a stream whose first packet was delayed too late. RTCP sender reports
map RTP timestamps to the sender's NTP clock; :meth:`StreamTrack.sender_lag` exposes that mapping
and the recorder moves streams sharing one clock into line (``shift_earlier``). With
``conceal_loss`` holes between received audio are filled by pitch repetition instead of silence;
they still count as lost in the statistics.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from srs.errors import RtpError
from srs.media.fast_state import FastState
from srs.media.latch import REPLAYED_SOURCE, SourceLatch
from srs.media.placement import Placement
from srs.media.rendering import DecoderFactory, PayloadFormat, Pcm, Renderer
from srs.media.sender_reports import TOLERANCE as SR_TOLERANCE
from srs.media.sender_reports import SenderReports
from srs.media.sequence import MAX_DROPOUT, SequenceTracker
from srs.media.statistics import Coverage, StreamStats
from srs.rtp.dtmf import DtmfCollector, parse_telephone_event
from srs.rtp.packet import FIXED_HEADER, split_rtp
from srs.rtp.seq import unwrap32

RUN_CODECS = frozenset({"PCMU", "PCMA"})
"""Codecs :meth:`StreamTrack.push_run` takes whole: one byte is one sample of the 8 kHz timeline,
so a run of packets end to end is one payload placed at its first packet's position."""

_AUDIO, _DTMF, _CN = 0, 1, 2
_unpack_header = FIXED_HEADER.unpack_from


ActivityTuple = tuple[int, float | None, str | None, int, tuple[tuple[str, int], ...], str | None]
""":class:`StreamActivity` as a plain tuple: what crosses the worker pipe (a plain tuple pickles
five times faster than a named one, and a worker reports every stream once a second)."""


class StreamActivity(NamedTuple):
    """What the session side needs to know of a live track (``_make`` of an :data:`ActivityTuple`)."""

    packets_received: int
    last_packet_at: float | None
    source: str | None
    source_changes: int
    rejected_sources: tuple[tuple[str, int], ...]
    previous_source: str | None
    """The address accepted before the current one (None before the first change)."""


def payload_types(
    formats: Mapping[int, PayloadFormat], sample_rate: int
) -> tuple[dict[int, int], int, frozenset[int]]:
    """Payload type -> audio, DTMF or comfort noise; the first audio type (-1: none); the audio
    types whose in-order runs :meth:`StreamTrack.push_run` places as one entry."""
    kinds: dict[int, int] = {}
    audio_pt = -1
    for pt, fmt in formats.items():
        name = fmt.encoding.upper()
        if name == "TELEPHONE-EVENT":
            kinds[pt] = _DTMF
        elif name == "CN":
            kinds[pt] = _CN
        else:
            kinds[pt] = _AUDIO
            if audio_pt < 0:
                audio_pt = pt
    kinds.setdefault(13, _CN)
    runs = frozenset(
        pt for pt, fmt in formats.items()
        if fmt.encoding.upper() in RUN_CODECS and fmt.clock_rate == sample_rate == 8000
    )
    return kinds, audio_pt, runs


class StreamTrack:
    """Receiver and placer for one m-line; not thread-safe, fed from one event loop.

    Source policy: see :mod:`srs.media.latch` (``sources``, ``relatch_after``). Placement: see
    :mod:`srs.media.placement` (``jump_threshold``, ``late_reanchor_after``, ``resync_*``).
    """

    # slots, as in the parts: a worker holds thousands of tracks and touches each once per run, so
    # an attribute read from an instance dict (a cache miss more) is much of a run's cost
    __slots__ = (
        "_coverage", "_dtmf", "_fast", "_first_arrival", "_formats", "_kinds", "_latch", "_placement",
        "_renderer", "_reports", "_run_pts", "_seq", "label", "malformed",
        "packets_comfort_noise", "packets_unknown_pt", "sample_rate", "start",
    )  # fmt: skip

    def __init__(
        self,
        formats: Mapping[int, PayloadFormat],
        *,
        start: float,
        decoder_factory: DecoderFactory,
        label: str = "",
        sample_rate: int = 8000,
        jump_threshold: float = 2.0,
        relatch_after: float = 1.0,
        late_reanchor_after: float = 1.0,
        resync_threshold: float = 0.25,
        resync_every: float = 2.0,
        conceal_loss: bool = False,
        sources: Iterable[str] | None = None,
    ) -> None:
        self.label = label
        self.start = start
        self.sample_rate = sample_rate
        self._formats = dict(formats)
        # the values the receive fast path reads and writes, shared by the parts (see fast_state)
        fast = self._fast = FastState()
        self._kinds, audio_pt, self._run_pts = payload_types(self._formats, sample_rate)
        self._use_audio_pt(audio_pt)
        clock = self._formats[audio_pt].clock_rate if audio_pt >= 0 else sample_rate
        self._latch = SourceLatch(sources, relatch_after, fast)
        self._seq = SequenceTracker(fast)
        self._placement = Placement(
            fast=fast, start=start, sample_rate=sample_rate, clock=clock, jump_threshold=jump_threshold,
            late_reanchor_after=late_reanchor_after, resync_threshold=resync_threshold,
            resync_every=resync_every,
        )
        self._renderer = Renderer(self._formats, decoder_factory, sample_rate, conceal_loss, fast)
        self._coverage = Coverage(sample_rate)
        dtmf_clocks = [f.clock_rate for pt, f in self._formats.items() if self._kinds[pt] == _DTMF]
        self._dtmf = DtmfCollector(dtmf_clocks[0] if dtmf_clocks else sample_rate)
        self._first_arrival: float | None = None
        # counters of what no part owns
        self.packets_unknown_pt = self.packets_comfort_noise = self.malformed = 0
        self._reports = SenderReports()

    # ------------------------------------------------------------------ the parts' figures

    @property
    def fast_state(self) -> Any:
        """The values of the receive fast path (see :mod:`srs.media.fast_state`): the worker's
        batch path takes in-order runs on it directly."""
        return self._fast

    @property
    def conceal_loss(self) -> bool:
        """Fill holes between received audio by pitch repetition (see :mod:`srs.media.rendering`)."""
        return self._renderer.conceal_loss

    @conceal_loss.setter
    def conceal_loss(self, on: bool) -> None:
        self._renderer.conceal_loss = on

    @property
    def concealed_samples(self) -> int:
        return self._renderer.concealed_samples

    @property
    def rendered_until(self) -> int:
        return self._renderer.rendered_until

    @property
    def pending_packets(self) -> int:
        return len(self._renderer.pending)

    @property
    def packets_received(self) -> int:
        """Packets accepted from the latched source (including duplicates and late ones)."""
        return self._seq.received

    @property
    def packets_lost(self) -> int:
        """Sequence numbers not received so far (as :meth:`stats` counts them, without its cost)."""
        return self._seq.lost

    @property
    def packets_dropped_source(self) -> int:
        return self._latch.packets_dropped_source

    # ------------------------------------------------------------------ receive path

    def _use_audio_pt(self, pt: int) -> None:
        """The current audio type; its in-order runs are taken whole when its codec allows."""
        self._fast.audio_pt = pt
        self._fast.run_pt = pt if pt in self._run_pts else -1

    def relatch(self) -> None:
        """Let the next packet from another allowed address take the stream at once (new SDP from a
        re-INVITE/UPDATE); with ``sources=None``, from any address."""
        self._latch.relatch()

    def allow(self, sources: Iterable[str] | None) -> None:
        """New allowed hosts from new SDP (see :meth:`SourceLatch.allow`)."""
        self._latch.allow(sources)

    def push_replayed(self, data: bytes, arrival: float) -> None:
        """Take one journaled datagram of the track a dead worker lost (see
        :mod:`srs.mediaplane.recordings`). The journal keeps no addresses, and its datagrams were
        the call's audio, so they pass the source policy as the lost track's latched address and
        latch nothing: the next live packet from an allowed host latches as the stream's first
        source (not a source change)."""
        if self._first_arrival is None:
            self._first_arrival = arrival
        latch = self._latch
        latched = latch.source
        latch.source = REPLAYED_SOURCE
        try:
            self.push(data, REPLAYED_SOURCE, arrival)
        finally:
            latch.source = latched

    def activity(self) -> ActivityTuple:
        """Packets accepted, last arrival, latched source, source changes, refused sources, the
        source before the current one (see :class:`StreamActivity`)."""
        latch = self._latch
        return (
            self._seq.received,
            self._fast.last_arrival if self._first_arrival is not None else None,
            latch.name,
            latch.relatches,
            tuple(latch.rejected.items()),
            latch.previous,
        )

    def placement(self) -> tuple[int, int, int, int] | None:
        """(SSRC, sequence number, RTP timestamp, timeline sample) of the newest in-order packet, None
        before the first: a crash journal replays later packets into a new track placed the same way
        (that packet pushed first, arriving at its place, anchors the new track where this one is)."""
        seq = self._seq
        if seq.ssrc < 0 or not seq.max_seq:
            return None
        return seq.ssrc, seq.max_seq & 0xFFFF, seq.last_ts & 0xFFFFFFFF, self._placement.position(seq.last_ts)

    def push(self, data: bytes, source: tuple[str, int], arrival: float) -> None:
        """Take one datagram; every outcome other than placement is a counter, never an exception."""
        try:
            b0, b1, seq, ts, ssrc = _unpack_header(data)
        except struct.error:
            self.malformed += 1
            return
        st = self._fast
        if (
            b0 != 0x80
            or b1 != st.audio_pt
            or ssrc != st.ssrc
            or (seq - st.max_seq) & 0xFFFF != 1
            or source != st.source
        ):
            self._push_general(data, source, arrival, b0, b1, seq, ts, ssrc)
            return
        # the next packet of the latched source and SSRC, plain header, current audio type, no
        # marker: the common case, steps 2 and 4 inline on the parts' shared values (the general
        # path gives the same result)
        st.last_arrival = arrival
        ext = st.max_seq + 1
        st.max_seq = ext
        last_ts = st.last_ts
        t = (ts - last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = last_ts + t
        st.last_ts = ext_ts
        st.unique += 1
        pl = self._placement
        if pl.unit:
            pos = ext_ts + st.offset
        else:
            pos = pl.anchor_pos + (ext_ts - pl.anchor_ts) * self.sample_rate // pl.clock
        drift = pos - arrival * st.rate
        if drift > st.drift_hi or (drift < pl.drift_lo and pos < st.rendered_until):
            pos = self._reanchor(ext_ts, arrival)
        elif drift > st.best_drift:
            st.best_drift = drift
        if pos < st.rendered_until:
            pos = self._late(ext, ext_ts, arrival, True)
            if pos < 0:
                return
        st.pending.append((ext, pos, b1, data[12:]))

    def push_run(
        self, seq: int, ts: int, ssrc: int, pt: int, payload: bytes, count: int, arrivals: Sequence[float],
        source: tuple[str, int],
    ) -> bool:
        """Take ``count`` datagrams at once, or none (False: the caller pushes them one by one).

        The batch receive path's common case: plain 12-byte headers (first byte 0x80) whose second
        byte is ``pt``, SSRC ``ssrc``, sequence numbers ``seq, seq+1 ...`` and timestamps ``ts,
        ts+size ...`` (``size = len(payload) // count``, the equal payload of each, ``payload``
        their concatenation), all from ``source``, with ``arrivals`` their arrival times; the
        caller has checked that much. Taken only when :meth:`push` would give every one of them
        its fast path and place each where the previous one ended; the run then waits as one
        entry, or extends the run before it (:meth:`Renderer.add_run`), which renders to the same
        samples and statistics (a property test holds both to that)."""
        st = self._fast
        if (
            ssrc != st.ssrc
            or pt != st.run_pt
            or (seq - st.max_seq) & 0xFFFF != 1
            or source != st.source
            or count < 1
        ):
            return False  # run_pt: the audio type when its runs are taken whole (RUN_CODECS), else -1
        size = len(payload) // count
        last_ts = st.last_ts
        t = (ts - last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = last_ts + t
        pos = ext_ts + st.offset
        if pos < st.rendered_until:
            return False
        rate = st.rate
        best = -math.inf
        at = pos
        for arrival in arrivals:
            drift = at - arrival * rate
            if drift > best:
                best = drift
            at += size
        if best > st.drift_hi:
            return False  # one of them re-anchors: the per-packet path does that
        if best > st.best_drift:
            st.best_drift = best
        st.last_arrival = arrivals[-1]
        ext = st.max_seq + 1
        st.max_seq = ext + count - 1
        st.last_ts = ext_ts + (count - 1) * size
        st.unique += count
        self._renderer.add_run(ext, pos, pt, payload, count, size)
        return True

    def _push_general(
        self, data: bytes, source: tuple[str, int], arrival: float,
        b0: int, b1: int, seq: int, ts: int, ssrc: int,
    ) -> None:
        """Every datagram the fast path of :meth:`push` does not take: the pipeline, step by step."""
        if b0 == 0x80:
            payload = data[12:]
        else:
            try:
                b1, seq, ts, ssrc, payload = split_rtp(data)
            except RtpError:
                self.malformed += 1
                return
        sq = self._seq
        if (source != self._latch.source or ssrc != sq.ssrc) and not self._admit(
            data, source, b1, ssrc, seq, ts, arrival
        ):
            return
        self._fast.last_arrival = arrival
        d = sq.delta(seq)
        if d == 0 or d > MAX_DROPOUT:
            self._out_of_order(d, seq, ts, b1 & 0x7F, payload, arrival)
            return
        # in order (after a hole, with the marker bit or another payload type)
        ext, ext_ts = sq.advance(d, ts)
        self._place(b1 & 0x7F, ext, ext_ts, payload, arrival, True)

    def _admit(
        self, data: bytes, source: tuple[str, int], b1: int, ssrc: int, seq: int, ts: int, arrival: float
    ) -> bool:
        """Latching and SSRC bookkeeping, off the per-packet fast path."""
        if 192 <= b1 <= 223:
            # RTCP multiplexed on the RTP port (RFC 5761 §4); its sender's words never match our SSRC
            self.push_rtcp(data, source, arrival)
            return False
        latch = self._latch
        if source != latch.source:
            first = latch.source is None
            if not latch.admit(source, arrival, self._fast.last_arrival):
                return False
            if first and self._first_arrival is None:  # else set by push_replayed
                self._first_arrival = arrival
        if ssrc != self._seq.ssrc:
            self._seq.new_ssrc(ssrc)
            self._restart(seq, ts, arrival)
        return True

    def _out_of_order(self, d: int, seq: int, ts: int, pt: int, payload: bytes, arrival: float) -> None:
        """Older packets (reordered, duplicated, late) and sequence restarts."""
        sq = self._seq
        if MAX_DROPOUT < d < 0x10000 - MAX_DROPOUT:
            # a sender restart without a new SSRC: a fresh sequence space and anchor
            self._restart(seq, ts, arrival)
            sq.max_seq += 1
            sq.unique += 1
            self._place(pt, sq.max_seq, ts, payload, arrival, True)
            return
        ext = sq.behind(d)
        ext_ts = sq.extend_ts(ts)
        if pt == self._fast.audio_pt and self._placement.position(ext_ts) < self._renderer.rendered_until:
            # received, only too late to be used: late, not lost
            sq.fill_late(ext)
            self._late(ext, ext_ts, arrival, False)
            return
        if sq.fill(ext):
            self._place(pt, ext, ext_ts, payload, arrival, False)

    def _restart(self, seq: int, ts: int, arrival: float) -> None:
        """A new sequence space, anchored at this arrival (see :meth:`SequenceTracker.restart`)."""
        self._seq.restart(seq, ts)
        self._anchor(ts, arrival)

    def _place(self, pt: int, ext: int, ext_ts: int, payload: bytes, arrival: float, in_order: bool) -> None:
        """Steps 3 and 4 for one packet (the general form of the tail of ``push``)."""
        if pt != self._fast.audio_pt:
            self._other(pt, ext, ext_ts, payload, arrival, in_order)
            return
        renderer = self._renderer
        pos = self._placement.position(ext_ts)
        if in_order and self._placement.jumped(pos, arrival, renderer.rendered_until):
            pos = self._reanchor(ext_ts, arrival)
        if pos < renderer.rendered_until:
            pos = self._late(ext, ext_ts, arrival, in_order)
            if pos < 0:
                return
        renderer.pending.append((ext, pos, pt, payload))

    def _other(self, pt: int, ext: int, ext_ts: int, payload: bytes, arrival: float, in_order: bool) -> None:
        kind = self._kinds.get(pt)
        if kind is None:
            self.packets_unknown_pt += 1
            return
        if kind == _AUDIO:
            fmt = self._formats[pt]
            self._use_audio_pt(pt)
            self._renderer.pt_switched = True
            if fmt.clock_rate != self._placement.clock:
                self._placement.set_clock(fmt.clock_rate)
                self._reanchor(ext_ts, arrival)
            self._place(pt, ext, ext_ts, payload, arrival, in_order)
            return
        pos = self._placement.position(ext_ts)
        if kind == _CN:
            self.packets_comfort_noise += 1
            self._coverage.cn_positions.append(pos)
            return
        try:
            event = parse_telephone_event(payload)
        except RtpError:
            self.malformed += 1
            return
        self._dtmf.add(event, ext_ts, max(0, pos) * 1000 // self.sample_rate)

    def _anchor(self, ext_ts: int, arrival: float) -> int:
        renderer = self._renderer
        if renderer.pending:
            renderer.unordered = True
        return self._placement.anchor(ext_ts, arrival, renderer.rendered_until)

    def _reanchor(self, ext_ts: int, arrival: float) -> int:
        self._placement.reanchors += 1
        return self._anchor(ext_ts, arrival)

    def _late(self, ext: int, ext_ts: int, arrival: float, in_order: bool) -> int:
        """A packet whose place was already written: dropped (-1), unless in-order packets keep
        landing there (the sender's timestamps fell behind), which re-anchors it."""
        if self._placement.late(ext, arrival, in_order):
            return self._reanchor(ext_ts, arrival)
        return -1

    # ------------------------------------------------------------------ RTCP sender reports

    def push_rtcp(self, data: bytes, source: tuple[str, int], arrival: float) -> None:
        """Take one RTCP datagram; sender reports are kept for :meth:`sender_lag`.

        Only hosts allowed to send the stream may report on it (a forged sender report would move
        the stream on the timeline); with ``sources=None`` any port of any host may, since a
        report only counts for the SSRC it names, which must be the SSRC this track is receiving
        when the report is used.
        """
        if not self._latch.may_report(source):
            self._reports.dropped_source += 1
        elif not self._reports.push(data, arrival):
            self.malformed += 1

    def sender_lag(self) -> float | None:
        """Timeline seconds minus the sender's NTP seconds for the same instant, from the latest
        sender report of the current SSRC; None without a credible one.

        Two streams stamped by one NTP clock are aligned when their lags are equal. A report
        whose RTP timestamp would be placed more than a second from the report's own arrival
        does not describe this stream's timestamps and is not used.
        """
        entry = self._reports.latest.get(self._seq.ssrc)
        if entry is None or self._fast.audio_pt < 0:
            return None
        rtp_ts, ntp, arrival = entry
        seconds = self._placement.exact_position(unwrap32(self._seq.last_ts, rtp_ts)) / self._placement.rate
        if abs(seconds + self.start - arrival) > SR_TOLERANCE:
            return None
        return seconds - ntp

    def shift_earlier(self, samples: int) -> None:
        """Place the current SSRC's packets ``samples`` earlier, including those waiting to be
        rendered; audio that would land before what is already written is cut off at its start."""
        if samples <= 0:
            return
        self._placement.shift_earlier(samples)
        self._renderer.shift(samples, self._seq.space_floor)

    # ------------------------------------------------------------------ render path

    def render(self, start: int, end: int) -> Pcm:
        """This stream's samples for timeline range [start, end), zeros where nothing arrived.

        Ranges must be rendered in order; payloads placed before ``end`` are decoded
        and released, and packets that arrive later for this range count as late.
        """
        out = self._renderer.render(start, end, self._coverage)
        if self._placement.resync_due(self._fast.last_arrival):
            self._placement.resync(self._fast.last_arrival)
        self._seq.prune()
        return out

    # ------------------------------------------------------------------ results

    def finish(self) -> None:
        """Report a DTMF event whose end packets never came (call once the stream is over)."""
        self._dtmf.finish()

    def stats(self) -> StreamStats:
        return stream_stats(self)


def stream_stats(track: StreamTrack) -> StreamStats:
    """What a track's parts counted, as one record (the report and the index read it)."""
    rate = track.sample_rate
    sq, pl, latch, coverage = track._seq, track._placement, track._latch, track._coverage
    return StreamStats(
        label=track.label,
        packets_received=sq.received,
        packets_lost=sq.lost,
        packets_late=pl.packets_late,
        packets_duplicate=sq.packets_duplicate,
        packets_dropped_source=latch.packets_dropped_source,
        packets_unknown_pt=track.packets_unknown_pt,
        packets_comfort_noise=track.packets_comfort_noise,
        packets_rtcp=track._reports.received,
        malformed=track.malformed,
        decoder_errors=track._renderer.decoder_errors,
        ssrc_changes=sq.ssrc_changes,
        reanchors=pl.reanchors,
        clock_adjustments=pl.clock_adjustments,
        relatches=latch.relatches,
        ssrcs=tuple(sq.ssrcs),
        gaps=tuple(coverage.gaps),
        expected_ms=coverage.expected * 1000 // rate,
        captured_ms=coverage.captured * 1000 // rate,
        first_packet_at=track._first_arrival,
        last_packet_at=track.fast_state.last_arrival if track._first_arrival is not None else None,
        peak=coverage.peak,
        dtmf=tuple(track._dtmf.events),
        sender_reports=track._reports.accepted,
        sender_clock_shift_ms=pl.sender_shift * 1000 // rate,
        source=latch.name,
        sources=tuple(latch.accepted),
        rejected_sources=tuple(latch.rejected.items()),
        rtcp_dropped_source=track._reports.dropped_source,
        first_audio_ms=coverage.first * 1000 // rate if coverage.first is not None else None,
    )
