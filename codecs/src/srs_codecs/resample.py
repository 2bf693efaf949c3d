"""Stateful low-pass resampler from any codec rate down to 8 kHz.

Each packet must come out with exactly the number of samples its RTP timestamp
span covers, because the mixer places audio by timestamp. Block resamplers
(soxr's stream mode among them) hold back output in large chunks, so this is a
Kaiser-windowed sinc evaluated directly at the output instants, with the input
tail kept between packets. The price is a constant delay of half a kernel
(about 2-5 ms), identical for every stream of a codec.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from srs_codecs.base import OUTPUT_RATE, Pcm

CUTOFF_HZ = 3800.0
TRANSITION_HZ = 800.0
STOPBAND_DB = 60.0


def _kaiser_beta(attenuation_db: float) -> float:
    if attenuation_db > 50:
        return 0.1102 * (attenuation_db - 8.7)
    return float(0.5842 * (attenuation_db - 21) ** 0.4 + 0.07886 * (attenuation_db - 21))


class Resampler:
    """Mono float input at ``in_rate`` → int16 at 8 kHz, continuous across calls."""

    def __init__(self, in_rate: int) -> None:
        if in_rate < OUTPUT_RATE:
            raise ValueError(f"cannot upsample from {in_rate} Hz")
        self.in_rate = in_rate
        self._step = in_rate / OUTPUT_RATE  # input samples per output sample
        common = math.gcd(in_rate, OUTPUT_RATE)
        self._phases = OUTPUT_RATE // common  # distinct fractional positions of the output instants
        self._phase_step = in_rate // common
        taps = (STOPBAND_DB - 8) / (2.285 * 2 * math.pi * TRANSITION_HZ / in_rate)
        self._half = math.ceil(taps / 2) if in_rate != OUTPUT_RATE else 0
        self._beta = _kaiser_beta(STOPBAND_DB)
        self._fc = CUTOFF_HZ / in_rate  # cycles per input sample
        # Input history: index 0 of the buffer is absolute input sample ``self._base``.
        self._buffer: npt.NDArray[np.float64] = np.zeros(2 * self._half + 1)
        self._base = -2 * self._half - 1
        self._n_in = 0
        self._n_out = 0
        self._phase_weights = self._weights(np.arange(self._phases) / self._phases)

    def _weights(self, frac: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Kernel weights for taps -half..+half around each output instant (frac in [0, 1))."""
        offsets = np.arange(-self._half, self._half + 1, dtype=np.float64)
        t = offsets[None, :] - frac[:, None]
        window = np.i0(self._beta * np.sqrt(np.clip(1.0 - (t / (self._half + 1)) ** 2, 0.0, 1.0)))
        kernel = 2 * self._fc * np.sinc(2 * self._fc * t) * window / np.i0(self._beta)
        normalised: npt.NDArray[np.float64] = kernel / kernel.sum(axis=1, keepdims=True)
        return normalised

    def process(self, samples: npt.NDArray[np.floating] | npt.NDArray[np.integer]) -> Pcm:
        x = np.asarray(samples, dtype=np.float64).reshape(-1)
        if self._half == 0:
            self._n_in += len(x)
            self._n_out += len(x)
            return np.clip(np.rint(x), -32768, 32767).astype(np.int16)
        self._n_in += len(x)
        self._buffer = np.concatenate((self._buffer, x))
        # Output k is centred on input instant k*step - half, so it needs input up to k*step.
        last_k = math.floor((self._n_in - 1) / self._step) if self._n_in else -1
        k = np.arange(self._n_out, last_k + 1)
        self._n_out = last_k + 1
        if len(k):
            anchor = (k * self.in_rate) // OUTPUT_RATE - self._half  # exact integer part of the instant
            first = anchor - self._half - self._base  # buffer index of each output's first tap
            windows = np.lib.stride_tricks.sliding_window_view(self._buffer, 2 * self._half + 1)[first]
            if self._phases == 1:
                y = windows @ self._phase_weights[0]
            else:
                weights = self._phase_weights[(k * self._phase_step) % self._phases]
                y = np.einsum("ij,ij->i", windows, weights)
            out: Pcm = np.clip(np.rint(y), -32768, 32767).astype(np.int16)
        else:
            out = np.zeros(0, dtype=np.int16)
        # Keep only the input the next outputs can still reach.
        next_centre = self._n_out * self._step - self._half
        keep_from = math.floor(next_centre) - self._half - self._base
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._base += keep_from
        return out
