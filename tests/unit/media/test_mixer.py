"""Mixing sums in int32 and saturates at the int16 limits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from srs.media.mixer import mix_mono, mix_separate, mix_stereo

i16 = np.int16


def test_mono_sum_clips_instead_of_wrapping() -> None:
    a = np.array([30000, -30000, 100, 32767, -32768], dtype=i16)
    b = np.array([30000, -30000, -50, 1, -1], dtype=i16)
    np.testing.assert_array_equal(mix_mono([a, b]), np.array([32767, -32768, 50, 32767, -32768], dtype=i16))


def test_single_block_and_empty_mix() -> None:
    a = np.arange(5, dtype=i16)
    np.testing.assert_array_equal(mix_mono([a]), a)
    np.testing.assert_array_equal(mix_mono([], 3), np.zeros(3, dtype=i16))
    with pytest.raises(ValueError):
        mix_mono([])


def test_three_streams() -> None:
    blocks = [np.full(4, v, dtype=i16) for v in (20000, 20000, -30000)]
    np.testing.assert_array_equal(mix_mono(blocks), np.full(4, 10000, dtype=i16))


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="samples"):
        mix_mono([np.zeros(3, dtype=i16), np.zeros(4, dtype=i16)])


def test_stereo_groups() -> None:
    a, b, c = (np.full(3, v, dtype=i16) for v in (1, 2, 30000))
    out = mix_stereo([a, b, c], left=[0], right=[1, 2])
    assert out.shape == (3, 2) and out.dtype == i16
    np.testing.assert_array_equal(out[:, 0], a)
    np.testing.assert_array_equal(out[:, 1], np.full(3, 30002, dtype=i16))
    np.testing.assert_array_equal(mix_stereo([a], left=[], right=[0])[:, 0], np.zeros(3, dtype=i16))


def test_separate_outputs() -> None:
    a, b = np.ones(2, dtype=i16), np.zeros(2, dtype=i16)
    out = mix_separate([a, b])
    assert len(out) == 2
    np.testing.assert_array_equal(out[0], a)


@given(st.lists(arrays(i16, 16), min_size=1, max_size=5))
def test_mix_equals_clipped_exact_sum(blocks: list[np.ndarray]) -> None:
    exact = np.sum([b.astype(np.int64) for b in blocks], axis=0)
    np.testing.assert_array_equal(mix_mono(blocks), np.clip(exact, -32768, 32767).astype(i16))
