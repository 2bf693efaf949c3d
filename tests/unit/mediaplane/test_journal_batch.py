"""The crash journal's batch writer: a run of received datagrams written in one call straight from
the receive buffer. The native writer and the pure-Python reference write the same bytes; what
they write reads back (also cut short by a kill); growth, compaction and a full disk behave as
with one record at a time."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import shutil
import subprocess
import sysconfig
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.mediaplane import journal as jr
from srs.mediaplane.journal import HEADER_SIZE, RECORD_SIZE, Journal, parse, read, record_size

_STRIDE = 2048


def _native() -> Any:
    try:
        from srs.mediaplane import _batchrecv  # type: ignore[attr-defined]
    except ImportError:
        return None
    return _batchrecv


NATIVE = _native()
needs_native = pytest.mark.skipif(NATIVE is None, reason="srs.mediaplane._batchrecv is not built")


class _Batch:
    """A receiver's arrays (as BatchReceiver lays them out: one row of ``_STRIDE`` per datagram)."""

    def __init__(self, datagrams: list[bytes], arrivals: list[int]) -> None:
        n = max(1, len(datagrams))
        self.buffer = np.zeros(n * _STRIDE, dtype=np.uint8)
        self.offsets = np.zeros(n, dtype=np.int64)
        self.lengths = np.zeros(n, dtype=np.int32)
        self.arrivals = np.zeros(n, dtype=np.int64)
        for i, (data, arrival) in enumerate(zip(datagrams, arrivals, strict=True)):
            at = i * _STRIDE
            self.buffer[at : at + len(data)] = np.frombuffer(data, dtype=np.uint8)
            self.offsets[i], self.lengths[i], self.arrivals[i] = at, len(data), arrival

    def arrays(self) -> tuple[Any, Any, Any, Any]:
        return self.buffer, self.offsets, self.lengths, self.arrivals


def _datagram(n: int, size: int = 172) -> bytes:
    return bytes((n * 7 + i) & 0xFF for i in range(size))


def _batch(count: int, *, size: int = 172, start_ns: int = 100_000_000_000) -> _Batch:
    arrivals = [start_ns + n * 20_000_000 for n in range(count)]
    return _Batch([_datagram(n, size) for n in range(count)], arrivals)


def test_the_native_writer_is_the_one_in_use_where_built() -> None:
    if NATIVE is None:
        assert jr.append_records is jr.append_records_py
    else:
        assert jr.append_records is NATIVE.append_records
        for data in (b"", b"a", b"12345678", bytes(range(256)) * 3):
            assert NATIVE.crc32(data) == zlib.crc32(data)


@needs_native
@settings(max_examples=200, deadline=None)
@given(
    datagrams=st.lists(st.binary(min_size=0, max_size=300), min_size=0, max_size=12),
    arrivals=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), min_size=12, max_size=12),
    seq=st.integers(min_value=0, max_value=0xFFFFFFFF),
    port=st.integers(min_value=0, max_value=0xFFFF),
    tail=st.integers(min_value=0, max_value=64),
    room=st.integers(min_value=0, max_value=4000),
    data=st.data(),
)
def test_native_and_reference_write_the_same_bytes(
    datagrams: list[bytes], arrivals: list[int], seq: int, port: int, tail: int, room: int, data: Any
) -> None:
    """Any lengths (padding included), any arrivals and sequence numbers (wrapping), any window of
    the batch, and a capacity that cuts the batch anywhere: same file bytes, same answer."""
    batch = _Batch(datagrams, arrivals[: len(datagrams)])
    start = data.draw(st.integers(min_value=0, max_value=len(datagrams)))
    end = data.draw(st.integers(min_value=start, max_value=len(datagrams)))
    size = tail + room
    out_native = bytearray(b"\xaa" * (size + 16))  # stale bytes: the padding must be written too
    out_ref = bytearray(out_native)
    got_native = NATIVE.append_records(out_native, tail, size, seq, port, *batch.arrays(), start, end)
    got_ref = jr.append_records_py(out_ref, tail, size, seq, port, *batch.arrays(), start, end)
    assert got_native == got_ref
    assert out_native == out_ref
    new_tail, new_seq, stop = got_ref
    assert start <= stop <= end and new_tail <= size
    assert new_seq == (seq + stop - start) & 0xFFFFFFFF
    assert new_tail == tail + sum(record_size(len(d)) for d in datagrams[start:stop])
    if stop < end:  # it stopped because the next one did not fit
        assert new_tail + record_size(len(datagrams[stop])) > size


