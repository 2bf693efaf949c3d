"""Shared test signal and fixture file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

TONE_HZ = 1000.0
TONE_AMPLITUDE = 8000.0
TONE_SECONDS = 1.0
DATA = Path(__file__).parent / "data"


def reference_tone(rate: int, seconds: float = TONE_SECONDS) -> npt.NDArray[np.int16]:
    t = np.arange(int(rate * seconds)) / rate
    return np.rint(TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def write_payloads(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(len(p).to_bytes(2, "big") + p for p in payloads))


def read_payloads(name: str) -> list[bytes]:
    data = (DATA / name).read_bytes()
    payloads = []
    pos = 0
    while pos < len(data):
        size = int.from_bytes(data[pos : pos + 2], "big")
        payloads.append(data[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return payloads


def tone_quality(
    pcm: npt.NDArray[np.int16], rate: int = 8000, skip_seconds: float = 0.1
) -> tuple[float, float]:
    """(dominant frequency in Hz, SNR in dB against the best-fitting 1 kHz sinusoid).

    Fitting the sinusoid rather than comparing sample by sample makes the
    measure independent of each codec's delay.
    """
    y = pcm[int(rate * skip_seconds) :].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    peak_hz = float(np.fft.rfftfreq(len(y), 1 / rate)[int(np.argmax(spectrum))])
    t = np.arange(len(y)) / rate
    basis = np.stack([np.sin(2 * np.pi * TONE_HZ * t), np.cos(2 * np.pi * TONE_HZ * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, y, rcond=None)
    fitted = basis @ coef
    noise = y - fitted
    snr = 10 * np.log10(np.sum(fitted**2) / max(float(np.sum(noise**2)), 1e-9))
    return peak_hz, float(snr)
