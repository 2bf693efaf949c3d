"""Session-wide fixtures: a real, throw-away PostgreSQL server for the index tests.

The server starts on first use (a few seconds) and stops at the end of the run. Each test that
asks for ``index_url_postgresql`` gets a database of its own, copied from a template that
already holds the migrated schema, so tests never see each other's rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from srs.bench.pgcluster import PgCluster, throwaway_cluster

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

