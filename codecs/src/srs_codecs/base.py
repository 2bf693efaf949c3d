"""What every decoder offers the media layer.

Every decoder hands back 8 kHz mono int16 blocks, whatever the wire format, so
the mixer never has to know which codec a stream used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

OUTPUT_RATE = 8000
"""Sample rate of every array a decoder returns."""

Pcm = npt.NDArray[np.int16]


@runtime_checkable
class Decoder(Protocol):
    """One decoder per RTP stream: stateful codecs keep their history between packets."""

    @property
    def encoding(self) -> str:
        """Canonical encoding name as in an SDP rtpmap (e.g. ``PCMU``)."""
        ...

    @property
    def clock_rate(self) -> int:
        """RTP timestamp clock of this payload format (not necessarily the audio rate)."""
        ...

    def decode(self, payload: bytes) -> Pcm:
        """Decode one RTP payload into 8 kHz mono int16."""
        ...

    def decode_many(self, payloads: Sequence[bytes]) -> Pcm:
        """Decode consecutive payloads of one stream and concatenate the audio.

        Raises DecodeError carrying ``index`` and the audio ``decoded`` before the bad payload.
        """
        ...

    def samples_for(self, rtp_ts_span: int) -> int:
        """Number of 8 kHz output samples covering ``rtp_ts_span`` RTP clock ticks."""
        ...

    def conceal(self, n_samples: int) -> Pcm:
        """Audio to play for ``n_samples`` lost 8 kHz samples (and to keep codec state sane)."""
        ...


def silence(n_samples: int) -> Pcm:
    return np.zeros(max(0, n_samples), dtype=np.int16)


def ticks_to_output_samples(rtp_ts_span: int, clock_rate: int) -> int:
    """Convert RTP clock ticks to output samples, rounding to the nearest sample."""
    if clock_rate == OUTPUT_RATE:
        return rtp_ts_span
    return (rtp_ts_span * OUTPUT_RATE + clock_rate // 2) // clock_rate


def concat(blocks: Sequence[Pcm]) -> Pcm:
    if not blocks:
        return silence(0)
    if len(blocks) == 1:
        return blocks[0]
    joined: Pcm = np.concatenate(blocks)
    return joined
