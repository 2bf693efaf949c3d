"""Errors of the codec layer.

srs_codecs stands alone (numpy only), so it cannot reuse the errors of the
application; the caller maps these onto its own counters and concealment.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class CodecError(Exception):
    """Base of every error srs_codecs raises on purpose."""


class UnsupportedCodec(CodecError, ValueError):
    """No decoder exists (or its library is missing) for an encoding/rate/channel combination."""


class DecodeError(CodecError):
    """A payload could not be decoded; the stream stays usable and the caller conceals the gap.

    From ``decode_many``, ``index`` is the position of the bad payload and
    ``decoded`` the audio of the payloads before it, so a batch is not lost
    for one bad packet: keep ``decoded``, conceal one packet, go on after ``index``.
    """

    def __init__(
        self, message: str, *, index: int | None = None, decoded: npt.NDArray[np.int16] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.index = index
        self.decoded = decoded if decoded is not None else np.zeros(0, dtype=np.int16)
