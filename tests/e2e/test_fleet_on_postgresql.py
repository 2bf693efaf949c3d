"""A fleet of srs nodes on one real PostgreSQL index, driven by SIPp on loopback.

* Two ``srs serve`` daemons record the same SIPREC session (same call-recording-id, as an SBC
  with two simultaneous recording servers sends it); node B's process group is killed mid-call.
  The fleet shows one logical recording: complete, from node A, naming both copies.
* One daemon keeps recording while its PostgreSQL server is stopped and started again: OPTIONS
  and new INVITEs get 503 + Retry-After meanwhile, and every call's rows are there afterwards.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bench.pgcluster import throwaway_cluster
from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.records import RecordingFilter
from tests.e2e.conftest import (
    SippResult,
    options_status,
    srs_command,
)
from tests.e2e.nodes import Fleet, Node, fleet_in

pytestmark = pytest.mark.e2e
RunSipp = Callable[..., SippResult]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_in(tmp_path)


def _start(fleet: Fleet, name: str, index_url: str) -> Node:
    return fleet.start(name, f'[storage]\nindex = "{index_url}"\n\n[media]\nworkers = 0\n')


def _sipp_in_thread(
    run_sipp: RunSipp, results: dict[str, SippResult], key: str, *args: str, **kw: object
) -> threading.Thread:
    def run() -> None:
        results[key] = run_sipp(*args, **kw)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {within} s: {what}")


def test_one_session_on_two_nodes_is_one_logical_recording_complete_from_the_surviving_node(
    index_url_postgresql: str,
    fleet: Fleet,
    run_sipp: RunSipp,
    pcaps: dict[str, Path],
    crid: str,
) -> None:
    node_a = _start(fleet, "node-a", index_url_postgresql)
    node_b = _start(fleet, "node-b", index_url_postgresql)
    index = RecordingIndex(index_url_postgresql)
    try:
        results: dict[str, SippResult] = {}
        common = ("siprec_basic.xml", "-set", "crid", crid, "-d", "6000")
        pcap = {"two_tone_pcmu.pcap": pcaps["basic_5s"]}
        to_a = _sipp_in_thread(run_sipp, results, "a", *common, target=node_a.target, timeout=40, pcaps=pcap)
        to_b = _sipp_in_thread(run_sipp, results, "b", *common, target=node_b.target, timeout=15, pcaps=pcap)

        def both_recording() -> bool:
            rows = index.find(RecordingFilter(call_recording_id=crid)).items
            return sorted((r["node"], r["state"]) for r in rows) == [
                ("node-a", "recording"),
                ("node-b", "recording"),
            ]

        _wait(both_recording, 20, "both nodes recording the session")
        time.sleep(1.0)  # mid-call
        node_b.kill_group()
        to_a.join(60)
        to_b.join(60)
        assert results["a"].returncode == 0, results["a"].describe()
        assert results["b"].returncode != 0  # its recorder vanished mid-call

        def available_on_a() -> bool:
            rows = index.find(RecordingFilter(call_recording_id=crid, node="node-a")).items
            return bool(rows) and rows[0]["state"] == "available"

        _wait(available_on_a, 20, "node a's copy available")
        service = RecordingService.open(node_a.data_dir, index=index_url_postgresql)
        try:
            logical = service.show_by_call_recording_id(crid)
        finally:
            service.index.close()
        assert logical["node"] == "node-a" and logical["state"] == "available" and not logical["incomplete"]
        assert logical["duration_ms"] >= 4000
        copies = {c["node"]: c for c in logical["copies"]}
        assert set(copies) == {"node-a", "node-b"}
        assert (
            copies["node-a"]["complete"]
            and copies["node-a"]["preferred"]
            and copies["node-a"]["id"] == logical["id"]
        )
        assert not copies["node-b"]["complete"] and not copies["node-b"]["preferred"]
        listed = subprocess.run(
            [*srs_command(), "recordings", "list", "--data-dir", str(node_a.data_dir), "--index",
             index_url_postgresql, "--node", "node-b", "--json"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert [item["id"] for item in json.loads(listed.stdout)["items"]] == [copies["node-b"]["id"]]
    finally:
        index.close()
    assert node_a.stop() == 0, node_a.log()


def test_a_node_keeps_recording_while_postgresql_restarts_and_loses_no_row(
    fleet: Fleet, run_sipp: RunSipp, pcaps: dict[str, Path], tmp_path: Path
) -> None:
    crid = f"PGDOWN-{uuid.uuid4().hex[:8]}"
    with throwaway_cluster() as cluster:
        url = cluster.create_database("fleet")
        node = _start(fleet, "node-a", url)
        index = RecordingIndex(url)
        try:
            results: dict[str, SippResult] = {}
            pcap = {"two_tone_pcmu.pcap": pcaps["basic_5s"]}
            calls = _sipp_in_thread(
                run_sipp, results, "calls", "siprec_basic.xml", "-set", "crid", crid, "-d", "8000",
                "-m", "4", "-l", "4", "-r", "4", target=node.target, timeout=60, pcaps=pcap,
            )  # fmt: skip
            _wait(lambda: index.count_by_state()["recording"] == 4, 20, "four calls recording")
            index.close()
            cluster.stop("fast")
            _wait(lambda: options_status(node.sip_port, 0.5) == 503, 15, "OPTIONS answered 503")
            refused = run_sipp(
                "siprec_basic.xml", "-set", "crid", crid + "-late", "-d", "1000", target=node.target,
                timeout=10, pcaps=pcap,
            )  # fmt: skip
            answer = refused.find(sent=False, status=503)
            assert answer.header("Retry-After"), refused.describe()
            calls.join(90)  # the four calls end while the index is still down
            assert results["calls"].returncode == 0, results["calls"].describe()
            time.sleep(1.0)
            assert options_status(node.sip_port, 0.5) == 503
            cluster.start()
            _wait(lambda: options_status(node.sip_port, 0.5) == 200, 30, "OPTIONS answered 200 again")
            index = RecordingIndex(url)
            _wait(lambda: index.count_by_state()["available"] == 4, 30, "every recording available")
            rows = index.find(RecordingFilter(call_recording_id=crid)).items
            assert len(rows) == 4 and {r["node"] for r in rows} == {"node-a"}
            assert all(r["duration_ms"] >= 6000 and not r["incomplete"] for r in rows)
            assert index.find(RecordingFilter(call_recording_id=crid + "-late")).total == 0
        finally:
            index.close()
        assert node.stop() == 0, node.log()
        assert '"index_unavailable"' in node.log() and '"index_available"' in node.log()
