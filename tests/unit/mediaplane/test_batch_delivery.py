"""Cutting a batch into runs, and journaling a whole batch's runs in one call: the native code
(``Receiver.runs``, ``journal_runs``) against the pure-Python references (:func:`cut_runs_py`,
:func:`journal_runs_py`), on the same arrays, byte for byte. That the runs then place audio as
single pushes do is ``tests/unit/media/test_track_batch.py``."""

from __future__ import annotations

import struct
from array import array
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.mediaplane import journal as jr
from srs.mediaplane.batch_delivery import cut_runs, cut_runs_py, run_arrivals, run_payload
from srs.mediaplane.batch_receiver import BatchReceiver, native_engine, source_key
from srs.mediaplane.journal import HEADER_SIZE, Journal, journal_runs_py, read
from tests.unit.mediaplane.batches import fill_batch

NATIVE = native_engine() is not None
needs_native = pytest.mark.skipif(not NATIVE, reason="srs.mediaplane._batchrecv is not built")
V4 = ("192.0.2.10", 40000)
V4_OTHER = ("192.0.2.11", 40000)
V6 = ("2001:db8::7", 40000, 0, 0)


def _rtp(seq: int, ts: int, ssrc: int = 0x11223344, b1: int = 0, payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, b1, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def test_a_run_carries_its_first_header_and_its_payloads_and_arrivals_stay_in_the_batch() -> None:
    batch = BatchReceiver(16, 256, native=False)
    payloads = [bytes([n]) * 160 for n in range(3)]
    items = [
        (4, _rtp(65535 + n, 4294967136 + 160 * n, payload=payloads[n]), V4, 1_000_000 * n) for n in range(3)
    ]
    items.append((4, _rtp(2, 320)[:12], V4, 5_000_000))  # a bare header: no payload, a run alone
    fill_batch(batch, items)
    runs = cut_runs_py(batch, batch.count)
    assert runs == [
        (4, 0, 3, True, 65535, 4294967136, 0x11223344, 0, 160, source_key(V4)),
        (4, 3, 4, False, 2, 320, 0x11223344, 0, 0, source_key(V4)),
    ]
    assert run_payload(batch, runs[0]) == b"".join(payloads)
    assert run_arrivals(batch, runs[0]) == [0.0, 0.001, 0.002]
    assert run_arrivals(batch, runs[1]) == [0.005]


_KIND = st.sampled_from(
    ["next"] * 10 + ["gap", "ssrc", "marker", "size", "source", "v6", "short", "bare", "v1", "slot"]
)


@needs_native
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_KIND, st.integers(0, 3)), min_size=1, max_size=60), st.integers(0, 0xFFFF))
def test_the_native_cut_is_the_reference_cut(steps: list[tuple[str, int]], first_seq: int) -> None:
    native = BatchReceiver(64, 256, native=True)
    reference = BatchReceiver(64, 256, native=False)
    seq, ts, slot = first_seq, 0xFFFFFF00, 0
    items: list[tuple[int, bytes, Any, int]] = []
    for n, (kind, other_slot) in enumerate(steps):
        seq, ts = seq + (3 if kind == "gap" else 1), ts + 160
        data = _rtp(seq, ts)
        source: Any = V4
        if kind == "ssrc":
            data = _rtp(seq, ts, ssrc=0x5EED)
        elif kind == "marker":
            data = _rtp(seq, ts, b1=0x80)
        elif kind == "size":
            data = _rtp(seq, ts, payload=b"\x55" * 80)
        elif kind == "source":
            source = V4_OTHER
        elif kind == "v6":
            source = V6
        elif kind == "short":
            data = data[:7]
        elif kind == "bare":
            data = data[:12]
        elif kind == "v1":
            data = b"\x40" + data[1:]
        elif kind == "slot":
            slot = other_slot
        items.append((slot, data, source, 1_000_000_000 + 20_000_000 * n))
    for batch in (native, reference):
        fill_batch(batch, items)
    assert cut_runs(native, native.count) == cut_runs_py(reference, reference.count)


def test_an_empty_batch_has_no_runs() -> None:
    assert cut_runs_py(BatchReceiver(4, 256, native=False), 0) == []


@needs_native
def test_the_native_cut_refuses_a_count_past_the_batch() -> None:
    batch = BatchReceiver(4, 256, native=True)
    with pytest.raises(ValueError):
        batch.engine.runs(5)  # type: ignore[attr-defined]


def _journal_batch(lengths: list[int]) -> BatchReceiver:
    batch = BatchReceiver(max(1, len(lengths)), 256, native=False)
    fill_batch(
        batch,
        [
            (0, _rtp(n, 160 * n, payload=bytes([n & 0xFF]) * size), V4, 10**9 + n)
            for n, size in enumerate(lengths)
        ],
    )
    return batch


@needs_native
@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(0, 200), min_size=1, max_size=30),
    st.lists(st.integers(1, 6), min_size=1, max_size=30),
    st.integers(0, 3000),
    st.integers(0, 0xFFFFFFFF),
)
def test_the_native_batch_journal_writes_the_references_bytes(
    sizes: list[int], widths: list[int], room: int, first_seq: int
) -> None:
    """Runs of two slots (the third has no journal) into two journals with little room: the same
    bytes, cursors and left-over runs either way."""
    batch = _journal_batch(sizes)
    runs: list[tuple[Any, ...]] = []
    at, n = 0, 0
    while at < len(sizes):
        end = min(len(sizes), at + widths[n % len(widths)])
        runs.append((n % 3, at, end))
        at, n = end, n + 1
    results = []
    for writer in (jr._native("journal_runs"), journal_runs_py):
        maps = [bytearray(HEADER_SIZE + room) for _ in range(2)]
        cursors = [array("q", [HEADER_SIZE, first_seq, HEADER_SIZE + room]) for _ in range(2)]
        targets = {0: (maps[0], cursors[0], 5004), 1: (maps[1], cursors[1], 5006)}
        left = writer(targets, runs, batch.buffer, batch.offsets, batch.lengths, batch.arrivals)
        results.append((left, [bytes(m) for m in maps], [list(c) for c in cursors]))
    assert results[0] == results[1]


def test_a_batch_journal_reads_back_and_goes_on_with_single_records(tmp_path: Any) -> None:
    """Through a real journal file: the batch writer moves the journal's own cursor, so a record
    appended one at a time afterwards follows in sequence, and a run that did not fit is finished
    by ``append_batch`` (the journal grows)."""
    journal = Journal(tmp_path / "call.journal", capacity=HEADER_SIZE + 1024)
    batch = _journal_batch([160] * 8)
    runs: list[tuple[Any, ...]] = [(0, 0, 8)]
    arrays = (batch.buffer, batch.offsets, batch.lengths, batch.arrivals)
    left = jr.journal_runs({0: journal.target(5004)}, runs, *arrays)
    assert left == [(0, 5)]  # 184 bytes a record: five fit in 1,024
    journal.append_batch(5004, *arrays, 5, 8)
    journal.append(5006, 2.5, b"rtcp")
    journal.close(remove=False)
    contents = read(journal.path)
    assert [r.data for r in contents.records] == [batch.datagram(i) for i in range(8)] + [b"rtcp"]
    assert [r.port for r in contents.records] == [5004] * 8 + [5006]
    assert [round(r.arrival * 1e9) for r in contents.records[:8]] == [10**9 + i for i in range(8)]
