"""L16: linear 16-bit PCM in network byte order (RFC 3551 §4.5.11), any rate, mono or stereo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from srs_codecs.base import OUTPUT_RATE, Pcm, ticks_to_output_samples
from srs_codecs.plc import PitchRepeatConcealer
from srs_codecs.resample import Resampler

L16_RATES = (8000, 16000, 32000, 44100, 48000)


class L16Decoder:
    """Interleaved frames are averaged to mono, then low-pass resampled to 8 kHz."""

    encoding = "L16"

    def __init__(self, clock_rate: int, channels: int = 1) -> None:
        if clock_rate not in L16_RATES:
            raise ValueError(f"L16 at {clock_rate} Hz is not supported")
        if channels not in (1, 2):
            raise ValueError(f"L16 with {channels} channels is not supported")
        self.clock_rate = clock_rate
        self.channels = channels
        self._frame_bytes = 2 * channels
        self._resampler = Resampler(clock_rate) if clock_rate != OUTPUT_RATE else None
        self._plc = PitchRepeatConcealer()

    def decode(self, payload: bytes) -> Pcm:
        # A trailing partial frame is dropped: sloppy senders exist, one byte of audio is not worth a loss.
        usable = len(payload) - len(payload) % self._frame_bytes
        samples = np.frombuffer(payload, dtype=">i2", count=usable // 2)
        if self.channels == 2:
            frames = samples.reshape(-1, 2).astype(np.int32)
            mono = (frames[:, 0] + frames[:, 1]) >> 1
        else:
            mono = samples.astype(np.int32)
        pcm = mono.astype(np.int16) if self._resampler is None else self._resampler.process(mono)
        self._plc.observe(pcm)
        return pcm

    def decode_many(self, payloads: Sequence[bytes]) -> Pcm:
        if all(len(p) % self._frame_bytes == 0 for p in payloads):
            return self.decode(b"".join(payloads))
        blocks = [self.decode(p) for p in payloads]
        return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.int16)

    def samples_for(self, rtp_ts_span: int) -> int:
        return ticks_to_output_samples(rtp_ts_span, self.clock_rate)

    def conceal(self, n_samples: int) -> Pcm:
        pcm = self._plc.conceal(n_samples)
        if self._resampler is not None:
            # Feed the resampler the lost span so its timeline keeps pace with the RTP clock.
            self._resampler.process(np.zeros(n_samples * self.clock_rate // OUTPUT_RATE))
        return pcm
