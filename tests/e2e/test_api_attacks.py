"""Hardening of the API, files, webhooks and audit: each test is an attack on a running daemon.

One daemon serves the module, with three webhook receivers (one answers 500, one never answers, one
is healthy), a 64 KiB body cap and exports that expire after a few seconds. Two calls are recorded
through it with SIPp; the tests then attack it over loopback and check the damage is nil.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import select
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    LOOPBACK,
    READY_TIMEOUT_S,
    REPO,
    STOP_TIMEOUT_S,
    SippResult,
    free_port,
    free_port_range,
    run_sipp,
    sip_options_ok,
    srs_command,
)

pytestmark = pytest.mark.e2e

PREFIX = "/api/v1"
MB = 1024 * 1024
BODY_CAP_KB = 64
EXPORT_TTL_S = 6.0


# ---------------------------------------------------------------------------------------------
# webhook receivers: healthy (204, notes arrival times), failing (500), hanging (never answers)


@dataclass
class Hook:
    status: int
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://{LOOPBACK}:{self.server.server_address[1]}/hook"

    def find(self, event: str, crid: str) -> float | None:
        with self.lock:
            for at, envelope in self.arrivals:
                if envelope["event"] == event and envelope["data"].get("call_recording_id") == crid:
                    return at
        return None


def serve_hook(status: int) -> Hook:
    hook = Hook(status)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with hook.lock:
                hook.arrivals.append((time.monotonic(), json.loads(body)))
            self.send_response(hook.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    hook.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    threading.Thread(target=hook.server.serve_forever, daemon=True).start()
    return hook


# ---------------------------------------------------------------------------------------------
# the daemon


@dataclass
class World:
    process: subprocess.Popen[bytes]
    http_port: int
    sip_port: int
    data_dir: Path
    log_path: Path
    healthy: Hook
    admin: str = ""
    reader: str = ""
    reader_id: str = ""
    recs: dict[str, dict[str, Any]] = field(default_factory=dict)
    sipp_done: dict[str, float] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://{LOOPBACK}:{self.http_port}"

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=20.0)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*srs_command(), *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=True,
    )


def create_token(data_dir: Path, scope: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cli(data_dir, "token", "create", "--scope", scope, "--json").stdout)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, pcaps: dict[str, Path]) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("step8")
    failing, healthy = serve_hook(500), serve_hook(204)
    hanging = socket.socket()
    hanging.bind((LOOPBACK, 0))
    hanging.listen(64)  # connections complete in the kernel; nothing ever answers
    hooks = [failing.url, f"http://{LOOPBACK}:{hanging.getsockname()[1]}/hook", healthy.url]
    sip, http_port = free_port(), free_port((socket.SOCK_STREAM,))
    low, high = free_port_range(100)
    data_dir = tmp / "data"
    config = tmp / "srs.toml"
    config.write_text(
        "[http]\n"
        f"webhook_urls = {json.dumps(hooks)}\n"
        f"max_body_kb = {BODY_CAP_KB}\n"
        f"export_ttl_hours = {EXPORT_TTL_S / 3600}\n"
    )
    cmd = [*srs_command(), "serve", "--config", str(config), "--sip", f"{LOOPBACK}:{sip}",
           "--rtp-ports", f"{low}-{high}", "--data-dir", str(data_dir), "--http", f"{LOOPBACK}:{http_port}"]
    log_path = tmp / "srs.stderr.log"
    with log_path.open("wb") as err:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=REPO)
    world = World(process, http_port, sip, data_dir, log_path, healthy)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not sip_options_ok(sip):
            assert process.poll() is None, f"srs exited early:\n{world.log_text()}"
            assert time.monotonic() < deadline, f"srs not ready:\n{world.log_text()}"
            time.sleep(0.1)
        world.admin = create_token(data_dir, "admin")["token"]
        reader = create_token(data_dir, "read")
        world.reader, world.reader_id = reader["token"], reader["id"]
        sipp = run_sipp.__wrapped__(tmp)  # type: ignore[attr-defined]
        stamp = int(time.time() * 1000)
        for n in range(2):
            crid = f"HARD-{stamp}-{n}"
            result: SippResult = sipp(
                "siprec_basic.xml", "-d", "1000", "-set", "crid", crid, target=f"{LOOPBACK}:{sip}",
                timeout=30, pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
            )
            world.sipp_done[crid] = time.monotonic()
            assert result.returncode == 0, result.describe()
            world.recs[crid] = wait_available(world, crid)
        yield world
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        for hook in (failing, healthy):
            assert hook.server is not None
            hook.server.shutdown()
        hanging.close()
        print(f"----- srs log (tail) -----\n{world.log_text()[-6000:]}")


def wait_available(world: World, crid: str, within: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    with world.client(world.reader) as c:
        while True:
            response = c.get(f"{PREFIX}/recordings", params={"call_recording_id": crid})
            items = response.json().get("items", []) if response.status_code == 200 else []
            if items and items[0]["state"] == "available":
                item: dict[str, Any] = items[0]
                return item
            assert time.monotonic() < deadline, f"{crid} not available: {response.text}"
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# 1. a 100 MB body without a token


def push_body(port: int, head: bytes, total: int) -> tuple[bytes, int, float]:
    """Send ``head`` then up to ``total`` body bytes, stopping as soon as a response arrives.

    Returns (response head, body bytes the daemon let us send, seconds until the response).
    """
    chunk = b"x" * (256 * 1024)
    sent = 0
    started = time.monotonic()
    response = b""
    with socket.create_connection((LOOPBACK, port), timeout=60) as sock:
        sock.sendall(head)
        sock.setblocking(False)
        deadline = started + 60
        while time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock] if sent < total else [], [], 1.0)
            if readable:
                try:
                    data = sock.recv(65536)
                except (ConnectionResetError, BlockingIOError):
                    data = b""
                response += data
                if not data or b"\r\n\r\n" in response:
                    break
            elif writable:
                try:
                    sent += sock.send(chunk[: min(len(chunk), total - sent)])
                except (BrokenPipeError, ConnectionResetError):
                    writable = []
                    # the daemon closed its end: read what it answered
                    sock.setblocking(True)
                    sock.settimeout(5)
                    with contextlib.suppress(OSError):
                        response += sock.recv(65536)
                    break
        return response, sent, time.monotonic() - started


class SipProbe(threading.Thread):
    """Times SIP OPTIONS round trips every 50 ms while an attack runs."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.latencies: list[float] = []
        self.failures = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            if sip_options_ok(self.port, transport_timeout=3.0):
                self.latencies.append(time.monotonic() - started)
            else:
                self.failures += 1
            time.sleep(0.05)


