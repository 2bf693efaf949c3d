"""The HTTP API of a running daemon, checked against recordings SIPp really made.

One daemon serves the whole module: four two-stream calls are recorded through it, then every test
reads them back over HTTP -- listing, files, links, exports, tokens, webhooks, metrics -- and the
retention job (last) must delete exactly the aged recording that is not on legal hold.

Until the daemon starts the HTTP runtime itself, this module launches it through a small launcher
(``python -m tests.e2e.test_http_api``) that adds the runtime to the same daemon class.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import io
import json
import socket
import sqlite3
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
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
CALLS = 4
RETENTION_DAYS = 1
DAY_S = 86_400.0


# ---------------------------------------------------------------------------------------------
# a webhook receiver


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class HookReceiver:
    port: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/hook"

    def events(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def wait_for(self, predicate: Any, within: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + within
        while True:
            found = [d for d in self.events() if predicate(d.envelope)]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.05)


def start_receiver() -> tuple[HookReceiver, http.server.ThreadingHTTPServer]:
    receiver = HookReceiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                receiver.deliveries.append(Delivery({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    receiver.port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


# ---------------------------------------------------------------------------------------------
# the daemon under test


@dataclass
class World:
    process: subprocess.Popen[bytes]
    base: str
    sip_target: str
    data_dir: Path
    log_path: Path
    hooks: HookReceiver
    admin: str = ""
    reader: str = ""
    crids: list[str] = field(default_factory=list)
    results: dict[str, SippResult] = field(default_factory=dict)
    recs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=20.0)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        with self.client(token if token is not None else self.reader) as c:
            return c.get(path, **kwargs)

    def secret(self) -> bytes:
        return (self.data_dir / "secret.key").read_bytes()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*srs_command(), *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=True,
    )


def create_token(data_dir: Path, scope: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cli(data_dir, "token", "create", "--scope", scope, "--json").stdout)
    return out


def config_toml(hook_url: str) -> str:
    return (
        f'[http]\nwebhook_urls = ["{hook_url}"]\n'
        f"[storage]\nretention_days = {RETENTION_DAYS}\nretention_interval_s = 1\n"
    )


def launch(tmp: Path, hooks: HookReceiver) -> World:
    sip = free_port()
    low, high = free_port_range(200)
    http_port = free_port((socket.SOCK_STREAM,))
    data_dir = tmp / "data"
    data_dir.mkdir()
    args = ["--sip", f"{LOOPBACK}:{sip}", "--rtp-ports", f"{low}-{high}", "--data-dir", str(data_dir),
            "--http", f"{LOOPBACK}:{http_port}"]
    config = tmp / "srs.toml"
    config.write_text(config_toml(hooks.url))
    cmd = [*srs_command(), "serve", "--config", str(config), *args]
    log_path = tmp / "srs.stderr.log"
    with log_path.open("wb") as err:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=REPO)
    world = World(process, f"http://{LOOPBACK}:{http_port}", f"{LOOPBACK}:{sip}", data_dir, log_path, hooks)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if process.poll() is not None:
            pytest.fail(f"srs exited early with {process.returncode}:\n{world.log_text()}")
        if sip_options_ok(sip):
            try:
                if httpx.get(world.base + "/healthz", timeout=1).status_code == 200:
                    return world
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"srs not ready within {READY_TIMEOUT_S} s:\n{world.log_text()}")
        time.sleep(0.1)


def wait_available(world: World, crid: str, within: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        # admin: the file's path on the server (the tests read it) is for admin tokens only
        response = world.get(f"{PREFIX}/recordings", token=world.admin, params={"call_recording_id": crid})
        items = response.json().get("items", []) if response.status_code == 200 else []
        if items and items[0]["state"] == "available":
            item: dict[str, Any] = items[0]
            return item
        assert time.monotonic() < deadline, f"{crid} not available: {response.status_code} {response.text}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory, pcaps: dict[str, Path]
) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("step4")
    hooks, receiver_server = start_receiver()
    world = launch(tmp, hooks)
    failed = True
    try:
        world.admin = create_token(world.data_dir, "admin")["token"]
        world.reader = create_token(world.data_dir, "read")["token"]
        sipp = run_sipp.__wrapped__(tmp)  # type: ignore[attr-defined]
        stamp = int(time.time() * 1000)
        world.crids = [f"API-{stamp}-{n}" for n in range(CALLS)]

        def call(crid: str) -> SippResult:
            result: SippResult = sipp(
                "siprec_basic.xml", "-d", "2000", "-set", "crid", crid, target=world.sip_target,
                timeout=30, pcaps={"two_tone_pcmu.pcap": pcaps["pcmu_2s"]},
            )
            return result

        # two at a time: distinct start times for ordering, still quick
        for pair in (world.crids[:2], world.crids[2:]):
            with ThreadPoolExecutor(2) as pool:
                for crid, result in zip(pair, pool.map(call, pair), strict=True):
                    assert result.returncode == 0, result.describe()
                    world.results[crid] = result
            time.sleep(0.05)
        for crid in world.crids:
            world.recs[crid] = wait_available(world, crid)
        failed = False
        yield world
        failed = False
    except BaseException:
        failed = True
        raise
    finally:
        if world.process.poll() is None:
            world.process.terminate()
            try:
                world.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                world.process.kill()
                world.process.wait(5)
        receiver_server.shutdown()
        if failed or world.process.returncode != 0:
            print(f"----- srs log -----\n{world.log_text()[-20000:]}")
        assert world.process.returncode == 0, f"srs exit code after SIGTERM: {world.process.returncode}"


def _file_bytes(rec: dict[str, Any]) -> bytes:
    return Path(rec["file"]["path"]).read_bytes()


# ---------------------------------------------------------------------------------------------
# listing and metadata


def test_list_by_call_recording_id_has_the_full_metadata(world: World) -> None:
    crid = world.crids[0]
    response = world.get(f"{PREFIX}/recordings", token=world.admin, params={"call_recording_id": crid})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pagination"]["total"] == 1 and len(body["items"]) == 1
    rec = body["items"][0]
    call_id = world.results[crid].find(sent=True, method="INVITE").header("Call-ID")
    assert rec["call_recording_id"] == crid and rec["sip_call_id"] == call_id
    assert {p["aor"] for p in rec["participants"]} == {"sip:alice@example.com", "sip:bob@example.net"}
    assert sorted(s["label"] for s in rec["streams"]) == ["1", "2"]
    assert all(s["codec"] == "PCMU" and s["packets_received"] >= 90 for s in rec["streams"]), rec["streams"]
    assert [s["id"] for s in rec["sessions"]] == ["c2Vzc2lvbi1bY2FsbF9udW1iZXJd"], rec["sessions"]
    assert crid in rec["extensions"].values(), rec["extensions"]
    assert rec["dtmf"] == []
    assert set(rec["completeness"]["streams"]) == {"1", "2"}, rec["completeness"]
    data = _file_bytes(rec)
    assert rec["file"]["name"] == Path(rec["file"]["path"]).name
    assert rec["file"]["size"] == len(data)
    assert rec["file"]["content_type"] == "audio/wav"
    assert rec["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert rec["links"]["file"] == f"{PREFIX}/recordings/{rec['id']}/file"
    assert world.get(rec["links"]["self"], token=world.admin).json() == rec
    as_reader = world.get(rec["links"]["self"]).json()  # a read token does not see the server's path
    assert as_reader["file"] == {k: v for k, v in rec["file"].items() if k != "path"}


def test_list_filters_order_and_pagination(world: World) -> None:
    by_start = sorted(world.recs.values(), key=lambda r: (r["started_at"], r["id"]))
    ids_oldest_first = [r["id"] for r in by_start]
    everything = world.get(f"{PREFIX}/recordings", params={"order": "oldest", "max": 100}).json()
    assert [item["id"] for item in everything["items"]] == ids_oldest_first
    seen = []
    for page in (1, 2):
        body = world.get(f"{PREFIX}/recordings", params={"max": 2, "page": page}).json()
        assert body["pagination"] == {"pages": 2, "total": CALLS, "current": page, "max": 2}
        seen += [item["id"] for item in body["items"]]
    assert seen == list(reversed(ids_oldest_first))
    assert world.get(f"{PREFIX}/recordings", params={"max": 2, "page": 3}).json()["items"] == []
    crid_key = next(k for k, v in world.recs[world.crids[2]]["extensions"].items() if v == world.crids[2])
    for params, expected in [
        ({"participant": "alice@example"}, CALLS),
        ({"participant": "nobody@nowhere"}, 0),
        ({"state": "available"}, CALLS),
        ({"state": "failed"}, 0),
        ({"min_duration": 1.5, "max_duration": 4}, CALLS),
        ({"min_duration": 30}, 0),
        ({"sip_call_id": world.recs[world.crids[1]]["sip_call_id"]}, 1),
        ({"extension": f"{crid_key}={world.crids[2]}"}, 1),
        ({f"ext.{crid_key}": world.crids[3]}, 1),
    ]:
        body = world.get(f"{PREFIX}/recordings", params=params).json()
        assert body["pagination"]["total"] == expected, (params, body)
    after = min(world.recs[c]["started_at"] for c in world.crids[2:])
    newer = world.get(f"{PREFIX}/recordings", params={"start": after}).json()
    assert {i["call_recording_id"] for i in newer["items"]} >= {world.crids[2], world.crids[3]}
    assert world.crids[0] not in {i["call_recording_id"] for i in newer["items"]}
    assert world.get(f"{PREFIX}/recordings", params={"start": "yesterday"}).status_code == 400


def test_get_by_id_and_unknown(world: World) -> None:
    rec = world.recs[world.crids[1]]
    assert world.get(f"{PREFIX}/recordings/{rec['id']}").json()["call_recording_id"] == world.crids[1]
    assert world.get(f"{PREFIX}/recordings/NOPE").status_code == 404
    versions = world.get(f"{PREFIX}/recordings/{rec['id']}/metadata").json()["versions"]
    assert versions and world.crids[1] in versions[0]["xml"]


# ---------------------------------------------------------------------------------------------
# files


def test_file_full_head_etag_and_ranges_are_byte_exact(world: World) -> None:
    rec = world.recs[world.crids[0]]
    data = _file_bytes(rec)
    url = f"{PREFIX}/recordings/{rec['id']}/file"
    full = world.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "audio/wav"
    etag = full.headers["etag"]
    assert etag == f'"{rec["file"]["sha256"]}"'
    with world.client(world.reader) as c:
        head = c.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(data) and head.headers["etag"] == etag
    assert head.headers["accept-ranges"] == "bytes"
    assert world.get(url, headers={"If-None-Match": etag}).status_code == 304
    size = len(data)
    for spec, start, end in [
        ("bytes=0-43", 0, 43),
        ("bytes=44-1043", 44, 1043),
        (f"bytes={size - 10}-", size - 10, size - 1),
        ("bytes=-500", size - 500, size - 1),
        (f"bytes=100-{size + 5000}", 100, size - 1),
    ]:
        part = world.get(url, headers={"Range": spec})
        assert part.status_code == 206, (spec, part.text)
        assert part.content == data[start:end + 1], spec
        assert part.headers["content-range"] == f"bytes {start}-{end}/{size}", spec
    bad = world.get(url, headers={"Range": f"bytes={size}-"})
    assert bad.status_code == 416 and bad.headers["content-range"] == f"bytes */{size}"
    stale = world.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data


def test_signed_links_valid_forged_and_expired(world: World) -> None:
    rec = world.recs[world.crids[1]]
    data = _file_bytes(rec)
    with world.client(world.reader) as c:
        made = c.post(f"{PREFIX}/recordings/{rec['id']}/link", params={"validity": 5})
        short = c.post(f"{PREFIX}/recordings/{rec['id']}/link", params={"validity": 0.01})
    assert made.status_code == 200, made.text
    link = made.json()["link"]
    with httpx.Client(timeout=20) as anonymous:
        valid = anonymous.get(link)
        assert valid.status_code == 200 and valid.content == data
        part = anonymous.get(link, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        forged = link[:-4] + ("0000" if not link.endswith("0000") else "1111")
        assert anonymous.get(forged).status_code == 403
        other = link.replace(rec["id"], world.recs[world.crids[0]]["id"])
        assert anonymous.get(other).status_code == 403
        time.sleep(1.6)
        expired = anonymous.get(short.json()["link"])
        assert expired.status_code == 410, expired.text


# ---------------------------------------------------------------------------------------------
# tokens


def test_tokens_missing_garbage_revoked_and_scope(world: World) -> None:
    url = f"{PREFIX}/recordings"
    for token in (None, "garbage", "srs_" + "A" * 43):
        response = world.get(url, token=token or "")
        assert response.status_code == 401, token
        assert response.headers["www-authenticate"] == "Bearer"
    created = create_token(world.data_dir, "read")  # the daemon is running: no restart
    assert world.get(url, token=created["token"]).status_code == 200
    cli(world.data_dir, "token", "revoke", created["id"])
    revoked = world.get(url, token=created["token"])
    assert revoked.status_code == 401 and revoked.headers["www-authenticate"] == "Bearer"
    rec = world.recs[world.crids[0]]
    with world.client(world.reader) as c:
        assert c.post(f"{PREFIX}/recordings/{rec['id']}/hold").status_code == 403
        assert c.delete(f"{PREFIX}/recordings/{rec['id']}").status_code == 403
        assert c.post(f"{PREFIX}/exports", json={"ids": [rec["id"]]}).status_code == 403
    assert world.get(url, token=world.admin).status_code == 200


# ---------------------------------------------------------------------------------------------
# exports, webhooks, metrics


def test_export_archive_has_index_and_audio(world: World) -> None:
    wanted = [world.recs[c] for c in world.crids[:2]]
    with world.client(world.admin) as c:
        job = c.post(f"{PREFIX}/exports", json={"ids": [r["id"] for r in wanted]})
        assert job.status_code == 202, job.text
        status_url = job.headers["location"]
        deadline = time.monotonic() + 20
        status = c.get(status_url).json()
        while status["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = c.get(status_url).json()
        assert status["state"] == "done" and status["count"] == 2, status
        archive = c.get(status["links"]["file"])
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        assert index["count"] == 2 and {r["id"] for r in index["recordings"]} == {r["id"] for r in wanted}
        for entry in index["recordings"]:
            rec = next(r for r in wanted if r["id"] == entry["id"])
            assert entry["archive_path"] in names
            assert tar.extractfile(entry["archive_path"]).read() == _file_bytes(rec)  # type: ignore[union-attr]
    done = world.hooks.wait_for(
        lambda e: e["event"] == "export_available" and e["data"]["id"] == status["id"]
    )
    assert done, [d.envelope for d in world.hooks.events()]


def test_webhooks_for_each_recording_are_signed(world: World) -> None:
    secret = world.secret()
    for crid in world.crids:
        for event in ("recording_started", "recording_finished", "recording_available"):
            got = world.hooks.wait_for(
                lambda e, ev=event, c=crid: e["event"] == ev and e["data"].get("call_recording_id") == c
            )
            assert len(got) == 1, (crid, event, [d.envelope["event"] for d in world.hooks.events()])
            delivery = got[0]
            expected = "sha256=" + hmac.new(secret, delivery.body, hashlib.sha256).hexdigest()
            assert delivery.headers["x-srs-signature"] == expected
            assert delivery.headers["x-srs-event"] == event
            assert delivery.envelope["data"]["id"] == world.recs[crid]["id"]
        available = world.hooks.wait_for(
            lambda e, c=crid: e["event"] == "recording_available" and e["data"].get("call_recording_id") == c
        )[0]
        assert available.envelope["data"]["state"] == "available"
        assert available.envelope["data"]["file"]["sha256"] == world.recs[crid]["file"]["sha256"]


def refused_bye(target: str) -> bytes:
    """A BYE outside any dialog (srs must answer 481); returns the response."""
    host, port = target.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        local = s.getsockname()[1]
        message = (
            f"BYE sip:srs@{target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bKapi{local}\r\n"
            f"From: <sip:x@{LOOPBACK}>;tag=a{local}\r\nTo: <sip:srs@{LOOPBACK}>;tag=nosuch\r\n"
            f"Call-ID: no-such-dialog-{local}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        s.settimeout(5)
        s.sendto(message.encode(), (host, int(port)))
        return s.recv(65535)


def test_metrics_are_srs_prefixed_and_count(world: World) -> None:
    assert world.get("/metrics", token="").status_code == 401
    assert refused_bye(world.sip_target).startswith(b"SIP/2.0 481")
    text = world.get("/metrics").text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    names = {name.split("{")[0] for name in samples}
    assert names and all(n.startswith("srs_") for n in names), sorted(names)
    for needed in ("srs_active_sessions", "srs_active_streams", "srs_rtp_packets_received_total",
                   "srs_rtp_packets_lost_total", "srs_rtp_packets_dropped_total", "srs_disk_free_bytes",
                   "srs_webhook_delivery_failures_total"):
        assert needed in names, (needed, sorted(names))
    assert samples['srs_sip_requests_refused_total{status="481"}'] >= 1
    assert samples["srs_active_sessions"] == 0
    assert samples['srs_recordings{state="available"}'] >= CALLS
    received = sum(s["packets_received"] for c in world.crids for s in world.recs[c]["streams"])
    assert samples["srs_rtp_packets_received_total"] >= received > 0


# ---------------------------------------------------------------------------------------------
# retention (last: it deletes)


def test_retention_deletes_only_aged_recordings_not_on_hold(world: World) -> None:
    aged, held = world.recs[world.crids[2]], world.recs[world.crids[3]]
    with world.client(world.admin) as c:
        assert c.post(f"{PREFIX}/recordings/{held['id']}/hold").json()["legal_hold"] is True
    old = time.time() - (RETENTION_DAYS + 2) * DAY_S
    with sqlite3.connect(world.data_dir / "index.sqlite3", timeout=10) as db:
        db.execute("UPDATE recordings SET started_at = ? WHERE id IN (?, ?)", (old, aged["id"], held["id"]))
    deadline = time.monotonic() + 10
    while world.get(f"{PREFIX}/recordings/{aged['id']}").status_code != 404:
        assert time.monotonic() < deadline, "the retention job did not delete the aged recording"
        time.sleep(0.2)
    assert not Path(aged["file"]["path"]).exists()
    assert world.get(f"{PREFIX}/recordings/{held['id']}").status_code == 200
    assert Path(held["file"]["path"]).exists()
    for crid in world.crids[:2]:
        assert world.get(f"{PREFIX}/recordings/{world.recs[crid]['id']}").status_code == 200
    with sqlite3.connect(world.data_dir / "index.sqlite3", timeout=10) as db:
        rows = db.execute(
            "SELECT actor, action, recording_id FROM audit_log WHERE action = 'retention_delete'"
        )
        assert list(rows) == [("retention", "retention_delete", aged["id"])]


# ---------------------------------------------------------------------------------------------
# secrets stay out of the logs (runs last: every request above has been logged by then)


def test_secrets_never_reach_the_log(world: World) -> None:
    rec = world.recs[world.crids[0]]
    with world.client(world.admin) as c:
        link = c.post(f"{PREFIX}/recordings/{rec['id']}/link", params={"validity": 5}).json()["link"]
    with httpx.Client(timeout=20) as anonymous:
        assert anonymous.get(link).status_code == 200
        assert anonymous.get(link[:-4] + "0000").status_code == 403
    signature = link.split("sig=", 1)[1].split("&", 1)[0]
    log = world.log_text()
    assert log, "the daemon logged nothing at all"
    secret = world.secret()
    for needle in (world.admin, world.reader, signature, secret.hex(), base64.b64encode(secret).decode()):
        assert needle and needle not in log
