"""Fixtures that run every store test on both supported backends.

SQLite gets a fresh file in ``tmp_path``; PostgreSQL gets a fresh database on the
session's throwaway server (the ``postgres`` fixture of tests/conftest.py), which is only
started when a PostgreSQL test actually runs.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from service.store import create_store_engine, default_database_url
from tests.support.postgres import PostgresServer

BACKENDS = ["sqlite", "postgresql"]

_database_numbers = itertools.count()


def fresh_database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """The URL of a new, empty database on ``backend``."""
    if backend == "sqlite":
        return default_database_url(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"store_test_{next(_database_numbers)}")


@pytest.fixture(params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty (unmigrated) database, once per backend."""
    store_engine = create_store_engine(fresh_database_url(request, request.param, tmp_path))
    yield store_engine
    store_engine.dispose()
