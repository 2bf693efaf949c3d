from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from srs.service.recordings import RecordingService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def layout(tmp_path: Path) -> DataLayout:
    data = DataLayout(tmp_path / "data")
    data.ensure()
    return data


@pytest.fixture(params=["sqlite", "postgresql"])
def index_target(request: pytest.FixtureRequest, layout: DataLayout) -> str:
    """Where the index lives: the data directory's SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(layout.index_path)
    url: str = request.getfixturevalue("index_url_postgresql")
    return url


@pytest.fixture
def index(index_target: str, layout: DataLayout, clock: FakeClock) -> Iterator[RecordingIndex]:
    idx = RecordingIndex(index_target, clock=clock, layout=layout)
    yield idx
    idx.close()


@pytest.fixture
def service(index: RecordingIndex, layout: DataLayout, clock: FakeClock) -> RecordingService:
    return RecordingService(index, layout, layout.secret(), clock)
