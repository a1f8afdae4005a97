"""What the per-call replay insert must keep, on both backends.

:meth:`service.store.SqlReplayGuard.remember` runs on every authenticated call. These tests pin
down its connection handling: the connection always goes back to the pool (also when the
statement fails), a failure surfaces as a SQLAlchemy error, a connection the database dropped is
replaced rather than reused, no connection is opened before the first call (gunicorn forks after
construction), and SQLite runs with ``synchronous = NORMAL``, the documented durability choice.
The cross-process and cross-worker refusals themselves are covered by ``tests/store`` and
``test_replay_gunicorn.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from service.store import SqlReplayGuard, create_store_engine, default_database_url, migrate
from tests.support.postgres import PostgresServer

ISS = "https://ehr.example.org"


_databases = iter(range(1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An engine on a new, empty (unmigrated) database, once per backend."""
    if request.param == "sqlite":
        url = default_database_url(tmp_path)
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"replay_connections_{next(_databases)}")
    store_engine = create_store_engine(url)
    yield store_engine
    store_engine.dispose()


def checked_out(engine: Engine) -> int:
    return int(engine.pool.checkedout())  # type: ignore[attr-defined]


def test_construction_opens_no_connection(engine: Engine) -> None:
    migrate(engine)
    engine.dispose()  # as create_app does before gunicorn forks
    SqlReplayGuard(engine)
    assert (engine.pool.checkedin(), checked_out(engine)) == (0, 0)  # type: ignore[attr-defined]


def test_connection_goes_back_to_the_pool(engine: Engine) -> None:
    migrate(engine)
    guard = SqlReplayGuard(engine)
    expires_at = time.time() + 300
    for n in range(20):
        assert guard.remember(ISS, f"jti-{n}", expires_at)
        assert not guard.remember(ISS, f"jti-{n}", expires_at)
        assert checked_out(engine) == 0


def test_a_failing_insert_raises_a_sqlalchemy_error_and_releases_the_connection(
    engine: Engine,
) -> None:
    guard = SqlReplayGuard(engine)  # not migrated: the table does not exist
    with pytest.raises(DBAPIError) as info:
        guard.remember(ISS, "jti", time.time() + 300)
    assert isinstance(info.value, OperationalError | ProgrammingError)
    assert checked_out(engine) == 0
    migrate(engine)  # the pool is still usable, and nothing half-done was left behind
    assert guard.remember(ISS, "jti", time.time() + 300)


def test_the_claim_is_committed_and_visible_to_another_engine(engine: Engine) -> None:
    """Committed, not left in an open transaction: a second engine (process) sees the row."""
    migrate(engine)
    SqlReplayGuard(engine).remember(ISS, "seen", time.time() + 300)
    other = create_store_engine(engine.url.render_as_string(hide_password=False))
    try:
        assert not SqlReplayGuard(other).remember(ISS, "seen", time.time() + 300)
    finally:
        other.dispose()


def kill_other_connections(url: str) -> int:
    """Terminate every other session on the database (as a restart or failover would)."""
    admin = create_store_engine(url)  # another process's engine, to kill ours
    try:
        with admin.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
    finally:
        admin.dispose()
    return len(killed)


def test_a_connection_the_server_dropped_is_replaced(postgres: PostgresServer) -> None:
    url = postgres.create_database(f"replay_connections_{next(_databases)}")
    engine = create_store_engine(url)
    try:
        migrate(engine)
        guard = SqlReplayGuard(engine)
        assert guard.remember(ISS, "before", time.time() + 300)
        assert kill_other_connections(url) == 1  # the guard's pooled connection
        # The pooled connection is dead now; the pre-ping on checkout must replace it.
        assert guard.remember(ISS, "after", time.time() + 300)
        assert not guard.remember(ISS, "before", time.time() + 300)
    finally:
        engine.dispose()


def test_a_connection_lost_during_the_insert_is_discarded(postgres: PostgresServer) -> None:
    """Without the pre-ping, the loss shows in the insert: that connection must not be reused."""
    url = postgres.create_database(f"replay_connections_{next(_databases)}")
    engine = create_store_engine(url)
    engine.pool._pre_ping = False  # type: ignore[attr-defined]
    try:
        migrate(engine)
        guard = SqlReplayGuard(engine)
        assert guard.remember(ISS, "before", time.time() + 300)
        assert kill_other_connections(url) == 1
        with pytest.raises(DBAPIError) as info:
            guard.remember(ISS, "lost", time.time() + 300)
        assert info.value.connection_invalidated
        assert checked_out(engine) == 0
        assert guard.remember(ISS, "lost", time.time() + 300)  # a new connection, not the dead one
    finally:
        engine.dispose()


def test_sqlite_uses_wal_with_synchronous_normal(tmp_path: Path) -> None:
    engine = create_store_engine(default_database_url(tmp_path))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
    finally:
        engine.dispose()
