"""The values a track's receive fast path reads and writes, kept together in one small object.

A worker at a thousand calls hands its tracks about 16,000 runs a second. Kept as attributes of the
track's parts (sequence, placement, renderer, latch), the dozen values a run touches lay in as many
objects of a large heap, and each run cost several microseconds of cache misses. Here they lie
together: the parts keep them in the track's one :class:`FastState` (their attributes of these
names read and write it, see :func:`shared`), and the worker's batch path
(:func:`native_push_runs`) reads and updates it for a whole batch in C.

``FastState`` is the native type (``_trackstate.c``, plain C numbers) where the module is built,
else :class:`PyFastState`, the same fields in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from operator import attrgetter
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class PyFastState:
    """The fields of the native ``FastState``, with its defaults."""

    __slots__ = (
        "audio_pt", "best_drift", "drift_hi", "last_arrival", "last_ts", "max_seq", "offset", "open_entry",
        "open_ext", "open_pos", "open_size", "pending", "rate", "rendered_until", "run_pt", "run_sizes",
        "source", "ssrc", "unique",
    )  # fmt: skip

    def __init__(self) -> None:
        self.ssrc = -1
        self.max_seq = 0
        self.last_ts = 0
        self.unique = 0
        self.offset = 0
        self.rendered_until = 0
        self.audio_pt = -1
        self.run_pt = -1
        """The current audio payload type when its in-order runs are taken whole, else -1."""
        self.rate = 8000.0
        self.drift_hi = 0.0
        self.best_drift = -math.inf
        self.last_arrival = 0.0
        self.source: tuple[str, int] | None = None
        self.pending: list[Any] = []
        self.run_sizes: dict[int, int] = {}
        self.open_entry: Any = None
        """The waiting entry the next in-order run may extend, and where that run must begin for
        it to (sequence number, position) with packets of the same size."""
        self.open_ext = 0
        self.open_pos = 0
        self.open_size = 0


def _native() -> tuple[Any, Any]:
    try:
        from srs.media import _trackstate  # type: ignore[attr-defined]
    except ImportError:
        return PyFastState, None
    return _trackstate.FastState, _trackstate.push_runs


FastState, native_push_runs = _native()
"""The state type tracks use, and the native batch path (None where the module is not built)."""


class Shared(Generic[T]):
    """How the type checker sees an attribute made by :func:`shared` (at run time a property)."""

    def __get__(self, part: object, owner: type | None = None) -> T:
        raise NotImplementedError

    def __set__(self, part: object, value: T) -> None:
        raise NotImplementedError


def shared(name: str) -> Any:
    """An attribute of a track part kept in its ``fast`` state under the same name (so the part's
    code reads as before)."""
    get: Callable[[Any], Any] = attrgetter(f"fast.{name}")

    def put(part: Any, value: Any) -> None:
        setattr(part.fast, name, value)

    return property(get, put, doc=f"``fast.{name}`` (see :mod:`srs.media.fast_state`).")
