"""Codecs decoded by FFmpeg through PyAV: G.722, G.729(A/B), Opus, AMR, AMR-WB.

Imported only when PyAV is installed. One decoder object per RTP stream, since
these codecs carry state from one frame to the next.
"""

from __future__ import annotations

from collections.abc import Sequence

import av
import numpy as np
import numpy.typing as npt

from srs_codecs import amr
from srs_codecs.base import OUTPUT_RATE, Pcm, concat, ticks_to_output_samples
from srs_codecs.errors import DecodeError, UnsupportedCodec
from srs_codecs.plc import PitchRepeatConcealer
from srs_codecs.resample import Resampler

Samples = npt.NDArray[np.float64]


def available(name: str) -> bool:
    return name in av.codecs_available


def first_available(*names: str) -> str | None:
    return next((name for name in names if available(name)), None)


class _FfmpegStream:
    """An FFmpeg decoder context that yields mono float samples at its native rate.

    An empty packet means end-of-stream to FFmpeg and would kill the context, so
    it is never sent; a context that ends anyway is reopened.
    """

    def __init__(self, codec: str, rate: int) -> None:
        self.codec = codec
        self.rate = rate
        self._ctx = self._open()

    def _open(self) -> av.AudioCodecContext:
        ctx = av.CodecContext.create(self.codec, "r")
        if not isinstance(ctx, av.AudioCodecContext):
            raise UnsupportedCodec(f"{self.codec} is not an audio decoder")
        ctx.sample_rate = self.rate
        ctx.layout = "mono"
        return ctx

    def decode(self, data: bytes) -> Samples:
        if not data:
            return np.zeros(0)
        try:
            frames = self._ctx.decode(av.Packet(data))
        except EOFError:
            self._ctx = self._open()
            raise DecodeError(f"{self.codec} decoder ended; reopened") from None
        except (av.FFmpegError, ValueError) as exc:
            raise DecodeError(f"{self.codec}: {exc}") from exc
        blocks = [self._mono(frame) for frame in frames]
        if not blocks:
            return np.zeros(0)
        return np.concatenate(blocks) if len(blocks) > 1 else blocks[0]

    @staticmethod
    def _mono(frame: av.AudioFrame) -> Samples:
        data = frame.to_ndarray()
        channels = frame.layout.nb_channels
        if frame.format.is_planar:
            samples = data.mean(axis=0) if channels > 1 else data[0]
        else:
            samples = data.reshape(-1, channels).mean(axis=1)
        samples64: Samples = samples.astype(np.float64)
        if frame.format.name.startswith(("flt", "dbl")):
            samples64 *= 32768.0
        elif frame.format.name.startswith("s32"):
            samples64 /= 65536.0
        return samples64


