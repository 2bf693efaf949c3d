"""A daemon with ``objects = "s3://…"`` records real SIPp calls into a real S3-compatible server.

rclone's ``serve s3`` (started for the session) is the store. The daemon gets its endpoint from the
configuration and its credentials from the AWS environment variables. Every recording must end up in
the bucket with the sha256 the index keeps and nothing left on the local disk; the API serves it
(whole, HEAD, Range, signed link), exports read it, delete and retention remove it. In the middle
the S3 server is terminated for 30 s while calls go on, then started again on the same port and
folder: every upload completes after it returns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from srs.storage.s3_store import S3ObjectStore, S3Options
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
from tests.s3server import ACCESS_KEY, SECRET_KEY, RcloneS3, s3_server

__all__ = ["s3_server"]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREFIX = "/api/v1"
OUTAGE_S = 30.0
DAY_S = 86_400.0


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    base: str
    sip_target: str
    data_dir: Path
    log_path: Path
    s3: RcloneS3
    bucket: str
    prefix: str
    sipp: Any = None
    pcap: Path | None = None
    admin: str = ""
    reader: str = ""
    recs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token if token is not None else self.reader}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30.0)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.get(path, **kwargs)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def call(self, crid: str, duration_ms: int = 2000) -> SippResult:
        assert self.pcap is not None
        result: SippResult = self.sipp(
            "siprec_basic.xml", "-d", str(duration_ms), "-set", "crid", crid, target=self.sip_target,
            timeout=40, pcaps={"two_tone_pcmu.pcap": self.pcap},
        )
        assert result.returncode == 0, result.describe()
        return result

    def recording(self, crid: str) -> dict[str, Any] | None:
        response = self.get(f"{PREFIX}/recordings", params={"call_recording_id": crid})
        items = response.json().get("items", []) if response.status_code == 200 else []
        return items[0] if items else None

    def wait(self, crid: str, upload: str | None, within: float) -> dict[str, Any]:
        """Until the recording is available (and its upload in state ``upload``, if given)."""
        deadline = time.monotonic() + within
        while True:
            rec = self.recording(crid)
            available = rec is not None and rec["state"] == "available"
            if available and (upload is None or (rec["upload"] or {}).get("state") == upload):
                assert rec is not None
                return rec
            assert time.monotonic() < deadline, f"{crid}: {rec}\n{self.log_text()[-4000:]}"
            time.sleep(0.1)

    def object_bytes(self, key: str) -> bytes:
        """Read from the S3 server (the bucket's folder is rclone's business, not ours)."""
        store = self.store()
        try:
            return b"".join(store.read(key))
        finally:
            store.close()

    def store(self) -> S3ObjectStore:
        return S3ObjectStore(self.bucket, self.prefix, S3Options(
            endpoint=self.s3.endpoint, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
        ))

    def local_audio(self) -> list[Path]:
        return sorted((self.data_dir / "recordings").rglob("*.wav"))

    def metrics(self) -> dict[str, float]:
        text = self.get("/metrics").text
        values = {}
        for line in text.splitlines():
            if line.startswith("srs_upload") or line.startswith("srs_uploads"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*srs_command(), *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=True,
    )


def _token(data_dir: Path, scope: str) -> str:
    token: str = json.loads(_cli(data_dir, "token", "create", "--scope", scope, "--json").stdout)["token"]
    return token


def _launch(tmp: Path, s3: RcloneS3, bucket: str, data_dir: Path, pcap: Path) -> Node:
    """``srs serve`` with the store's endpoint in its config and credentials in its environment."""
    sip = free_port()
    low, high = free_port_range(200)
    http_port = free_port((socket.SOCK_STREAM,))
    data_dir.mkdir(exist_ok=True)
    config = tmp / "srs.toml"
    config.write_text(
        "[storage]\n"
        f'objects = "s3://{bucket}/fleet/node-1"\n'
        f'objects_endpoint = "{s3.endpoint}"\n'
        "upload_concurrency = 2\nupload_retry_max_s = 2.0\n"
        "retention_days = 1\nretention_interval_s = 1\n"
    )
    env = dict(
        os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1"
    )
    cmd = [*srs_command(), "serve", "--config", str(config), "--sip", f"{LOOPBACK}:{sip}",
           "--rtp-ports", f"{low}-{high}", "--data-dir", str(data_dir), "--http", f"{LOOPBACK}:{http_port}"]
    log_path = tmp / f"srs-{sip}.stderr.log"
    with log_path.open("wb") as err:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, cwd=REPO, env=env)
    node = Node(process, f"http://{LOOPBACK}:{http_port}", f"{LOOPBACK}:{sip}", data_dir, log_path,
                s3, bucket, "fleet/node-1")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not sip_options_ok(sip):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(node)
            pytest.fail(f"srs not ready: {node.log_text()}")
        time.sleep(0.1)
    node.admin = _token(data_dir, "admin")
    node.reader = _token(data_dir, "read")
    node.sipp = run_sipp.__wrapped__(tmp)  # type: ignore[attr-defined]
    node.pcap = pcap
    return node


