from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from srs.api.app import create_app
from srs.service.exports import ExportManager
from srs.service.recordings import RecordingService
from srs.service.tokens import TokenService
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout

T = TypeVar("T")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A synchronous face on an in-process ASGI client; one event loop for the whole test so
    background export tasks keep running between requests."""

    def __init__(self, tmp_path: Path, index_target: str | None = None) -> None:
        self.clock = Clock()
        self.layout = DataLayout(tmp_path / "data")
        self.layout.ensure()
        target = index_target if index_target is not None else str(self.layout.index_path)
        self.index = RecordingIndex(target, clock=self.clock, layout=self.layout)
        self.service = RecordingService(self.index, self.layout, self.layout.secret(), self.clock)
        self.tokens = TokenService(self.index)
        self.exports = ExportManager(self.service)
        self.registry = CollectorRegistry()
        Gauge("srs_active_sessions", "live sessions", registry=self.registry).set(3)
        self.app = create_app(
            self.service, self.tokens, self.exports, None, self.registry, max_link_validity_min=60
        )
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://srs.test"
        )
        self.read_token, _ = self.tokens.create("read", "reader")
        self.admin_token, _ = self.tokens.create("admin", "admin")

    def run(self, awaitable: Awaitable[T]) -> T:
        return self.loop.run_until_complete(awaitable)

    def request(self, method: str, url: str, token: str | None = "read", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token == "read":
            headers["Authorization"] = f"Bearer {self.read_token}"
        elif token == "admin":
            headers["Authorization"] = f"Bearer {self.admin_token}"
        elif token is not None:
            headers["Authorization"] = token
        return self.run(self.client.request(method, url, headers=headers, **kwargs))

    def close(self) -> None:
        self.run(self.client.aclose())
        self.loop.close()
        self.index.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    """The API on either index backend (a real throw-away PostgreSQL server for the second)."""
    target = request.getfixturevalue("index_url_postgresql") if request.param == "postgresql" else None
    instance = Api(tmp_path, target)
    yield instance
    instance.close()
