"""The crash journal's file format: append, mark (truncate), compaction and growth, resume, and
what a kill leaves behind (a torn last record at every possible cut, a half-rewritten header)."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from srs.mediaplane import journal as jr
from srs.mediaplane.journal import HEADER_SIZE, RECORD_SIZE, Journal, JournalError, parse, read, record_size


def _datagram(n: int, size: int = 172) -> bytes:
    return bytes((n * 7 + i) & 0xFF for i in range(size))


def _fill(
    journal: Journal, count: int, *, start: float = 100.0, port: int = 20000
) -> list[tuple[int, float, bytes]]:
    sent = []
    for n in range(count):
        data = _datagram(n)
        arrival = start + n * 0.02
        journal.append(port + 2 * (n % 2), arrival, data)
        sent.append((port + 2 * (n % 2), arrival, data))
    return sent


def _as_tuples(path: Path) -> list[tuple[int, float, bytes]]:
    return [(r.port, r.arrival, r.data) for r in read(path).records]


def test_appended_datagrams_read_back_in_order(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.journal")
    sent = _fill(journal, 50)
    contents = read(tmp_path / "a.journal")
    assert [(r.port, r.data) for r in contents.records] == [(p, d) for p, _a, d in sent]
    assert all(abs(r.arrival - a) < 1e-6 for r, (_p, a, _d) in zip(contents.records, sent, strict=True))
    assert not contents.torn
    journal.close(remove=True)
    assert not (tmp_path / "a.journal").exists()


def test_mark_forgets_what_arrived_before_the_written_place(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "a.journal")
    sent = _fill(journal, 100)  # arrivals 100.00 .. 101.98
    journal.mark(101.0, written=8000, frames=8000)
    contents = read(tmp_path / "a.journal")
    assert [r.data for r in contents.records] == [d for _p, a, d in sent if a >= 101.0 - 1e-9]
    assert (contents.written, contents.frames) == (8000, 8000)
    journal.mark(200.0, written=16000, frames=16000)
    contents = read(tmp_path / "a.journal")
    assert contents.records == () and contents.written == 16000
    # appending after everything was forgotten starts at the front again; old records stay invisible
    journal.append(20000, 300.0, b"x" * 10)
    assert _as_tuples(tmp_path / "a.journal") == [(20000, 300.0, b"x" * 10)]


def test_compaction_and_growth_keep_exactly_the_live_records(tmp_path: Path) -> None:
    """A long call through a small file: the live records are moved to the front or the file grows,
    and after every step the file holds exactly what was appended and not yet marked."""
    rng = random.Random(7)
    journal = Journal(tmp_path / "a.journal", capacity=HEADER_SIZE + 4 * record_size(172))
    live: list[tuple[int, float, bytes]] = []
    arrival = 10.0
    for step in range(3000):
        size = rng.choice((20, 172, 172, 172, 333))
        data = os.urandom(size)
        arrival += 0.005
        journal.append(step % 3, arrival, data)
        live.append((step % 3, arrival, data))
        if step % 37 == 36:
            cutoff = arrival - rng.uniform(0.0, 0.3)
            journal.mark(cutoff, written=step, frames=step)
            live = [r for r in live if int(r[1] * 1e9) >= int(cutoff * 1e9)]
        if step % 101 == 0:
            got = read(tmp_path / "a.journal").records
            assert [(r.port, r.data) for r in got] == [(p, d) for p, _a, d in live]
    assert journal.capacity > HEADER_SIZE + 4 * record_size(172)  # it had to grow at least once
    got = read(tmp_path / "a.journal").records
    assert [(r.port, r.data) for r in got] == [(p, d) for p, _a, d in live]


def test_every_truncation_of_the_last_record_leaves_the_others(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = Journal(path)
    _fill(journal, 5)
    data = path.read_bytes()
    journal.close(remove=False)
    last = HEADER_SIZE + 4 * record_size(172)
    end = last + RECORD_SIZE + 172  # the padding after it is not part of the record
    for cut in range(last, end):
        contents = parse(data[:cut])
        assert len(contents.records) == 4, cut
        # a cut inside the bytes (the header is whole) is a torn record; one in the header is just an end
        assert contents.torn == (cut >= last + RECORD_SIZE), cut
    assert len(parse(data[:end]).records) == 5


def test_a_record_whose_header_was_not_written_yet_does_not_count(tmp_path: Path) -> None:
    """A kill between the bytes and the header: the bytes are there, the stale header is not its."""
    path = tmp_path / "a.journal"
    journal = Journal(path)
    _fill(journal, 3)
    offset = HEADER_SIZE + 3 * record_size(172)
    with open(path, "r+b") as handle:
        handle.seek(offset + RECORD_SIZE)
        handle.write(_datagram(3))
    assert len(read(path).records) == 3
    # and every single flipped byte of a record's bytes is caught by its CRC
    good = bytearray(path.read_bytes())
    for i in range(0, 172, 13):
        broken = bytearray(good)
        broken[HEADER_SIZE + record_size(172) + RECORD_SIZE + i] ^= 0x40
        contents = parse(bytes(broken))
        assert len(contents.records) == 1 and contents.torn


def test_a_half_rewritten_header_falls_back_to_the_other_slot(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    journal = Journal(path)
    _fill(journal, 10)
    journal.mark(100.05, written=400, frames=400)  # generation 2 goes to one slot, 1 stays in the other
    journal.mark(100.11, written=800, frames=800)  # generation 3 to the first slot again
    data = bytearray(path.read_bytes())
    newest = parse(bytes(data))
    assert newest.written == 800 and len(newest.records) == 4
    for slot in (16, 64):
        broken = bytearray(data)
        broken[slot + 3] ^= 0xFF
        contents = parse(bytes(broken))
        assert contents.written in (400, 800)
        # the older header keeps more records (an older head), never fewer: nothing live is lost
        assert [r.data for r in contents.records][-4:] == [r.data for r in newest.records]


def test_resume_continues_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "a.journal"
    first = Journal(path)
    sent = _fill(first, 7)
    # the writer dies (its mapping is simply gone); the next one continues after the last record
    second = Journal(path, resume=True)
    assert second.contents is not None and len(second.contents.records) == 7
    second.append(30000, 200.0, b"after")
    assert [(p, d) for p, _a, d in _as_tuples(path)[:-1]] == [(p, d) for p, _a, d in sent]
    assert read(path).records[-1].data == b"after"
    assert len(read(path).records) == 8


def test_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "x"
    for content in (b"", b"RIFF" + bytes(200), jr.FILE_MAGIC + b"\x09\x00\x00\x00" + bytes(200)):
        path.write_bytes(content)
        with pytest.raises(JournalError):
            read(path)
    path.write_bytes(jr.FILE_MAGIC + b"\x01\x00\x00\x00" + bytes(200))  # no valid header slot
    with pytest.raises(JournalError):
        read(path)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=0, max_value=2000))
def test_garbage_never_raises_anything_but_journal_error(noise: bytes, at: int) -> None:
    journal_bytes = bytearray(_sample_journal())
    at = min(at, len(journal_bytes))
    journal_bytes[at : at + len(noise)] = noise
    try:
        contents = parse(bytes(journal_bytes))
    except JournalError:
        return
    assert all(len(r.data) <= jr.MAX_DATAGRAM for r in contents.records)


_SAMPLE: list[bytes] = []


def _sample_journal() -> bytes:
    if not _SAMPLE:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            journal = Journal(Path(tmp) / "s.journal", capacity=4096)
            _fill(journal, 8)
            _SAMPLE.append((Path(tmp) / "s.journal").read_bytes())
            journal.close(remove=True)
    return _SAMPLE[0]


def test_append_cost_per_datagram(tmp_path: Path) -> None:
    """What the journal adds to each received datagram (printed; bounded loosely for loaded machines)."""
    journal = Journal(tmp_path / "a.journal")
    data = _datagram(1)
    count = 50_000
    began = time.perf_counter()
    arrival = 1.0
    for n in range(count):
        journal.append(20000, arrival, data)
        arrival += 0.0001
        if n % 5000 == 4999:
            journal.mark(arrival - 0.2, n, n)
    per = (time.perf_counter() - began) / count * 1e6
    print(f"journal append: {per:.2f} us per 172-byte datagram")
    assert per < 50


def test_no_room_to_grow_forgets_the_live_records_instead_of_faulting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Blocks are reserved before they are mapped (a store into a hole on a full disk is SIGBUS);
    when the disk cannot give more, the journal starts over rather than grow."""
    path = tmp_path / "a.journal"
    journal = Journal(path, capacity=HEADER_SIZE + 3 * record_size(172))
    assert os.stat(path).st_blocks * 512 >= HEADER_SIZE + 3 * record_size(172)  # reserved, not sparse

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    _fill(journal, 3)
    journal.append(1, 200.0, b"y" * 172)  # no room to grow: the three before it are forgotten
    assert [r.data for r in read(path).records] == [b"y" * 172]
    journal.append(1, 201.0, b"z" * 5000)  # larger than the whole journal: not kept, no error
    assert [r.data for r in read(path).records] == [b"y" * 172]


def test_fsync_interval_writes_the_pages_out_at_most_that_often(tmp_path: Path) -> None:
    now = [0.0]

    class Counting:
        """Stands in for the mapping where only ``flush`` (msync) is called."""

        def __init__(self, real: object) -> None:
            self.real = real
            self.flushes = 0

        def flush(self) -> None:
            self.flushes += 1

    kept = Journal(tmp_path / "a.journal", fsync_interval=1.0, clock=lambda: now[0])
    counting = Counting(kept._mm)
    kept._mm = counting  # type: ignore[assignment]
    for step in range(30):  # a flush every 100 ms for 3 s
        now[0] = step * 0.1
        kept.sync()
    assert counting.flushes == 2  # at 1.0 s and 2.0 s
    none = Journal(tmp_path / "b.journal", clock=lambda: now[0])
    counting = Counting(none._mm)
    none._mm = counting  # type: ignore[assignment]
    now[0] = 100.0
    none.sync()
    assert counting.flushes == 0  # write-back is left to the kernel
