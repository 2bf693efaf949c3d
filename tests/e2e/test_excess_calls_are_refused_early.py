"""More calls than srs admits: the excess is refused early, the calls already admitted never degrade.

- ``[limits] max_sessions = N`` and 2·N calls offered at once: exactly N are answered, the rest get
  503 with Retry-After (an SBC fails over on it), every admitted call's WAV is complete (all packets
  sent are in it, no gap, both tones at the level sent) and nothing stays in ``recording``.
- Loop-lag shedding (``[limits] max_loop_lag_ms``): the daemon's loop is held still for 0.6 s
  (SIGSTOP/SIGCONT, the deterministic stand-in for a stall or CPU starvation; a burst of INVITEs
  would make the lag depend on this machine's speed and on how the loop batches reads); an INVITE
  arriving just after gets 503 + Retry-After, the calls already recording (media in a worker)
  lose nothing, and once the lag has decayed new calls are taken again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench import loadgen
from bench.overload import REFUSED_503, LoadThread, failure_kinds, probe_invite
from bench.soak import index_states
from tests.e2e.conftest import LOOPBACK, free_port, free_port_range, sip_options_ok

pytestmark = pytest.mark.e2e

UNFINISHED = ("starting", "recording", "stopping")


@dataclass
class Daemon:
    target: str
    data: Path
    log: Path
    pid: int

    def events(self, name: str) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, dict) and item.get("event") == name:
                found.append(item)
        return found


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[str], Daemon]]:
    """``start_daemon(config_toml)``: the daemon with that configuration and room for 250 calls' ports."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(config_toml: str) -> Daemon:
        sip = free_port()
        low, high = free_port_range(1000)
        data = tmp_path / "data"
        log = tmp_path / "srs.log"
        config = tmp_path / "srs.toml"
        config.write_text(config_toml)
        cmd = [
            sys.executable, "-m", "srs", "serve", "--config", str(config),
            "--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{high}",
            "--data-dir", str(data), "--http", "off",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        processes.append((process, log))
        deadline = time.monotonic() + 15
        while not sip_options_ok(sip):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        return Daemon(f"{LOOPBACK}:{sip}", data, log, process.pid)

    yield start
    for process, log in processes:
        process.terminate()
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait(5)
        assert code == 0, log.read_text()[-3000:]


def _settle(data: Path, within: float = 10.0) -> dict[str, int]:
    """Index rows by state once no recording is unfinished (or as they are after ``within`` s)."""
    deadline = time.monotonic() + within
    states = index_states(data)
    while any(states.get(s) for s in UNFINISHED) and time.monotonic() < deadline:
        time.sleep(0.1)
        states = index_states(data)
    return states


def _assert_complete(result: loadgen.LoadResult, data: Path) -> None:
    checked = loadgen.verify(result, data)
    assert checked["recordings_checked"] == len(result.calls_ok)
    assert checked["examples"] == {}, checked
    assert checked["packets_lost"] == 0, checked
    assert checked["packets_received"] == checked["packets_sent"], checked


def test_calls_beyond_max_sessions_get_503_and_admitted_ones_are_complete(
    start_daemon: Callable[[str], Daemon],
) -> None:
    limit = 6
    srs = start_daemon(f"[limits]\nmax_sessions = {limit}\n")
    load = LoadThread(
        lambda: loadgen.run_load(
            srs.target, srs.data, calls=2 * limit, rate=4 * limit, hold=3.0, prefix="MAXS", timeout=30
        )
    )  # every INVITE goes out within 0.5 s; the first call ends 3.5 s after it began
    load.start()
    deadline = time.monotonic() + 3.0
    while index_states(srs.data).get("recording", 0) < limit:
        assert time.monotonic() < deadline and load.is_alive(), index_states(srs.data)
        time.sleep(0.02)
    probe = probe_invite(srs.target, "MAXS-probe")
    result = load.outcome()

    assert (probe.status, probe.reason) == (503, "Service Unavailable"), probe
    assert probe.retry_after is not None and int(probe.retry_after) > 0, probe
    assert failure_kinds(result) == {REFUSED_503: limit}, result.failures
    assert len(result.calls_ok) == limit
    assert result.concurrent_peak == limit
    states = _settle(srs.data)
    assert states == {"available": limit}, states  # refused calls leave no row; nothing stuck
    _assert_complete(result, srs.data)


def test_a_late_loop_sheds_new_calls_and_spares_the_running_ones(
    start_daemon: Callable[[str], Daemon],
) -> None:
    srs = start_daemon("[limits]\nmax_loop_lag_ms = 40\n[media]\nworkers = 1\n")
    running = LoadThread(
        lambda: loadgen.run_load(srs.target, srs.data, calls=4, rate=20, hold=5.0, prefix="RUN", timeout=30)
    )
    running.start()
    deadline = time.monotonic() + 3.0
    while index_states(srs.data).get("recording", 0) < 4:
        assert time.monotonic() < deadline and running.is_alive(), index_states(srs.data)
        time.sleep(0.02)
    # The loop blocked for 0.6 s, as a stall or CPU starvation would: its next 100 ms tick is
    # >= 0.5 s late, the smoothed lag >= 150 ms, and it takes ~6 ticks to fall below 20 ms.
    os.kill(srs.pid, signal.SIGSTOP)
    time.sleep(0.6)
    os.kill(srs.pid, signal.SIGCONT)
    time.sleep(0.15)
    refused = probe_invite(srs.target, "LATE-probe")
    assert (refused.status, refused.reason) == (503, "Service Unavailable"), refused
    assert refused.retry_after is not None and int(refused.retry_after) > 0, refused
    # the 503 leaves before its log line is written: give the log a moment
    deadline = time.monotonic() + 2
    while not srs.events("call_refused_overload") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srs.events("overload") and len(srs.events("call_refused_overload")) == 1

    deadline = time.monotonic() + 10
    while not srs.events("overload_cleared"):
        assert time.monotonic() < deadline, "overload never cleared"
        time.sleep(0.1)
    after = loadgen.run_load(srs.target, srs.data, calls=2, rate=10, hold=1.0, prefix="AFTER", timeout=20)
    assert after.failures == []  # once the loop has caught up, calls are taken again

    result = running.outcome()
    assert result.failures == []
    states = _settle(srs.data)
    assert states == {"available": 6}, states  # the refused probe left no row, nothing is stuck
    _assert_complete(result, srs.data)  # the stall and the shedding cost the running calls nothing
    _assert_complete(after, srs.data)