def _stop(node: Node) -> int:
    process = node.process
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    if process.returncode != 0:
        print(f"----- srs log -----\n{node.log_text()[-20000:]}")
    return int(process.returncode)


def _bucket(s3: RcloneS3) -> str:
    bucket = s3.bucket_name()
    probe = S3ObjectStore(bucket, "", S3Options(
        endpoint=s3.endpoint, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
    ))
    probe.ensure_bucket()
    probe.close()
    return bucket


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, s3_server: RcloneS3, pcaps: dict[str, Path]
) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("step11")
    node = _launch(tmp, s3_server, _bucket(s3_server), tmp / "data", pcaps["pcmu_2s"])
    try:
        yield node
    finally:
        if not s3_server.running:
            s3_server.start()
        code = _stop(node)
        assert code == 0, f"srs exit code after SIGTERM: {code}"


def _check_in_store(node: Node, rec: dict[str, Any]) -> bytes:
    upload = rec["upload"]
    assert upload["state"] == "done" and upload["reason"] is None, rec
    assert rec["file"]["location"] == "object"
    data = node.object_bytes(upload["key"])
    assert hashlib.sha256(data).hexdigest() == rec["file"]["sha256"]
    assert len(data) == rec["file"]["size"]
    return data


def test_calls_are_uploaded_and_nothing_is_left_local(node: Node) -> None:
    stamp = int(time.time() * 1000)
    crids = [f"OBJ-{stamp}-{n}" for n in range(4)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(node.call, crids))
    for crid in crids:
        node.recs[crid] = node.wait(crid, "done", within=30)
        data = _check_in_store(node, node.recs[crid])
        assert data[:4] == b"RIFF" and len(data) > 16_000  # about 2 s of 8 kHz 16-bit audio
    assert node.local_audio() == [], "every local copy is removed once the store has it"
    shown = _cli(node.data_dir, "recordings", "show", node.recs[crids[0]]["id"]).stdout
    assert "upload: done" in shown
    metrics = node.metrics()
    assert metrics["srs_upload_backlog_recordings"] == 0 and metrics["srs_upload_backlog_bytes"] == 0
    assert metrics["srs_uploads_total"] >= 4
    lags = sorted(
        _ts(rec["upload"]["uploaded_at"]) - _ts(rec["ended_at"]) for rec in node.recs.values()
    )
    print(f"BYE to upload done: p50 {statistics.median(lags):.3f} s, max {lags[-1]:.3f} s")
    assert lags[-1] < 30


