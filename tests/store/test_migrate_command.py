"""``epidural-cds migrate``: the deployment step that brings the store to the current schema.

Run as a real subprocess on both backends (a SQLite file in the data directory, a database on
the session's real PostgreSQL server), as the Kubernetes migration Job runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from service.store import MIGRATIONS_DIR, create_store_engine, default_database_url
from tests.support.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    return subprocess.run(
        [sys.executable, "-m", "service.cli", "migrate"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(config).get_current_head()


def schema(url: str) -> tuple[set[str], str | None]:
    engine = create_store_engine(url)
    try:
        tables = set(inspect(engine).get_table_names())
        version = None
        if "alembic_version" in tables:
            with engine.connect() as connection:
                version = connection.execute(
                    text("SELECT version_num FROM alembic_version")
                ).scalar()
        return tables, version
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrate_creates_the_schema_once_and_is_then_a_no_op(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    if backend == "sqlite":
        # The default store: SQLite in the data directory, which migrate creates.
        env = {"EPIDURAL_CDS_DATA_DIR": str(data_dir)}
        url = default_database_url(data_dir)
    else:
        # Its own name: the store tests' database counter lives in their conftest module.
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"migrate_command_{uuid.uuid4().hex[:12]}")
        env = {"EPIDURAL_CDS_DATABASE_URL": url, "EPIDURAL_CDS_DATA_DIR": str(data_dir)}
    first = migrate(env)
    assert first.returncode == 0, first.stderr
    assert "schema is current" in first.stderr
    tables, version = schema(url)
    assert {"used_jwt_ids", "alembic_version"} <= tables
    assert version == head_revision() is not None
    if backend == "postgresql":
        assert not data_dir.exists()  # nothing written locally when the store is PostgreSQL
    second = migrate(env)
    assert second.returncode == 0, second.stderr
    assert schema(url) == (tables, version)


def test_migrate_against_an_unreachable_database_fails_plainly(tmp_path: Path) -> None:
    # Port 9 on loopback: nothing listens there, so the connection is refused at once.
    url = "postgresql://cds:s3cret-password@127.0.0.1:9/cds"
    result = migrate({"EPIDURAL_CDS_DATABASE_URL": url, "EPIDURAL_CDS_DATA_DIR": str(tmp_path)})
    assert result.returncode == 1
    assert "migrating the store at postgresql://cds:***@127.0.0.1:9/cds failed" in result.stderr
    assert "s3cret-password" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
