"""A data directory as `srs serve` leaves it, for the admin subcommands' tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from srs.service.recordings import RecordingService


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def svc(data: Path) -> RecordingService:
    return RecordingService.open(data)