def _ts(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_download_head_range_and_signed_link_through_the_api(node: Node) -> None:
    rec = next(iter(node.recs.values()))
    data = node.object_bytes(rec["upload"]["key"])
    url = f"{PREFIX}/recordings/{rec['id']}/file"
    full = node.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["etag"] == f'"{rec["file"]["sha256"]}"'
    with node.client() as c:
        head = c.head(url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(data)
    part = node.get(url, headers={"Range": "bytes=44-1043"})
    assert part.status_code == 206 and part.content == data[44:1044]
    assert part.headers["content-range"] == f"bytes 44-1043/{len(data)}"
    assert node.get(url, headers={"If-None-Match": full.headers["etag"]}).status_code == 304
    with node.client() as c:
        link = c.post(f"{PREFIX}/recordings/{rec['id']}/link").json()["link"]
    parts = urlsplit(link)
    unsigned = httpx.get(f"{node.base}{parts.path}?{parts.query}", timeout=30)
    assert unsigned.status_code == 200 and unsigned.content == data
    ranged = httpx.get(f"{node.base}{parts.path}?{parts.query}", headers={"Range": "bytes=-100"}, timeout=30)
    assert ranged.status_code == 206 and ranged.content == data[-100:]


def test_store_down_for_30_s_during_calls(node: Node) -> None:
    stamp = int(time.time() * 1000)
    crids = [f"OUT-{stamp}-{n}" for n in range(6)]
    failures_before = node.metrics().get("srs_upload_attempt_failures_total", 0.0)
    node.s3.stop()
    stopped_at = time.monotonic()
    calls: list[str] = []
    errors: list[BaseException] = []

    def place_calls() -> None:
        try:
            for pair in (crids[0:2], crids[2:4], crids[4:6]):
                with ThreadPoolExecutor(2) as pool:
                    list(pool.map(node.call, pair))
                calls.extend(pair)
                time.sleep(3)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=place_calls)
    caller.start()
    node.wait(crids[0], "pending", within=25)
    seen_backlog = 0.0
    while time.monotonic() < stopped_at + OUTAGE_S - 2 and caller.is_alive():
        seen_backlog = max(seen_backlog, node.metrics().get("srs_upload_backlog_recordings", 0.0))
        time.sleep(0.5)
    caller.join(60)
    assert not errors, errors
    assert calls == crids
    pending = [node.wait(crid, "pending", within=15) for crid in crids]
    for rec in pending:
        assert rec["upload"]["reason"] and "unreachable" in rec["upload"]["reason"], rec["upload"]
    assert len(node.local_audio()) == len(crids), "the node kept recording to its disk"
    metrics = node.metrics()
    assert max(seen_backlog, metrics["srs_upload_backlog_recordings"]) >= len(crids)
    assert metrics["srs_upload_backlog_bytes"] >= sum(rec["file"]["size"] for rec in pending)
    assert metrics["srs_upload_attempt_failures_total"] > failures_before
    time.sleep(max(0.0, stopped_at + OUTAGE_S - time.monotonic()))
    node.s3.start()  # same port, same folder
    for crid in crids:
        node.recs[crid] = node.wait(crid, "done", within=60)
        _check_in_store(node, node.recs[crid])
    assert node.local_audio() == []
    assert node.metrics()["srs_upload_backlog_recordings"] == 0


def test_export_contains_the_objects_bytes(node: Node) -> None:
    wanted = list(node.recs.values())[:2]
    with node.client(node.admin) as c:
        job = c.post(f"{PREFIX}/exports", json={"ids": [r["id"] for r in wanted]})
        assert job.status_code == 202, job.text
        deadline = time.monotonic() + 30
        status = c.get(job.headers["location"]).json()
        while status["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, status
            time.sleep(0.1)
            status = c.get(job.headers["location"]).json()
        assert status["state"] == "done" and status["count"] == 2, status
        archive = c.get(status["links"]["file"])
    with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
        for rec in wanted:
            member = tar.extractfile(f"recordings/{rec['id']}.wav")
            assert member is not None and member.read() == node.object_bytes(rec["upload"]["key"])


def test_delete_and_retention_remove_the_objects(node: Node) -> None:
    recs = list(node.recs.values())
    deleted, aged, held = recs[0], recs[1], recs[2]
    store = node.store()
    try:
        assert store.head(deleted["upload"]["key"]) is not None
        with node.client(node.admin) as c:
            assert c.delete(f"{PREFIX}/recordings/{deleted['id']}").status_code == 204
            assert c.post(f"{PREFIX}/recordings/{held['id']}/hold").json()["legal_hold"] is True
        assert store.head(deleted["upload"]["key"]) is None
        old = time.time() - 3 * DAY_S
        with sqlite3.connect(node.data_dir / "index.sqlite3", timeout=10) as db:
            db.execute(
                "UPDATE recordings SET started_at = ? WHERE id IN (?, ?)", (old, aged["id"], held["id"])
            )
        deadline = time.monotonic() + 20
        while node.get(f"{PREFIX}/recordings/{aged['id']}").status_code != 404:
            assert time.monotonic() < deadline, "retention did not delete the aged recording"
            time.sleep(0.2)
        assert store.head(aged["upload"]["key"]) is None
        assert store.head(held["upload"]["key"]) is not None, "legal hold keeps the object"
        assert store.head(recs[3]["upload"]["key"]) is not None
    finally:
        store.close()


def test_pending_uploads_survive_a_daemon_restart(
    tmp_path: Path, s3_server: RcloneS3, pcaps: dict[str, Path]
) -> None:
    bucket = _bucket(s3_server)
    data_dir = tmp_path / "data"
    s3_server.stop()
    try:
        first = _launch(tmp_path, s3_server, bucket, data_dir, pcaps["pcmu_2s"])
        crids = [f"RST-{int(time.time() * 1000)}-{n}" for n in range(2)]
        try:
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(first.call, crids))
            for crid in crids:
                first.wait(crid, "pending", within=20)
        finally:
            assert _stop(first) == 0
        assert len(first.local_audio()) == 2, "the stopped daemon left its pending files on disk"
    finally:
        s3_server.start()
    second = _launch(tmp_path, s3_server, bucket, data_dir, pcaps["pcmu_2s"])
    try:
        for crid in crids:
            _check_in_store(second, second.wait(crid, "done", within=30))
        assert second.local_audio() == []
        assert '"resumed": 2' in second.log_text() or '"resumed":2' in second.log_text()
    finally:
        assert _stop(second) == 0
