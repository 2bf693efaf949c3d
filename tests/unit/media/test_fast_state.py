"""The fast-path state a track's parts share: the native type and the pure-Python class hold the
same fields with the same defaults, and a part's shared attributes read and write it."""

from __future__ import annotations

import math

import pytest

from srs.media import fast_state
from srs.media.fast_state import PyFastState
from srs.media.latch import SourceLatch
from srs.media.placement import Placement
from srs.media.sequence import SequenceTracker
from srs.media.track import StreamTrack
from tests.unit.media.fixtures import FORMATS, SRC, factory, rtp

try:
    from srs.media import _trackstate  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - the module is optional
    _trackstate = None

_TYPES = [
    pytest.param(PyFastState, id="python"),
    pytest.param(
        getattr(_trackstate, "FastState", None),
        id="native",
        marks=pytest.mark.skipif(_trackstate is None, reason="the native module is not built"),
    ),
]

_DEFAULTS: dict[str, object] = {
    "ssrc": -1, "max_seq": 0, "last_ts": 0, "unique": 0, "offset": 0, "rendered_until": 0,
    "audio_pt": -1, "run_pt": -1, "rate": 8000.0, "drift_hi": 0.0, "best_drift": -math.inf,
    "last_arrival": 0.0, "source": None, "pending": [], "run_sizes": {}, "open_entry": None,
    "open_ext": 0, "open_pos": 0, "open_size": 0,
}  # fmt: skip


@pytest.mark.parametrize("kind", _TYPES)
def test_a_new_state_holds_the_defaults(kind: type) -> None:
    state = kind()
    assert {name: getattr(state, name) for name in _DEFAULTS} == _DEFAULTS
    assert sorted(PyFastState.__slots__) == sorted(_DEFAULTS)


@pytest.mark.parametrize("kind", _TYPES)
def test_fields_keep_what_is_stored(kind: type) -> None:
    state = kind()
    values: dict[str, object] = {
        "ssrc": 0xFFFFFFFF, "max_seq": 0x10000 * 40 + 7, "last_ts": -5, "unique": 3, "offset": -(2**40),
        "rendered_until": 2**45, "audio_pt": 8, "run_pt": 8, "rate": 16000.0, "drift_hi": 1.5,
        "best_drift": -2.25, "last_arrival": 1234.5, "source": ("192.0.2.1", 4000),
        "pending": [(1, 2, 0, b"x")], "run_sizes": {1: 160}, "open_entry": (1, 2, 0, b"x"),
        "open_ext": 2**33, "open_pos": -7, "open_size": 160,
    }  # fmt: skip
    for name, value in values.items():
        setattr(state, name, value)
    assert {name: getattr(state, name) for name in values} == values
    state.source = None
    assert state.source is None


def test_each_instance_has_its_own_lists() -> None:
    a, b = fast_state.FastState(), fast_state.FastState()
    a.pending.append((1, 0, 0, b""))
    a.run_sizes[1] = 160
    assert b.pending == [] and b.run_sizes == {}


def test_the_parts_of_a_track_share_its_state() -> None:
    """A value written through one part (or the track's fast path) is the value every part reads."""
    track = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    track.push(rtp(100, 800), SRC, 0.01)
    track.push(rtp(101, 960), SRC, 0.03)
    state = track.fast_state
    assert (state.ssrc, state.max_seq & 0xFFFF, state.unique, state.source) == (0x11223344, 101, 2, SRC)
    assert state.last_arrival == 0.03 and len(state.pending) == 2
    assert state.run_pt == 0 == state.audio_pt  # PCMU: runs are taken whole


def test_a_part_made_alone_has_a_state_of_its_own() -> None:
    seq, latch = SequenceTracker(), SourceLatch(None, 1.0)
    placement = Placement(
        start=0.0, sample_rate=8000, clock=8000, jump_threshold=2.0, late_reanchor_after=1.0,
        resync_threshold=0.25, resync_every=2.0,
    )  # fmt: skip
    seq.max_seq = 7
    placement.offset = 5
    assert seq.fast is not placement.fast is not latch.fast
    assert (seq.fast.max_seq, placement.fast.offset, latch.source) == (7, 5, None)
