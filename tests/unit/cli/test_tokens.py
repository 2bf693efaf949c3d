"""`srs token create|list|revoke`, run through the parser `srs` main builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from srs.service.recordings import RecordingService
from srs.service.tokens import TokenService
from tests.unit.cli.test_recordings import run


def test_token_lifecycle(svc: RecordingService, data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("token", "create", "--scope", "admin", "--name", "ops", "--json", "--data-dir", str(data)) == 0
    created = json.loads(capsys.readouterr().out)
    assert set(created) >= {"token", "id", "scope"} and created["scope"] == "admin"
    service = RecordingService.open(data)
    assert TokenService(service.index).verify(created["token"]) == "admin"
    assert run("token", "list", "--json", "--data-dir", str(data)) == 0
    listed = capsys.readouterr().out
    assert created["id"] in listed and created["token"] not in listed
    assert run("token", "revoke", created["id"], "--data-dir", str(data)) == 0
    assert TokenService(service.index).verify(created["token"]) is None
    assert run("token", "revoke", created["id"], "--data-dir", str(data)) == 1
    assert run("token", "create", "--scope", "read", "--data-dir", str(data)) == 0
    plain = capsys.readouterr().out.strip()
    assert plain.startswith("srs_") and "\n" not in plain
