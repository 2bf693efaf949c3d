"""`srs recordings list --index URL --node ID`: the CLI on a shared index, both backends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.storage.index import RecordingIndex
from srs.storage.records import NewRecording
from tests.unit.cli.test_recordings import run
from tests.unit.storage.factory import T0


def test_list_on_a_shared_index_filters_by_node(
    index_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {}
    for node in ("node-a", "node-b"):
        index = RecordingIndex(index_target, node=node)
        ids[node] = index.create_recording(NewRecording(started_at=T0, call_recording_id=f"rs-{node}"))
        index.close()
    capsys.readouterr()
    # a node's data dir, as `srs serve` leaves it beside a shared index: its secret.key, no index file
    (tmp_path / "cli-data").mkdir()
    (tmp_path / "cli-data" / "secret.key").write_bytes(b"k" * 32)
    data_dir = str(tmp_path / "cli-data")
    assert (
        run(
            "recordings",
            "list",
            "--data-dir",
            data_dir,
            "--index",
            index_target,
            "--node",
            "node-b",
            "--json",
        )
        == 0
    )
    items = json.loads(capsys.readouterr().out)["items"]
    assert [(item["id"], item["node"]) for item in items] == [(ids["node-b"], "node-b")]
    assert run("recordings", "list", "--data-dir", data_dir, "--index", index_target) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and any(line.endswith("@node-a") for line in lines)
