"""How complete one stream's recording is: the :class:`StreamStats` a track reports, and the
:class:`Coverage` of the timeline by received audio it is computed from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from srs.rtp.dtmf import DtmfEvent

SILENT_PEAK = 16


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
    """Every address accepted in turn (the first, then each change), at most ``MAX_SOURCES``."""
    rejected_sources: tuple[tuple[str, int], ...] = ()
    """Addresses whose packets were dropped and how many, at most ``MAX_REJECTED`` of them."""
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
        return self.captured_ms == 0 or self.peak <= SILENT_PEAK


class Coverage:
    """Which stretches of the timeline received audio: captured samples, holes (gaps), the level.

    Fed one rendered block at a time with the runs of samples that came from packets. A hole
    that comfort noise announced (a CN packet at or just before it) is silence the sender chose,
    neither a gap nor expected audio.
    """

    __slots__ = ("captured", "cn_gap_samples", "cn_positions", "end", "first", "gaps", "peak", "sample_rate")

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.first: int | None = None
        """Timeline sample of the first received audio."""
        self.end: int | None = None
        """End of the received audio so far."""
        self.captured = 0
        self.cn_gap_samples = 0
        self.gaps: list[tuple[int, int]] = []
        self.peak = 0
        self.cn_positions: list[int] = []
        """Timeline positions of recent comfort-noise packets."""

    def comfort_noise_near(self, start: int, end: int) -> bool:
        """A comfort-noise packet at or up to one 20 ms frame before ``[start, end)``."""
        slack = self.sample_rate // 50  # CN is sent at or just before the silence
        return any(start - slack <= p < end for p in self.cn_positions)

    def account(self, start: int, end: int, runs: list[tuple[int, int]], out: NDArray[np.int16]) -> None:
        """Update captured samples, gaps and peak level from the covered runs of one block."""
        clipped = sorted((max(a, start), min(b, end)) for a, b in runs if b > start and a < end)
        if not clipped:
            return
        captured = 0
        for run_start, run_end in clipped:
            if self.end is None:
                self.first = run_start
            elif run_start > self.end:
                self._record_gap(self.end, run_start)
            elif run_end <= self.end:
                continue
            else:
                run_start = self.end
            captured += run_end - run_start
            self.end = run_end
        self.captured += captured
        if captured:
            self.peak = max(self.peak, int(out.max()), -int(out.min()))
        if self.cn_positions and self.end is not None:
            horizon = self.end - self.sample_rate
            self.cn_positions = [p for p in self.cn_positions if p >= horizon]

    def _record_gap(self, gap_start: int, gap_end: int) -> None:
        if self.comfort_noise_near(gap_start, gap_end):
            self.cn_gap_samples += gap_end - gap_start
            return
        rate = self.sample_rate
        if gap_end - gap_start >= rate // 1000:  # sub-millisecond seams come from re-anchoring rounding
            self.gaps.append((gap_start * 1000 // rate, (gap_end - gap_start) * 1000 // rate))

    @property
    def expected(self) -> int:
        """Samples from the first to the last received audio, less announced silence."""
        if self.first is None or self.end is None:
            return 0
        return self.end - self.first - self.cn_gap_samples
