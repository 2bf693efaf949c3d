"""Low load: 200 two-stream calls from SIPp (its pcap play), CPU of every srs process per packet.

At low load a receive loop that wakes for every datagram pays its whole wake-up per packet; this
figure shows what srs costs where most installations run. SIPp plays the same capture on every
call (two G.711 streams), each call from its own ACK, so the streams' phases spread over the 20 ms
as independent calls do. CPU is the daemon's and all its children's (media worker, index writer)
over a window in which every call is up; packets in that window are ``calls × 100 × seconds``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.media import cpu_seconds

RATE = 100
"""Calls set up per second by SIPp."""


def low_load(
    work: Path,
    daemon: Any,
    children: Any,
    free_port: Any,
    scenarios: Path,
    *,
    calls: int = 200,
    seconds: float = 12.0,
) -> dict[str, Any]:
    """``daemon``, ``children`` and ``free_port`` are the bench's own helpers (``bench.__main__``)."""
    sipp = shutil.which("sipp")
    if sipp is None or not (scenarios / "siprec_load.xml").exists():
        return {"skipped": "sipp or sipp-scenarios/siprec_load.xml not found"}
    root = work / "lowload"
    (root / "pcap").mkdir(parents=True)
    data = root / "data"
    data.mkdir()
    subprocess.run(
        [sys.executable, str(scenarios / "make_pcap.py"), str(root / "pcap" / "load_pcmu.pcap"),
         "--seconds", str(seconds)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    shutil.copy(scenarios / "siprec_load.xml", root / "siprec_load.xml")
    ramp = calls / RATE
    with daemon(data, workers=1, media_cpu=None, other_cpus=None) as (sip, process):
        pids = [process.pid, *children(process.pid)]
        media_port = free_port() & ~1
        cmd = [
            sipp, f"127.0.0.1:{sip}", "-sf", "siprec_load.xml", "-set", "crid", f"LOW-{uuid.uuid4().hex[:6]}",
            "-d", str(int(seconds * 1000)), "-r", str(RATE), "-l", str(calls), "-m", str(calls),
            "-i", "127.0.0.1", "-p", str(free_port()), "-mi", "127.0.0.1", "-mp", str(media_port),
            "-timeout", f"{int(seconds + 60)}s", "-nostdin",
        ]  # fmt: skip
        began = time.monotonic()
        client = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(ramp + 1.0)
        cpu0, w0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        time.sleep(max(1.0, seconds - ramp - 2.0))
        cpu1, w1 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        try:
            _, err = client.communicate(timeout=seconds + 90)
        except subprocess.TimeoutExpired:
            client.kill()
            _, err = client.communicate()
        wall = time.monotonic() - began
    packets = calls * 2 * 50 * (w1 - w0)
    return {
        "calls": calls,
        "seconds_per_call": seconds,
        "window_s": round(w1 - w0, 2),
        "srs_processes": len(pids),
        "srs_cpu_s": round(cpu1 - cpu0, 3),
        "packets_in_window": int(packets),
        "us_per_packet": round((cpu1 - cpu0) * 1e6 / packets, 2),
        "sipp_exit_code": client.returncode,
        "sipp_errors": err.decode(errors="replace")[-300:] if client.returncode else "",
        "wall_s": round(wall, 1),
    }
