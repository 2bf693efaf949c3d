"""From waiting packets to a block of output samples: decode, place, conceal, account.

Packets wait as ``(extended sequence, position, payload type, payload)`` entries (a run of
in-order G.711 packets waits as one entry, which the next run extends when it follows on).
:meth:`Renderer.render` runs about once a second: it takes the entries placed before the block's
end, decodes each payload type's entries in one call where the codec allows it
(:data:`SAMPLE_CODECS`), copies contiguous audio as one slice, keeps what reaches past the block
for the next one (the carry), optionally fills holes by pitch repetition, and reports the covered
runs to the stream's :class:`~srs.media.statistics.Coverage`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import add, itemgetter, lt
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from srs_codecs.plc import HISTORY as _PLC_HISTORY
from srs_codecs.plc import PitchRepeatConcealer

from srs.media.fast_state import FastState, Shared, shared
from srs.media.statistics import Coverage

Pcm = NDArray[np.int16]
Entry = tuple[int, int, int, bytes]
"""(extended sequence number, timeline position, payload type, payload) of waiting audio."""
Runs = list[tuple[int, int]]
"""[start, end) timeline ranges covered by received audio."""


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
EMPTY: Pcm = np.zeros(0, dtype=np.int16)
_ext_of = itemgetter(0)
_position_of = itemgetter(1)
_payload_of = itemgetter(3)


def _in_order(positions: list[int]) -> bool:
    """Whether ``positions`` never step back (sorting an ordered list is one C-level pass)."""
    return positions == sorted(positions)


class Renderer:
    """The waiting packets of one stream and the blocks rendered from them."""

    __slots__ = (
        "carry",
        "carry_runs",
        "conceal_loss",
        "concealed_samples",
        "decoder_errors",
        "decoders",
        "factory",
        "fast",
        "formats",
        "history",
        "pt_switched",
        "sample_rate",
        "unordered",
    )

    pending: Shared[list[Entry]] = shared("pending")
    run_sizes: Shared[dict[int, int]] = shared("run_sizes")
    """Extended sequence number -> packet size of the waiting entries that hold a run of equal
    packets end to end (``StreamTrack.push_run``); rendering splits them where packets pushed one
    by one would have been split."""
    rendered_until: Shared[int] = shared("rendered_until")

    def __init__(
        self,
        formats: Mapping[int, PayloadFormat],
        factory: DecoderFactory,
        sample_rate: int,
        conceal_loss: bool,
        fast: Any = None,
    ) -> None:
        self.fast = FastState() if fast is None else fast
        """Where ``pending``, ``run_sizes`` and ``rendered_until`` are kept (the track's, shared
        with its other parts: see :mod:`srs.media.fast_state`)."""
        self.formats = formats
        self.factory = factory
        self.sample_rate = sample_rate
        self.conceal_loss = conceal_loss
        self.pending = []
        self.run_sizes = {}
        self.pt_switched = False
        """Pending entries may have several payload types (decoded per type)."""
        self.unordered = False
        """Pending entries may not be in position order (set by a re-anchor while packets wait)."""
        self.rendered_until = 0
        self.carry: Pcm | None = None
        """Samples decoded past the previous block's end, starting at ``rendered_until``."""
        self.carry_runs: Runs = []
        self.decoders: dict[int, Decoder | None] = {}
        self.decoder_errors = 0
        self.history: Pcm = EMPTY
        """With ``conceal_loss``: the last rendered samples, pitch history for a hole at a block's start."""
        self.concealed_samples = 0

    def shift(self, samples: int, floor: int) -> None:
        """Move waiting entries of sequence space ``floor`` and above ``samples`` earlier."""
        if self.pending:
            self.pending = [(e, p - samples if e >= floor else p, pt, b) for e, p, pt, b in self.pending]
            self.unordered = True

    def add_run(self, ext: int, pos: int, pt: int, payload: bytes, count: int, size: int) -> None:
        """A run of ``count`` packets of ``size`` bytes taken whole (``StreamTrack.push_run``)
        waits as one entry; when it begins exactly where the open entry (the last one, made by a
        run) ends, in sequence and position, it extends that entry instead, so a call's in-order
        runs wait as one entry of equal packets end to end (:attr:`run_sizes` says so) and a render
        reads one entry, not one a receive round. The native ``push_runs`` does the same
        (``_trackstate.c``: ``add_entry``)."""
        st = self.fast
        pending = st.pending
        entry = st.open_entry
        if (
            pending
            and pending[-1] is entry
            and ext == st.open_ext
            and pos == st.open_pos
            and size == st.open_size
            and entry[2] == pt
        ):
            grown = entry[3]
            if type(grown) is bytearray:
                grown += payload
            else:
                entry = (entry[0], entry[1], pt, bytearray(grown) + payload)
                pending[-1] = st.open_entry = entry
                st.run_sizes[entry[0]] = size
        else:
            st.open_entry = entry = (ext, pos, pt, payload)
            pending.append(entry)
            if count > 1:
                st.run_sizes[ext] = size
        st.open_ext = ext + count
        st.open_pos = pos + count * size
        st.open_size = size

    def render(self, start: int, end: int, coverage: Coverage) -> Pcm:
        """Samples for timeline range [start, end), zeros where nothing arrived (see the module)."""
        pieces: list[tuple[int, Pcm]] = []
        runs: Runs = []
        if self.carry is not None:
            pieces.append((self.rendered_until, self.carry))
            runs.extend(self.carry_runs)
            self.carry = None
            self.carry_runs = []
        ready = self._take_ready(end)
        if ready:
            self._segments(ready, pieces, runs)
        out = self._assemble(start, end, pieces, runs)
        if runs and self.conceal_loss:
            self._conceal(start, end, runs, out, coverage)
        if self.conceal_loss:
            self.history = np.concatenate([self.history, out])[-_PLC_HISTORY:]
        if runs:
            coverage.account(start, end, runs, out)
        self.rendered_until = max(self.rendered_until, end)
        return out

    def _take_ready(self, end: int) -> list[Entry]:
        pending = self.pending
        if not pending:
            return pending
        pending.sort()
        # sorted by sequence, so by position too unless a re-anchor moved the timeline back or the
        # sender's timestamps stepped back (in sequence, by less than a jump: RTP does not forbid
        # it); checked here, once a block, rather than assumed (a bisect of unordered positions
        # left a packet waiting that belonged in the block, and older audio was written there)
        unordered = self.unordered or not _in_order(list(map(_position_of, pending)))
        if not unordered and pending[-1][1] < end:
            ready, rest = pending, []
        elif not unordered:
            split = bisect_left(pending, end, key=_position_of)
            ready, rest = pending[:split], pending[split:]
        else:
            ready = [p for p in pending if p[1] < end]
            rest = [p for p in pending if p[1] >= end]
        if self.run_sizes:
            ready = self._split_runs(ready, end, rest)
            rest.sort()
        self.pending = rest
        if unordered:
            self.unordered = not _in_order(list(map(_position_of, rest)))
        return ready

    def _split_runs(self, ready: list[Entry], end: int, rest: list[Entry]) -> list[Entry]:
        """A run entry (see :attr:`run_sizes`) reaching past ``end`` leaves its packets that start
        at or after ``end`` waiting in ``rest``, as they would have waited pushed one by one: audio
        a re-anchor later places over them must meet them in the same block either way. (Once a
        block for every track: the per-entry steps are C-level maps, and only the entries that
        reach past ``end`` are looked at one by one.)"""
        sizes = self.run_sizes
        reach = map(add, map(_position_of, ready), map(len, map(_payload_of, ready)))
        over = list(compress(range(len(ready)), map(lt, repeat(end), reach)))
        splits: list[tuple[Entry, int]] = []
        for i in over:
            ext, pos, pt, payload = ready[i]
            size = sizes.get(ext, 0)
            if size:
                taken = -(-(end - pos) // size) * size  # the packets that start before ``end``
                if taken < len(payload):
                    splits.append(((ext + taken // size, pos + taken, pt, payload[taken:]), size))
                    # a view, not a copy: the part rendered now is read once, by this render
                    ready[i] = (ext, pos, pt, memoryview(payload)[:taken])  # type: ignore[assignment]
        deque(map(sizes.pop, map(_ext_of, ready), repeat(0)), maxlen=0)  # rendered now
        for remainder, size in splits:
            rest.append(remainder)
            if len(remainder[3]) > size:
                sizes[remainder[0]] = size
        return ready

    def _segments(self, ready: list[Entry], pieces: list[tuple[int, Pcm]], runs: Runs) -> None:
        """Decode ``ready`` per payload type into (position, samples) pieces and covered runs."""
        if self.pt_switched:
            groups: dict[int, list[Entry]] = {}
            for packet in ready:
                groups.setdefault(packet[2], []).append(packet)
            if not self.pending:
                self.pt_switched = False
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

    def _assemble(self, start: int, end: int, pieces: list[tuple[int, Pcm]], runs: Runs) -> Pcm:
        """Write the pieces into the block; what reaches past ``end`` is carried to the next one."""
        n = max(0, end - start)
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
            self.carry = buf[n:].copy()
            self.carry_runs = [(max(a, end), b) for a, b in runs if b > end]
        return buf[:n]

    def _decoder(self, pt: int) -> Decoder | None:
        if pt in self.decoders:
            return self.decoders[pt]
        fmt = self.formats[pt]
        decoder: Decoder | None
        try:
            decoder = self.factory(fmt.encoding, fmt.clock_rate, fmt.channels, fmt.fmtp)
        except Exception:  # an unsupported or broken codec must not end the recording
            decoder = None
        self.decoders[pt] = decoder
        return decoder

    def _decode_group(self, pt: int, group: list[Entry]) -> tuple[Pcm, Sequence[int], Sequence[int]]:
        """Decode one payload type's packets in sequence order; returns samples, positions, lengths."""
        decoder = self._decoder(pt)
        if decoder is None:
            self.decoder_errors += len(group)
            return EMPTY, [], []
        _, positions, _, payloads = zip(*group, strict=True)
        if self.formats[pt].encoding.upper() in SAMPLE_CODECS:
            # one entry (a call's runs extend one another): decoded where it lies, not copied first
            joined = payloads[0] if len(payloads) == 1 else b"".join(payloads)
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
            return EMPTY, [], []
        return np.concatenate(pieces), kept, lengths

    def _conceal(self, start: int, end: int, runs: Runs, out: Pcm, coverage: Coverage) -> None:
        """Fill holes between received audio by repeating the last pitch period, fading out over
        60 ms (G.711 Appendix I style). Only holes that start inside this block and end at audio
        are filled; the start of a stream, comfort-noise silence and a trailing hole stay silent."""
        covered = coverage.end
        for run_start, run_end in sorted(
            (max(a, start), min(b, end)) for a, b in runs if b > start and a < end
        ):
            if (
                covered is not None
                and start <= covered < run_start
                and not coverage.comfort_noise_near(covered, run_start)
            ):
                lo, hi = covered - start, run_start - start
                concealer = PitchRepeatConcealer()
                concealer.observe(np.concatenate([self.history, out[:lo]])[-_PLC_HISTORY:])
                out[lo:hi] = concealer.conceal(hi - lo)
                self.concealed_samples += hi - lo
            covered = run_end if covered is None else max(covered, run_end)
