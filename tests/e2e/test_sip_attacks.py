"""SIP hardening against the running daemon: the attacks that worked before, on loopback.

127.0.0.1 and 127.0.0.2 are allowed SBCs (127.0.0.2 may be an attacker forging it), 127.0.0.3 a
third host that never talks to srs, 127.0.0.4 a refused source. Each test prints the figure it
measures (``-s`` shows them).

- Reflection: an INVITE "from" 127.0.0.2 whose Via names 127.0.0.3 (maddr, received) and refused
  OPTIONS from 127.0.0.4 with maddr: 127.0.0.3 receives nothing over the whole 2xx retransmission
  window, the source gets its answers.
- 490 m-lines in one INVITE: 488 at once, no ports held (a normal call right after is answered).
- 2,000 TCP connections from one address with 60 KB of header that never ends: the daemon's
  descriptors and RSS stay bounded, a real call from another address succeeds, /healthz answers.
- 1,000 in-dialog INFOs with 60 KB of metadata: the index keeps a bounded number of versions and
  bytes, the rest is refused with 403 and counted in /metrics, the call goes on and ends normally.
- TLS: srs's BYE on a new connection reaches only a peer whose certificate the CA file vouches for.

``SRS_BASELINE_SRC=DIR`` (a directory holding an older ``srs`` package) runs the daemon from that
code instead, to record the "before" figures of the same attacks; the assertions then fail.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from srs.sip.message import Response, parse_message
from tests.e2e import conftest
from tests.e2e.conftest import SrsDaemon, srs_command
from tests.integration.net.test_sip_limits import ATTACKER, many_streams, metadata_info
from tests.unit.siprec.sbc import invite, request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SBC, FORGED, THIRD, REFUSED = "127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"
CONFIG = f"""
[sip]
allowed_networks = ["{SBC}/32", "{FORGED}/32"]
t1_ms = 100
"""
# [limits] max_sip_connections_per_source is left at its default, 64


@pytest.fixture(autouse=True)
def _baseline_daemon(monkeypatch: pytest.MonkeyPatch) -> None:
    source = os.environ.get("SRS_BASELINE_SRC")
    if source:
        boot = f"import sys; sys.path.insert(0, {source!r}); from srs.cli.main import main; sys.exit(main())"
        monkeypatch.setattr(conftest, "srs_command", lambda: [sys.executable, "-c", boot])


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    return sock


def receive_for(sock: socket.socket, seconds: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(65535))
        except TimeoutError:
            continue
    return got


def final_response(sock: socket.socket, call_id: str, within: float = 5.0) -> Response:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            message = parse_message(sock.recv(65535))
        except TimeoutError:
            continue
        if isinstance(message, Response) and message.call_id == call_id and message.status >= 200:
            return message
    raise AssertionError(f"no final response for {call_id}")


def target(daemon: SrsDaemon) -> tuple[str, int]:
    return ("127.0.0.1", daemon.ports.sip)


def proc_figures(pid: int) -> tuple[int, int]:
    """(open descriptors, RSS in KiB) of the daemon."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return fds, rss


def test_forged_via_and_refused_options_reflect_nothing(start_srs: Callable[..., SrsDaemon]) -> None:
    daemon = start_srs(CONFIG)
    forged, third, refused = udp(FORGED), udp(THIRD), udp(REFUSED)
    third_port = third.getsockname()[1]
    via = f"Via: SIP/2.0/UDP {THIRD}:{third_port};maddr={THIRD};received={THIRD};branch=z9hG4bKrefl"
    data = invite(call_id="reflect@attacker").replace(
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK74bf9;rport", via.encode()
    )
    forged.sendto(data, target(daemon))
    for i in range(5):
        options = request("OPTIONS", branch=f"z9hG4bKo{i}", call_id=f"o{i}", contact=None).replace(
            b"Via: SIP/2.0/UDP 192.0.2.10:5060;",
            f"Via: SIP/2.0/UDP {THIRD}:{third_port};maddr={THIRD};".encode(),
        )
        refused.sendto(options, target(daemon))
    # 64*T1 = 6.4 s of 2xx retransmissions, then srs ends the unacknowledged call with a BYE
    at_third = receive_for(third, 8.0)
    at_forged = [parse_message(d) for d in receive_for(forged, 0.3)]
    at_refused = [parse_message(d) for d in receive_for(refused, 0.3)]
    reflected = sum(len(d) for d in at_third)
    print(f"\ndatagrams to the third address: {len(at_third)} ({reflected} bytes)")
    assert at_third == []
    assert [m.status for m in at_forged if isinstance(m, Response)][:2] == [100, 200]
    assert [m.status for m in at_refused if isinstance(m, Response)] == [403] * 5
    for sock in (forged, third, refused):
        sock.close()


