"""Extended sequence numbers and timestamps across the 16/32-bit wrap."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from srs.rtp.seq import Unwrapper, unwrap16, unwrap32


@pytest.mark.parametrize(
    ("reference", "value", "extended"),
    [
        (100, 101, 101),
        (100, 99, 99),
        (65535, 0, 65536),
        (65536, 65535, 65535),
        (65536 * 3 + 5, 65530, 65536 * 2 + 65530),
        (0, 0x8000, -0x8000),
        (0, 0x7FFF, 0x7FFF),
    ],
)
def test_unwrap16(reference: int, value: int, extended: int) -> None:
    assert unwrap16(reference, value) == extended


@pytest.mark.parametrize(
    ("reference", "value", "extended"),
    [
        (0xFFFFFF60, 0x00000000, 0x100000000),
        (0x100000000, 0xFFFFFF60, 0xFFFFFF60),
        (5, 0xFFFFFFFF, -1),
    ],
)
def test_unwrap32(reference: int, value: int, extended: int) -> None:
    assert unwrap32(reference, value) == extended


def test_unwrapper_rejects_other_widths() -> None:
    with pytest.raises(ValueError):
        Unwrapper(8)


def test_unwrapper_keeps_highest_and_places_stragglers() -> None:
    u = Unwrapper(16)
    assert u.highest is None
    assert [u.extend(v) for v in (65534, 65535, 0, 65533, 1)] == [65534, 65535, 65536, 65533, 65537]
    assert u.highest == 65537


@given(st.integers(0, 2**40), st.lists(st.integers(-300, 300), max_size=200), st.sampled_from([16, 32]))
def test_small_steps_are_recovered_exactly(start: int, steps: list[int], bits: int) -> None:
    u = Unwrapper(bits)
    true = start
    offset = start - start % (1 << bits)
    assert u.extend(true % (1 << bits)) + offset == true
    highest = true
    for step in steps:
        true = max(start, true + step)
        if true - highest < -(1 << (bits - 2)):
            continue
        assert u.extend(true % (1 << bits)) + offset == true
        highest = max(highest, true)
