"""README.md's walkthrough, run as written from a fresh copy of the repository.

The fenced ``sh`` block under "From `make run` to the first recording" is extracted and run with
bash in a copy made from ``git ls-files`` (what a clone holds), so a step that only works in a
developer's tree (a ``pcap/`` folder that happens to exist, a ``var/`` left over) fails here. The
copy reuses this test run's virtualenv (a link to it, with the install stamp newer than the copied
``pyproject.toml`` files so ``make run`` does not reinstall), and the ports are chosen free through
the variables the block names for that. It is bounded in time; whatever it started is stopped.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from tests.e2e.conftest import LOOPBACK, free_port

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
HEADING = "## From `make run` to the first recording"
RUN_TIMEOUT_S = 150


def walkthrough_block(readme: str) -> str:
    section = readme.split(HEADING, 1)[1]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match is not None, "the walkthrough section has no ```sh block"
    return match.group(1)


def fresh_copy(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if not source.is_file():
            continue  # deleted in the working tree
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / name)
    return target


def _media_port() -> int:
    """An even UDP port with the next three free (SIPp sends stream 2 from port + 2)."""
    for _ in range(100):
        port = free_port(even=True)
        if all(_udp_free(p) for p in range(port, port + 4)):
            return port
    raise RuntimeError("no free media ports")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def test_readme_walkthrough_from_a_fresh_copy(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    stamp = venv / ".installed"
    if not stamp.exists():
        pytest.skip("needs the test run's virtualenv made by `make install`")
    if shutil.which("sipp") is None or shutil.which("curl") is None:
        pytest.skip("needs sipp and curl")
    repo = fresh_copy(tmp_path / "srs")
    assert not (repo / "sipp-scenarios" / "pcap").exists() and not (repo / "var").exists()
    (repo / ".venv").symlink_to(venv)
    older = stamp.stat().st_mtime - 60
    for name in ("pyproject.toml", "codecs/pyproject.toml"):
        os.utime(repo / name, (older, older))

    block = walkthrough_block((repo / "README.md").read_text())
    env = {key: value for key, value in os.environ.items() if not key.startswith("SRS_")}
    env.update(
        SIP_PORT=str(free_port((socket.SOCK_DGRAM, socket.SOCK_STREAM))),
        HTTP_PORT=str(free_port((socket.SOCK_STREAM,))),
        SIPP_PORT=str(free_port((socket.SOCK_DGRAM, socket.SOCK_STREAM))),
        SIPP_MEDIA_PORT=str(_media_port()),
        MAKEFLAGS="",
    )
    process = subprocess.Popen(
        ["bash", "-e", "-c", block], cwd=repo, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        text = output.decode(errors="replace")
        pytest.fail(f"the walkthrough did not finish in {RUN_TIMEOUT_S} s:\n{text}")
    finally:
        _stop_leftover_daemon(repo, process.pid)
    text = output.decode(errors="replace")
    log = (repo / "srs.log").read_text(errors="replace") if (repo / "srs.log").exists() else ""
    assert process.returncode == 0, f"{text}\n----- srs.daemon.logs -----\n{log}"

    with wave.open(str(repo / "ACREC-123.wav")) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 8000, 2)
        seconds = wav.getnframes() / wav.getframerate()
    assert 4.8 <= seconds <= 5.6, seconds
    assert "1 channel 8000 Hz 16 bit" in text
    assert "the API serves the same file" in text
    assert '"call_recording_id": "ACREC-123"' in text or '"call_recording_id":"ACREC-123"' in text
    assert '"level": "error"' not in log, log  # a normal run and shutdown log no errors
    assert '"event": "stopped"' in log


def _stop_leftover_daemon(repo: Path, session: int) -> None:
    """If the block failed before its last step, the daemon it started is still running."""
    with_pid = repo / "var" / "srs.lock"
    text = with_pid.read_text().strip() if with_pid.exists() else ""
    if text.isdigit():
        try:
            if os.getsid(int(text)) == session:  # ours: started inside this test's session
                os.kill(int(text), signal.SIGTERM)
        except ProcessLookupError:
            pass
