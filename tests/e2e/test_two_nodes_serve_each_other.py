"""Two srs nodes on one PostgreSQL index and one S3 bucket, each serving the other's recordings.

Two ``srs serve`` daemons on loopback (own SIP/HTTP ports, RTP ranges, data dirs and ``[node] id``)
share a throw-away PostgreSQL index and one bucket of a real S3-compatible server (``rclone serve
s3``). SIPp places six calls on each node. Once every recording is available and uploaded, node A's
API alone lists all twelve with the node that recorded them, and serves node B's recording whole,
by Range and in an export, with the bytes the index's sha256 names.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from srs.storage.s3_store import S3ObjectStore, S3Options
from tests.e2e.conftest import (
    SippResult,
    srs_command,
)
from tests.e2e.nodes import Fleet, Node, fleet_in
from tests.s3server import ACCESS_KEY, SECRET_KEY, RcloneS3, s3_server

__all__ = ["s3_server"]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PREFIX = "/api/v1"
CALLS_PER_NODE = 6
WAIT_S = 60.0
RunSipp = Callable[..., SippResult]


def _s3_env() -> dict[str, str]:
    return dict(
        os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_REGION="us-east-1"
    )


def _bucket(s3: RcloneS3) -> str:
    bucket = s3.bucket_name()
    probe = S3ObjectStore(bucket, "", S3Options(
        endpoint=s3.endpoint, region="us-east-1", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
    ))  # fmt: skip
    try:
        probe.ensure_bucket()
    finally:
        probe.close()
    return bucket


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_in(tmp_path, _s3_env())


def _start(fleet: Fleet, name: str, index_url: str, objects: str, objects_endpoint: str) -> Node:
    return fleet.start(
        name,
        f'[storage]\nindex = "{index_url}"\nobjects = "{objects}"\n'
        f'objects_endpoint = "{objects_endpoint}"\nupload_concurrency = 2\nupload_retry_max_s = 2.0\n\n'
        "[media]\nworkers = 0\n",
        http=True,
    )


def _cli(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI against the node's configuration (the shared index and store), not its own data dir only."""
    return subprocess.run(
        [*srs_command(), *args, "--config", str(node.config), "--data-dir", str(node.data_dir)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env=_s3_env(),
    )  # fmt: skip


def _token(node: Node, scope: str) -> str:
    done = _cli(node, "token", "create", "--scope", scope, "--json")
    assert done.returncode == 0, done.stderr
    token: str = json.loads(done.stdout)["token"]
    return token


def _wait(predicate: Callable[[], Any], within: float, what: Callable[[], str]) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what()}")
        time.sleep(0.2)


def test_two_nodes_share_postgresql_and_s3_and_serve_each_others_recordings(
    index_url_postgresql: str,
    s3_server: RcloneS3,
    fleet: Fleet,
    run_sipp: RunSipp,
    pcaps: dict[str, Path],
) -> None:
    bucket = _bucket(s3_server)
    objects = f"s3://{bucket}/fleet"
    node_a = _start(fleet, "node-a", index_url_postgresql, objects, s3_server.endpoint)
    node_b = _start(fleet, "node-b", index_url_postgresql, objects, s3_server.endpoint)

    stamp = f"{int(time.time() * 1000)}"
    crids = {
        node.name: [f"TWO-{stamp}-{node.name}-{n}" for n in range(CALLS_PER_NODE)]
        for node in (node_a, node_b)
    }
    targets = {node_a.name: node_a.target, node_b.name: node_b.target}
    pcap = {"two_tone_pcmu.pcap": pcaps["pcmu_2s"]}

    def call(job: tuple[str, str]) -> SippResult:
        name, crid = job
        return run_sipp(
            "siprec_basic.xml", "-d", "2000", "-set", "crid", crid,
            target=targets[name], timeout=40, pcaps=pcap,
        )  # fmt: skip

    # Interleaved (a, b, a, b, ...), four SIPp at a time: both nodes take calls at once.
    jobs = [(name, crids[name][n]) for n in range(CALLS_PER_NODE) for name in crids]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, jobs))
    for result in results:
        assert result.returncode == 0, result.describe()

    # Tokens made by the CLI against the shared index: node A's API knows them.
    reader = _token(node_a, "read")
    admin = _token(node_a, "admin")
    client = httpx.Client(base_url=node_a.base, headers={"Authorization": f"Bearer {reader}"}, timeout=30.0)
    admin_client = httpx.Client(
        base_url=node_a.base, headers={"Authorization": f"Bearer {admin}"}, timeout=30.0
    )
    try:

        def listing() -> list[dict[str, Any]]:
            response = client.get(f"{PREFIX}/recordings", params={"max": 100})
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["items"]
            return items

        def all_uploaded() -> list[dict[str, Any]] | None:
            items = [i for i in listing() if i["call_recording_id"].startswith(f"TWO-{stamp}-")]
            done = [
                i
                for i in items
                if i["state"] == "available" and (i.get("upload") or {}).get("state") == "done"
            ]
            return items if len(done) == 2 * CALLS_PER_NODE else None

        def state() -> str:
            logs = f"{node_a.log()[-3000:]}\n{node_b.log()[-3000:]}"
            return f"{json.dumps(listing(), indent=1)[-6000:]}\n{logs}"

        items = _wait(all_uploaded, WAIT_S, state)
        by_crid = {i["call_recording_id"]: i for i in items}
        assert len(by_crid) == 2 * CALLS_PER_NODE
        for name, wanted in crids.items():
            for crid in wanted:
                assert by_crid[crid]["node"] == name, by_crid[crid]
                assert by_crid[crid]["file"]["location"] == "object", by_crid[crid]

        # Node B's recording, found by call-recording-id through node A.
        crid_b = crids[node_b.name][0]
        found = client.get(f"{PREFIX}/recordings", params={"call_recording_id": crid_b})
        assert found.status_code == 200, found.text
        assert [i["id"] for i in found.json()["items"]] == [by_crid[crid_b]["id"]]
        rec = found.json()["items"][0]
        assert rec["node"] == node_b.name
        url = f"{PREFIX}/recordings/{rec['id']}/file"
        whole = client.get(url)
        assert whole.status_code == 200, whole.text
        data = whole.content
        assert hashlib.sha256(data).hexdigest() == rec["file"]["sha256"] and len(data) == rec["file"]["size"]
        assert data[:4] == b"RIFF" and len(data) > 16_000
        part = client.get(url, headers={"Range": "bytes=100-2099"})
        assert part.status_code == 206, part.text
        assert part.content == data[100:2100]
        assert part.headers["content-range"] == f"bytes 100-2099/{len(data)}"

        # An export of node B's recording, made by node A.
        job = admin_client.post(f"{PREFIX}/exports", json={"ids": [rec["id"]]})
        assert job.status_code == 202, job.text
        location = job.headers["location"]

        def export_finished() -> dict[str, Any] | None:
            status: dict[str, Any] = admin_client.get(location).json()
            return status if status["state"] in ("done", "failed") else None

        status = _wait(export_finished, WAIT_S, lambda: json.dumps(admin_client.get(location).json()))
        assert status["state"] == "done" and status["count"] == 1, status
        archive = admin_client.get(status["links"]["file"])
        assert archive.status_code == 200, archive.text
        with tarfile.open(fileobj=io.BytesIO(archive.content), mode="r:gz") as tar:
            member = tar.extractfile(f"recordings/{rec['id']}.wav")
            assert member is not None and member.read() == data
    finally:
        client.close()
        admin_client.close()
    assert node_a.stop() == 0, node_a.log()[-20000:]
    assert node_b.stop() == 0, node_b.log()[-20000:]
