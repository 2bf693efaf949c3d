"""One received audio stream (one SDP m-line) placed on the recording timeline.

The timeline counts output samples from the recording start. A packet's place
is its RTP timestamp relative to an anchor: the first packet of an SSRC lands
where it arrived, later ones at ``anchor + (ts - ts0) * rate / clock``. Placing
by timestamp rather than arrival removes network jitter and puts reordered
packets where they belong; holes stay silent for exactly the missing time.

Arrival anchoring places a stream whose first packet was delayed too late.
RTCP sender reports (``push_rtcp``) map RTP timestamps to the sender's NTP
clock; :meth:`StreamTrack.sender_lag` exposes that mapping and the recorder
moves streams sharing one clock into line (``shift_earlier``). With
``conceal_loss`` holes between received audio are filled by pitch repetition
instead of silence; they still count as lost in the statistics.

``push`` runs for every datagram, so it only parses the header and appends
``(sequence, position, payload type, payload)``. ``render`` runs about once a
second and decodes, places and accounts for a whole block with numpy.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import struct
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray
from srs_codecs.plc import HISTORY as _PLC_HISTORY
from srs_codecs.plc import PitchRepeatConcealer

from srs.errors import RtpError
from srs.rtp.dtmf import DtmfCollector, DtmfEvent, parse_telephone_event
from srs.rtp.packet import FIXED_HEADER, split_rtp
from srs.rtp.rtcp import SenderReport, parse_rtcp

Pcm = NDArray[np.int16]


class Decoder(Protocol):
    """What the track needs from a codec: payload bytes in, 8 kHz int16 out."""

    @property
    def clock_rate(self) -> int: ...

    def decode(self, payload: bytes) -> Pcm: ...


DecoderFactory = Callable[[str, int, int, "str | None"], Decoder]
"""``(encoding, clock_rate, channels, fmtp) -> Decoder``; raises when the codec is unsupported."""


@dataclass(frozen=True, slots=True)
class PayloadFormat:
    """What an SDP rtpmap/fmtp says about one payload type."""

    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None


SAMPLE_CODECS = frozenset({"PCMU", "PCMA", "G722", "L16"})
"""Codecs whose decoding of concatenated payloads equals the concatenated decodings,
so a whole block decodes in one call."""
RUN_CODECS = frozenset({"PCMU", "PCMA"})
"""Codecs :meth:`StreamTrack.push_run` takes whole: one byte is one sample of the 8 kHz timeline,
so a run of packets end to end is one payload placed at its first packet's position."""

_AUDIO, _DTMF, _CN = 0, 1, 2
_MAX_DROPOUT = 3000
"""A sequence jump larger than this (60 s of 20 ms packets) is a sender restart, not loss."""
_FIRST_SEQ_BASE = 0x10000
_SILENT_PEAK = 16
_SR_TOLERANCE = 1.0
"""Seconds a sender report may disagree with arrival times before it is distrusted."""
_MAX_SR_SSRCS = 16
MAX_SOURCES = 16
"""Accepted source addresses a track remembers (changes beyond are still counted in ``relatches``)."""
MAX_REJECTED = 8
"""Distinct refused source addresses a track remembers; packets from others are only counted."""
REPLAYED_SOURCE = ("0.0.0.0", 0)
"""The stand-in source of :meth:`StreamTrack.push_replayed` (never latched, never reported)."""
_EMPTY: Pcm = np.zeros(0, dtype=np.int16)
_position_of = itemgetter(1)
_unpack_header = FIXED_HEADER.unpack_from


@dataclass(frozen=True, slots=True)
class StreamStats:
    """How complete one stream's recording is, and why not."""

    label: str
    packets_received: int
    packets_lost: int
    packets_late: int
    packets_duplicate: int
    packets_dropped_source: int
    packets_unknown_pt: int
    packets_comfort_noise: int
    packets_rtcp: int
    malformed: int
    decoder_errors: int
    ssrc_changes: int
    reanchors: int
    clock_adjustments: int
    relatches: int
    ssrcs: tuple[int, ...]
    gaps: tuple[tuple[int, int], ...]
    """(offset_ms, length_ms) of holes between the first and last audio of the stream."""
    expected_ms: int
    captured_ms: int
    first_packet_at: float | None
    last_packet_at: float | None
    peak: int
    dtmf: tuple[DtmfEvent, ...]
    sender_reports: int = 0
    """RTCP sender reports accepted for wall-clock alignment."""
    sender_clock_shift_ms: int = 0
    """How far wall-clock alignment moved the stream earlier than its first packet's arrival put it."""
    source: str | None = None
    """The address the stream is latched to (``host:port``), None before its first accepted packet."""
    sources: tuple[str, ...] = ()
    """Every address accepted in turn (the first, then each change), at most :data:`MAX_SOURCES`."""
    rejected_sources: tuple[tuple[str, int], ...] = ()
    """Addresses whose packets were dropped and how many, at most :data:`MAX_REJECTED` of them."""
    rtcp_dropped_source: int = 0
    """RTCP datagrams from hosts not allowed to send the stream (ignored)."""
    first_audio_ms: int | None = None
    """Where the stream's first audio lies on the recording's timeline (None: it sent none)."""

    @property
    def completeness(self) -> float:
        """Captured share of the expected audio (1.0 for a stream that sent none)."""
        if self.expected_ms <= 0:
            return 1.0
        return min(1.0, self.captured_ms / self.expected_ms)

    @property
    def silent(self) -> bool:
        """No audio, or only digital silence/near-silence."""
        return self.captured_ms == 0 or self.peak <= _SILENT_PEAK