@needs_native
def test_the_native_writer_rejects_what_lies_outside_its_arrays() -> None:
    batch = _batch(2)
    out = bytearray(4096)
    with pytest.raises(ValueError):
        NATIVE.append_records(out, 0, 4096, 1, 20000, *batch.arrays(), 0, 3)  # past the arrays
    batch.offsets[1] = len(batch.buffer) - 10  # bytes past the receive buffer
    with pytest.raises(ValueError):
        NATIVE.append_records(out, 0, 4096, 1, 20000, *batch.arrays(), 0, 2)
    with pytest.raises(ValueError):
        NATIVE.append_records(out, 0, 4096, 1, 70000, *batch.arrays(), 0, 1)  # not a port
    with pytest.raises(BufferError):
        NATIVE.append_records(bytes(4096), 0, 4096, 1, 20000, *batch.arrays(), 0, 1)  # read-only


@pytest.mark.parametrize("writer", ["native", "reference"])
def test_a_batch_reads_back_as_one_record_per_datagram(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    if writer == "native" and NATIVE is None:
        pytest.skip("srs.mediaplane._batchrecv is not built")
    if writer == "reference":
        monkeypatch.setattr(jr, "append_records", jr.append_records_py)
    path = tmp_path / "a.journal"
    journal = Journal(path)
    batch = _batch(40)
    journal.append(20002, 99.0, b"before")  # the per-datagram path and the batch share a sequence
    journal.append_batch(20000, *batch.arrays(), 0, 25)
    journal.append_batch(20004, *batch.arrays(), 25, 40)
    journal.append(20002, 200.0, b"after")
    records = read(path).records
    assert [r.data for r in records] == [b"before", *(_datagram(n) for n in range(40)), b"after"]
    assert [r.port for r in records[1:41]] == [20000] * 25 + [20004] * 15
    assert [round(r.arrival * 1e9) for r in records[1:41]] == [int(a) for a in batch.arrivals]
    journal.close(remove=True)


def test_growth_and_compaction_keep_every_datagram_of_a_batch(tmp_path: Path) -> None:
    """A batch larger than the room left: the writer stops where the journal is full, the journal
    compacts or grows, and the writer goes on with the same batch."""
    path = tmp_path / "a.journal"
    journal = Journal(path, capacity=HEADER_SIZE + 3 * record_size(172))
    batch = _batch(50)
    journal.append_batch(20000, *batch.arrays(), 0, 50)
    assert journal.capacity >= HEADER_SIZE + 50 * record_size(172)
    assert [r.data for r in read(path).records] == [_datagram(n) for n in range(50)]
    # forget the first 45 (arrived before 100.9 s); the next batch fits only after compaction
    journal.mark(100.9, written=0, frames=0)
    capacity = journal.capacity
    more = _batch(40, start_ns=102_000_000_000)
    journal.append_batch(20000, *more.arrays(), 0, 40)
    assert journal.capacity == capacity  # compacted to the front, not grown
    got = read(path).records
    assert [r.data for r in got] == [_datagram(n) for n in range(45, 50)] + [_datagram(n) for n in range(40)]


def test_every_cut_of_a_batch_written_record_leaves_the_ones_before(tmp_path: Path) -> None:
    """A kill while a batch is being written: whatever was cut, the records before are read back
    and the one cut inside its bytes counts as torn (recovery reads the batch writer's format)."""
    path = tmp_path / "a.journal"
    journal = Journal(path)
    batch = _batch(5)
    journal.append_batch(20000, *batch.arrays(), 0, 5)
    data = path.read_bytes()
    journal.close(remove=False)
    last = HEADER_SIZE + 4 * record_size(172)
    end = last + RECORD_SIZE + 172
    for cut in range(last, end):
        contents = parse(data[:cut])
        assert len(contents.records) == 4, cut
        assert contents.torn == (cut >= last + RECORD_SIZE), cut
    assert [r.data for r in parse(data).records] == [_datagram(n) for n in range(5)]
    # a flipped byte inside a batch-written record ends the journal there
    broken = bytearray(data)
    broken[HEADER_SIZE + 2 * record_size(172) + RECORD_SIZE + 100] ^= 0x01
    contents = parse(bytes(broken))
    assert len(contents.records) == 2 and contents.torn


def test_a_full_disk_forgets_the_live_records_and_skips_what_never_fits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocks a batch is written into were reserved before they were mapped: when the disk
    cannot give more, the journal starts over instead of growing into a hole (SIGBUS), and a
    datagram larger than the whole journal is left out while the rest of its batch is kept."""
    path = tmp_path / "a.journal"
    journal = Journal(path, capacity=HEADER_SIZE + 3 * record_size(172))
    assert os.stat(path).st_blocks * 512 >= HEADER_SIZE + 3 * record_size(172)

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    journal.append_batch(20000, *_batch(3).arrays(), 0, 3)
    assert len(read(path).records) == 3
    mixed = _Batch([b"y" * 172, b"z" * 1500, b"w" * 100], [1, 2, 3])
    journal.append_batch(20000, *mixed.arrays(), 0, 3)
    assert journal.capacity == HEADER_SIZE + 3 * record_size(172)  # never grown
    assert [r.data for r in read(path).records] == [b"y" * 172, b"w" * 100]


def test_batch_writer_cost_per_datagram(tmp_path: Path) -> None:
    """What the journal adds per received datagram with the batch writer, five per call as in a
    100 ms round of 20 ms streams (printed; bounded loosely for loaded machines)."""
    journal = Journal(tmp_path / "a.journal")
    batch = _batch(2000)
    arrays = batch.arrays()
    began = time.perf_counter()
    rounds = 20
    for n in range(rounds):
        for a in range(0, 2000, 5):
            journal.append_batch(20000, *arrays, a, a + 5)
        journal.mark(1e9 if n % 2 else 0, n, n)
    per = (time.perf_counter() - began) / (rounds * 2000) * 1e6
    which = "reference" if jr.append_records is jr.append_records_py else "native"
    print(f"journal batch writer ({which}): {per:.2f} us per 172-byte datagram")
    assert per < 50


@needs_native
@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=0, max_size=30),
    sizes=st.lists(st.integers(min_value=0, max_value=200), min_size=30, max_size=30),
    cutoff=st.integers(min_value=-(2**41), max_value=2**41),
    data=st.data(),
)
def test_native_and_reference_mark_scans_stop_at_the_same_record(
    arrivals: list[int], sizes: list[int], cutoff: int, data: Any
) -> None:
    """The scan :meth:`Journal.mark` forgets records with: passes records while they arrived before
    the cutoff (arrivals in any order: it stops at the first that did not), never past the tail."""
    batch = _Batch([bytes(size) for size in sizes[: len(arrivals)]], arrivals)
    out = bytearray(64 * 1024)
    tail, _seq, _next = jr.append_records_py(out, 0, len(out), 1, 20000, *batch.arrays(), 0, len(arrivals))
    start = data.draw(st.sampled_from([0, *_record_ends(sizes[: len(arrivals)])]))
    got = NATIVE.skip_records(out, start, tail, cutoff)
    assert got == jr.skip_records_py(out, start, tail, cutoff)
    offset, passed = got
    first = _record_ends(sizes[: len(arrivals)]).index(start) + 1 if start else 0
    expected = 0
    for arrival in arrivals[first:]:
        if arrival >= cutoff:
            break
        expected += 1
    assert passed == expected and offset <= tail


def _record_ends(sizes: list[int]) -> list[int]:
    ends, at = [], 0
    for size in sizes:
        at += record_size(size)
        ends.append(at)
    return ends


def _mapped_kb(path: Path) -> tuple[int, int]:
    """(Rss, Private_Dirty + Shared_Dirty) in kB of this process's mapping of ``path``."""
    rss = dirty = 0
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):  # a mapping's first line
            inside = line.rstrip().endswith(str(path))
            continue
        if inside and line.startswith("Rss:"):
            rss += int(line.split()[1])
        elif inside and line.startswith(("Shared_Dirty:", "Private_Dirty:")):
            dirty += int(line.split()[1])
    return rss, dirty


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="needs /proc/self/smaps")
def test_a_new_journal_is_paged_in_when_created_not_in_the_receive_loop(tmp_path: Path) -> None:
    """The first store into each page of a file mapping is a page fault that costs the file system
    several µs: a new journal (and the part a growth adds) takes them all when it is made, so the
    batch writer never faults on a call's first seconds of datagrams."""
    path = tmp_path / "a.journal"
    journal = Journal(path, capacity=HEADER_SIZE + 64 * 4096)
    rss, dirty = _mapped_kb(path)
    assert rss >= journal.capacity // 1024 and dirty >= journal.capacity // 1024
    journal.append_batch(20000, *_batch(2000).arrays(), 0, 2000)  # grows
    rss, dirty = _mapped_kb(path)
    assert journal.capacity > HEADER_SIZE + 64 * 4096 and rss >= journal.capacity // 1024
    journal.close(remove=True)


