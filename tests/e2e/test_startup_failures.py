"""The operator's first hour: every start-up failure a user can cause is one line and its own exit code.

Each case runs the real ``srs serve`` as a subprocess and checks that stderr is exactly one line (no
traceback), names what is wrong and where, and that the exit code is the one README.md documents.
Nothing here sends a packet: ports are only bound (on 127.0.0.1, or an address this host does not
have, which the kernel refuses before anything leaves).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from srs.errors import ExitCode
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout
from srs.storage.records import State
from tests.e2e.conftest import LOOPBACK, Ports, SrsDaemon, free_port, srs_command
from tests.unit.storage.factory import add_recording

pytestmark = pytest.mark.e2e
FAIL_TIMEOUT_S = 60


def serve(ports: Ports, data_dir: Path, *extra: str, config: str | None = None, cwd: Path) -> tuple[int, str]:
    """``srs serve`` that is expected to fail at once: (exit code, stderr)."""
    cmd = [*srs_command(), "serve"]
    if config is not None:
        path = cwd / "srs.toml"
        path.write_text(config)
        cmd += ["--config", str(path)]
    cmd += [
        "--sip", f"{LOOPBACK}:{ports.sip}", "--rtp-ports", f"{ports.rtp_low}-{ports.rtp_high}",
        "--data-dir", str(data_dir), "--http", f"{LOOPBACK}:{ports.http}", *extra,
    ]  # fmt: skip
    done = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd, timeout=FAIL_TIMEOUT_S, check=False
    )
    return done.returncode, done.stderr.decode(errors="replace")


def assert_one_line(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.endswith("\n"), f"expected one line, got:\n{err}"
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def test_sip_udp_port_in_use(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, ports.sip))
        code, err = serve(ports, data_dir, cwd=tmp_path)
    assert_one_line(err, "SIP UDP", f"{LOOPBACK}:{ports.sip}", "in use")
    assert code == ExitCode.ADDRESS_IN_USE


def test_sip_tcp_port_in_use(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, ports.sip))
        taken.listen()
        code, err = serve(ports, data_dir, cwd=tmp_path)
    assert_one_line(err, "SIP TCP", f"{LOOPBACK}:{ports.sip}", "in use")
    assert code == ExitCode.ADDRESS_IN_USE


def test_http_port_in_use(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, ports.http))
        taken.listen()
        code, err = serve(ports, data_dir, cwd=tmp_path)
    assert_one_line(err, "HTTP", f"{LOOPBACK}:{ports.http}", "in use")
    assert code == ExitCode.ADDRESS_IN_USE
    assert not (data_dir / "index.sqlite3").exists(), "nothing is opened before the ports are bound"


@pytest.mark.parametrize(("flag", "what"), [("--sip", "SIP UDP"), ("--http", "HTTP")])
def test_address_not_on_this_host(ports: Ports, data_dir: Path, tmp_path: Path, flag: str, what: str) -> None:
    code, err = serve(ports, data_dir, flag, "192.0.2.1:5060", cwd=tmp_path)  # TEST-NET-1
    assert_one_line(err, what, "192.0.2.1:5060")
    assert code == ExitCode.ADDRESS_NOT_PERMITTED


@pytest.mark.skipif(os.geteuid() == 0, reason="root may bind privileged ports")
def test_privileged_port_is_not_permitted(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    code, err = serve(ports, data_dir, "--sip", f"{LOOPBACK}:506", cwd=tmp_path)
    assert_one_line(err, "SIP UDP", f"{LOOPBACK}:506")
    assert code == ExitCode.ADDRESS_NOT_PERMITTED


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda tmp: tmp / "missing" / "data", "does not exist"),
        (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "is not a directory"),
        (lambda tmp: Path("/proc/srs-data"), "cannot create"),
    ],
    ids=["parent-missing", "a-file", "cannot-create"],
)
def test_unusable_data_dir(ports: Ports, tmp_path: Path, make: Callable[[Path], Path], needle: str) -> None:
    target = make(tmp_path)
    code, err = serve(ports, target, cwd=tmp_path)
    assert_one_line(err, str(target), needle)
    assert code == ExitCode.DATA_DIR
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize(
    ("target", "needle"), [("/proc/1", "not writable"), ("/sys", "cannot open srs.lock")]
)
def test_existing_directory_srs_cannot_write(ports: Ports, tmp_path: Path, target: str, needle: str) -> None:
    """Directories not even root may write in (``/proc/1``; ``/sys`` answers only when written to)."""
    if not Path(target).is_dir():
        pytest.skip(f"no {target} here")
    code, err = serve(ports, Path(target), cwd=tmp_path)
    assert_one_line(err, target, needle)
    assert code == ExitCode.DATA_DIR


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_data_dir(ports: Ports, tmp_path: Path) -> None:
    target = tmp_path / "ro"
    target.mkdir(mode=0o500)
    code, err = serve(ports, target, cwd=tmp_path)
    assert_one_line(err, str(target), "not writable")
    assert code == ExitCode.DATA_DIR


def test_a_new_data_dir_is_removed_again_when_start_fails(ports: Ports, tmp_path: Path) -> None:
    target = tmp_path / "fresh"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((LOOPBACK, ports.sip))
        code, _ = serve(ports, target, cwd=tmp_path)
    assert code == ExitCode.ADDRESS_IN_USE
    assert not target.exists()


@pytest.mark.parametrize(
    ("config", "needle"),
    [
        ('[log]\nlevel = "verbose"\n', "[log] level"),
        ('[media]\npause = "skip"\n', "[media] pause"),
        ('[media]\nformat = "aac"\n', "[media] format"),
        ("[sip]\nt1_ms = 0\n", "[sip] t1_ms"),
        ("[limits]\nmax_sessions = -5\n", "[limits] max_sessions"),
        ('[limits]\nmax_sessions = "many"\n', "[limits] max_sessions"),
        ("[storage]\nretention_interval_s = 0\n", "[storage] retention_interval_s"),
        ("[media]\nrtp_port_min = 30000\nrtp_port_max = 30002\n", "too small"),
        ("[sip\n", "config file"),
    ],
    ids=["log-level", "pause", "format", "t1", "negative", "type", "interval", "port-range", "toml"],
)
def test_bad_config_values(ports: Ports, data_dir: Path, tmp_path: Path, config: str, needle: str) -> None:
    # no --rtp-ports here: the port-range case takes its range from the file
    code, err = serve_config(ports, data_dir, config, tmp_path)
    assert_one_line(err, needle)
    assert code == ExitCode.USAGE


def serve_config(ports: Ports, data_dir: Path, config: str, cwd: Path, *extra: str) -> tuple[int, str]:
    path = cwd / "srs.toml"
    path.write_text(config)
    cmd = [
        *srs_command(), "serve", "--config", str(path), "--sip", f"{LOOPBACK}:{ports.sip}",
        "--data-dir", str(data_dir), "--http", f"{LOOPBACK}:{ports.http}", *extra,
    ]  # fmt: skip
    done = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, cwd=cwd,
                          timeout=FAIL_TIMEOUT_S, check=False)
    return done.returncode, done.stderr.decode(errors="replace")


def test_port_range_flag_too_small_for_one_call(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    code, err = serve(ports, data_dir, "--rtp-ports", "30001-30003", cwd=tmp_path)
    assert_one_line(err, "30001-30003", "too small")
    assert code == ExitCode.USAGE


def test_missing_config_file(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    code, err = serve(ports, data_dir, "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert_one_line(err, "nope.toml")
    assert code == ExitCode.USAGE


@pytest.mark.parametrize("broken", ["missing", "garbage"])
def test_bad_tls_files(ports: Ports, data_dir: Path, tmp_path: Path, broken: str) -> None:
    cert = tmp_path / "cert.pem"
    if broken == "garbage":
        cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    config = f'[sip]\ntls_cert = "{cert}"\ntls_key = "{cert}"\n'
    code, err = serve(ports, data_dir, "--sips", f"{LOOPBACK}:{free_port((socket.SOCK_STREAM,))}",
                      config=config, cwd=tmp_path)
    assert_one_line(err, "tls_cert", str(cert))
    assert code == ExitCode.TLS


def test_second_daemon_on_the_same_data_dir_exits_and_leaves_live_calls_alone(
    start_srs: Callable[..., SrsDaemon], data_dir: Path, tmp_path: Path
) -> None:
    """Defect 1: the second daemon's start-up repair marked the first one's live call available."""
    first = start_srs()
    layout = DataLayout(data_dir)
    index = RecordingIndex(layout.index_path, layout=layout)
    try:
        live = add_recording(index, layout, state=State.RECORDING)  # as if a call were being recorded
    finally:
        index.close()
    other = Ports(sip=free_port(), rtp_low=first.ports.rtp_low, rtp_high=first.ports.rtp_high,
                  http=free_port((socket.SOCK_STREAM,)))
    code, err = serve(other, data_dir, cwd=tmp_path)
    assert_one_line(err, str(data_dir), f"pid {first.process.pid}")
    assert code == ExitCode.DATA_DIR_IN_USE
    assert first.process.poll() is None
    index = RecordingIndex(layout.index_path, layout=layout)
    try:
        row = index.get(live)
    finally:
        index.close()
    assert row is not None and row["state"] == State.RECORDING.value


def test_rtp_bind_host_not_on_this_host(ports: Ports, data_dir: Path, tmp_path: Path) -> None:
    code, err = serve(ports, data_dir, config='[media]\nbind_host = "192.0.2.1"\n', cwd=tmp_path)
    assert_one_line(err, "bind_host", "192.0.2.1")
    assert code == ExitCode.ADDRESS_NOT_PERMITTED
