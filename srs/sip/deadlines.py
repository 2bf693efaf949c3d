"""A min-heap of deadlines with lazy deletion, shared by every timer table in srs.

The transaction layers, the 2xx retransmitter and the call table each hold
thousands of items whose earliest deadline moves all the time, and the daemon
asks for the next deadline after every message. Removing or moving an entry
inside a heap is O(n), so nothing is ever removed in place: arming pushes a new
entry and records the item's current deadline, and an entry whose deadline is
no longer the recorded one (moved or disarmed) is stale and is simply skipped
when it reaches the top. Arming stays O(log n), :meth:`earliest` is O(1)
amortised, and a rebuild once stale entries outnumber live ones keeps the heap
within ``2 * live + 64`` entries at amortised O(1) per change.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Generic, TypeVar

T = TypeVar("T")

SLACK = 64
"""Stale entries tolerated beyond twice the live ones before a rebuild."""


class DeadlineHeap(Generic[T]):
    """Items by deadline; an item holds at most one current deadline.

    Items are told apart by identity (``id``), never by equality or hash, and
    are never compared: ties on the deadline are broken by the order entries
    were pushed. An item moved back to a deadline it held before may find its
    older entry live again and keep that entry's place; callers that need a
    stable order among due items sort them (the layers do, by creation rank).
    """

    __slots__ = ("_armed", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._armed: dict[int, float] = {}  # id(item) -> deadline of its newest heap entry
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Entries in the heap, stale ones included (at most ``2 * armed + 64`` after a change)."""
        return len(self._heap)

    @property
    def armed(self) -> int:
        """Items with a current deadline."""
        return len(self._armed)

    def __contains__(self, item: object) -> bool:
        return id(item) in self._armed

    def deadline(self, item: T) -> float | None:
        """The item's current deadline, None if it is not armed."""
        return self._armed.get(id(item))

    def arm(self, item: T, deadline: float | None) -> None:
        """Make ``deadline`` the item's only deadline; None disarms it.

        Arming again at the deadline already held pushes nothing.
        """
        if deadline is None:
            self.disarm(item)
            return
        ident = id(item)
        if self._armed.get(ident) == deadline:
            return
        self._armed[ident] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), item))
        self._maybe_compact()

    def disarm(self, item: T) -> None:
        """Forget the item's deadline (its heap entry goes stale); unknown items are ignored."""
        self._armed.pop(id(item), None)
        self._maybe_compact()

    def earliest(self) -> float | None:
        """The earliest current deadline, dropping the stale entries on top."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def pop_due(self, now: float) -> list[T]:
        """Disarm and return every item whose deadline is at or before ``now``.

        In deadline order (ties in push order, see the class doc), each item
        once. Items not due are not looked at.
        """
        heap = self._heap
        due: list[T] = []
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            if self._live(entry):
                item = entry[2]
                due.append(item)
                del self._armed[id(item)]
        return due

    def _live(self, entry: tuple[float, int, T]) -> bool:
        return self._armed.get(id(entry[2])) == entry[0]

    def _maybe_compact(self) -> None:
        if len(self._heap) > 2 * len(self._armed) + SLACK:
            self._compact()

    def _compact(self) -> None:
        """Rebuild from live entries only, one per item (the earliest armed if one was armed twice)."""
        kept: dict[int, tuple[float, int, T]] = {}
        for entry in self._heap:
            if self._live(entry):
                ident = id(entry[2])
                held = kept.get(ident)
                if held is None or entry[1] < held[1]:
                    kept[ident] = entry
        self._heap = list(kept.values())
        heapq.heapify(self._heap)
