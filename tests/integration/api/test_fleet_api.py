"""The API of a fleet: recordings and metrics filtered by the node that made them (both backends)."""

from __future__ import annotations

from pathlib import Path

from srs.storage.index import RecordingIndex
from srs.storage.records import NewRecording
from tests.integration.api.conftest import Api

PREFIX = "/api/v1"
T0 = 1_700_000_000.0


def _other_node(api: Api, name: str) -> RecordingIndex:
    """A second node's view of the same index (its own connection, its own node name)."""
    return RecordingIndex(api.index.db.url.target, clock=api.clock, layout=api.layout, node=name)


def test_list_and_metrics_filter_by_node(api: Api) -> None:
    node_b = _other_node(api, "node-b")
    node_c = _other_node(api, "node-c")
    try:
        b1 = node_b.create_recording(NewRecording(started_at=T0, call_recording_id="s-1"))
        b2 = node_b.create_recording(NewRecording(started_at=T0 + 1, call_recording_id="s-2"))
        c1 = node_c.create_recording(NewRecording(started_at=T0 + 2, call_recording_id="s-1"))
    finally:
        node_b.close()
        node_c.close()
    listed = api.request("GET", f"{PREFIX}/recordings", params={"node": "node-b"}).json()
    assert [item["id"] for item in listed["items"]] == [b2, b1]
    assert {item["node"] for item in listed["items"]} == {"node-b"}
    assert listed["pagination"]["total"] == 2
    every = api.request("GET", f"{PREFIX}/recordings").json()["items"]
    assert [item["id"] for item in every] == [c1, b2, b1]
    shared = next(item for item in every if item["id"] == b1)
    assert sorted(copy["node"] for copy in shared["copies"]) == ["node-b", "node-c"]
    text = api.request("GET", "/metrics", params={"node": "node-b"}).text
    assert 'srs_node_recordings{node="node-b",state="starting"} 2.0' in text
    assert 'srs_node_recordings{node="node-b",state="available"} 0.0' in text
    assert "srs_node_recordings" not in api.request("GET", "/metrics").text
    assert api.request("GET", "/metrics", params={"node": "bad node!"}).status_code == 400


def test_a_session_recorded_by_two_nodes_is_served_as_its_most_complete_copy(api: Api) -> None:
    from srs.storage.records import FinalizedRecording, State

    node_b = _other_node(api, "node-b")
    try:
        partial = node_b.create_recording(NewRecording(started_at=T0, call_recording_id="rs-9"))
        node_b.advance_state(partial, State.RECORDING)  # node b died mid-call: never finalized
    finally:
        node_b.close()
    node_a = _other_node(api, "node-a")
    try:
        whole = node_a.create_recording(NewRecording(started_at=T0 + 0.02, call_recording_id="rs-9"))
        node_a.advance_state(whole, State.RECORDING)
        node_a.finalize(whole, FinalizedRecording(T0 + 60, 60_000, None, None, None))
    finally:
        node_a.close()
    body = api.request("GET", f"{PREFIX}/sessions/rs-9").json()
    assert body["id"] == whole and body["node"] == "node-a" and body["state"] == "available"
    assert [(c["id"], c["node"], c["complete"], c["preferred"]) for c in body["copies"]] == [
        (whole, "node-a", True, True),
        (partial, "node-b", False, False),
    ]
    assert api.request("GET", f"{PREFIX}/sessions/no-such-session").status_code == 404
    assert api.request("GET", f"{PREFIX}/sessions/rs-9", token=None).status_code == 401


def test_the_api_answers_503_while_its_postgresql_index_is_down_and_recovers(tmp_path: Path) -> None:
    from bench.pgcluster import throwaway_cluster

    with throwaway_cluster() as cluster:
        api = Api(tmp_path, cluster.create_database("api"))
        try:
            assert api.request("GET", f"{PREFIX}/recordings").status_code == 200
            cluster.stop("fast")
            down = api.request("GET", f"{PREFIX}/recordings")
            assert down.status_code == 503 and down.headers["retry-after"] == "5"
            assert down.json()["error"]["code"] == "index_unavailable"
            cluster.start()
            assert api.request("GET", f"{PREFIX}/recordings").status_code == 200
        finally:
            api.close()
