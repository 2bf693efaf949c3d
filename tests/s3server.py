"""The session's S3-compatible server (rclone serve s3 on a free loopback port), for any test that asks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.rclone import ACCESS_KEY, SECRET_KEY, RcloneS3, rclone_binary

__all__ = ["ACCESS_KEY", "SECRET_KEY", "RcloneS3", "rclone_binary", "s3_server"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3]:
    """One rclone S3 server for the test session, on a free loopback port; stopped at the end."""
    server = RcloneS3(tmp_path_factory.mktemp("s3") / "root")
    server.start()
    yield server
    server.stop()
