"""The bench's native RTP sender (``rtpsend.c`` beside this file), built at bench time with ``cc``.

Loopback delivery is charged to the sender: the receiving socket's queueing runs inside the
sender's ``sendto``. A Python sender loop tops out near 120k packets/s on one core, about what one
srs worker takes, so a Python generator measures itself as much as srs. ``rtpsend`` sends with
``sendmmsg`` from a precomputed table, every stream at its own phase within each 20 ms, and says
how far behind schedule it fell (p50/p99/max lag), which the bench reports with every level.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("rtpsend.c")
PTIME_NS = 20_000_000


def build(directory: Path) -> Path | None:
    """Compile ``rtpsend`` into ``directory``; None where no C compiler is installed."""
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        return None
    binary = directory / "rtpsend"
    result = subprocess.run(
        [compiler, "-O2", "-o", str(binary), str(SOURCE)], capture_output=True, timeout=120, check=False
    )
    if result.returncode != 0:
        return None
    return binary


@dataclass(frozen=True)
class Stream:
    port: int
    ssrc: int
    phase_ns: int
    """Offset of this stream's packets within each 20 ms, in [0, 20 ms)."""
    payload: bytes


@dataclass(frozen=True)
class SenderReport:
    sent: list[int]
    """Packets sent, per stream, in the order given."""
    packets: int
    late_1ms: int
    late_5ms: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    errors: int


class NativeSender:
    """One ``rtpsend`` process sending ``streams`` from ``start_ns`` to ``end_ns`` (monotonic)."""

    def __init__(
        self, binary: Path, streams: list[Stream], start_ns: int, end_ns: int, cpus: set[int] | None = None
    ) -> None:
        lines = [f"{len(streams)} {start_ns} {end_ns}"]
        for stream in streams:
            if not 0 <= stream.phase_ns < PTIME_NS:
                raise ValueError("a stream's phase lies within one packet time")
            lines.append(f"{stream.port} {stream.ssrc} {stream.phase_ns} {stream.payload.hex()}")
        self.count = len(streams)
        self.process = subprocess.Popen(
            [str(binary)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        if cpus:
            os.sched_setaffinity(self.process.pid, cpus)
        assert self.process.stdin is not None
        self.process.stdin.write(("\n".join(lines) + "\n").encode())
        self.process.stdin.close()
        self.process.stdin = None  # written whole: communicate() only reads

    def finish(self, timeout: float) -> SenderReport:
        out, err = self.process.communicate(timeout=timeout)
        if self.process.returncode != 0:
            raise RuntimeError(f"rtpsend failed: {err.decode(errors='replace')[-500:]}")
        sent = [0] * self.count
        lag: list[int] = []
        errors = 0
        for line in out.decode().splitlines():
            parts = line.split()
            if parts[0] == "sent":
                sent[int(parts[1])] = int(parts[2])
            elif parts[0] == "lag":
                lag = [int(p) for p in parts[1:]]
            elif parts[0] == "errors":
                errors = int(parts[1])
        packets, late1, late5, p50, p99, worst = lag
        return SenderReport(sent, packets, late1, late5, p50 / 1000, p99 / 1000, worst / 1000, errors)
