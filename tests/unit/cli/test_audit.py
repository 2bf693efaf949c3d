"""`srs audit list`: what the CLI read and changed is in the audit trail, as ``cli:<user>``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.service.recordings import RecordingService
from tests.unit.cli.test_recordings import run
from tests.unit.storage.factory import add_recording


def test_cli_reads_are_audited_and_listed_and_links_revoked(
    svc: RecordingService, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rid = add_recording(svc.index, svc.layout)
    assert run("recordings", "download", rid, "-o", str(tmp_path / "a.wav"), "--data-dir", str(data)) == 0
    assert run("recordings", "link", rid, "--data-dir", str(data), "--json") == 0
    link = json.loads(capsys.readouterr().out)["link"]
    params = dict(part.split("=") for part in link.split("?", 1)[1].split("&"))
    svc.verify_link(rid, params["exp"], params["sig"], params["lid"])
    assert run("recordings", "link", params["lid"], "--revoke", "--data-dir", str(data)) == 0
    with pytest.raises(Exception, match="revoked"):
        svc.verify_link(rid, params["exp"], params["sig"], params["lid"])
    assert run("audit", "list", "--recording-id", rid, "--data-dir", str(data), "--json") == 0
    items = json.loads(capsys.readouterr().out)["items"]
    assert [i["action"] for i in items] == ["link_revoke", "link_create", "download"]
    assert all(i["actor"].startswith("cli") for i in items)
    assert run("audit", "list", "--action", "download", "--data-dir", str(data)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "download" in lines[0] and rid in lines[0]
