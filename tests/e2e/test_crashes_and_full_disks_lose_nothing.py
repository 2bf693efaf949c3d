"""Crashes, shutdown and a full disk lose nothing that was recorded and never take the daemon down.

- kill -9 in the middle of a call: on restart the recording is repaired from its crash journal
  (valid WAV, index consistent, ``incomplete: true``) and loses at most about 100 ms of audio
  (tests/e2e/test_crash_journal_and_worker_death.py measures that from the packets sent).
- SIGTERM with ``drain_seconds = 0``: srs sends BYE, finalizes the recording up to it, exits 0.
- SIGTERM with a drain period: new INVITEs get 503 with Retry-After while running calls go on.
- A full disk (a small filesystem mounted on the recordings folder, as operators often give audio
  its own volume): new calls get 503; a recording whose write fails ends cleanly as failed with
  the reason; the daemon keeps running and takes calls again when space returns.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import (
    LOOPBACK,
    SCENARIOS,
    SIPP,
    Ports,
    SippResult,
    SrsDaemon,
    free_port,
    make_pcap,
    read_wav,
    recordings_show,
    sip_options_ok,
    srs_command,
    wait_recording,
)
from tests.e2e.recording_checks import epoch_seconds

pytestmark = pytest.mark.e2e


def _launch(ports: Ports, data_dir: Path, log: Path, config: Path | None = None) -> subprocess.Popen[bytes]:
    cmd = [*srs_command(), "serve"]
    if config is not None:
        cmd += ["--config", str(config)]
    cmd += [
        "--sip", f"{LOOPBACK}:{ports.sip}",
        "--rtp-ports", f"{ports.rtp_low}-{ports.rtp_high}",
        "--data-dir", str(data_dir),
        "--http", "off",
    ]  # fmt: skip
    with log.open("ab") as err:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        if sip_options_ok(ports.sip):
            return process
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"srs not ready:\n{log.read_text()}")


def _sipp_background(
    workdir: Path, pcap: Path, crid: str, target: str, hold_ms: int
) -> subprocess.Popen[bytes]:
    """siprec_basic.xml in the background; the caller ends it."""
    (workdir / "pcap").mkdir(parents=True)
    shutil.copy(SCENARIOS / "siprec_basic.xml", workdir)
    shutil.copy(pcap, workdir / "pcap" / "two_tone_pcmu.pcap")
    cmd = [
        SIPP, target, "-sf", "siprec_basic.xml", "-set", "crid", crid, "-d", str(hold_ms),
        "-m", "1", "-i", LOOPBACK, "-p", str(free_port()), "-mi", LOOPBACK,
        "-mp", str(free_port((socket.SOCK_DGRAM,), even=True)),
        "-timeout", "40s", "-nostdin", "-trace_err", "-error_file", "errors.log",
    ]  # fmt: skip
    return subprocess.Popen(
        cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _wait_state(crid: str, data_dir: Path, state: str, within: float) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        _, rec, _ = recordings_show(crid, data_dir)
        if rec is not None and rec.get("state") == state:
            return rec
        assert time.monotonic() < deadline, f"{crid} never reached {state!r} (last: {rec})"
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            return -9999
    return int(process.returncode)


@pytest.fixture
def long_pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pcap(tmp_path_factory.mktemp("pcap") / "long.pcap", 10.0)


def test_kill_9_mid_call_is_repaired_at_restart(
    ports: Ports, data_dir: Path, tmp_path: Path, long_pcap: Path, crid: str
) -> None:
    log = tmp_path / "srs.log"
    first = _launch(ports, data_dir, log)
    sipp = _sipp_background(tmp_path / "sipp", long_pcap, crid, f"{LOOPBACK}:{ports.sip}", 10000)
    try:
        live = _wait_state(crid, data_dir, "recording", within=10)
        time.sleep(4.0)
        killed_at = time.time()
        first.kill()
        first.wait(5)
    finally:
        sipp.kill()
        sipp.wait(5)
    second = _launch(ports, data_dir, log)  # the listeners rebind at once
    try:
        rec = wait_recording(crid, data_dir, "available", within=5.0)
        assert rec["id"] == live["id"]
        assert rec["incomplete"] is True and "crash journal" in rec["incomplete_reason"], rec
        wav = read_wav(rec["file"]["path"])
        assert (wav.sample_rate, wav.channels, wav.sample_width) == (8000, 1, 2)
        recorded_s = len(wav.samples) / 8000
        expected_s = killed_at - epoch_seconds(rec["started_at"])
        lost_s = expected_s - recorded_s
        print(f"kill -9 after {expected_s:.2f} s of call: {recorded_s:.2f} s kept, {lost_s:.2f} s lost")
        # by the wall clock, so loosely (SIPp's pcap play falls behind it on a loaded machine; the
        # 100 ms bound is measured from the packets sent in test_crash_journal_and_worker_death.py):
        # the replayed file ends 100 ms after the last packet's place
        assert -0.3 <= lost_s <= 0.5, (expected_s, recorded_s)
        assert rec["file"]["size"] == Path(rec["file"]["path"]).stat().st_size
    finally:
        assert _stop(second) == 0, log.read_text()


def test_sigterm_without_drain_sends_bye_and_finalizes(
    start_srs: Callable[..., SrsDaemon], tmp_path: Path, long_pcap: Path, crid: str
) -> None:
    srs = start_srs("[limits]\ndrain_seconds = 0\n")
    sipp = _sipp_background(tmp_path / "sipp", long_pcap, crid, srs.sip_target, 10000)
    try:
        _wait_state(crid, srs.data_dir, "recording", within=10)
        time.sleep(3.0)
        stopped_at = time.time()
        code = srs.stop()
        exited_at = time.time()
    finally:
        sipp.kill()
        sipp.wait(5)
    assert code == 0, srs.log_text()
    assert exited_at - stopped_at < 5.0
    events = [e.get("event") for e in srs.log_events()]
    assert "recording_ended" in events and "stopped" in events
    ended = next(e for e in srs.log_events() if e.get("event") == "recording_ended")
    assert ended["reason"] == "srs shutting down", ended
    code, rec, err = recordings_show(crid, srs.data_dir)
    assert rec is not None and rec["state"] == "available", err
    assert rec["incomplete"] is False
    wav = read_wav(rec["file"]["path"])
    expected = stopped_at - epoch_seconds(rec["started_at"])
    assert abs(len(wav.samples) / 8000 - expected) < 0.3, (len(wav.samples) / 8000, expected)


def test_drain_refuses_new_calls_with_503_while_running_calls_go_on(
    start_srs: Callable[..., SrsDaemon],
    run_sipp: Callable[..., SippResult],
    tmp_path: Path,
    long_pcap: Path,
    pcaps: dict[str, Path],
    crid: str,
) -> None:
    srs = start_srs("[limits]\ndrain_seconds = 30\n")
    sipp = _sipp_background(tmp_path / "sipp", long_pcap, crid, srs.sip_target, 6000)
    try:
        _wait_state(crid, srs.data_dir, "recording", within=10)
        srs.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        late = run_sipp(
            "siprec_basic.xml", "-set", "crid", f"{crid}-late", "-d", "500",
            target=srs.sip_target, timeout=10, pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
        )  # fmt: skip
        refused = late.find(sent=False, status=503)
        assert refused.header("Retry-After"), refused.text
        assert sipp.wait(30) == 0  # the running call ends by itself, normally
    finally:
        if sipp.poll() is None:
            sipp.kill()
    assert srs.process.wait(20) == 0, srs.log_text()
    rec = wait_recording(crid, srs.data_dir, "available", within=1.0)
    assert rec["incomplete"] is False
    assert recordings_show(f"{crid}-late", srs.data_dir)[1] is None


@contextlib.contextmanager
def _small_filesystem(path: Path, size_kb: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path, leave_kb: int) -> Path:
    """A filler file that leaves about ``leave_kb`` free."""
    filler = path / "filler.bin"
    free = shutil.disk_usage(path).free
    with filler.open("ab") as handle:
        handle.write(b"\0" * max(0, free - leave_kb * 1024))
    return filler


def test_full_disk_refuses_new_calls_and_recovers(
    ports: Ports,
    tmp_path: Path,
    run_sipp: Callable[..., SippResult],
    pcaps: dict[str, Path],
    crid: str,
) -> None:
    config = tmp_path / "srs.toml"
    config.write_text("[storage]\nmin_free_mb = 1\nwarn_free_mb = 2\n")
    data_dir = tmp_path / "data"
    with _small_filesystem(data_dir / "recordings", 4096) as audio:
        log = tmp_path / "srs.log"
        process = _launch(ports, data_dir, log, config)
        try:
            filler = _fill(audio, 512)
            time.sleep(2.5)  # the disk watch runs every 2 s
            refused = run_sipp(
                "siprec_basic.xml", "-set", "crid", f"{crid}-full", "-d", "500",
                target=f"{LOOPBACK}:{ports.sip}", timeout=10,
                pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
            )  # fmt: skip
            assert refused.find(sent=False, status=503).header("Retry-After")
            assert "disk_full" in log.read_text()
            filler.unlink()
            time.sleep(2.5)
            ok = run_sipp(
                "siprec_basic.xml", "-set", "crid", crid, "-d", "2000",
                target=f"{LOOPBACK}:{ports.sip}", timeout=20,
                pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
            )  # fmt: skip
            assert ok.returncode == 0, ok.describe()
            assert wait_recording(crid, data_dir, "available", within=1.0)["incomplete"] is False
        finally:
            assert _stop(process) == 0, log.read_text()


def test_write_failure_ends_that_recording_cleanly(
    ports: Ports, tmp_path: Path, long_pcap: Path, crid: str
) -> None:
    config = tmp_path / "srs.toml"
    config.write_text("[storage]\nmin_free_mb = 0\nwarn_free_mb = 0\n")
    data_dir = tmp_path / "data"
    with _small_filesystem(data_dir / "recordings", 4096) as audio:
        log = tmp_path / "srs.log"
        process = _launch(ports, data_dir, log, config)
        sipp = _sipp_background(tmp_path / "sipp", long_pcap, crid, f"{LOOPBACK}:{ports.sip}", 10000)
        try:
            _wait_state(crid, data_dir, "recording", within=10)
            filler = _fill(audio, 0)
            deadline = time.monotonic() + 8
            while "recording_write_failed" not in log.read_text():
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            filler.unlink()
            rec = _wait_state(crid, data_dir, "failed", within=5)
            assert rec["incomplete_reason"], rec
            assert process.poll() is None  # the daemon keeps running
            assert sip_options_ok(ports.sip)
        finally:
            sipp.kill()
            sipp.wait(5)
            assert _stop(process) == 0, log.read_text()
