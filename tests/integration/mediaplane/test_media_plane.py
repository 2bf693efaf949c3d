"""Both media planes on real loopback sockets: what is sent is what is recorded, in either shape.

The worker plane runs a real worker process (the one the daemon runs): sockets bound here travel
to it over SCM_RIGHTS, results come back pickled.  Its failure modes are part of the contract:
a worker that dies fails its recordings (it never hangs a close) and is replaced; workers stay in
the caller's process group and exit with it.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import struct
import time
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import srs_codecs

from bench.loadgen import LEVEL, tone_payload
from srs.media.rendering import PayloadFormat
from srs.media.result import RecordingResult
from srs.mediaplane.contract import MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.inprocess import InProcessPlane, RtpReceiver
from srs.mediaplane.journal_state import journal_path
from srs.mediaplane.ports import PortAllocator, RtpPort
from srs.mediaplane.recordings import JournalPolicy
from srs.mediaplane.worker_plane import WorkerPlane

T = TypeVar("T")
PCMU = {0: PayloadFormat("PCMU", 8000)}
TONES = (500, 1500)


def _free_range(count: int) -> tuple[int, int]:
    """A run of ``count`` ports nobody holds right now (checked by binding them)."""
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(20000, 60000 - count) & ~1
        socks: list[socket.socket] = []
        try:
            for port in range(low, low + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return low, low + count - 1
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


def _plane(kind: str, loop: asyncio.AbstractEventLoop) -> MediaPlane:
    if kind == "in-process":
        return InProcessPlane(RtpReceiver(loop, time.monotonic), srs_codecs.get_decoder)
    plane = WorkerPlane(1)
    plane.start(loop)
    return plane


def _packet(seq: int, ssrc: int, payload: bytes) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + payload


def run(make: Callable[[asyncio.AbstractEventLoop], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make(asyncio.get_running_loop())

    return asyncio.run(main())


async def _open_call(
    plane: MediaPlane,
    allocator: PortAllocator,
    path: Path,
    key: str = "k",
    sources: tuple[str, ...] | None = None,
) -> list[RtpPort]:
    ports = allocator.allocate(2)
    assert ports is not None
    start = time.monotonic()
    for port in ports:
        plane.attach(key, port)
    plane.open(key, RecorderSpec(str(path), start))
    for i, port in enumerate(ports):
        plane.set_stream(key, port.port, StreamSpec(PCMU, str(i + 1), sources=sources), start)
    await asyncio.sleep(0.3 if isinstance(plane, WorkerPlane) else 0)
    return ports


async def _send(ports: list[RtpPort], packets: int, *, pace: float = 0.02) -> None:
    payloads = [tone_payload(f) for f in TONES]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in range(packets):
            for i, port in enumerate(ports):
                tx.sendto(_packet(seq, 0x100 + i, payloads[i]), ("127.0.0.1", port.port))
            if pace:
                await asyncio.sleep(pace)


async def _close(
    plane: MediaPlane, allocator: PortAllocator, ports: list[RtpPort], key: str = "k"
) -> RecordingResult:
    for port in ports:
        plane.detach(key, port)
        allocator.release(port)
    return await asyncio.wait_for(plane.close(key, time.monotonic()), 10)


@pytest.mark.parametrize("kind", ["in-process", "worker"])
def test_two_streams_are_recorded_completely_with_both_tones(kind: str, tmp_path: Path) -> None:
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")
    path = tmp_path / "call.wav"

    async def scenario(loop: asyncio.AbstractEventLoop) -> RecordingResult:
        plane = _plane(kind, loop)
        try:
            ports = await _open_call(plane, allocator, path)
            await _send(ports, 100)
            return await _close(plane, allocator, ports)
        finally:
            plane.stop()

    result = run(scenario)
    assert [s.packets_received for s in result.streams] == [100, 100]
    assert [s.packets_lost for s in result.streams] == [0, 0]
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert result.samples == len(pcm)
    spectrum = np.abs(np.fft.rfft(pcm[4000:12000].astype(np.float64))) * 2 / 8000
    for freq in TONES:
        assert 0.8 * LEVEL < spectrum[freq] < 1.2 * LEVEL


@pytest.mark.parametrize("kind", ["in-process", "worker"])
def test_datagrams_queued_when_the_call_ends_are_still_recorded(kind: str, tmp_path: Path) -> None:
    """RTP sent just before the BYE may still sit in the socket when the ports are released."""
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")

    async def scenario(loop: asyncio.AbstractEventLoop) -> RecordingResult:
        plane = _plane(kind, loop)
        try:
            ports = await _open_call(plane, allocator, tmp_path / "burst.wav")
            if isinstance(plane, InProcessPlane):
                plane.receiver.loop.remove_reader(ports[0].rtp.fileno())  # nothing read before the end
            await _send(ports, 40, pace=0)
            return await _close(plane, allocator, ports)
        finally:
            plane.stop()

    result = run(scenario)
    assert result.streams[0].packets_received == 40


def test_a_worker_that_dies_fails_its_recordings_and_is_replaced(tmp_path: Path) -> None:
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")

    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[list[str], str, RecordingResult]:
        plane = WorkerPlane(1)
        plane.start(loop)
        try:
            first = plane.pids[0]
            doomed = await _open_call(plane, allocator, tmp_path / "doomed.wav", "doomed")
            os.kill(first, signal.SIGKILL)
            for _ in range(100):
                if plane.pids[0] != first:
                    break
                await asyncio.sleep(0.05)
            failed = plane.flush(time.monotonic())
            try:
                await _close(plane, allocator, doomed, "doomed")
                outcome = "closed"
            except OSError as exc:
                outcome = str(exc)
            ports = await _open_call(plane, allocator, tmp_path / "after.wav", "after")
            await _send(ports, 20)
            return failed, outcome, await _close(plane, allocator, ports, "after")
        finally:
            plane.stop()

    failed, outcome, after = run(scenario)
    assert failed == ["doomed"]
    assert outcome == "media worker exited"
    assert after.streams[0].packets_received == 20


async def _send_in_time(ports: list[RtpPort], packets: range, t0: float) -> None:
    """Packet ``seq`` leaves at ``t0 + seq * 20 ms`` (a late wake-up catches up): a sender whose clock
    keeps time even on a loaded machine, so every packet has its place."""
    payloads = [tone_payload(f) for f in TONES]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for seq in packets:
            delay = t0 + seq * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            for i, port in enumerate(ports):
                tx.sendto(_packet(seq, 0x100 + i, payloads[i]), ("127.0.0.1", port.port))


async def _replaced(plane: WorkerPlane, pid: int) -> None:
    for _ in range(300):
        if plane.pids[0] != pid:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker was not replaced")


def _tones_throughout(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    audible = np.flatnonzero(pcm)
    pcm = pcm[audible[0] : audible[-1] + 1]
    for second in range(len(pcm) // 8000):
        spectrum = np.abs(np.fft.rfft(pcm[second * 8000 : (second + 1) * 8000].astype(np.float64))) * 2 / 8000
        for freq in TONES:
            assert 0.8 * LEVEL < spectrum[freq] < 1.2 * LEVEL, (second, freq, spectrum[freq])
    return pcm


def test_with_journals_a_dead_workers_recordings_go_on_in_its_replacement(tmp_path: Path) -> None:
    """The worker is killed mid-call: the daemon's sockets keep the datagrams, a new worker is told
    the recording again, replays its journal and goes on; nothing fails, nothing is lost, counters
    carry on, and the interruption is reported with the result."""
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")
    path = tmp_path / "call.wav"

    async def scenario(
        loop: asyncio.AbstractEventLoop,
    ) -> tuple[RecordingResult, list[object], list[int], list[str]]:
        plane = WorkerPlane(1, journal=JournalPolicy())
        plane.start(loop)
        try:
            ports = await _open_call(plane, allocator, path)
            sending = asyncio.ensure_future(_send_in_time(ports, range(150), time.monotonic()))
            await asyncio.sleep(1.6)  # past a flush cycle: the worker has reported its counters
            live = [plane.packets_received("k", port.port) for port in ports]
            first = plane.pids[0]
            os.kill(first, signal.SIGKILL)
            await _replaced(plane, first)
            await sending
            failed = plane.flush(time.monotonic())
            result = await _close(plane, allocator, ports)
            return result, plane.interruptions("k"), live, failed
        finally:
            plane.stop()

    result, interruptions, live, failed = run(scenario)
    assert all(0 < n <= 80 for n in live), live
    assert failed == []
    assert [(s.packets_received, s.packets_lost) for s in result.streams] == [(150, 0), (150, 0)]
    assert len(interruptions) == 1
    gap = interruptions[0]
    assert isinstance(gap, dict) and gap["reason"] == "media worker exited (signal 9)"
    assert gap["replayed_packets"] > 0 and gap["resumed_at_ms"] >= gap["at_ms"]
    pcm = _tones_throughout(path)
    # every packet in its place, once (the close may cut into the last one, sent just before it)
    assert abs(len(pcm) - 150 * 160) <= 320, (len(pcm), result.streams)
    assert not Path(journal_path(path)).exists()


@pytest.mark.parametrize("signalled", ["at-the-offer", "by-a-re-invite"])
def test_a_dead_workers_streams_keep_their_allowed_sources_and_every_packet(
    signalled: str, tmp_path: Path
) -> None:
    """Streams that only the signalled host may send: the journaled datagrams (which carry no
    address) are replayed into the replacement's tracks, the replacement holds the streams to the
    hosts allowed last (a re-INVITE's, not the offer's) and latches the live sender without a
    source change; nothing is lost."""
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")
    path = tmp_path / "call.wav"
    offered = ("127.0.0.1",) if signalled == "at-the-offer" else ("192.0.2.9",)

    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[RecordingResult, list[object]]:
        plane = WorkerPlane(1, journal=JournalPolicy())
        plane.start(loop)
        try:
            ports = await _open_call(plane, allocator, path, sources=offered)
            if signalled == "by-a-re-invite":
                for port in ports:
                    plane.relatch("k", port.port, ("127.0.0.1",))
            sending = asyncio.ensure_future(_send_in_time(ports, range(150), time.monotonic()))
            await asyncio.sleep(1.6)  # past a flush cycle: placements are journaled
            first = plane.pids[0]
            os.kill(first, signal.SIGKILL)
            await _replaced(plane, first)
            await sending
            result = await _close(plane, allocator, ports)
            return result, plane.interruptions("k")
        finally:
            plane.stop()

    result, interruptions = run(scenario)
    assert len(interruptions) == 1
    gap = interruptions[0]
    assert isinstance(gap, dict) and gap["replayed_packets"] > 0, gap
    for stream in result.streams:
        assert (stream.packets_received, stream.packets_lost, stream.packets_dropped_source) == (150, 0, 0)
        assert stream.relatches == 0 and stream.source is not None, stream
        assert stream.source.startswith("127.0.0.1:") and stream.sources == (stream.source,), stream
    pcm = _tones_throughout(path)
    assert abs(len(pcm) - 150 * 160) <= 320, (len(pcm), result.streams)


def test_a_close_sent_to_a_worker_that_dies_is_done_by_its_replacement(tmp_path: Path) -> None:
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")
    path = tmp_path / "call.wav"

    async def scenario(loop: asyncio.AbstractEventLoop) -> RecordingResult:
        plane = WorkerPlane(1, journal=JournalPolicy())
        plane.start(loop)
        try:
            ports = await _open_call(plane, allocator, path)
            await _send_in_time(ports, range(60), time.monotonic())
            await asyncio.sleep(1.0)  # a cold worker places a first call late: all of it before the end
            first = plane.pids[0]
            os.kill(first, signal.SIGSTOP)  # the close reaches a worker that never answers it
            closing = asyncio.ensure_future(_close(plane, allocator, ports))
            await asyncio.sleep(0.2)
            os.kill(first, signal.SIGKILL)
            return await closing
        finally:
            plane.stop()

    result = run(scenario)
    assert [s.packets_received for s in result.streams] == [60, 60]
    pcm = _tones_throughout(path)
    assert abs(len(pcm) - 60 * 160) <= 160, len(pcm)


def test_a_recording_that_cannot_be_continued_still_fails_when_its_worker_dies(tmp_path: Path) -> None:
    """Per-stream files (and encoded formats) keep no journal: such a recording fails as before."""
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")

    async def scenario(loop: asyncio.AbstractEventLoop) -> list[str]:
        plane = WorkerPlane(1, journal=JournalPolicy())
        plane.start(loop)
        try:
            ports = allocator.allocate(1)
            assert ports is not None
            start = time.monotonic()
            plane.attach("k", ports[0])
            plane.open("k", RecorderSpec(str(tmp_path / "call.wav"), start, extra={"per_stream": True}))
            plane.set_stream("k", ports[0].port, StreamSpec(PCMU, "1"), start)
            await asyncio.sleep(0.3)
            assert not Path(journal_path(tmp_path / "call.wav")).exists()
            first = plane.pids[0]
            os.kill(first, signal.SIGKILL)
            await _replaced(plane, first)
            return plane.flush(time.monotonic())
        finally:
            plane.stop()

    assert run(scenario) == ["k"]


def test_workers_share_the_process_group_and_exit_with_the_plane() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[list[int], list[int | None]]:
        plane = WorkerPlane(2)
        plane.start(loop)
        workers = list(plane.workers)
        groups = [os.getpgid(pid) for pid in plane.pids]
        plane.stop()
        return groups, [w.process.returncode for w in workers]

    groups, codes = run(scenario)
    assert groups == [os.getpgid(0)] * 2
    assert codes == [0, 0]


def test_a_worker_exits_when_the_daemon_side_of_its_socket_closes() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> int | None:
        plane = WorkerPlane(1)
        plane.start(loop)
        worker = plane.workers[0]
        loop.remove_reader(worker.sock.fileno())
        worker.sock.close()
        try:
            return await loop.run_in_executor(None, worker.process.wait, 20)
        finally:
            plane.workers = []

    assert run(scenario) == 0


class _Log:
    """Records (level, event) pairs the way the daemon's structured logger is called."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: object) -> None:
            self.lines.append((level, event))

        return record