class _PyAvDecoder:
    """Shared plumbing: FFmpeg context → resampler → 8 kHz int16, plus concealment history."""

    def __init__(self, encoding: str, clock_rate: int, codec: str, decode_rate: int) -> None:
        self.encoding = encoding
        self.clock_rate = clock_rate
        self.codec = codec
        self._stream = _FfmpegStream(codec, decode_rate)
        self._resampler = Resampler(decode_rate)
        self._plc = PitchRepeatConcealer()

    def _audio(self, payload: bytes) -> Samples:
        return self._stream.decode(payload)

    def decode(self, payload: bytes) -> Pcm:
        pcm = self._resampler.process(self._audio(payload))
        self._plc.observe(pcm)
        return pcm

    def decode_many(self, payloads: Sequence[bytes]) -> Pcm:
        blocks: list[Pcm] = []
        for index, payload in enumerate(payloads):
            try:
                blocks.append(self.decode(payload))
            except DecodeError as exc:
                raise DecodeError(exc.message, index=index, decoded=concat(blocks)) from exc
        return concat(blocks)

    def samples_for(self, rtp_ts_span: int) -> int:
        return ticks_to_output_samples(rtp_ts_span, self.clock_rate)

    def conceal(self, n_samples: int) -> Pcm:
        # The resampler is fed silence for the gap so its history does not splice across the loss.
        self._resampler.process(np.zeros(max(0, n_samples) * self._stream.rate // OUTPUT_RATE))
        return self._plc.conceal(n_samples)


class G722Decoder(_PyAvDecoder):
    """G.722: 16 kHz audio, but an 8000 Hz RTP clock (RFC 3551 §4.5.2) — one octet per 8 kHz tick."""

    def __init__(self) -> None:
        super().__init__("G722", 8000, "g722", 16000)


class G729Decoder(_PyAvDecoder):
    """G.729 / Annex A / Annex B: 10-octet frames, optionally ending with a 2-octet SID (Annex B).

    FFmpeg's decoder has no comfort-noise generator, so a SID frame becomes
    10 ms of silence; the gaps of discontinuous transmission are the caller's.
    """

    FRAME = 10
    SID = 2
    SAMPLES_PER_FRAME = 80

    def __init__(self, encoding: str = "G729") -> None:
        super().__init__(encoding, 8000, "g729", 8000)

    def _audio(self, payload: bytes) -> Samples:
        speech_frames, rest = divmod(len(payload), self.FRAME)
        if rest not in (0, self.SID):
            raise DecodeError(f"G.729 payload of {len(payload)} octets is not 10*n or 10*n+2")
        speech = self._stream.decode(payload[: speech_frames * self.FRAME])
        if len(speech) != speech_frames * self.SAMPLES_PER_FRAME:
            raise DecodeError(f"G.729 decoder gave {len(speech)} samples for {speech_frames} frames")
        if rest:
            return np.concatenate((speech, np.zeros(self.SAMPLES_PER_FRAME)))
        return speech


class OpusDecoder(_PyAvDecoder):
    """Opus: 48 kHz RTP clock whatever the audio bandwidth (RFC 7587); stereo is mixed down by the decoder."""

    def __init__(self) -> None:
        super().__init__("opus", 48000, first_available("opus", "libopus") or "opus", 48000)


class AmrDecoder(_PyAvDecoder):
    """AMR (8000) and AMR-WB (16000) in either RFC 4867 payload mode.

    If the packets do not parse in the mode the SDP announced, the other mode is
    tried and kept when it works: SBCs that mislabel octet-align exist.
    """

    def __init__(self, *, wideband: bool, octet_aligned: bool, crc: bool = False) -> None:
        if wideband:
            codec = first_available("libopencore_amrwb", "amrwb")
            super().__init__("AMR-WB", 16000, codec or "amrwb", 16000)
        else:
            codec = first_available("libopencore_amrnb", "amrnb")
            super().__init__("AMR", 8000, codec or "amrnb", 8000)
        self.wideband = wideband
        self.octet_aligned = octet_aligned
        self.crc = crc
        self._frame_samples = 320 if wideband else 160

    def _parse(self, payload: bytes, octet_aligned: bool) -> list[amr.AmrFrame]:
        return amr.parse_payload(payload, wideband=self.wideband, octet_aligned=octet_aligned, crc=self.crc)

    def _frames(self, payload: bytes) -> list[amr.AmrFrame]:
        try:
            return self._parse(payload, self.octet_aligned)
        except DecodeError as first_error:
            try:
                frames = self._parse(payload, not self.octet_aligned)
            except DecodeError:
                raise first_error from None
            self.octet_aligned = not self.octet_aligned
            return frames

    def _audio(self, payload: bytes) -> Samples:
        blocks = []
        for frame in self._frames(payload):
            try:
                audio = self._stream.decode(frame.storage())
            except DecodeError:
                if frame.is_speech(self.wideband):
                    raise
                audio = np.zeros(0)  # decoders without DTX support reject SID / NO_DATA
            if len(audio) != self._frame_samples:  # keep the timeline: exactly one frame of audio per frame
                audio = np.pad(audio[: self._frame_samples], (0, max(0, self._frame_samples - len(audio))))
            blocks.append(audio)
        return np.concatenate(blocks)
