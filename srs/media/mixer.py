"""Summing decoded streams into the recording's channels.

Streams are added in int32 so two loud talkers overlapping saturate at the
int16 limits instead of wrapping around into noise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Pcm = NDArray[np.int16]


def _sum(blocks: Sequence[Pcm], length: int) -> Pcm:
    if not blocks:
        return np.zeros(length, dtype=np.int16)
    if len(blocks) == 1:
        return np.asarray(blocks[0], dtype=np.int16)
    total = np.add(blocks[0], blocks[1], dtype=np.int32)
    for block in blocks[2:]:
        total += block
    np.clip(total, -32768, 32767, out=total)  # one pass (minimum then maximum took two)
    return total.astype(np.int16)


def _length(blocks: Sequence[Pcm], length: int | None) -> int:
    if length is None:
        if not blocks:
            raise ValueError("mixing no blocks needs an explicit length")
        length = len(blocks[0])
    for block in blocks:
        if len(block) != length:
            raise ValueError(f"block of {len(block)} samples among blocks of {length}")
    return length


def mix_mono(blocks: Sequence[Pcm], length: int | None = None) -> Pcm:
    """Sum equally long blocks into one channel, clipped to int16."""
    return _sum(blocks, _length(blocks, length))


def mix_stereo(
    blocks: Sequence[Pcm], left: Sequence[int], right: Sequence[int], length: int | None = None
) -> Pcm:
    """Two channel groups (indexes into ``blocks``) as an interleaved (n, 2) int16 array."""
    n = _length(blocks, length)
    out = np.empty((n, 2), dtype=np.int16)
    out[:, 0] = _sum([blocks[i] for i in left], n)
    out[:, 1] = _sum([blocks[i] for i in right], n)
    return out


def mix_separate(blocks: Sequence[Pcm], length: int | None = None) -> list[Pcm]:
    """One output per stream (for per-stream files), checked for equal length."""
    _length(blocks, length)
    return [np.asarray(block, dtype=np.int16) for block in blocks]
