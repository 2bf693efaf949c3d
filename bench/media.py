"""The media path alone: how many concurrent two-stream calls one worker process records at 0 loss.

The recordings are opened through the same :class:`~srs.mediaplane.worker_plane.WorkerPlane` the daemon
uses (ports bound here and passed to the worker, tracks and recorders built from the same
specs), without SIP in the way, so the number measures the receive → place → decode → mix →
write path of one process pinned to one core.  RTP comes from the load generator's sender
processes, pinned to the other cores.

For each load level: every call streams two tones for ``seconds``; then the senders stop, every
recording is closed, and per stream packets received are compared with packets sent; the WAVs
are checked for length, gaps and both tones.  CPU time of srs (the worker and this process, which
plays the daemon's part) over the steady window divided by the packets received gives µs per
packet (receive to disk).

RTP comes from the native sender (:mod:`bench.native_sender`, ``sendmmsg``, every stream at
its own phase within each 20 ms) where a C compiler is installed, else from the Python senders of
the load generator; either way each level says how far behind schedule the generator fell. With
``receive_only`` the worker discards every datagram after receiving it: the floor, what the
receive loop alone costs, to read the full figure against.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import tempfile
import time
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import srs_codecs

from bench.loadgen import LEVEL, sender_main, tone_payload, tones
from bench.native_sender import PTIME_NS, NativeSender, SenderReport, Stream
from srs.config import MediaSettings
from srs.media.rendering import PayloadFormat
from srs.media.result import RecordingResult
from srs.mediaplane.contract import MediaPlane, RecorderSpec, StreamSpec
from srs.mediaplane.inprocess import InProcessPlane, RtpReceiver
from srs.mediaplane.ports import PortAllocator, RtpPort
from srs.mediaplane.recordings import JournalPolicy
from srs.mediaplane.worker_plane import WorkerPlane

_TICKS = os.sysconf("SC_CLK_TCK")


def _raise_priority(pid: int) -> None:
    """On a shared machine the measured processes go first (nice -10), where that is allowed."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, pid, -10)


