"""The batch receive path must be invisible: datagrams cut into batches, ordered by slot, split into
runs and handed over with ``StreamTrack.push_run`` give the same samples and statistics as the same
datagrams pushed one by one (losses, reordering, duplicates, SSRC and source changes, marker bits,
DTMF, odd sizes, renders between batches, several tracks in one batch)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.media.fast_state import native_push_runs
from srs.media.track import StreamTrack
from srs.mediaplane.batch_delivery import SourceNames, cut_runs_py, deliver_run, push_runs
from srs.mediaplane.batch_receiver import BatchReceiver
from tests.unit.media.fixtures import FORMATS, OTHER, SRC, PartsOnlyTrack, factory, payload_for, rtp
from tests.unit.mediaplane.batches import fill_batch

V6 = ("2001:db8::7", 40000, 0, 0)

_STEP = st.tuples(
    st.sampled_from([1] * 12 + [2, 3, 0, -1, -2, 4000]),  # sequence delta
    st.sampled_from([1] * 10 + [2, 0, -1, 60000]),  # timestamp delta in frames
    st.sampled_from(["audio"] * 12 + ["marker", "dtmf", "cn", "short", "small", "unknown"]),
    st.sampled_from([SRC] * 12 + [OTHER, V6]),
    st.sampled_from([False] * 12 + [True]),  # another SSRC
    st.sampled_from([None] * 8 + [0, 1, 2]),  # which track (slot); None: the previous one
    st.sampled_from([0.0] * 6 + [0.0004, 0.05, 0.3, 3.0]),  # extra delay before this datagram
    st.sampled_from([0] * 6 + [4, 11]),  # plain in-order audio following it (long runs)
)


def _datagram(kind: str, seq: int, ts: int, ssrc: int) -> bytes:
    if kind == "marker":
        return rtp(seq, ts, ssrc=ssrc, marker=True)
    if kind == "dtmf":
        return rtp(seq, ts, bytes([5, 0x0A, 0x03, 0x20]), ssrc=ssrc, pt=101)
    if kind == "cn":
        return rtp(seq, ts, b"\x40", ssrc=ssrc, pt=13)
    if kind == "short":
        return rtp(seq, ts, ssrc=ssrc)[:9]
    if kind == "small":
        return rtp(seq, ts, payload_for(seq, 80), ssrc=ssrc)
    if kind == "unknown":
        return rtp(seq, ts, ssrc=ssrc, pt=55)
    return rtp(seq, ts, ssrc=ssrc)


def _states(tracks: list[StreamTrack]) -> dict[int, object]:
    return {slot: track.fast_state for slot, track in enumerate(tracks)}


def _deliver_each_run(tracks: list[StreamTrack], batch: BatchReceiver, names: SourceNames) -> None:
    for run in cut_runs_py(batch, batch.count):
        deliver_run(tracks[run[0]], batch, run, names)


def _deliver_batch(native: bool) -> Callable[[list[StreamTrack], BatchReceiver, SourceNames], None]:
    """As the worker does: the runs its tracks take whole in one call (the native code, or its
    reference), then the others run by run."""

    def deliver(tracks: list[StreamTrack], batch: BatchReceiver, names: SourceNames) -> None:
        runs = cut_runs_py(batch, batch.count)
        for i in push_runs(native, dict(enumerate(tracks)), _states(tracks), names.names, runs, batch):
            deliver_run(tracks[runs[i][0]], batch, runs[i], names)

    return deliver


_DELIVERIES = {
    "run-by-run": _deliver_each_run,
    "batch-reference": _deliver_batch(False),
    "batch-native": _deliver_batch(True),
}


@pytest.mark.parametrize("delivery", sorted(_DELIVERIES))
@pytest.mark.parametrize("reference", [StreamTrack, PartsOnlyTrack], ids=["single-pushes", "parts-only"])
@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, min_size=1, max_size=150), st.lists(st.integers(1, 40), min_size=1, max_size=20))
def test_batches_place_like_single_pushes(
    reference: type[StreamTrack], delivery: str, steps: list[tuple], cuts: list[int]  # type: ignore[type-arg]
) -> None:
    """Against ``push`` datagram by datagram, and against the parts alone (no inlined fast path
    at all: :class:`PartsOnlyTrack`), so the inlined copies are held to the parts they copy; the
    runs handed over one by one, or a batch's common-case runs in one call (natively or by the
    reference) and the rest one by one, as the worker does."""
    if delivery == "batch-native" and native_push_runs is None:
        pytest.skip("the native module is not built")
    deliver = _DELIVERIES[delivery]
    tracks = [StreamTrack(FORMATS, start=0.0, decoder_factory=factory) for _ in range(3)]
    references = [reference(FORMATS, start=0.0, decoder_factory=factory) for _ in range(3)]
    seqs, stamps = [1000, 20000, 40000], [5000, 90000, 7000]
    now = 0.0
    datagrams: list[tuple[int, bytes, tuple[object, ...], int]] = []
    slot = 0
    for dseq, dts, kind, source, other_ssrc, next_slot, delay, burst in steps:
        slot = slot if next_slot is None else next_slot
        seqs[slot] = (seqs[slot] + dseq) & 0xFFFF
        stamps[slot] = (stamps[slot] + dts * 160) & 0xFFFFFFFF
        now += 0.02 / 3 + delay
        ssrc = 0x5EED if other_ssrc else 0x11223344 + slot
        data = _datagram(kind, seqs[slot], stamps[slot], ssrc)
        datagrams.append((slot, data, source, round(now * 1e9)))
        for _ in range(burst):
            seqs[slot] = (seqs[slot] + 1) & 0xFFFF
            stamps[slot] = (stamps[slot] + 160) & 0xFFFFFFFF
            now += 0.02 / 3
            datagrams.append((slot, rtp(seqs[slot], stamps[slot], ssrc=ssrc), source, round(now * 1e9)))
    batch = BatchReceiver(64, 256, native=False)
    names = SourceNames()
    rendered = 0
    outputs: list[tuple[np.ndarray, np.ndarray]] = []
    at, cut = 0, 0
    while at < len(datagrams):
        size = cuts[cut % len(cuts)]
        cut += 1
        items = datagrams[at : at + size]
        at += size
        for slot, data, source, arrival_ns in items:
            references[slot].push(data, source, arrival_ns * 1e-9)  # type: ignore[arg-type]
        fill_batch(batch, items)
        deliver(tracks, batch, names)
        if cut % 3 == 0:
            end = int(items[-1][3] * 1e-9 * 8000) - 800
            if end > rendered:
                for track, reference in zip(tracks, references, strict=True):
                    outputs.append((track.render(rendered, end), reference.render(rendered, end)))
                rendered = end
    end = int(now * 8000) + 8000
    for track, reference in zip(tracks, references, strict=True):
        outputs.append((track.render(rendered, end), reference.render(rendered, end)))
    for a, b in outputs:
        assert np.array_equal(a, b)
    for track, reference in zip(tracks, references, strict=True):
        assert _fast_values(track) == _fast_values(reference)
        assert track.placement() == reference.placement()
        track.finish()
        reference.finish()
        assert track.stats() == reference.stats()


def _fast_values(track: StreamTrack) -> tuple[object, ...]:
    """What the fast paths keep besides the waiting entries (which the renders above compare)."""
    st = track.fast_state
    return st.ssrc, st.max_seq, st.last_ts, st.unique, st.offset, st.best_drift, st.last_arrival, st.source


def test_in_order_runs_are_taken_whole() -> None:
    """The property above holds trivially if runs are never taken whole; they are."""
    track = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    batch = BatchReceiver(64, 256, native=False)
    items = [(0, rtp(100 + n, 800 + 160 * n), SRC, round(0.02 * n * 1e9)) for n in range(10)]
    for first, last in ((0, 1), (1, 10)):
        fill_batch(batch, items[first:last])
        runs = cut_runs_py(batch, batch.count)
        assert len(runs) == 1
        deliver_run(track, batch, runs[0], SourceNames())
    assert track.pending_packets == 2  # the latching packet, then nine in one entry
    assert track.packets_received == 10
    pcm = track.render(0, 8000)
    assert np.count_nonzero(pcm[: 10 * 160]) > 0 and track.stats().packets_lost == 0


def test_a_run_breaks_where_the_source_or_sequence_does() -> None:
    batch = BatchReceiver(64, 256, native=False)
    items = [
        (0, rtp(1, 160), SRC, 0),
        (0, rtp(2, 320), SRC, 1),
        (0, rtp(3, 480), OTHER, 2),  # another source
        (0, rtp(5, 800), OTHER, 3),  # a lost packet before it
        (1, rtp(6, 960), OTHER, 4),  # another slot
        (0, rtp(6, 960), OTHER, 5),
        (0, rtp(1, 160), V6, 6),  # IPv6 sources never share a run
        (0, rtp(2, 320), V6, 7),
    ]
    fill_batch(batch, items)
    runs = cut_runs_py(batch, batch.count)
    assert [list(range(run[1], run[2])) for run in runs] == [[0, 1], [2], [3], [4], [5], [6], [7]]
    assert [run[0] for run in runs] == [0, 0, 0, 1, 0, 0, 0]


def test_a_run_reaching_past_a_rendered_block_renders_like_its_packets() -> None:
    """A run straddling a block's end, and a packet whose new anchor lands over the run (its
    timestamps jumped): the run's packets past the block's end must wait like single packets, so
    they are written over the re-anchored audio in the next block either way (found by the
    property test above)."""
    whole = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    single = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    payloads = [payload_for(n) for n in range(6)]
    for track in (whole, single):
        track.push(rtp(100, 0, payloads[0]), SRC, 0.0)
    arrivals = [0.001 * n for n in range(1, 5)]
    assert whole.push_run(101, 160, 0x11223344, 0, b"".join(payloads[1:5]), 4, arrivals, SRC)
    for n in range(1, 5):
        single.push(rtp(100 + n, 160 * n, payloads[n]), SRC, arrivals[n - 1])
    blocks = []
    for track in (whole, single):
        # 3 s ahead of its arrival: re-anchored at 0.045 s, sample 360, over the run's packets at
        # 320 and 480; one by one, the one at 480 waits for the next block and is written after it
        track.push(rtp(105, 160 * 5 + 8000 * 3, payloads[5]), SRC, 0.045)
        blocks.append((track.render(0, 400), track.render(400, 8000)))
    assert whole.pending_packets == single.pending_packets == 0
    assert np.array_equal(blocks[0][0], blocks[1][0])
    assert np.array_equal(blocks[0][1], blocks[1][1])
    assert whole.stats() == single.stats()


_ENGINES = [
    pytest.param(False, id="reference"),
    pytest.param(
        True,
        id="native",
        marks=pytest.mark.skipif(native_push_runs is None, reason="the native module is not built"),
    ),
]


@pytest.mark.parametrize("native", _ENGINES)
def test_a_batch_of_in_order_runs_is_taken_whole_in_one_call(native: bool) -> None:
    """The batch property above holds trivially if ``push_runs`` leaves every run to the Python
    path; it takes them, one entry a run, and leaves only the latching first packets."""
    tracks = [StreamTrack(FORMATS, start=0.0, decoder_factory=factory) for _ in range(2)]
    batch = BatchReceiver(64, 256, native=False)
    names = SourceNames()
    for first, last in ((0, 1), (1, 5), (5, 9)):
        items = [
            (slot, rtp(100 * slot + n, 800 + 160 * n, ssrc=0x11223344 + slot), SRC, round(0.02 * n * 1e9))
            for slot in (0, 1)
            for n in range(first, last)
        ]
        fill_batch(batch, items)
        runs = cut_runs_py(batch, batch.count)
        rest = push_runs(native, dict(enumerate(tracks)), _states(tracks), names.names, runs, batch)
        assert rest == ([0, 1] if first == 0 else [])
        for i in rest:
            deliver_run(tracks[runs[i][0]], batch, runs[i], names)
    for track in tracks:
        # the latching packet, then one entry: the second run of four extends the first
        assert track.pending_packets == 2
        ext, _, _, payload = track.fast_state.pending[-1]
        assert len(payload) == 8 * 160 and track.fast_state.run_sizes == {ext: 160}
        assert track.packets_received == 9
        assert track.stats().packets_lost == 0


@pytest.mark.parametrize("native", _ENGINES)
def test_a_run_left_to_the_python_path_keeps_the_later_runs_of_its_slot_behind_it(native: bool) -> None:
    """A duplicate's run (left to :func:`deliver_run`) followed in the same batch by an in-order
    run the track could take whole: the later run must wait its turn, or the duplicate's number
    would be judged against a newer packet than it came after (found by the property above)."""
    batched = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    single = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    seqs = [1001, 1002, 1003, 1004, 1005, 1006, 1006, 1007]
    items = [
        (0, rtp(s, 5160 + 160 * n, payload_for(s, 80 if n == 7 else 160)), SRC, round((n + 1) * 1e9 / 150))
        for n, s in enumerate(seqs)
    ]
    batch = BatchReceiver(64, 256, native=False)
    names = SourceNames()
    rests = []
    for at in range(0, len(items), 2):
        fill_batch(batch, items[at : at + 2])
        runs = cut_runs_py(batch, batch.count)
        rests.append(push_runs(native, {0: batched}, _states([batched]), names.names, runs, batch))
        for i in rests[-1]:
            deliver_run(batched, batch, runs[i], names)
    assert rests == [[0], [], [], [0, 1]]
    for _slot, data, source, arrival_ns in items:
        single.push(data, source, arrival_ns * 1e-9)  # type: ignore[arg-type]
    assert np.array_equal(batched.render(0, 8000), single.render(0, 8000))
    assert batched.stats() == single.stats()


def _push_in_runs(
    native: bool, track: StreamTrack, packets: list[tuple[int, int, float]], names: SourceNames
) -> list[int]:
    """(sequence, timestamp, arrival) datagrams as one batch through ``push_runs``: the runs left
    to the Python path (delivered too)."""
    batch = BatchReceiver(64, 256, native=False)
    fill_batch(batch, [(0, rtp(seq, ts), SRC, round(at * 1e9)) for seq, ts, at in packets])
    runs = cut_runs_py(batch, batch.count)
    rest = push_runs(native, {0: track}, {0: track.fast_state}, names.names, runs, batch)
    for i in rest:
        deliver_run(track, batch, runs[i], names)
    return rest


@pytest.mark.parametrize("native", _ENGINES)
def test_a_run_that_continues_the_last_waiting_run_extends_it(native: bool) -> None:
    """Consecutive in-order runs wait as one entry (a render then reads one entry per stream, not
    one per receive round); a run after a lost packet, after a packet of the Python path or after
    a render that took the entry starts a new one, and nothing rendered is changed afterwards.
    Every way, the samples and statistics are those of the packets pushed one by one."""
    track = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    single = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    names = SourceNames()
    sent: list[tuple[int, int, float]] = []

    def rounds(*seqs: int) -> list[int]:
        packets = [(s, 800 + 160 * (s - 100), 0.02 * (s - 100)) for s in seqs]
        sent.extend(packets)
        return _push_in_runs(native, track, packets, names)

    def entries() -> list[tuple[int, int]]:
        return [(e[0] & 0xFFFF, len(e[3]) // 160) for e in track.fast_state.pending]

    assert rounds(100) == [0]  # latches the source: the Python path
    assert rounds(101, 102, 103) == [] and rounds(104, 105) == [] and rounds(106) == []
    assert entries() == [(100, 1), (101, 6)]
    assert rounds(108, 109) == [0]  # 107 lost: these two take the Python path
    assert rounds(110, 111) == []  # after the Python path's entries: a new one
    assert entries() == [(100, 1), (101, 6), (108, 1), (109, 1), (110, 2)]
    track.push(rtp(107, 800 + 160 * 7), SRC, 0.14)  # late, by the Python path, fills the hole
    sent.append((107, 800 + 160 * 7, 0.14))
    assert rounds(112) == [] and entries()[-2:] == [(107, 1), (112, 1)]
    end = 160 * 13
    first = track.render(0, end)  # takes every entry
    assert rounds(113, 114) == [] and entries() == [(113, 2)]  # after the render: a new entry
    for seq, ts, at in sent:
        single.push(rtp(seq, ts), SRC, at)
    assert np.array_equal(first, single.render(0, end))
    assert np.count_nonzero(first[: 160 * 13]) > 0
    assert np.array_equal(track.render(end, 8000), single.render(end, 8000))
    assert track.stats() == single.stats()


@pytest.mark.parametrize("native", _ENGINES)
def test_an_entry_split_at_a_block_end_is_not_extended_in_place(native: bool) -> None:
    """A render that splits the open entry at the block's end keeps the rest as a new entry: the
    next run starts an entry of its own, and the rendered part's bytes never change."""
    track = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    names = SourceNames()
    _push_in_runs(native, track, [(100, 0, 0.0)], names)
    _push_in_runs(native, track, [(100 + n, 160 * n, 0.02 * n) for n in range(1, 5)], names)
    _push_in_runs(native, track, [(100 + n, 160 * n, 0.02 * n) for n in range(5, 9)], names)
    opened = track.fast_state.pending[-1]
    assert isinstance(opened[3], bytearray) and len(opened[3]) == 8 * 160
    before = bytes(opened[3])
    track.render(0, 160 * 6 + 40)  # ends inside packet 106
    assert [(e[0] & 0xFFFF, len(e[3])) for e in track.fast_state.pending] == [(107, 2 * 160)]
    _push_in_runs(native, track, [(109, 160 * 9, 0.18)], names)
    assert [(e[0] & 0xFFFF, len(e[3])) for e in track.fast_state.pending] == [(107, 320), (109, 160)]
    assert bytes(opened[3]) == before


