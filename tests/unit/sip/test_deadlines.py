"""DeadlineHeap: the lazy-deletion deadline heap behind every timer table."""

from __future__ import annotations

from srs.sip.deadlines import SLACK, DeadlineHeap


class Item:
    """Told apart by identity only; equal and unorderable on purpose."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Item)

    __hash__ = None  # type: ignore[assignment]


def names(items: list[Item]) -> list[str]:
    return [i.name for i in items]


def test_empty_heap() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    assert heap.earliest() is None
    assert heap.pop_due(1e9) == []
    assert len(heap) == 0 and heap.armed == 0


def test_due_items_come_in_deadline_order_ties_in_arming_order() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a, b, c, d = Item("a"), Item("b"), Item("c"), Item("d")
    heap.arm(c, 3.0)
    heap.arm(a, 1.0)
    heap.arm(d, 1.0)
    heap.arm(b, 2.0)
    assert heap.earliest() == 1.0
    assert names(heap.pop_due(2.0)) == ["a", "d", "b"]
    assert heap.earliest() == 3.0
    assert c in heap and a not in heap  # popping disarms
    assert names(heap.pop_due(2.9)) == []
    assert names(heap.pop_due(3.0)) == ["c"]
    assert heap.earliest() is None and heap.armed == 0


def test_rearming_moves_the_item() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a, b = Item("a"), Item("b")
    heap.arm(a, 1.0)
    heap.arm(b, 2.0)
    heap.arm(a, 5.0)  # later: its 1.0 entry goes stale
    assert heap.deadline(a) == 5.0
    assert heap.earliest() == 2.0
    assert names(heap.pop_due(4.0)) == ["b"]
    heap.arm(a, 0.5)  # earlier again
    assert heap.earliest() == 0.5
    assert names(heap.pop_due(10.0)) == ["a"]  # once, though three entries were pushed
    assert heap.pop_due(10.0) == []


def test_arming_at_the_same_deadline_pushes_nothing() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a = Item("a")
    heap.arm(a, 1.0)
    heap.arm(a, 1.0)
    assert len(heap) == 1


def test_disarm_and_arm_none() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a, b, c = Item("a"), Item("b"), Item("c")
    heap.arm(a, 1.0)
    heap.arm(b, 2.0)
    heap.arm(c, 3.0)
    heap.disarm(a)
    heap.arm(b, None)
    heap.disarm(Item("never armed"))
    assert a not in heap and b not in heap and heap.deadline(a) is None
    assert heap.earliest() == 3.0
    assert names(heap.pop_due(10.0)) == ["c"]


def test_stale_entries_are_skipped_and_dropped_from_the_top() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    items = [Item(str(n)) for n in range(10)]
    for n, item in enumerate(items):
        heap.arm(item, float(n))
    for item in items[:9]:
        heap.disarm(item)
    assert len(heap) == 10  # lazy: nothing removed yet
    assert heap.earliest() == 9.0
    assert len(heap) == 1  # the stale entries above the live one are gone


def test_disarmed_then_rearmed_at_the_same_deadline_is_due_once() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    a = Item("a")
    heap.arm(a, 1.0)
    heap.disarm(a)
    heap.arm(a, 1.0)
    assert names(heap.pop_due(1.0)) == ["a"]
    assert heap.earliest() is None and len(heap) == 0


def test_compaction_bounds_stale_entries() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    live = [Item(f"live{n}") for n in range(100)]
    for n, item in enumerate(live):
        heap.arm(item, 1000.0 + n)
    for step in range(5000):  # keep moving the live items: every move leaves a stale entry behind
        item = live[step % 100]
        heap.arm(item, float(step))
        assert len(heap) <= 2 * heap.armed + SLACK
    churn = [Item(f"c{n}") for n in range(1000)]
    for n, item in enumerate(churn):
        heap.arm(item, 10_000.0 - n)  # earlier than nothing live: never reaches the top
        heap.disarm(item)
        assert len(heap) <= 2 * heap.armed + SLACK
    assert heap.armed == 100
    due = heap.pop_due(1e9)
    assert sorted(names(due)) == sorted(names(live))
    assert heap.pop_due(1e9) == [] and heap.earliest() is None and len(heap) == 0


def test_compaction_keeps_order_and_deadlines() -> None:
    heap: DeadlineHeap[Item] = DeadlineHeap()
    items = [Item(str(n)) for n in range(50)]
    for n, item in enumerate(items):
        heap.arm(item, float(n % 5))
    for _ in range(10):  # many stale pushes force rebuilds
        for n, item in enumerate(items):
            heap.arm(item, 100.0)
            heap.arm(item, float(n % 5))
    assert len(heap) <= 2 * heap.armed + SLACK
    due = heap.pop_due(10.0)
    # deadline order, each item once (among equal deadlines an item moved back to a deadline
    # it held before may keep the place of its older entry: callers needing an order sort)
    assert [int(i.name) % 5 for i in due] == sorted(int(i.name) % 5 for i in due)
    assert sorted(names(due)) == sorted(names(items))
