"""Packet loss concealment by pitch repetition (in the spirit of G.711 Appendix I).

A lost packet replaced by silence clicks; repeating the last pitch period and
fading it out over 60 ms sounds like a short hold instead. Waveform codecs
(G.711, L16) use this; codecs with their own concealment do not.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from srs_codecs.base import Pcm

HISTORY = 390  # 48.75 ms at 8 kHz: longest pitch period + correlation window, with margin
MIN_PITCH = 40  # 200 Hz
MAX_PITCH = 120  # 66 Hz
_WINDOW = 160  # 20 ms correlation window
_FULL_LEVEL = 80  # first 10 ms of a loss is played at full level
_FADE_TO_ZERO = 480  # silence after 60 ms of consecutive loss


class PitchRepeatConcealer:
    """Keeps the tail of the decoded signal and extends it periodically during loss."""

    def __init__(self) -> None:
        # Recent blocks, newest last, trimmed lazily: observing must cost next to nothing because
        # it runs for every packet, while concealment (which assembles the history) is rare.
        self._blocks: deque[Pcm] = deque()
        self._held = 0
        self._cycle: npt.NDArray[np.float64] | None = None
        self._lost = 0  # samples concealed since the last real audio

    def observe(self, pcm: Pcm) -> None:
        n = len(pcm)
        if n == 0:
            return
        self._blocks.append(pcm[-HISTORY:].copy())  # a copy: the caller may scale its array in place
        self._held += min(n, HISTORY)
        while self._held - len(self._blocks[0]) >= HISTORY:
            self._held -= len(self._blocks.popleft())
        self._cycle = None
        self._lost = 0

    def _pitch_cycle(self) -> npt.NDArray[np.float64] | None:
        if self._held < _WINDOW + MAX_PITCH:
            return None
        x = np.concatenate(self._blocks)[-(_WINDOW + MAX_PITCH) :].astype(np.float64)
        target = x[-_WINDOW:]
        if not np.any(target):
            return None
        # Row i is the window lagged by MAX_PITCH - i samples.
        candidates = sliding_window_view(x[:-MIN_PITCH], _WINDOW)
        energy = np.einsum("ij,ij->i", candidates, candidates)
        score = (candidates @ target) / np.sqrt(np.maximum(energy, 1.0))
        lag = MAX_PITCH - int(np.argmax(score))
        return x[-lag:].copy()

    def conceal(self, n_samples: int) -> Pcm:
        n = max(0, n_samples)
        out = np.zeros(n, dtype=np.int16)
        if n == 0:
            return out
        if self._cycle is None:
            self._cycle = self._pitch_cycle()
        start = self._lost
        self._lost += n
        if self._cycle is None or start >= _FADE_TO_ZERO:
            return out
        period = len(self._cycle)
        position = np.arange(start, start + n)
        signal = self._cycle[position % period]
        gain = np.clip(1.0 - (position - _FULL_LEVEL) / (_FADE_TO_ZERO - _FULL_LEVEL), 0.0, 1.0)
        out[:] = np.clip(np.rint(signal * gain), -32768, 32767).astype(np.int16)
        return out