@pytest.mark.skipif(native_push_runs is None, reason="the native module is not built")
def test_the_native_path_declines_a_run_its_batch_does_not_hold() -> None:
    """The native path copies payloads straight from the receive buffer: a run whose rows lie past
    the arrays, or whose datagrams are not the size the run says, is left to the Python path
    (which reads the batch itself), and nothing is taken from outside the buffer."""
    track = StreamTrack(FORMATS, start=0.0, decoder_factory=factory)
    names = SourceNames()
    _push_in_runs(True, track, [(100, 0, 0.0)], names)  # latched
    batch = BatchReceiver(8, 256, native=False)
    fill_batch(batch, [(0, rtp(101 + n, 160 * (n + 1)), SRC, round(0.02 * (n + 1) * 1e9)) for n in range(2)])
    run = cut_runs_py(batch, batch.count)[0]
    states = {0: track.fast_state}
    arrays = (batch.buffer, batch.offsets, batch.lengths, batch.arrivals)
    past_rows = (*run[:2], 9, *run[3:])
    assert native_push_runs(states, names.names, [past_rows], *arrays) == [0]
    wrong_size = (*run[:8], 200, run[9])
    assert native_push_runs(states, names.names, [wrong_size], *arrays) == [0]
    short = (batch.buffer[:300], batch.offsets, batch.lengths, batch.arrivals)
    assert native_push_runs(states, names.names, [run], *short) == [0]  # the second row lies past it
    assert track.packets_received == 1 and len(track.fast_state.pending) == 1
    assert native_push_runs(states, names.names, [run], *arrays) == []
    assert track.packets_received == 3
    with pytest.raises(TypeError):
        native_push_runs(states, names.names, [run])
