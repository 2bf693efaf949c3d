"""ITU-T G.711 µ-law (PCMU) and A-law (PCMA).

Decoding is one table lookup over the whole batch of payloads, which is what
keeps thousands of concurrent G.711 streams on a single core. The encoders
exist so test traffic (pcap and load generators) can be produced from numpy
signals with the same companding rules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from srs_codecs.base import Pcm, ticks_to_output_samples
from srs_codecs.plc import PitchRepeatConcealer

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def _build_ulaw_table() -> Pcm:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _build_alaw_table() -> Pcm:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    segment_base = (mantissa << 4) + 0x108
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, segment_base << np.maximum(exponent - 1, 0))
    # In A-law the sign bit set (after the 0x55 inversion) means a positive sample.
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


ULAW_DECODE_TABLE: Pcm = _build_ulaw_table()
ALAW_DECODE_TABLE: Pcm = _build_alaw_table()
ULAW_DECODE_TABLE.setflags(write=False)
ALAW_DECODE_TABLE.setflags(write=False)


def _all_int16() -> npt.NDArray[np.int32]:
    return np.arange(-32768, 32768, dtype=np.int32)


def _build_ulaw_encode_table() -> npt.NDArray[np.uint8]:
    """Encoder output for every int16 value, indexed by the value viewed as uint16."""
    pcm = _all_int16()
    negative = pcm < 0
    magnitude = np.minimum(np.where(negative, -pcm, pcm), _ULAW_CLIP) + _ULAW_BIAS
    # Segment = position of the highest set bit above bit 7 (the bias guarantees bit 7 is reached).
    exponent = np.clip(np.floor(np.log2(magnitude)).astype(np.int32) - 7, 0, 7)
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    code = (np.where(negative, 0x80, 0) | (exponent << 4) | mantissa) ^ 0xFF
    table = np.empty(65536, dtype=np.uint8)
    table[pcm.astype(np.int16).view(np.uint16)] = code.astype(np.uint8)
    return table


def _build_alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _all_int16() >> 3  # A-law works on 13-bit magnitudes
    negative = pcm < 0
    magnitude = np.where(negative, -pcm - 1, pcm)
    exponent = np.clip(np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 4, 0, 8)
    overflow = exponent >= 8
    exponent = np.minimum(exponent, 7)
    shift = np.where(exponent < 2, 1, exponent)
    mantissa = (magnitude >> shift) & 0x0F
    code = np.where(overflow, 0x7F, (exponent << 4) | mantissa)
    code = code ^ np.where(negative, 0x55, 0xD5)
    table = np.empty(65536, dtype=np.uint8)
    table[_all_int16().astype(np.int16).view(np.uint16)] = code.astype(np.uint8)
    return table


_ULAW_ENCODE_TABLE = _build_ulaw_encode_table()
_ALAW_ENCODE_TABLE = _build_alaw_encode_table()


def _as_uint16_index(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    pcm = np.asarray(samples)
    if pcm.dtype != np.int16:
        pcm = np.clip(np.rint(pcm), -32768, 32767).astype(np.int16)
    return pcm.reshape(-1).view(np.uint16)


def encode_ulaw(samples: npt.ArrayLike) -> bytes:
    """Compand linear int16 samples (other dtypes are rounded and clipped) to µ-law bytes."""
    return _ULAW_ENCODE_TABLE[_as_uint16_index(samples)].tobytes()


def encode_alaw(samples: npt.ArrayLike) -> bytes:
    """Compand linear int16 samples (other dtypes are rounded and clipped) to A-law bytes."""
    return _ALAW_ENCODE_TABLE[_as_uint16_index(samples)].tobytes()


def decode_ulaw(data: bytes) -> Pcm:
    return ULAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8))


def decode_alaw(data: bytes) -> Pcm:
    return ALAW_DECODE_TABLE.take(np.frombuffer(data, dtype=np.uint8))


class G711Decoder:
    """Stateless apart from the concealment history: one byte is one 8 kHz sample."""

    clock_rate = 8000

    def __init__(self, encoding: str, *, concealment: bool = True) -> None:
        name = encoding.upper()
        if name == "PCMU":
            self._table = ULAW_DECODE_TABLE
        elif name == "PCMA":
            self._table = ALAW_DECODE_TABLE
        else:
            raise ValueError(f"not a G.711 encoding: {encoding!r}")
        self.encoding = name
        self._plc = PitchRepeatConcealer() if concealment else None

    def decode(self, payload: bytes) -> Pcm:
        pcm = self._table.take(np.frombuffer(payload, dtype=np.uint8))  # take() beats fancy indexing 2x
        if self._plc is not None:
            self._plc.observe(pcm)
        return pcm

    def decode_many(self, payloads: Sequence[bytes]) -> Pcm:
        return self.decode(b"".join(payloads))

    def samples_for(self, rtp_ts_span: int) -> int:
        return ticks_to_output_samples(rtp_ts_span, self.clock_rate)

    def conceal(self, n_samples: int) -> Pcm:
        if self._plc is None:
            return np.zeros(max(0, n_samples), dtype=np.int16)
        return self._plc.conceal(n_samples)
