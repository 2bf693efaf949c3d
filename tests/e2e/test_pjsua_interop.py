"""Interop with an independent SIP/RTP stack: a pjsua2 SIPREC client records a two-tone call.

The client runs in a child process (see pjsua_client.py) so a native crash fails one test
instead of the whole run.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import SrsDaemon, StubSrs, free_port, read_wav, wait_recording
from tests.e2e.recording_checks import assert_tones, assert_wav_format

pytestmark = pytest.mark.e2e

CLIENT = Path(__file__).with_name("pjsua_client.py")
SECONDS = 4.0


def run_client(target: str, crid: str, log: Path, transport: str = "udp") -> tuple[int, dict[str, Any], str]:
    """Run one call; returns (exit code, the client's JSON report, its stderr + pjsua log tail)."""
    cmd = [
        sys.executable,
        str(CLIENT),
        "--target",
        target,
        "--crid",
        crid,
        "--seconds",
        str(SECONDS),
        "--transport",
        transport,
        "--log",
        str(log),
        "--rtp-port",
        str(free_port((socket.SOCK_DGRAM,), even=True)),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=SECONDS + 40, stdin=subprocess.DEVNULL)
        code, out, err = (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )
    except subprocess.TimeoutExpired as exc:
        code, out, err = -9999, (exc.stdout or b"").decode(errors="replace"), "client timed out"
    lines = [line for line in out.splitlines() if line.startswith("{")]
    report: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    log_tail = log.read_text(errors="replace")[-6000:] if log.exists() else ""
    return code, report, f"exit {code}\nreport {report}\nstderr {err[-2000:]}\npjsua log tail:\n{log_tail}"


def test_pjsua_client_against_stand_in(start_stub: Callable[..., StubSrs], tmp_path: Path) -> None:
    """The client itself: SIPREC offer shape and RTP on both streams, without the daemon."""
    stub = start_stub()
    code, _report, details = run_client(stub.sip_target, "PJ-SELF", tmp_path / "pjsua.log")
    summary = stub.stop()
    assert code == 0, details
    invite = summary["invites"][0]
    assert invite["require"] == "siprec" and ";+sip.src" in invite["contact"], invite
    assert invite["content_type"].startswith("multipart/mixed"), invite
    assert "Content-Disposition: recording-session" in invite["body"], invite["body"]
    assert invite["body"].count("a=sendonly") == 2 and "a=label:2" in invite["body"], invite["body"]
    packets = summary["rtp_packets"]
    assert set(packets) == {"0", "2"} and min(packets.values()) >= 0.9 * SECONDS * 50, summary


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_pjsua_call_is_recorded_with_both_tones(
    srs_daemon: SrsDaemon, tmp_path: Path, crid: str, transport: str
) -> None:
    code, report, details = run_client(srs_daemon.sip_target, crid, tmp_path / "pjsua.log", transport)
    assert code == 0, details
    rec = wait_recording(crid, srs_daemon.data_dir, "available", within=1.0)
    assert rec["sip_call_id"] == report["call_id"], (rec, report)
    assert sorted(str(s["label"]) for s in rec["streams"]) == ["1", "2"], rec["streams"]
    wav = read_wav(rec["file"]["path"])
    assert_wav_format(wav)
    assert wav.duration >= SECONDS - 0.2, (wav.duration, report)
    assert_tones(wav, 0.5, SECONDS - 0.5, "pjsua two-tone call")