@needs_native
def test_the_native_crc_is_zlibs_at_every_length_and_alignment() -> None:
    """From 64 bytes on the native CRC-32 folds 16-byte blocks by carry-less multiplication (where
    the CPU has it) and finishes the rest byte-wise: every length across the fold's steps (64-byte
    lanes, 16-byte blocks, the tail) and every alignment gives zlib's value."""
    rnd = random.Random(11)
    data = rnd.randbytes(700)
    for offset in range(4):
        view = memoryview(data)[offset:]
        for length in range(0, 600):
            assert NATIVE.crc32(view[:length]) == zlib.crc32(view[:length]), (offset, length)
    assert NATIVE.crc32(b"\xff" * 4096) == zlib.crc32(b"\xff" * 4096)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_table_crc_of_a_build_without_zlib_is_zlibs(tmp_path: Path) -> None:
    """Where zlib's header is missing at build time the module computes the CRC-32 with its own
    tables: built here that way, it gives zlib's value for every length (the 8-byte steps and the
    tail) and writes the same records as the reference."""
    source = Path(__file__).resolve().parents[3] / "srs" / "mediaplane" / "_batchrecv.c"
    target = tmp_path / f"_batchrecv{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    built = subprocess.run(
        ["cc", "-O2", "-std=c11", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)],
        capture_output=True,
        timeout=120,
    )
    if built.returncode != 0:
        pytest.skip(f"cannot build the module here: {built.stderr.decode(errors='replace')[:200]}")
    spec = importlib.util.spec_from_file_location("_batchrecv", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rnd = random.Random(7)
    for length in [*range(0, 33), 172, 1000, 4097]:
        data = rnd.randbytes(length)
        assert module.crc32(data) == zlib.crc32(data), length
    batch = _batch(7, size=173)
    ours, theirs = bytearray(8192), bytearray(8192)
    assert module.append_records(ours, 0, 8192, 5, 20000, *batch.arrays(), 0, 7) == jr.append_records_py(
        theirs, 0, 8192, 5, 20000, *batch.arrays(), 0, 7
    )
    assert ours == theirs