def format_address(source: tuple[str, int] | tuple[str, int, int, int]) -> str:
    """``host:port`` (``[host]:port`` for IPv6), as logs and reports show a UDP source."""
    host, port = source[0], source[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def canonical_hosts(hosts: Iterable[str]) -> frozenset[str]:
    """The forms a source host may take in ``recvfrom``: canonical text, plus the IPv4-mapped IPv6
    form of an IPv4 address (what a dual-stack socket reports for it)."""
    out: set[str] = set()
    for host in hosts:
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            out.add(host)
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        out.add(str(address))
        if isinstance(address, ipaddress.IPv4Address):
            out.add(f"::ffff:{address}")
    return frozenset(out)


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


class StreamTrack:
    """Receiver and placer for one m-line; not thread-safe, fed from one event loop.

    Source policy: ``sources`` names the hosts the signalling allows to send this stream (None: any
    host). The first packet from an allowed host latches its address; packets from anywhere else are
    dropped and counted (``packets_dropped_source``), their addresses remembered (bounded). The latch
    moves to another address only when that address is allowed and either the signalling asked for
    it (:meth:`relatch`, :meth:`allow`) or the latched address has been silent ``relatch_after``
    seconds. With ``sources=None`` the latched host stands in for the allowed set, so after the
    first packet a stranger cannot take the stream over by waiting for a pause either.
    """

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
        self.conceal_loss = conceal_loss
        self._history: Pcm = _EMPTY
        """With ``conceal_loss``: the last rendered samples, pitch history for a hole at a block's start."""
        self.concealed_samples = 0
        self.start = start
        self.sample_rate = sample_rate
        self._formats = dict(formats)
        self._factory = decoder_factory
        self._relatch_after = relatch_after
        self._late_reanchor_after = late_reanchor_after
        # drift of a placement from its arrival, as ``pos - arrival * rate``, must stay inside these
        self._rate = float(sample_rate)
        self._drift_hi = jump_threshold * sample_rate - start * sample_rate
        self._drift_lo = -jump_threshold * sample_rate - start * sample_rate
        # the least-delayed packet of each ``resync_every`` seconds measures the sender's clock;
        # when even that one is ``resync_threshold`` behind, the sender's clock is slower than ours
        self._resync_threshold = resync_threshold * sample_rate
        self._resync_every = resync_every
        self._best_drift = -math.inf
        self._best_since = 0.0
        self._lagging: float | None = None
        """The lag of the previous resync window when it was over the threshold."""
        self._kinds: dict[int, int] = {}
        self._audio_pt = -1
        for pt, fmt in self._formats.items():
            name = fmt.encoding.upper()
            if name == "TELEPHONE-EVENT":
                self._kinds[pt] = _DTMF
            elif name == "CN":
                self._kinds[pt] = _CN
            else:
                self._kinds[pt] = _AUDIO
                if self._audio_pt < 0:
                    self._audio_pt = pt
        self._kinds.setdefault(13, _CN)
        self._decoders: dict[int, Decoder | None] = {}
        self._run_pts = frozenset(
            pt
            for pt, fmt in self._formats.items()
            if fmt.encoding.upper() in RUN_CODECS and fmt.clock_rate == sample_rate == 8000
        )
        """Audio payload types whose in-order runs :meth:`push_run` places as one entry."""
        # latching
        self._source: tuple[str, int] | None = None
        self._relatch_pending = False
        self._allowed: frozenset[str] | None = None if sources is None else canonical_hosts(sources)
        self._accepted: list[str] = []
        self._rejected: dict[str, int] = {}
        self._last_arrival = 0.0
        self._first_arrival: float | None = None
        # sequence/timestamp state of the current SSRC (sequence numbers extended, see _restart)
        self._ssrc = -1
        self._max_seq = 0
        self._base_seq = 0
        self._last_ts = 0
        self._unique = 0
        self._expected_before = 0
        self._unique_before = 0
        self._missing: set[int] = set()
        """Sequence numbers skipped by in-order packets: a later packet with one of them fills a hole,
        any other older packet is a duplicate."""
        # placement: position = anchor_pos + (ext_ts - anchor_ts) * rate // clock
        self._clock = self._formats[self._audio_pt].clock_rate if self._audio_pt >= 0 else sample_rate
        self._unit = self._clock == sample_rate
        self._offset = 0
        self._anchor_pos = 0
        self._anchor_ts = 0
        self._late_run_seq = -1
        self._late_run_since = 0.0
        # pending audio and rendering
        self._pending: list[tuple[int, int, int, bytes]] = []
        self._pt_switched = False
        self._unordered = False
        """Pending packets may not be in position order (set by a re-anchor while packets wait)."""
        self._rendered_until = 0
        self._carry: Pcm | None = None
        self._carry_runs: list[tuple[int, int]] = []
        self._cn_positions: list[int] = []
        self._cov_first: int | None = None
        self._cov_end: int | None = None
        self._captured = 0
        self._cn_gap_samples = 0
        self._gaps: list[tuple[int, int]] = []
        self._peak = 0
        dtmf_clocks = [f.clock_rate for pt, f in self._formats.items() if self._kinds[pt] == _DTMF]
        self._dtmf = DtmfCollector(dtmf_clocks[0] if dtmf_clocks else sample_rate)
        # counters
        self.packets_late = 0
        self.packets_duplicate = 0
        self.packets_dropped_source = 0
        self.packets_unknown_pt = 0
        self.packets_comfort_noise = 0
        self.packets_rtcp = 0
        self.rtcp_dropped_source = 0
        self.malformed = 0
        self.decoder_errors = 0
        self.ssrc_changes = 0
        self.reanchors = 0
        self.clock_adjustments = 0
        self.relatches = 0
        self._ssrcs: list[int] = []
        # RTCP sender reports: ssrc -> (rtp timestamp, NTP time, arrival) of the latest credible one,
        # and ssrc -> NTP time minus arrival of its first one (a later one far from that is distrusted)
        self._reports: dict[int, tuple[int, float, float]] = {}
        self._report_offsets: dict[int, float] = {}
        self._space_floor = 0
        self.sender_reports = 0
        self._sender_shift = 0
        self._anchor_shift = 0
        """Samples the current anchor was moved earlier by sender reports: packets arriving that much
        later than their place is the alignment working, not a slow sender clock."""

    # ------------------------------------------------------------------ receive path

    def relatch(self) -> None:
        """Let the next packet from another allowed address take the stream at once (new SDP from a
        re-INVITE/UPDATE); with ``sources=None``, from any address."""
        self._relatch_pending = True

    def push_replayed(self, data: bytes, arrival: float) -> None:
        """Take one journaled datagram of the track a dead worker lost (see
        :mod:`srs.mediaplane.recordings`). The journal keeps no addresses, and its datagrams were
        the call's audio, so they pass the source policy as the lost track's latched address and
        latch nothing: the next live packet from an allowed host latches as the stream's first
        source (not a source change)."""
        if self._first_arrival is None:
            self._first_arrival = arrival
        latched = self._source
        self._source = REPLAYED_SOURCE
        try:
            self.push(data, REPLAYED_SOURCE, arrival)
        finally:
            self._source = latched

    def allow(self, sources: Iterable[str] | None) -> None:
        """New allowed hosts from new SDP; a latched address outside them yields to the next allowed one.

        Until that one's first packet the latched address is still accepted: packets in flight
        around a failover are the call's audio, and nobody else can send from that address."""
        self._allowed = None if sources is None else canonical_hosts(sources)
        if self._source is not None and self._allowed is not None and self._source[0] not in self._allowed:
            self._relatch_pending = True

    def activity(self) -> ActivityTuple:
        """Packets accepted, last arrival, latched source, source changes, refused sources, the
        source before the current one (see :class:`StreamActivity`)."""
        return (
            self.packets_received,
            self._last_arrival if self._first_arrival is not None else None,
            format_address(self._source) if self._source is not None else None,
            self.relatches,
            tuple(self._rejected.items()),
            self._accepted[-2] if len(self._accepted) > 1 else None,
        )

    @property
    def rendered_until(self) -> int:
        return self._rendered_until

    @property
    def pending_packets(self) -> int:
        return len(self._pending)

    @property
    def packets_received(self) -> int:
        """Packets accepted from the latched source (including duplicates and late ones)."""
        return self._unique_before + self._unique + self.packets_duplicate

    def placement(self) -> tuple[int, int, int, int] | None:
        """(SSRC, sequence number, RTP timestamp, timeline sample) of the newest in-order packet, None
        before the first: a crash journal replays later packets into a new track placed the same way
        (that packet pushed first, arriving at its place, anchors the new track where this one is)."""
        if self._ssrc < 0 or not self._max_seq:
            return None
        return self._ssrc, self._max_seq & 0xFFFF, self._last_ts & 0xFFFFFFFF, self._position(self._last_ts)

    @property
    def packets_lost(self) -> int:
        """Sequence numbers not received so far (as :meth:`stats` counts them, without its cost)."""
        lost = self._expected_before - self._unique_before
        if self._unique:
            lost += (self._max_seq - self._base_seq + 1) - self._unique
        return max(0, lost)

    def push(self, data: bytes, source: tuple[str, int], arrival: float) -> None:
        """Take one datagram; every outcome other than placement is a counter, never an exception."""
        try:
            b0, b1, seq, ts, ssrc = _unpack_header(data)
        except struct.error:
            self.malformed += 1
            return
        if (
            b0 != 0x80
            or b1 != self._audio_pt
            or ssrc != self._ssrc
            or (seq - self._max_seq) & 0xFFFF != 1
            or source != self._source
        ):
            self._push_general(data, source, arrival, b0, b1, seq, ts, ssrc)
            return
        # the next packet of the latched source and SSRC, plain header, current audio type, no
        # marker: the common case, kept free of calls (the general path gives the same result)
        self._last_arrival = arrival
        ext = self._max_seq + 1
        self._max_seq = ext
        last_ts = self._last_ts
        t = (ts - last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = last_ts + t
        self._last_ts = ext_ts
        self._unique += 1
        if self._unit:
            pos = ext_ts + self._offset
        else:
            pos = self._anchor_pos + (ext_ts - self._anchor_ts) * self.sample_rate // self._clock
        drift = pos - arrival * self._rate
        if drift > self._drift_hi or (drift < self._drift_lo and pos < self._rendered_until):
            # too early, or so late that its place is written: the sender's timeline moved. Late
            # but still placeable is the receiver's own delay (a stall, a disk write): keep it.
            pos = self._reanchor(ext_ts, arrival)
        elif drift > self._best_drift:
            self._best_drift = drift
        if pos < self._rendered_until:
            pos = self._late(ext, ext_ts, arrival, True)
            if pos < 0:
                return
        self._pending.append((ext, pos, b1, data[12:]))

    def push_run(
        self,
        seq: int,
        ts: int,
        ssrc: int,
        pt: int,
        payload: bytes,
        count: int,
        arrivals: Sequence[float],
        source: tuple[str, int],
    ) -> bool:
        """Take ``count`` datagrams at once, or none (False: the caller pushes them one by one).

        The batch receive path's common case: plain 12-byte headers (first byte 0x80) whose second
        byte is ``pt``, SSRC ``ssrc``, sequence numbers ``seq, seq+1 ...`` and timestamps ``ts,
        ts+size ...`` (``size = len(payload) // count``, the equal payload of each, ``payload``
        their concatenation), all from ``source``, with ``arrivals`` their arrival times; the
        caller has checked that much. Taken only when :meth:`push` would give every one of them
        its fast path and place each where the previous one ended; the run then waits as one
        entry, which renders to the same samples and statistics (a property test holds both to
        that)."""
        if (
            ssrc != self._ssrc
            or pt != self._audio_pt
            or pt not in self._run_pts
            or (seq - self._max_seq) & 0xFFFF != 1
            or source != self._source
            or count < 1
        ):
            return False
        size = len(payload) // count
        last_ts = self._last_ts
        t = (ts - last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = last_ts + t
        pos = ext_ts + self._offset
        if pos < self._rendered_until:
            return False
        rate = self._rate
        best = -math.inf
        at = pos
        for arrival in arrivals:
            drift = at - arrival * rate
            if drift > best:
                best = drift
            at += size
        if best > self._drift_hi:
            return False  # one of them re-anchors: the per-packet path does that
        if best > self._best_drift:
            self._best_drift = best
        self._last_arrival = arrivals[-1]
        ext = self._max_seq + 1
        self._max_seq = ext + count - 1
        self._last_ts = ext_ts + (count - 1) * size
        self._unique += count
        self._pending.append((ext, pos, self._audio_pt, payload))
        return True

    def _push_general(
        self,
        data: bytes,
        source: tuple[str, int],
        arrival: float,
        b0: int,
        b1: int,
        seq: int,
        ts: int,
        ssrc: int,
    ) -> None:
        """Every datagram the fast path of :meth:`push` does not take."""
        if b0 == 0x80:
            payload = data[12:]
        else:
            try:
                b1, seq, ts, ssrc, payload = split_rtp(data)
            except RtpError:
                self.malformed += 1
                return
        if (source != self._source or ssrc != self._ssrc) and not self._admit(
            data, source, b1, ssrc, seq, ts, arrival
        ):
            return
        self._last_arrival = arrival
        d = (seq - self._max_seq) & 0xFFFF
        if d == 0 or d > _MAX_DROPOUT:
            self._out_of_order(d, seq, ts, b1 & 0x7F, payload, arrival)
            return
        # in order (after a hole, with the marker bit or another payload type)
        ext = self._max_seq + d
        if d != 1:
            self._missing.update(range(self._max_seq + 1, ext))
        self._max_seq = ext
        t = (ts - self._last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = self._last_ts + t
        self._last_ts = ext_ts
        self._unique += 1
        self._place(b1 & 0x7F, ext, ext_ts, payload, arrival, True)

    def _out_of_order(self, d: int, seq: int, ts: int, pt: int, payload: bytes, arrival: float) -> None:
        """Older packets (reordered, duplicated, late) and sequence restarts."""
        if d >= 0x8000:
            d -= 0x10000
        if d > _MAX_DROPOUT or d < -_MAX_DROPOUT:
            # a sender restart without a new SSRC: a fresh sequence space and anchor
            self._restart(seq, ts, arrival)
            self._max_seq += 1
            self._unique += 1
            self._place(pt, self._max_seq, ts, payload, arrival, True)
            return
        ext = self._max_seq + d
        t = (ts - self._last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = self._last_ts + t
        if pt == self._audio_pt and self._position(ext_ts) < self._rendered_until:
            # received, only too late to be used: late, not lost
            if ext < self._base_seq:
                self._missing.update(range(ext + 1, self._base_seq))
                self._base_seq = ext
                self._unique += 1
            elif ext in self._missing:
                self._missing.discard(ext)
                self._unique += 1
            self._late(ext, ext_ts, arrival, False)
            return
        if ext < self._base_seq:
            self._missing.update(range(ext + 1, self._base_seq))
            self._base_seq = ext
        elif ext in self._missing:
            self._missing.discard(ext)
        else:
            self.packets_duplicate += 1
            return
        self._unique += 1
        self._place(pt, ext, ext_ts, payload, arrival, False)

    def _place(self, pt: int, ext: int, ext_ts: int, payload: bytes, arrival: float, in_order: bool) -> None:
        """The general form of the tail of ``push``."""
        if pt != self._audio_pt:
            self._other(pt, ext, ext_ts, payload, arrival, in_order)
            return
        pos = self._position(ext_ts)
        if in_order:
            drift = pos - arrival * self._rate
            if drift > self._drift_hi or (drift < self._drift_lo and pos < self._rendered_until):
                pos = self._reanchor(ext_ts, arrival)
            elif drift > self._best_drift:
                self._best_drift = drift
        if pos < self._rendered_until:
            pos = self._late(ext, ext_ts, arrival, in_order)
            if pos < 0:
                return
        self._pending.append((ext, pos, pt, payload))

    def _admit(
        self, data: bytes, source: tuple[str, int], b1: int, ssrc: int, seq: int, ts: int, arrival: float
    ) -> bool:
        """Latching and SSRC bookkeeping, off the per-packet fast path."""
        if 192 <= b1 <= 223:
            # RTCP multiplexed on the RTP port (RFC 5761 §4); its sender's words never match our SSRC
            self.push_rtcp(data, source, arrival)
            return False
        if source != self._source:
            current = self._source
            allowed = self._allowed
            host = source[0]
            if allowed is not None:
                admitted = host in allowed
            else:
                # any host may be the first; afterwards the latched host stands in for the allowed set
                admitted = current is None or self._relatch_pending or host == current[0]
            if admitted and current is not None:
                admitted = self._relatch_pending or arrival - self._last_arrival >= self._relatch_after
            if not admitted:
                self.packets_dropped_source += 1
                name = format_address(source)
                if name in self._rejected or len(self._rejected) < MAX_REJECTED:
                    self._rejected[name] = self._rejected.get(name, 0) + 1
                return False
            if current is None:
                if self._first_arrival is None:  # else set by push_replayed
                    self._first_arrival = arrival
            else:
                self.relatches += 1
            if len(self._accepted) < MAX_SOURCES:
                self._accepted.append(format_address(source))
            else:
                self._accepted[-1] = format_address(source)
            self._source = source
            self._relatch_pending = False
        if ssrc != self._ssrc:
            if self._ssrc >= 0:
                self.ssrc_changes += 1
            self._ssrc = ssrc
            if ssrc not in self._ssrcs:
                self._ssrcs.append(ssrc)
            self._restart(seq, ts, arrival)
        return True

    def _restart(self, seq: int, ts: int, arrival: float) -> None:
        """Start a sequence space above the old one (so pending packets keep their order)
        and anchor it at this arrival; the next packet with ``seq`` is in order."""
        if self._unique:
            self._expected_before += self._max_seq - self._base_seq + 1
            self._unique_before += self._unique
        base = (self._max_seq + 0x20000) & ~0xFFFF if self._max_seq else _FIRST_SEQ_BASE
        self._space_floor = base - 0x8000  # below any reordered packet of this space, above the last
        self._unique = 0
        self._missing.clear()
        self._base_seq = base + seq
        self._max_seq = base + seq - 1
        self._last_ts = ts
        self._anchor(ts, arrival)

    def _anchor(self, ext_ts: int, arrival: float) -> int:
        pos = max(round((arrival - self.start) * self.sample_rate), self._rendered_until)
        if self._pending:
            self._unordered = True
        self._anchor_pos = pos
        self._anchor_ts = ext_ts
        self._offset = pos - ext_ts
        self._best_drift = -math.inf
        self._best_since = arrival
        self._anchor_shift = 0
        return pos

    # ------------------------------------------------------------------ RTCP sender reports

    def push_rtcp(self, data: bytes, source: tuple[str, int], arrival: float) -> None:
        """Take one RTCP datagram; sender reports are kept for :meth:`sender_lag`.

        Only hosts allowed to send the stream may report on it (a forged sender report would move
        the stream on the timeline); with ``sources=None`` any port of any host may, since a
        report only counts for the SSRC it names, which must be the SSRC this track is receiving
        when the report is used.
        """
        if self._allowed is not None and source[0] not in self._allowed and source is not REPLAYED_SOURCE:
            self.rtcp_dropped_source += 1
            return
        self.packets_rtcp += 1
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self.malformed += 1
            return
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._sender_report(packet, arrival)

    def _sender_report(self, report: SenderReport, arrival: float) -> None:
        ntp = report.ntp_unix_time
        first = self._report_offsets.get(report.ssrc)
        if first is None:
            if len(self._report_offsets) >= _MAX_SR_SSRCS:
                return
            self._report_offsets[report.ssrc] = ntp - arrival
        elif abs(ntp - arrival - first) > _SR_TOLERANCE:
            return  # the sender's wall clock jumped (or the report is forged): keep the old mapping
        self._reports[report.ssrc] = (report.rtp_timestamp, ntp, arrival)
        self.sender_reports += 1

    def sender_lag(self) -> float | None:
        """Timeline seconds minus the sender's NTP seconds for the same instant, from the latest
        sender report of the current SSRC; None without a credible one.

        Two streams stamped by one NTP clock are aligned when their lags are equal. A report
        whose RTP timestamp would be placed more than a second from the report's own arrival
        does not describe this stream's timestamps and is not used.
        """
        entry = self._reports.get(self._ssrc)
        if entry is None or self._audio_pt < 0:
            return None
        rtp_ts, ntp, arrival = entry
        t = (rtp_ts - self._last_ts) & 0xFFFFFFFF
        if t >= 0x80000000:
            t -= 0x100000000
        ext_ts = self._last_ts + t
        pos = self._anchor_pos + (ext_ts - self._anchor_ts) * self.sample_rate / self._clock
        seconds = pos / self._rate
        if abs(seconds + self.start - arrival) > _SR_TOLERANCE:
            return None
        return seconds - ntp

    def shift_earlier(self, samples: int) -> None:
        """Place the current SSRC's packets ``samples`` earlier, including those waiting to be
        rendered; audio that would land before what is already written is cut off at its start."""
        if samples <= 0:
            return
        self._offset -= samples
        self._anchor_pos -= samples
        if self._best_drift > -math.inf:
            self._best_drift -= samples
        floor = self._space_floor
        if self._pending:
            self._pending = [(e, p - samples if e >= floor else p, pt, b) for e, p, pt, b in self._pending]
            self._unordered = True
        self._sender_shift += samples
        self._anchor_shift += samples

    # ------------------------------------------------------------------ clock tracking

    def _resync(self) -> None:
        """Move placement later when the sender's clock has fallen behind (see ``resync_threshold``);
        moving it earlier would overwrite audio, so a fast clock waits for the jump threshold."""
        lag = -(self._best_drift + self.start * self._rate) - self._anchor_shift
        if lag > self._resync_threshold:
            # a slow clock keeps lagging; a receiver stall (every packet of the window read late)
            # does not: move only after two windows in a row, by what both agree on
            if self._lagging is not None:
                shift = round(min(lag, self._lagging))
                self._offset += shift
                self._anchor_pos += shift
                self.clock_adjustments += 1
                self._lagging = None
            else:
                self._lagging = lag
        else:
            self._lagging = None
        self._best_drift = -math.inf
        self._best_since = self._last_arrival

    def _reanchor(self, ext_ts: int, arrival: float) -> int:
        self.reanchors += 1
        return self._anchor(ext_ts, arrival)

    def _late(self, ext: int, ext_ts: int, arrival: float, in_order: bool) -> int:
        """A packet whose place was already written: drop it, unless in-order packets keep
        landing there (the sender's timestamps fell behind), which needs a new anchor."""
        if in_order:
            if ext == self._late_run_seq + 1 and arrival - self._late_run_since >= self._late_reanchor_after:
                self._late_run_seq = -1
                return self._reanchor(ext_ts, arrival)
            if ext != self._late_run_seq + 1:
                self._late_run_since = arrival
            self._late_run_seq = ext
        self.packets_late += 1
        return -1

    def _position(self, ext_ts: int) -> int:
        if self._unit:
            return ext_ts + self._offset
        return self._anchor_pos + (ext_ts - self._anchor_ts) * self.sample_rate // self._clock

    def _other(self, pt: int, ext: int, ext_ts: int, payload: bytes, arrival: float, in_order: bool) -> None:
        kind = self._kinds.get(pt)
        if kind is None:
            self.packets_unknown_pt += 1
            return
        if kind == _AUDIO:
            fmt = self._formats[pt]
            self._audio_pt = pt
            self._pt_switched = True
            if fmt.clock_rate != self._clock:
                self._clock = fmt.clock_rate
                self._unit = fmt.clock_rate == self.sample_rate
                self._reanchor(ext_ts, arrival)
            self._place(pt, ext, ext_ts, payload, arrival, in_order)
            return
        pos = self._position(ext_ts)
        if kind == _CN:
            self.packets_comfort_noise += 1
            self._cn_positions.append(pos)
            return
        try:
            event = parse_telephone_event(payload)
        except RtpError:
            self.malformed += 1
            return
        self._dtmf.add(event, ext_ts, max(0, pos) * 1000 // self.sample_rate)

    # ------------------------------------------------------------------ render path

    def _decoder(self, pt: int) -> Decoder | None:
        if pt in self._decoders:
            return self._decoders[pt]
        fmt = self._formats[pt]
        decoder: Decoder | None
        try:
            decoder = self._factory(fmt.encoding, fmt.clock_rate, fmt.channels, fmt.fmtp)
        except Exception:  # an unsupported or broken codec must not end the recording
            decoder = None
        self._decoders[pt] = decoder
        return decoder

    def _decode_group(
        self, pt: int, group: list[tuple[int, int, int, bytes]]
    ) -> tuple[Pcm, Sequence[int], Sequence[int]]:
        """Decode one payload type's packets in sequence order; returns samples, positions, lengths."""
        decoder = self._decoder(pt)
        if decoder is None:
            self.decoder_errors += len(group)
            return _EMPTY, [], []
        _, positions, _, payloads = zip(*group, strict=True)
        if self._formats[pt].encoding.upper() in SAMPLE_CODECS:
            joined = b"".join(payloads)
            try:
                pcm = np.asarray(decoder.decode(joined), dtype=np.int16)
            except Exception:
                pcm = None
            if pcm is not None and joined:
                produced, total = len(pcm), len(joined)
                if produced == total:
                    return pcm, positions, list(map(len, payloads))
                lengths = [len(p) * produced // total for p in payloads]
                if sum(lengths) == produced:
                    return pcm, positions, lengths
        pieces: list[Pcm] = []
        kept: list[int] = []
        lengths = []
        for pos, payload in zip(positions, payloads, strict=True):
            try:
                piece = np.asarray(decoder.decode(payload), dtype=np.int16)
            except Exception:
                self.decoder_errors += 1
                continue
            pieces.append(piece)
            kept.append(pos)
            lengths.append(len(piece))
        if not pieces:
            return _EMPTY, [], []
        return np.concatenate(pieces), kept, lengths

    def _take_ready(self, end: int) -> list[tuple[int, int, int, bytes]]:
        pending = self._pending
        if not pending:
            return pending
        pending.sort()
        if pending[-1][1] < end and not self._unordered:
            self._pending = []
            return pending
        if not self._unordered:
            # sorted by sequence, so by position too unless a re-anchor moved the timeline back
            split = bisect_left(pending, end, key=_position_of)
            self._pending = pending[split:]
            return pending[:split]
        ready = [p for p in pending if p[1] < end]
        rest = [p for p in pending if p[1] >= end]
        self._pending = rest
        self._unordered = not all(a[1] <= b[1] for a, b in itertools.pairwise(rest))
        return ready

    def render(self, start: int, end: int) -> Pcm:
        """This stream's samples for timeline range [start, end), zeros where nothing arrived.

        Ranges must be rendered in order; payloads placed before ``end`` are decoded
        and released, and packets that arrive later for this range count as late.
        """
        n = max(0, end - start)
        ready = self._take_ready(end)
        pieces: list[tuple[int, Pcm]] = []
        runs: list[tuple[int, int]] = []
        if self._carry is not None:
            pieces.append((self._rendered_until, self._carry))
            runs.extend(self._carry_runs)
            self._carry = None
            self._carry_runs = []
        if ready:
            if self._pt_switched:
                groups: dict[int, list[tuple[int, int, int, bytes]]] = {}
                for packet in ready:
                    groups.setdefault(packet[2], []).append(packet)
                if not self._pending:
                    self._pt_switched = False
            else:
                groups = {ready[0][2]: ready}
            for pt, group in groups.items():
                pcm, positions, lengths = self._decode_group(pt, group)
                count = len(positions)
                if count and (size := lengths[0]) > 0 and lengths.count(size) == count:
                    first = positions[0]
                    if positions[-1] == first + (count - 1) * size and list(positions) == list(
                        range(first, first + count * size, size)
                    ):
                        # equal packets end to end (the usual second of a call): one segment
                        pieces.append((first, pcm))
                        runs.append((first, first + count * size))
                        continue
                # contiguous packets become one slice copy; a hole or overlap starts a new segment
                seg_pos = seg_end = seg_off = 0
                off = 0
                for pos, length in zip(positions, lengths, strict=True):
                    if pos != seg_end or off == 0:
                        if seg_end > seg_pos:
                            pieces.append((seg_pos, pcm[seg_off : seg_off + seg_end - seg_pos]))
                            runs.append((seg_pos, seg_end))
                        seg_pos, seg_off = pos, off
                    seg_end = pos + length
                    off += length
                if seg_end > seg_pos:
                    pieces.append((seg_pos, pcm[seg_off : seg_off + seg_end - seg_pos]))
                    runs.append((seg_pos, seg_end))
        span_end = end
        for pos, samples in pieces:
            span_end = max(span_end, pos + len(samples))
        buf = np.zeros(max(0, span_end - start), dtype=np.int16)
        for pos, samples in pieces:
            lo = pos - start
            if lo < 0:
                samples = samples[-lo:]
                lo = 0
            buf[lo : lo + len(samples)] = samples
        if span_end > end:
            self._carry = buf[n:].copy()
            self._carry_runs = [(max(a, end), b) for a, b in runs if b > end]
        out = buf[:n]
        if runs and self.conceal_loss:
            self._conceal(start, end, runs, out)
        if self.conceal_loss:
            self._history = np.concatenate([self._history, out])[-_PLC_HISTORY:]
        if runs:
            self._account(start, end, runs, out)
        self._rendered_until = max(self._rendered_until, end)
        if self._last_arrival - self._best_since >= self._resync_every and self._best_drift > -math.inf:
            self._resync()
        if len(self._missing) > 1024:
            horizon = self._max_seq - 1024
            self._missing = {s for s in self._missing if s > horizon}
        return out

    def _conceal(self, start: int, end: int, runs: list[tuple[int, int]], out: Pcm) -> None:
        """Fill holes between received audio by repeating the last pitch period, fading out over
        60 ms (G.711 Appendix I style). Only holes that start inside this block and end at audio
        are filled; the start of a stream, comfort-noise silence and a trailing hole stay silent."""
        covered = self._cov_end
        slack = self.sample_rate // 50
        for run_start, run_end in sorted(
            (max(a, start), min(b, end)) for a, b in runs if b > start and a < end
        ):
            if (
                covered is not None
                and start <= covered < run_start
                and not any(covered - slack <= p < run_start for p in self._cn_positions)
            ):
                lo, hi = covered - start, run_start - start
                concealer = PitchRepeatConcealer()
                concealer.observe(np.concatenate([self._history, out[:lo]])[-_PLC_HISTORY:])
                out[lo:hi] = concealer.conceal(hi - lo)
                self.concealed_samples += hi - lo
            covered = run_end if covered is None else max(covered, run_end)

    def _account(self, start: int, end: int, runs: list[tuple[int, int]], out: Pcm) -> None:
        """Update captured samples, gaps and peak level from the covered runs of one block."""
        clipped = sorted((max(a, start), min(b, end)) for a, b in runs if b > start and a < end)
        if not clipped:
            return
        captured = 0
        for run_start, run_end in clipped:
            if self._cov_end is None:
                self._cov_first = run_start
            elif run_start > self._cov_end:
                self._record_gap(self._cov_end, run_start)
            elif run_end <= self._cov_end:
                continue
            else:
                run_start = self._cov_end
            captured += run_end - run_start
            self._cov_end = run_end
        self._captured += captured
        if captured:
            self._peak = max(self._peak, int(out.max()), -int(out.min()))
        if self._cn_positions and self._cov_end is not None:
            horizon = self._cov_end - self.sample_rate
            self._cn_positions = [p for p in self._cn_positions if p >= horizon]

    def _record_gap(self, gap_start: int, gap_end: int) -> None:
        slack = self.sample_rate // 50  # one 20 ms frame: CN is sent at or just before the silence
        if any(gap_start - slack <= p < gap_end for p in self._cn_positions):
            self._cn_gap_samples += gap_end - gap_start
            return
        rate = self.sample_rate
        if gap_end - gap_start >= rate // 1000:  # sub-millisecond seams come from re-anchoring rounding
            self._gaps.append((gap_start * 1000 // rate, (gap_end - gap_start) * 1000 // rate))

    # ------------------------------------------------------------------ results

    def finish(self) -> None:
        """Report a DTMF event whose end packets never came (call once the stream is over)."""
        self._dtmf.finish()

    def stats(self) -> StreamStats:
        lost = self._expected_before - self._unique_before
        if self._unique:
            lost += (self._max_seq - self._base_seq + 1) - self._unique
        expected = 0
        if self._cov_first is not None and self._cov_end is not None:
            expected = self._cov_end - self._cov_first - self._cn_gap_samples
        rate = self.sample_rate
        return StreamStats(
            label=self.label,
            packets_received=self.packets_received,
            packets_lost=max(0, lost),
            packets_late=self.packets_late,
            packets_duplicate=self.packets_duplicate,
            packets_dropped_source=self.packets_dropped_source,
            packets_unknown_pt=self.packets_unknown_pt,
            packets_comfort_noise=self.packets_comfort_noise,
            packets_rtcp=self.packets_rtcp,
            malformed=self.malformed,
            decoder_errors=self.decoder_errors,
            ssrc_changes=self.ssrc_changes,
            reanchors=self.reanchors,
            clock_adjustments=self.clock_adjustments,
            relatches=self.relatches,
            ssrcs=tuple(self._ssrcs),
            gaps=tuple(self._gaps),
            expected_ms=expected * 1000 // rate,
            captured_ms=self._captured * 1000 // rate,
            first_packet_at=self._first_arrival,
            last_packet_at=self._last_arrival if self._first_arrival is not None else None,
            peak=self._peak,
            dtmf=tuple(self._dtmf.events),
            sender_reports=self.sender_reports,
            sender_clock_shift_ms=self._sender_shift * 1000 // rate,
            source=format_address(self._source) if self._source is not None else None,
            sources=tuple(self._accepted),
            rejected_sources=tuple(self._rejected.items()),
            rtcp_dropped_source=self.rtcp_dropped_source,
            first_audio_ms=self._cov_first * 1000 // rate if self._cov_first is not None else None,
        )
