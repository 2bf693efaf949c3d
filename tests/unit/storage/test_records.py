from __future__ import annotations

import itertools

import pytest

from srs.storage.errors import InvalidStateTransition, RecordingNotFound
from srs.storage.index import RecordingIndex
from srs.storage.records import NewRecording, State, transition_allowed

S, R, P, A, F = State.STARTING, State.RECORDING, State.STOPPING, State.AVAILABLE, State.FAILED
# Every (current, requested) pair; True = accepted. Same state is an accepted no-op.
# fmt: off
ALLOWED: dict[tuple[State, State], bool] = {
    (S, S): True,  (S, R): True,  (S, P): True,  (S, A): True,  (S, F): True,
    (R, S): False, (R, R): True,  (R, P): True,  (R, A): True,  (R, F): True,
    (P, S): False, (P, R): False, (P, P): True,  (P, A): True,  (P, F): True,
    (A, S): False, (A, R): False, (A, P): False, (A, A): True,  (A, F): False,
    (F, S): False, (F, R): False, (F, P): False, (F, A): False, (F, F): True,
}
# fmt: on
PATH_TO: dict[State, list[State]] = {S: [], R: [R], P: [R, P], A: [R, P, A], F: [F]}


def test_table_covers_every_pair() -> None:
    assert set(ALLOWED) == set(itertools.product(State, State))


@pytest.mark.parametrize(("current", "requested"), list(itertools.product(State, State)))
def test_transition(index: RecordingIndex, current: State, requested: State) -> None:
    assert transition_allowed(current, requested) is ALLOWED[(current, requested)]
    rid = index.create_recording(NewRecording(started_at=1.0))
    for step in PATH_TO[current]:
        index.advance_state(rid, step)
    if ALLOWED[(current, requested)]:
        index.advance_state(rid, requested)
        assert index.get(rid)["state"] == requested.value  # type: ignore[index]
    else:
        with pytest.raises(InvalidStateTransition) as caught:
            index.advance_state(rid, requested)
        assert (caught.value.current, caught.value.requested) == (current.value, requested.value)
        assert index.get(rid)["state"] == current.value  # type: ignore[index]


def test_unknown_state_name_is_refused(index: RecordingIndex) -> None:
    rid = index.create_recording(NewRecording(started_at=1.0))
    with pytest.raises(ValueError):
        index.advance_state(rid, "paused")


def test_unknown_recording(index: RecordingIndex) -> None:
    with pytest.raises(RecordingNotFound):
        index.advance_state("01HZX3Y5Q8K2M4N6P8R0S2T4V6", State.RECORDING)
