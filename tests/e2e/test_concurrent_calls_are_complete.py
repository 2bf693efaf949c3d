"""In small: the load generator drives concurrent calls; every recording is complete and right.

Each call carries two tones of its own; afterwards every recording must be available in the index
with as many packets received per stream as were sent, and its WAV must span the call without gaps
and hold both tones at the level sent.  Run once with media on the daemon's loop and once with media
in a worker process (``--media-workers 1``).  The numbers are small: this keeps the load path
working; ``python -m bench`` measures it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import loadgen
from tests.e2e.conftest import LOOPBACK, free_port, free_port_range, sip_options_ok

pytestmark = pytest.mark.e2e


@pytest.fixture(params=[0, 1], ids=["in-process-media", "media-worker"])
def daemon(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    sip = free_port()
    low, high = free_port_range(400)
    data = tmp_path / "data"
    log = tmp_path / "srs.log"
    cmd = [
        sys.executable, "-m", "bench.serve", "--media-workers", str(request.param),
        "--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{high}",
        "--data-dir", str(data), "--http", "off",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 15
        while not sip_options_ok(sip):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield f"{LOOPBACK}:{sip}", data
    finally:
        process.terminate()
        code = process.wait(30)
        assert code == 0, log.read_text()


def test_concurrent_calls_are_all_recorded_completely(daemon: tuple[str, Path]) -> None:
    target, data = daemon
    result = loadgen.run_load(target, data, calls=30, rate=15, hold=2.0, timeout=60)
    assert result.failures == []
    assert result.concurrent_peak == 30
    time.sleep(0.5)
    checked = loadgen.verify(result, data)
    assert checked["recordings_checked"] == 30
    assert checked["examples"] == {}
    assert checked["packets_lost"] == 0
    assert checked["packets_received"] == checked["packets_sent"] > 30 * 2 * 100
    assert len(result.bye_to_available) == 30
