"""Session-wide fixtures: a real, throw-away PostgreSQL server for the index tests, and kernel
receive time-stamping kept on for the whole run.

The server starts on first use (a few seconds) and stops at the end of the run. Each test that
asks for ``index_url_postgresql`` gets a database of its own, copied from a template that
already holds the migrated schema, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator

import pytest

from bench.pgcluster import PgCluster, throwaway_cluster
from srs.mediaplane.wire_clock import enable_timestamps

_names = itertools.count(1)
TEMPLATE = "srs_template"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PgCluster]:
    from srs.storage.db import Database

    with throwaway_cluster() as cluster:
        Database(cluster.create_database(TEMPLATE)).close()  # migrated once, copied per test
        yield cluster


@pytest.fixture
def index_url_postgresql(postgres_cluster: PgCluster) -> Iterator[str]:
    """A fresh PostgreSQL index database with the current schema; dropped after the test."""
    import psycopg

    name = f"srs_test_{next(_names)}"
    with psycopg.connect(postgres_cluster.url(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"'.encode())
    yield postgres_cluster.url(name)
    postgres_cluster.drop_database(name)



@pytest.fixture(scope="session", autouse=True)
def kernel_stamps_on() -> Iterator[None]:
    """Keep one socket with receive stamps open for the whole run.

    Linux switches its datagram time-stamping on when the first socket asks for it, and does so
    from a work queue: datagrams that arrive in that moment carry no stamp and are stamped when
    read. srs's daemon keeps its SIP socket stamped for its whole life, so only a test whose socket
    is the first one can see that; this keeps any test from being the first."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        enable_timestamps(sock)
        time.sleep(0.05)
        yield
