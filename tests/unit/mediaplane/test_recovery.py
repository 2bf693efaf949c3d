"""Replaying a crash journal: a recording abandoned mid-call (its process killed) is finished from
its journal at the next start, or continued by a new worker, sample-exact."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from srs.media.rendering import PayloadFormat
from srs.mediaplane.contract import RecorderSpec, StreamSpec
from srs.mediaplane.journal_state import journal_path, load_state, state_path
from srs.mediaplane.recordings import JournalPolicy, RecordingSet
from srs.mediaplane.recovery import recover_recording
from tests.unit.media.fixtures import SRC, expected, factory, payload_for, rtp

START = 500.0
RATE = 8000
PCMU = {0: PayloadFormat("PCMU", 8000)}
PORTS = (20000, 20002)


def _samples(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def _call(
    rs: RecordingSet,
    key: str,
    packets: range,
    *,
    flush_every: int = 50,
    ports: tuple[int, ...] = PORTS,
    first_late: float = 0.0,
    not_before: float = 0.0,
) -> None:
    """50 packets/s per port, arriving exactly at their place (the first ``first_late`` s late, which
    places the whole stream that much after the others' arrival); a flush once a second."""
    for i in packets:
        arrival = max(START + i / 50 + (first_late if i == 0 else 0.0), START + not_before)
        for k, port in enumerate(ports):
            data = rtp(i, 160 * i, payload_for(i + 1000 * k), ssrc=k + 1)
            rs.lane(key, port).record(data, arrival)
            track = rs.track(key, port)
            assert track is not None
            track.push(data, SRC, arrival)
        if i % flush_every == flush_every - 1:
            rs.flush_one(key, arrival + 0.02)


def _open(
    rs: RecordingSet,
    path: Path,
    *,
    resume: bool = False,
    pause_mode: str = "silence",
    sources: tuple[str, ...] | None = None,
) -> None:
    rs.open("k", RecorderSpec(str(path), START, pause_mode=pause_mode, resume=resume))
    for k, port in enumerate(PORTS):
        rs.set_stream("k", port, StreamSpec(PCMU, label=str(k + 1), sources=sources), START)


def _reference(count: int, length: int, offset: int = 0) -> np.ndarray:
    mixed = np.zeros(length, dtype=np.int32)
    for k in range(len(PORTS)):
        mixed += expected([(offset + 160 * i, payload_for(i + 1000 * k)) for i in range(count)], length)
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def test_without_the_journal_a_kill_loses_the_unflushed_audio(tmp_path: Path) -> None:
    """The defect the journal removes: 3.5 s received, the file holds what the last flush wrote."""
    path = tmp_path / "call.wav"
    rs = RecordingSet(factory)
    _open(rs, path)
    _call(rs, "k", range(175))
    assert len(_samples(path)) <= (3.0 - 0.5) * RATE  # a second and more of audio only in memory
    assert recover_recording(path, factory) is None


@pytest.mark.parametrize("count", [175, 150, 151, 199, 30])
def test_a_killed_recording_is_finished_from_its_journal(tmp_path: Path, count: int) -> None:
    """Killed right after a flush (150, 151), just before one (199) and in between: the file ends up
    holding every packet that reached the worker, sample for sample."""
    path = tmp_path / "call.wav"
    rs = RecordingSet(factory, JournalPolicy())
    _open(rs, path)
    _call(rs, "k", range(count))
    assert Path(journal_path(path)).exists() and Path(state_path(path)).exists()
    # the process dies here: nothing is closed, flushed or unmapped

    recovered = recover_recording(path, factory)
    assert recovered is not None and recovered.replayed > 0
    samples = _samples(path)
    end = count * 160
    assert len(samples) >= end
    assert np.array_equal(samples[:end], _reference(count, end))
    assert not np.any(samples[end:])  # only the tail allowance after the last packet, silent
    assert not Path(journal_path(path)).exists() and not Path(state_path(path)).exists()


@pytest.mark.parametrize("count", [150, 175, 199])
def test_a_stream_placed_later_than_it_arrives_is_replayed_where_it_was_placed(
    tmp_path: Path, count: int
) -> None:
    """The first packet came 190 ms late, so every later one is placed 190 ms after its arrival:
    datagrams that arrived before the written place still belong after it, and a replay anchored
    on arrival would put them 190 ms early. The placement note puts them back sample-exact."""
    path = tmp_path / "call.wav"
    rs = RecordingSet(factory, JournalPolicy())
    _open(rs, path)
    _call(rs, "k", range(count), first_late=0.19)
    assert recover_recording(path, factory) is not None
    samples = _samples(path)
    offset = round(0.19 * RATE)
    end = offset + count * 160
    assert len(samples) >= end
    assert np.array_equal(samples[:end], _reference(count, end, offset))


@pytest.mark.parametrize("first_late", [0.0, 0.19])
def test_a_new_worker_continues_the_file_and_the_journal(tmp_path: Path, first_late: float) -> None:
    """A worker dies mid-call; the next one opens the file with ``resume``, gets the streams again,
    replays the journal and goes on receiving (what waited in the sockets meanwhile arrives late,
    at once): one file, every packet in its place."""
    path = tmp_path / "call.wav"
    dead = RecordingSet(factory, JournalPolicy())
    _open(dead, path)
    _call(dead, "k", range(170), first_late=first_late)

    alive = RecordingSet(factory, JournalPolicy())
    _open(alive, path, resume=True)
    resumed = alive.resumed("k")
    assert resumed is not None and resumed.replayed > 0
    for port in PORTS:
        track = alive.track("k", port)
        assert track is not None and track.packets_received > 0
    # live packets come from the real source again (the replayed ones carried none): relatched
    _call(alive, "k", range(170, 300), not_before=170 / 50 + 0.5)
    offset = round(first_late * RATE)
    result = alive.close("k", START + 300 / 50 + first_late)
    samples = _samples(path)
    assert result.samples == len(samples) == 300 * 160 + offset
    assert np.array_equal(samples, _reference(300, 300 * 160 + offset, offset))
    # the counters go on from the dead worker's: every packet once, none lost
    assert [(s.packets_received, s.packets_lost) for s in result.streams] == [(300, 0), (300, 0)]
    assert not Path(journal_path(path)).exists()


def test_a_stream_only_the_signalled_host_may_send_is_replayed_and_latched_anew(tmp_path: Path) -> None:
    """The journal keeps no addresses: its datagrams pass the allowed-host check of the new tracks
    (they were the call's audio) without latching anything, so the live sender's next packet
    latches as the stream's first source; the journal state keeps the hosts a re-INVITE allowed."""
    path = tmp_path / "call.wav"
    dead = RecordingSet(factory, JournalPolicy())
    _open(dead, path, sources=("192.0.2.99",))
    for port in PORTS:
        dead.relatch("k", port, (SRC[0],))  # new SDP before the media starts
    _call(dead, "k", range(170))
    state = load_state(state_path(path))
    assert state is not None
    assert [spec.sources if spec else None for spec in state.streams.values()] == [(SRC[0],)] * 2

    alive = RecordingSet(factory, JournalPolicy())
    _open(alive, path, resume=True, sources=(SRC[0],))
    resumed = alive.resumed("k")
    assert resumed is not None and resumed.replayed > 0
    for port in PORTS:
        track = alive.track("k", port)
        assert track is not None and track.packets_received > 0 and track.packets_dropped_source == 0
    _call(alive, "k", range(170, 300), not_before=170 / 50 + 0.5)
    result = alive.close("k", START + 300 / 50)
    samples = _samples(path)
    assert np.array_equal(samples, _reference(300, 300 * 160))
    source = f"{SRC[0]}:{SRC[1]}"
    assert [(s.packets_received, s.packets_lost, s.packets_dropped_source) for s in result.streams] == [
        (300, 0, 0)
    ] * 2
    assert [(s.source, s.sources, s.relatches) for s in result.streams] == [(source, (source,), 0)] * 2


def test_a_pause_is_replayed(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rs = RecordingSet(factory, JournalPolicy())
    _open(rs, path)
    _call(rs, "k", range(120))
    rs.pause("k", START + 2.3)
    rs.resume("k", START + 2.35)
    _call(rs, "k", range(120, 130))
    assert recover_recording(path, factory) is not None
    samples = _samples(path)
    reference = _reference(130, 130 * 160)
    reference[round(2.3 * RATE) : round(2.35 * RATE)] = 0
    assert np.array_equal(samples[: 130 * 160], reference)


def test_an_unreadable_state_is_removed_and_the_file_kept(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rs = RecordingSet(factory, JournalPolicy())
    _open(rs, path)
    _call(rs, "k", range(120))
    before = len(_samples(path))
    Path(state_path(path)).write_text("{not json")
    assert recover_recording(path, factory) is None
    assert len(_samples(path)) == before
    assert not Path(journal_path(path)).exists()


def test_a_file_that_is_not_a_wav_of_srs_is_refused_and_its_journal_removed(tmp_path: Path) -> None:
    """Bad input is normal input: a journal beside a file that cannot be continued raises the
    error family's own error (the start-up repair then keeps the file as it is)."""
    from srs.errors import SrsError

    path = tmp_path / "call.wav"
    rs = RecordingSet(factory, JournalPolicy())
    _open(rs, path)
    _call(rs, "k", range(80))
    path.write_bytes(b"RIFF" + bytes(100))  # something else now
    with pytest.raises(SrsError):
        recover_recording(path, factory)
    assert not Path(journal_path(path)).exists() and not Path(state_path(path)).exists()