@contextlib.contextmanager
def _session_first() -> Iterator[None]:
    """With scheduler autogroups (one group per session) nice only counts inside a session: a
    nice-19 job of another session still takes an equal share of the measured core. For the
    measurement this session's group goes first (where allowed); its old weight is restored."""
    path = Path("/proc/self/autogroup")
    try:
        old = int(path.read_text().split("nice")[1])
        path.write_text("-10")
    except (OSError, IndexError, ValueError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.write_text(str(old))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def udp_receive_errors() -> int:
    lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines() if ln.startswith("Udp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("RcvbufErrors")])


@dataclass
class LevelResult:
    calls: int
    seconds: float
    packets_sent: int
    packets_received: int
    packets_lost: int
    kernel_drops: int
    bad_wavs: int
    worker_cpu_s: float
    us_per_packet: float
    worker_rss_idle: int
    worker_rss_loaded: int
    sender_worst_lag_ms: float
    examples: list[str]
    srs_cpu_s: float = 0.0
    """CPU of every srs process over the window: the worker and this process (the daemon's part)."""
    generator: str = "python"
    sender: SenderReport | None = None
    receive_only: bool = False

    @property
    def generator_limited(self) -> bool:
        """The senders fell behind by more than the reorder window: this level says nothing about srs."""
        return self.sender_worst_lag_ms > 400

    @property
    def zero_loss(self) -> bool:
        return self.packets_lost == 0 and self.bad_wavs == 0 and self.packets_sent > 0

    def as_dict(self) -> dict[str, Any]:
        sender = self.sender
        return {
            "calls": self.calls,
            "receive_only": self.receive_only,
            "generator": self.generator,
            "generator_lag_ms": None
            if sender is None
            else {
                "p50": sender.lag_p50_ms,
                "p99": sender.lag_p99_ms,
                "max": sender.lag_max_ms,
                "packets_over_1ms_late": sender.late_1ms,
                "packets_over_5ms_late": sender.late_5ms,
                "send_errors": sender.errors,
            },
            "srs_cpu_s": round(self.srs_cpu_s, 3),
            "seconds": self.seconds,
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "packets_lost": self.packets_lost,
            "kernel_drops": self.kernel_drops,
            "bad_wavs": self.bad_wavs,
            "worker_cpu_s": round(self.worker_cpu_s, 2),
            "worker_cpu_share": round(self.worker_cpu_s / self.seconds, 3),
            "us_per_packet": round(self.us_per_packet, 2),
            "rss_per_call_kb": round(
                (self.worker_rss_loaded - self.worker_rss_idle) / max(1, self.calls) / 1024, 1
            ),
            "sender_worst_lag_ms": round(self.sender_worst_lag_ms, 1),
            "zero_loss": self.zero_loss,
            "generator_limited": self.generator_limited,
            "examples": self.examples,
        }


def _check_wav(path: str, index: int, expected_s: float, audio_from: float) -> str | None:
    """Length of the whole recording; no silence inside the audio (from ``audio_from`` s); both tones."""
    with wave.open(path, "rb") as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if abs(len(pcm) / 8000 - expected_s) > 0.25:
        return f"length {len(pcm) / 8000:.2f} s of {expected_s:.2f} s"
    inner = pcm[int((audio_from + 0.1) * 8000) : len(pcm) - int(0.3 * 8000)]
    if len(inner) > 80:
        sounding = np.flatnonzero(inner != 0)
        holes = np.flatnonzero(np.diff(sounding) > 80)
        if len(sounding) == 0:
            return "silent"
        if len(holes):
            at = (sounding[holes[0]] + int((audio_from + 0.1) * 8000)) / 8000
            length = np.diff(sounding)[holes[0]] / 8000
            return f"{len(holes)} silence gaps inside the call, first at {at:.2f} s for {length:.3f} s"
    if len(pcm) >= 8000:
        mid = len(pcm) // 2 - 4000
        spectrum = np.abs(np.fft.rfft(pcm[mid : mid + 8000].astype(np.float64))) * 2 / 8000
        for freq in tones(index):
            if not 0.8 * LEVEL < spectrum[freq] < 1.2 * LEVEL:
                return f"tone {freq} Hz at {spectrum[freq]:.0f}"
    return None


async def run_level(
    calls: int,
    seconds: float,
    *,
    media_cpu: int | None,
    other_cpus: set[int] | None,
    senders: int = 1,
    port_low: int = 20000,
    directory: Path | None = None,
    in_process: bool = False,
    native: Path | None = None,
    receive_only: bool = False,
    journal: bool = True,
) -> LevelResult:
    """One level; ``native`` is the built ``rtpsend`` (None: the Python senders); ``journal`` keeps
    crash journals as the daemon does by default (``[media] journal``)."""
    loop = asyncio.get_running_loop()
    plane: MediaPlane
    flusher: asyncio.Task[None] | None = None
    if in_process:
        # the "before" shape: readers on this process's event loop, the flush a loop task
        plane = InProcessPlane(RtpReceiver(loop, time.monotonic), srs_codecs.get_decoder)
        worker_pid = os.getpid()
        flusher = loop.create_task(_flush_every(plane, 1.0))
    else:
        worker = WorkerPlane(
            1,
            flush_interval=MediaSettings().flush_interval_ms / 1000,  # srs's default
            journal=JournalPolicy() if journal else None,
            worker_options=("--receive-only",) if receive_only else (),
        )
        worker.start(loop)
        plane = worker
        worker_pid = worker.pids[0]
    if media_cpu is not None:
        os.sched_setaffinity(worker_pid, {media_cpu})
    _raise_priority(worker_pid)
    ctx = mp.get_context("fork")
    pipes: list[Connection] = []
    procs = []
    for _ in range(senders if native is None else 0):
        ours, theirs = ctx.Pipe()
        proc = ctx.Process(target=sender_main, args=(theirs, "127.0.0.1"), daemon=True)
        proc.start()
        _raise_priority(proc.pid or 0)
        pipes.append(ours)
        procs.append(proc)
    tmp = tempfile.TemporaryDirectory(dir=directory)
    allocator = PortAllocator(port_low, min(65535, port_low + 4 * calls + 400), "127.0.0.1")
    await asyncio.sleep(1.0)  # the worker imports numpy and codecs
    rss_idle = rss_bytes(worker_pid)
    start = time.monotonic()
    ports: dict[str, list[RtpPort]] = {}
    fmt = {0: PayloadFormat("PCMU", 8000), 101: PayloadFormat("telephone-event", 8000)}
    for i in range(calls):
        key = f"c{i}"
        pair = allocator.allocate(2)
        if pair is None:
            raise RuntimeError("RTP port range exhausted")
        ports[key] = pair
        for port in pair:
            plane.attach(key, port)
        plane.open(key, RecorderSpec(os.path.join(tmp.name, f"{key}.wav"), start))
        for s, port in enumerate(pair):
            plane.set_stream(key, port.port, StreamSpec(fmt, str(s + 1)), start)
    await asyncio.sleep(0.2)
    t0 = time.monotonic() + 0.3
    drops0 = udp_receive_errors()
    natives: list[tuple[NativeSender, list[int]]] = []
    if native is not None:
        # every stream at its own phase within the 20 ms (golden-ratio spread: neighbours far apart)
        tables: list[list[Stream]] = [[] for _ in range(senders)]
        ids: list[list[int]] = [[] for _ in range(senders)]
        for i in range(calls):
            for s, freq in enumerate(tones(i)):
                sid = 2 * i + s
                phase = int((sid * 0.6180339887498949) % 1.0 * PTIME_NS)
                tables[sid % senders].append(
                    Stream(ports[f"c{i}"][s].port, 0x1000 + sid, phase, tone_payload(freq))
                )
                ids[sid % senders].append(sid)
        t0_ns = int(t0 * 1e9)
        end_ns = t0_ns + int(seconds * 1e9)
        for table, sids in zip(tables, ids, strict=True):
            if table:
                sender = NativeSender(native, table, t0_ns, end_ns, other_cpus)
                _raise_priority(sender.process.pid)
                natives.append((sender, sids))
    else:
        for i in range(calls):
            f1, f2 = tones(i)
            for s, freq in enumerate((f1, f2)):
                sid = 2 * i + s
                # spread stream phases over one packet time, as independent calls are
                pipes[sid % senders].send(
                    ("start", sid, ports[f"c{i}"][s].port, 0x1000 + sid, freq, t0 + (sid % 97) * 0.0002)
                )
    await asyncio.sleep(max(0.0, t0 - time.monotonic()) + min(2.0, seconds / 3))
    me = os.getpid()
    cpu0, own0, w0 = cpu_seconds(worker_pid), cpu_seconds(me), time.monotonic()
    await asyncio.sleep(seconds - min(2.0, seconds / 3) - 0.5)
    cpu1, own1, w1 = cpu_seconds(worker_pid), cpu_seconds(me), time.monotonic()
    rss_loaded = rss_bytes(worker_pid)
    sent = [[0, 0] for _ in range(calls)]
    worst_lag = 0.0
    report: SenderReport | None = None
    if natives:
        reports = []
        for sender, sids in natives:
            result = await loop.run_in_executor(None, sender.finish, seconds + 30)
            reports.append(result)
            for sid, count in zip(sids, result.sent, strict=True):
                sent[sid // 2][sid % 2] = count
        report = _merge(reports)
        worst_lag = report.lag_max_ms / 1000
        await asyncio.sleep(0.1)  # the last packets reach the worker
    else:
        await asyncio.sleep(0.5)
        for p in pipes:
            p.send(("done",))
        for p in pipes:
            while True:
                msg = await loop.run_in_executor(None, p.recv)
                if msg[0] == "sent":
                    sent[msg[1] // 2][msg[1] % 2] = msg[2]
                elif msg[0] == "errors":
                    worst_lag = max(worst_lag, msg[2])
                    break
    end = time.monotonic()
    for key, pair in ports.items():
        for port in pair:
            plane.detach(key, port)
    futures = {key: plane.close(key, end) for key in ports}
    results: dict[str, RecordingResult | BaseException] = {}
    for key, future in futures.items():
        try:
            results[key] = await asyncio.wait_for(future, 60)
        except (TimeoutError, OSError) as exc:
            results[key] = exc
    drops = udp_receive_errors() - drops0
    for pair in ports.values():
        for port in pair:
            allocator.release(port)
    received = 0
    lost = 0
    bad = 0
    examples: list[str] = []
    total_sent = sum(map(sum, sent))
    for i in range(calls):
        res = results[f"c{i}"]
        if not isinstance(res, RecordingResult):
            bad += 1
            examples.append(f"c{i}: {res}")
            continue
        if receive_only:
            continue
        for s, stats in enumerate(res.streams):
            received += stats.packets_received
            lost += max(0, sent[i][s] - stats.packets_received)
        problem = _check_wav(res.path, i, end - start, t0 - start)
        if problem is not None:
            bad += 1
            if len(examples) < 5:
                st = res.streams[0]
                examples.append(
                    f"c{i}: {problem} (late {st.packets_late}, reanchors {st.reanchors},"
                    f" clock adjustments {st.clock_adjustments}, gaps {st.gaps[:3]})"
                )
    if receive_only:
        # nothing is placed: what was sent and not dropped by the kernel was received
        received = total_sent - drops
        lost = drops
    window_packets = int(received * (w1 - w0) / max(1e-9, seconds))
    for proc in procs:
        proc.join(5)
    if flusher is not None:
        flusher.cancel()
    plane.stop()
    tmp.cleanup()
    own = 0.0 if in_process else own1 - own0
    return LevelResult(
        calls=calls,
        seconds=round(w1 - w0, 2),
        packets_sent=total_sent,
        packets_received=received,
        packets_lost=lost,
        kernel_drops=drops,
        bad_wavs=bad,
        worker_cpu_s=cpu1 - cpu0,
        us_per_packet=(cpu1 - cpu0 + own) * 1e6 / max(1, window_packets),
        worker_rss_idle=rss_idle,
        worker_rss_loaded=rss_loaded,
        sender_worst_lag_ms=worst_lag * 1000,
        examples=examples,
        srs_cpu_s=cpu1 - cpu0 + own,
        generator="native" if natives else "python",
        sender=report,
        receive_only=receive_only,
    )


def _merge(reports: list[SenderReport]) -> SenderReport:
    """One report for several sender processes: counts add up, lags are the worst of them."""
    return SenderReport(
        sent=[],
        packets=sum(r.packets for r in reports),
        late_1ms=sum(r.late_1ms for r in reports),
        late_5ms=sum(r.late_5ms for r in reports),
        lag_p50_ms=max(r.lag_p50_ms for r in reports),
        lag_p99_ms=max(r.lag_p99_ms for r in reports),
        lag_max_ms=max(r.lag_max_ms for r in reports),
        errors=sum(r.errors for r in reports),
    )


async def _flush_every(plane: MediaPlane, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        plane.flush(time.monotonic())


async def ladder(
    levels: list[int],
    seconds: float,
    *,
    media_cpu: int | None,
    other_cpus: set[int] | None,
    senders: int = 1,
    in_process: bool = False,
    native: Path | None = None,
    floor: bool = False,
    journal: bool = True,
) -> tuple[int, list[dict[str, Any]]]:
    """Run levels in order until one loses packets; returns the largest zero-loss level and all results.

    With ``floor`` each level is run a second time with a worker that only receives (the same
    receive loop, every datagram discarded): ``floor_us_per_packet`` and ``ratio_to_floor`` say how
    much of the cost is srs's own work rather than getting the datagrams out of the kernel."""
    best = 0
    out: list[dict[str, Any]] = []
    with _session_first():
        for calls in levels:
            result = await run_level(
                calls,
                seconds,
                media_cpu=media_cpu,
                other_cpus=other_cpus,
                senders=senders,
                in_process=in_process,
                native=native,
                journal=journal,
            )
            entry = result.as_dict()
            entry["journal"] = journal and not in_process
            if floor and not in_process:
                base = await run_level(
                    calls,
                    seconds,
                    media_cpu=media_cpu,
                    other_cpus=other_cpus,
                    senders=senders,
                    native=native,
                    receive_only=True,
                    journal=journal,
                )
                entry["floor"] = base.as_dict()
                entry["floor_us_per_packet"] = round(base.us_per_packet, 2)
                entry["ratio_to_floor"] = (
                    round(result.us_per_packet / base.us_per_packet, 2) if base.us_per_packet else None
                )
            out.append(entry)
            if result.zero_loss:
                best = calls
            if not result.zero_loss or result.generator_limited:
                break
    return best, out