def test_a_group_signal_while_a_worker_starts_neither_kills_it_nor_logs_an_error() -> None:
    """SIGTERM to the process group (an operator stopping srs) right after a worker was spawned:
    the worker used to die of it (-15) before its interpreter could ignore it, and the daemon
    logged ``media_worker_exited`` at error level during a normal shutdown."""
    log = _Log()

    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[int | None, list[tuple[str, str]]]:
        plane = WorkerPlane(1, log=log)
        plane.start(loop)
        worker = plane.workers[0]
        os.kill(worker.process.pid, signal.SIGTERM)  # before its interpreter has even started
        os.kill(worker.process.pid, signal.SIGINT)
        await asyncio.sleep(1.5)
        alive = worker.process.poll()
        plane.stop()
        return alive, list(log.lines)

    alive, lines = run(scenario)
    assert alive is None, f"worker died of signal {alive}"
    assert not [line for line in lines if line[0] == "error"]


def test_a_worker_that_dies_without_recordings_is_a_warning_not_an_error() -> None:
    log = _Log()

    async def scenario(loop: asyncio.AbstractEventLoop) -> list[tuple[str, str]]:
        plane = WorkerPlane(1, log=log)
        plane.start(loop)
        worker = plane.workers[0]
        await asyncio.sleep(0.5)
        worker.process.send_signal(signal.SIGKILL)  # gone; what is logged depends on what it held
        for _ in range(100):
            if plane.workers[0] is not worker:
                break
            await asyncio.sleep(0.05)
        plane.stop()
        return list(log.lines)

    lines = run(scenario)
    assert ("warning", "media_worker_exited") in lines
    assert not [line for line in lines if line[0] == "error"]


@pytest.mark.parametrize("kind", ["in-process", "worker"])
def test_packet_counts_are_readable_while_the_call_runs(kind: str, tmp_path: Path) -> None:
    """The live view's figures: a worker plane's workers report their counts once per flush cycle."""
    allocator = PortAllocator(*_free_range(40), bind_host="127.0.0.1")

    async def scenario(loop: asyncio.AbstractEventLoop) -> list[int]:
        plane = _plane(kind, loop)
        try:
            ports = await _open_call(plane, allocator, tmp_path / "live.wav")
            await _send(ports, 30, pace=0.005)
            deadline = time.monotonic() + 10
            counts = [0, 0]
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                counts = [plane.packets_received("k", port.port) for port in ports]
                if counts == [30, 30]:
                    break
            result = await _close(plane, allocator, ports)
            assert [s.packets_received for s in result.streams] == [30, 30]
            assert all(plane.packets_received("k", port.port) == 0 for port in ports)  # forgotten at close
            return counts
        finally:
            plane.stop()

    assert run(scenario) == [30, 30]