def test_490_m_lines_refused_at_once_holding_no_ports(start_srs: Callable[..., SrsDaemon]) -> None:
    daemon = start_srs(CONFIG)
    sock = udp(SBC)
    started = time.monotonic()
    sock.sendto(invite(content=many_streams(490), call_id="wide@sbc"), target(daemon))
    refused = final_response(sock, "wide@sbc")
    elapsed = time.monotonic() - started
    print(f"\n490 m-lines: {refused.status} in {elapsed * 1000:.0f} ms")
    assert refused.status == 488 and "at most 8 per call" in (refused.headers.get("warning") or "")
    assert elapsed < 1.0
    sock.sendto(invite(call_id="normal@sbc", branch="z9hG4bKnormal"), target(daemon))
    assert final_response(sock, "normal@sbc").status == 200
    sock.close()


def _healthz(daemon: SrsDaemon) -> int:
    return httpx.get(f"http://127.0.0.1:{daemon.ports.http}/healthz", timeout=5).status_code


def test_2000_half_open_connections_leave_the_daemon_serving(start_srs: Callable[..., SrsDaemon]) -> None:
    daemon = start_srs(CONFIG)
    pid = daemon.process.pid
    fds_before, rss_before = proc_figures(pid)
    attacker = subprocess.Popen(
        [sys.executable, "-c", ATTACKER, "127.0.0.1", str(daemon.ports.sip), "2000", "60000"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert attacker.stdout is not None and attacker.stdin is not None
    try:
        peak_fds, peak_rss = fds_before, rss_before
        line = b""
        os.set_blocking(attacker.stdout.fileno(), False)
        deadline = time.monotonic() + 120
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            fds, rss = proc_figures(pid)
            peak_fds, peak_rss = max(peak_fds, fds), max(peak_rss, rss)
            line += attacker.stdout.read() or b""
            time.sleep(0.05)
        time.sleep(0.5)
        fds, rss = proc_figures(pid)
        peak_fds, peak_rss = max(peak_fds, fds), max(peak_rss, rss)
        with socket.create_connection(target(daemon), timeout=5, source_address=(SBC, 0)) as real:
            real.sendall(invite(via_transport="TCP", call_id="real@sbc"))
            answer = b""
            while b"SIP/2.0 200" not in answer:
                chunk = real.recv(65535)
                assert chunk, f"connection closed, got {answer[:200]!r}"
                answer += chunk
        healthz = _healthz(daemon)
        print(
            f"\nattacker: {line.decode().strip()} (opened, failed); daemon descriptors {fds_before} -> "
            f"peak {peak_fds}, RSS {rss_before // 1024} MiB -> peak {peak_rss // 1024} MiB; "
            f"real call answered 200, /healthz {healthz}"
        )
        assert healthz == 200
        assert peak_fds - fds_before <= 500  # the cap plus bursts accepted in one turn; was +2,005
        assert peak_rss - rss_before <= 48 * 1024  # 64 connections x 64 KB and change; was +130 MB
    finally:
        attacker.stdin.close()
        attacker.wait(10)


def test_metadata_flood_is_bounded_in_the_index(start_srs: Callable[..., SrsDaemon], data_dir: Path) -> None:
    daemon = start_srs(CONFIG)
    sock = udp(SBC)
    sock.sendto(invite(call_id="meta@sbc", from_tag="m1"), target(daemon))
    answer = final_response(sock, "meta@sbc")
    assert answer.status == 200
    to_tag = answer.to_addr.tag or ""
    sock.sendto(
        request("ACK", call_id="meta@sbc", from_tag="m1", to_tag=to_tag, branch="z9hG4bKa"), target(daemon)
    )
    statuses: list[int] = []
    started = time.monotonic()
    for cseq in range(2, 1002):
        sock.sendto(metadata_info("meta@sbc", "m1", to_tag, cseq, 60000), target(daemon))
        statuses.append(final_response(sock, "meta@sbc").status)
    flood_s = time.monotonic() - started
    bye = request("BYE", call_id="meta@sbc", from_tag="m1", to_tag=to_tag, cseq=2000, branch="z9hG4bKbye")
    sock.sendto(bye, target(daemon))
    assert final_response(sock, "meta@sbc").status == 200
    sock.close()
    deadline = time.monotonic() + 20
    while True:
        with sqlite3.connect(f"file:{data_dir / 'index.sqlite3'}?mode=ro", uri=True) as db:
            state = db.execute("SELECT state FROM recordings").fetchone()
            versions, stored = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(xml)), 0) FROM metadata_versions"
            ).fetchone()
        if (state is not None and state[0] == "available") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    size = sum(p.stat().st_size for p in data_dir.rglob("*") if p.is_file() and p.suffix != ".wav")
    token = json.loads(
        subprocess.run(
            [*srs_command(), "token", "create", "--scope", "read", "--json", "--data-dir", str(data_dir)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    )["token"]
    metrics = httpx.get(
        f"http://127.0.0.1:{daemon.ports.http}/metrics",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
    ).text
    refusals = [line for line in metrics.splitlines() if line.startswith("srs_sip_limit_refusals_total")]
    print(
        f"\n1,000 INFOs x 60 KB in {flood_s:.1f} s: {statuses.count(200)} taken, "
        f"{statuses.count(403)} refused; index {versions} versions, {stored} bytes of XML; "
        f"data dir without audio {size // 1024} KiB; {refusals}"
    )
    assert state is not None and state[0] == "available"
    assert versions <= 100 and stored <= 1048576
    assert statuses.count(403) >= 900 and statuses.count(200) + statuses.count(403) == 1000
    assert any('reason="metadata_bytes"' in line or 'reason="metadata_versions"' in line for line in refusals)


def _cert(directory: Path) -> tuple[Path, Path]:
    directory.mkdir()
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.mark.parametrize("trusted", [False, True])
def test_bye_over_tls_reaches_only_a_peer_the_ca_file_trusts(
    start_srs: Callable[..., SrsDaemon], tmp_path: Path, trusted: bool
) -> None:
    """A TLS call whose SBC closes its connection; at shutdown srs's BYE needs a new connection to
    the SBC (its address, at the Via port, which is the port it connected from, as SBCs that reuse
    their listening port do). Under ``tls_verify_peer = true`` (the default) a listener there whose
    certificate the CA file does not vouch for gets nothing; one it trusts gets the BYE."""
    import ssl
    import threading

    srs_cert, srs_key = _cert(tmp_path / "srs")
    ca_cert, ca_key = _cert(tmp_path / "ca")
    rogue_cert, rogue_key = _cert(tmp_path / "rogue")
    tls_port = socket.create_server((SBC, 0))
    port = tls_port.getsockname()[1]
    tls_port.close()
    ca_line = "" if os.environ.get("SRS_BASELINE_SRC") else f'tls_ca_file = "{ca_cert}"\n'
    daemon = start_srs(
        f'[sip]\ntls_listen = ["{SBC}:{port}"]\ntls_cert = "{srs_cert}"\ntls_key = "{srs_key}"\n'
        f"{ca_line}\n[limits]\ndrain_seconds = 0\n"
    )
    to_srs = ssl.create_default_context(cafile=str(srs_cert))
    to_srs.check_hostname = False
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    raw.bind((SBC, 0))
    sbc_port = raw.getsockname()[1]
    raw.settimeout(5)
    raw.connect((SBC, port))
    with to_srs.wrap_socket(raw) as sbc:
        data = invite(via_transport="TLS", call_id="tls@sbc").replace(
            b"Via: SIP/2.0/TLS 192.0.2.10:5060", f"Via: SIP/2.0/TLS {SBC}:{sbc_port}".encode()
        )
        sbc.sendall(data)
        answer = b""
        while b"SIP/2.0 200" not in answer:
            chunk = sbc.recv(65535)
            assert chunk
            answer += chunk
    # the SBC now listens on the port it connected from
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((SBC, sbc_port))
    listener.listen(4)
    listener.settimeout(20)
    listener_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    listener_ctx.load_cert_chain(*((ca_cert, ca_key) if trusted else (rogue_cert, rogue_key)))
    got: list[bytes] = []
    errors: list[str] = []

    def sbc_side() -> None:
        try:
            conn, _ = listener.accept()
            with listener_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.settimeout(5)
                got.append(tls.recv(65535))
        except (OSError, ssl.SSLError) as exc:
            errors.append(repr(exc))

    thread = threading.Thread(target=sbc_side, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert daemon.stop() == 0  # drain 0: srs sends BYE at once, on a new connection
    thread.join(15)
    listener.close()
    print(f"\ntrusted={trusted}: listener got {[g[:40] for g in got]}, errors {errors}")
    if trusted:
        assert got and got[0].startswith(b"BYE sip:sbc@192.0.2.10:5060")
    else:
        assert got == [] and errors