def test_unauthenticated_100_mb_posts_are_refused_unread(world: World) -> None:
    total = 100 * MB
    head = (
        f"POST {PREFIX}/exports HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    rss_before = world.rss_kb()
    probe = SipProbe(world.sip_port)
    probe.start()
    results = []
    try:
        for _ in range(3):
            results.append(push_body(world.http_port, head, total))
        deadline = time.monotonic() + 5
        while len(probe.latencies) + probe.failures < 10 and time.monotonic() < deadline:
            time.sleep(0.05)  # enough probes to judge, even when the uploads were refused at once
    finally:
        probe.stop.set()
        probe.join(10)
    rss_after = world.rss_kb()
    growth_mb = (rss_after - rss_before) / 1024
    worst_sip = max(probe.latencies, default=float("inf"))
    print(f"\n100 MB unauthenticated POST x3: body sent {[r[1] // MB for r in results]} MB, "
          f"answered after {[round(r[2], 2) for r in results]} s; RSS {rss_before // 1024} -> "
          f"{rss_after // 1024} MB; SIP OPTIONS worst {worst_sip * 1000:.0f} ms over "
          f"{len(probe.latencies)} probes")
    for response, sent, _ in results:
        assert response.startswith(b"HTTP/1.1 401"), response[:200]
        assert b"connection: close" in response.lower()
        assert sent < 32 * MB, f"the daemon took {sent // MB} MB of body before refusing"
    assert growth_mb < 40, f"RSS grew {growth_mb:.0f} MB"
    assert probe.failures == 0 and worst_sip < 0.5, (probe.failures, worst_sip)


def test_authenticated_body_past_the_cap_is_413(world: World) -> None:
    body = json.dumps({"ids": ["01HZX3Y5Q8K2M4N6P8R0S2T4V6"] * 10_000}).encode()
    assert len(body) > BODY_CAP_KB * 1024
    with world.client(world.admin) as c:
        declared = c.post(f"{PREFIX}/exports", content=body, headers={"Content-Type": "application/json"})
        chunked = c.post(f"{PREFIX}/exports", content=iter([body[:1000], body[1000:]]),
                         headers={"Content-Type": "application/json"})
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
    assert chunked.status_code == 413, chunked.text
    head = (
        f"POST {PREFIX}/exports HTTP/1.1\r\nHost: {LOOPBACK}\r\nAuthorization: Bearer {world.admin}\r\n"
        f"Content-Type: application/json\r\nContent-Length: 20\r\n\r\n"
    ).encode()
    response, _sent, _ = push_body(world.http_port, head, 20)  # an honest small one still parses
    assert response.startswith(b"HTTP/1.1 400") or response.startswith(b"HTTP/1.1 422"), response[:200]


# ---------------------------------------------------------------------------------------------
# 2. Range


def test_range_attacks_are_answered_without_500_or_traceback(world: World) -> None:
    rec = next(iter(world.recs.values()))
    size = rec["file"]["size"]
    url = f"{PREFIX}/recordings/{rec['id']}/file"
    with world.client(world.reader) as c:
        for header in (f"bytes={'9' * 4301}-", f"bytes=0-{'9' * 4301}", "bytes=²-5", "bytes=٣-5",
                       "bytes=0-²", "bytes=" + ",".join(["0-"] * 32), "bytes=" + ",".join(["0-"] * 16)):
            try:
                wire = header.encode("latin-1")  # "²" arrives as 0xB2, decoded back to "²"
            except UnicodeEncodeError:
                wire = header.encode()
            response = c.get(url, headers={"Range": wire})
            assert response.status_code in (200, 206, 416), (header[:30], response.status_code)
            assert len(response.content) <= size + 1024, (header[:30], len(response.content))
    log = world.log_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


# ---------------------------------------------------------------------------------------------
# 3. signed links die with their token; the audit trail


def test_revoked_tokens_signed_link_is_refused(world: World) -> None:
    rec = next(iter(world.recs.values()))
    temp = create_token(world.data_dir, "read")
    with world.client(temp["token"]) as c:
        link = c.post(f"{PREFIX}/recordings/{rec['id']}/link", params={"validity": 10}).json()["link"]
    with httpx.Client(timeout=20) as anonymous:
        assert anonymous.get(link).status_code == 200
        cli(world.data_dir, "token", "revoke", temp["id"])
        refused = anonymous.get(link)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "link_revoked"


def test_audit_trail_of_reads_and_admin_actions(world: World) -> None:
    rec = next(iter(world.recs.values()))
    with world.client(world.reader) as c:
        ranged = c.get(f"{PREFIX}/recordings/{rec['id']}/file", headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206
        link = c.post(f"{PREFIX}/recordings/{rec['id']}/link").json()["link"]
        assert c.get(f"{PREFIX}/audit").status_code == 403
    with httpx.Client(timeout=20) as anonymous:
        assert anonymous.get(link).status_code == 200
    with world.client(world.admin) as c:
        rows = c.get(f"{PREFIX}/audit", params={"recording_id": rec["id"], "token": world.reader_id}).json()
        by_action = {item["action"]: item for item in rows["items"]}
        assert {"download", "link_create", "link_use"} <= set(by_action), rows
        assert by_action["link_use"]["actor"].startswith("signed link ")
        assert all(item["client"] == LOOPBACK for item in rows["items"])
    listed = cli(world.data_dir, "audit", "list", "--recording-id", rec["id"], "--json")
    assert {i["action"] for i in json.loads(listed.stdout)["items"]} >= {"download", "link_use"}


# ---------------------------------------------------------------------------------------------
# 4. private files; exports die with their recordings and their TTL


def test_data_dir_is_private_after_a_recorded_call(world: World) -> None:
    loose = []
    for root, dirs, files in os.walk(world.data_dir):
        for name in dirs + files:
            path = Path(root) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o027:
                loose.append(f"{oct(mode)} {path.relative_to(world.data_dir)}")
    assert stat.S_IMODE(world.data_dir.stat().st_mode) & 0o027 == 0
    names = {p.name for p in world.data_dir.iterdir()}
    assert {"index.sqlite3", "recordings", "secret.key"} <= names
    assert any(p.suffix == ".wav" for p in (world.data_dir / "recordings").rglob("*"))
    assert not loose, loose


def _export(c: httpx.Client, rid: str) -> dict[str, Any]:
    job = c.post(f"{PREFIX}/exports", json={"ids": [rid]})
    assert job.status_code == 202, job.text
    deadline = time.monotonic() + 20
    status: dict[str, Any] = c.get(job.headers["location"]).json()
    while status["state"] not in ("done", "failed"):
        assert time.monotonic() < deadline, status
        time.sleep(0.05)
        status = c.get(job.headers["location"]).json()
    assert status["state"] == "done", status
    return status


def test_export_expires_after_its_ttl(world: World) -> None:
    rec = list(world.recs.values())[1]
    with world.client(world.admin) as c:
        status = _export(c, rec["id"])
        assert c.get(status["links"]["file"]).status_code == 200
        archive = world.data_dir / "exports" / f"{status['id']}.tar.gz"
        assert archive.exists() and stat.S_IMODE(archive.stat().st_mode) & 0o027 == 0
        deadline = time.monotonic() + EXPORT_TTL_S + 10
        while archive.exists() or c.get(status["links"]["file"]).status_code != 410:
            assert time.monotonic() < deadline, "the export outlived its TTL"
            time.sleep(0.2)


def test_export_is_gone_once_its_recording_is_deleted(world: World) -> None:
    rec = next(iter(world.recs.values()))
    with world.client(world.admin) as c:
        status = _export(c, rec["id"])
        assert c.get(status["links"]["file"]).status_code == 200
        assert c.delete(f"{PREFIX}/recordings/{rec['id']}").status_code == 204
        gone = c.get(f"{PREFIX}/exports/{status['id']}/file")
        assert gone.status_code == 410, gone.text
        assert not (world.data_dir / "exports" / f"{status['id']}.tar.gz").exists()
        deleted = c.get(f"{PREFIX}/audit", params={"recording_id": rec["id"], "action": "delete"}).json()
        assert len(deleted["items"]) == 1


# ---------------------------------------------------------------------------------------------
# 5. webhooks: failing and hanging receivers beside a healthy one (last: it records one more call)


def test_healthy_receiver_gets_its_events_within_a_second(
    world: World, tmp_path: Path, pcaps: dict[str, Path]
) -> None:
    sipp = run_sipp.__wrapped__(tmp_path)  # type: ignore[attr-defined]
    crid = f"HOOK-{int(time.time() * 1000)}"
    started = time.monotonic()
    result = sipp("siprec_basic.xml", "-d", "1000", "-set", "crid", crid,
                  target=f"{LOOPBACK}:{world.sip_port}", timeout=30,
                  pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]})
    done = time.monotonic()
    assert result.returncode == 0, result.describe()
    deadline = done + 5
    while world.healthy.find("recording_finished", crid) is None and time.monotonic() < deadline:
        time.sleep(0.02)
    begun = world.healthy.find("recording_started", crid)
    finished = world.healthy.find("recording_finished", crid)
    print(f"\nhealthy receiver: recording_started {None if begun is None else round(begun - started, 2)} s "
          f"after the INVITE went out, recording_finished "
          f"{None if finished is None else round(finished - done, 2)} s after SIPp's BYE completed")
    assert begun is not None and begun - started < 1.0 + 1.0  # the call's setup is part of it
    assert finished is not None and finished - done < 1.0
    with world.client(world.reader) as c:
        text = c.get("/metrics").text
    drops = [line for line in text.splitlines() if line.startswith("srs_webhook_events_dropped_total{")]
    assert len(drops) == 3, drops  # one counter per receiver, present from the start
