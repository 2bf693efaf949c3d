"""Property-based fuzzing of every route in /openapi.json of a running daemon: no input may cause a 5xx.

Runs the schemathesis command line against the live daemon with an admin token, so the admin routes
(hold, delete, exports) are fuzzed too, next to one real recording SIPp made.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LOOPBACK, SrsDaemon, srs_command
from tests.e2e.recording_checks import RunSipp, record_call

pytestmark = pytest.mark.e2e

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MAX_EXAMPLES = 40
BUDGET_S = 110


def wait_id(base: str, token: str, crid: str) -> str:
    listing = httpx.get(
        f"{base}/api/v1/recordings", params={"call_recording_id": crid},
        headers={"Authorization": f"Bearer {token}"}, timeout=5,
    )
    assert listing.status_code == 200, listing.text
    recording_id: str = listing.json()["items"][0]["id"]
    return recording_id


def test_openapi_fuzz_finds_no_server_error(
    srs_daemon: SrsDaemon, run_sipp: RunSipp, pcaps: dict[str, Path], crid: str, tmp_path: Path
) -> None:
    if not SCHEMATHESIS.exists():
        pytest.skip("schemathesis is not installed")
    record_call(srs_daemon, run_sipp, "siprec_basic.xml", crid, {"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
                "-d", "2000")
    created = subprocess.run(
        [*srs_command(), "token", "create", "--scope", "admin", "--json",
         "--data-dir", str(srs_daemon.data_dir)],
        capture_output=True, text=True, timeout=30, check=True,
    )
    token = json.loads(created.stdout)["token"]
    base = f"http://{LOOPBACK}:{srs_daemon.ports.http}"
    assert httpx.get(f"{base}/openapi.json", timeout=5).status_code == 200
    recording_id = wait_id(base, token, crid)
    # Half the cases reach a real recording (files, links, metadata, hold, delete), half a random id.
    (tmp_path / "schemathesis.toml").write_text(
        f'[[operations]]\ninclude-method = "GET"\nparameters = {{ recording_id = "{recording_id}" }}\n'
    )
    run = subprocess.run(
        [
            str(SCHEMATHESIS), "run", f"{base}/openapi.json",
            "--url", base,
            "-H", f"Authorization: Bearer {token}",
            "--checks", "not_a_server_error",
            "--max-examples", str(MAX_EXAMPLES),
            "--request-timeout", "10",
            "--seed", "7866",
            "--phases", "examples,coverage,fuzzing",
            "--no-color",
        ],
        capture_output=True, text=True, timeout=BUDGET_S, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts is not None and int(counts[1]) == int(counts[2]) >= 100, report
    listing = httpx.get(
        f"{base}/api/v1/recordings", params={"call_recording_id": crid},
        headers={"Authorization": f"Bearer {token}"}, timeout=5,
    )
    assert listing.status_code == 200  # the daemon still serves after the fuzzing
