"""The store on both backends: schema migrations and cross-process JWT replay protection.

The multi-process tests use real processes (``spawn``, so each has its own engine and
connection pool, exactly like gunicorn workers or replicas): replay protection and startup
migrations are only worth something if they hold when several processes race.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Float, inspect, select, text

from service.store import (
    MIGRATIONS_DIR,
    SqlReplayGuard,
    create_store_engine,
    default_database_url,
    migrate,
    used_jwt_ids,
)

ISS = "https://ehr.example.org"
PROCESS_TIMEOUT_S = 120
_ctx = multiprocessing.get_context("spawn")


class FakeClock:
    """A settable clock for :class:`SqlReplayGuard`."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _version(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))]


def _stored(engine: Engine) -> dict[tuple[str, str], float]:
    with engine.connect() as conn:
        rows = conn.execute(select(used_jwt_ids)).all()
    return {(row.iss, row.jti): row.expires_at for row in rows}


def _head() -> str:
    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    assert head is not None
    return head


def _run_processes(
    target: Callable[..., None], args_per_process: Sequence[tuple[Any, ...]]
) -> None:
    processes = [_ctx.Process(target=target, args=args) for args in args_per_process]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join(PROCESS_TIMEOUT_S)
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
    assert [p.exitcode for p in processes] == [0] * len(processes)


# --- workers (module level so that ``spawn`` can import them in the child) ---


def _migrate_worker(url: str, barrier: Barrier) -> None:
    engine = create_store_engine(url)
    try:
        barrier.wait(timeout=PROCESS_TIMEOUT_S)
        migrate(engine)
    finally:
        engine.dispose()


def _remember_worker(url: str, jtis: list[str], barrier: Barrier, results: Queue[int]) -> None:
    engine = create_store_engine(url)
    try:
        guard = SqlReplayGuard(engine, purge_every=50)
        expires_at = time.time() + 3600
        barrier.wait(timeout=PROCESS_TIMEOUT_S)
        results.put(sum(guard.remember(ISS, jti, expires_at) for jti in jtis))
    finally:
        engine.dispose()


# --- engine configuration ---


def test_default_database_url_is_a_sqlite_file_in_the_data_dir(tmp_path: Path) -> None:
    assert default_database_url(tmp_path) == f"sqlite:///{tmp_path}/epidural-cds.sqlite3"


@pytest.mark.parametrize(
    "url", ["postgresql://u:p@db.example:5432/cds", "postgres://u:p@db.example:5432/cds"]
)
def test_postgresql_urls_use_psycopg_3(url: str) -> None:
    engine = create_store_engine(url)
    assert engine.url.drivername == "postgresql+psycopg"
    assert engine.dialect.driver == "psycopg"
    assert engine.url.host == "db.example" and engine.url.database == "cds"
    assert engine.pool._pre_ping


def test_explicit_postgresql_driver_is_kept() -> None:
    engine = create_store_engine("postgresql+psycopg://u@localhost/cds")
    assert engine.url.drivername == "postgresql+psycopg"


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    engine = create_store_engine(default_database_url(tmp_path))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    finally:
        engine.dispose()


# --- migrations ---


def test_migrate_creates_the_used_jwt_ids_table(engine: Engine) -> None:
    migrate(engine)

    inspector = inspect(engine)
    assert "used_jwt_ids" in inspector.get_table_names()
    columns = {column["name"]: column for column in inspector.get_columns("used_jwt_ids")}
    assert set(columns) == {"iss", "jti", "expires_at"}
    assert columns["iss"]["type"].length == 512  # type: ignore[attr-defined]
    assert columns["jti"]["type"].length == 256  # type: ignore[attr-defined]
    assert isinstance(columns["expires_at"]["type"], Float)
    assert not any(column["nullable"] for column in columns.values())
    assert inspector.get_pk_constraint("used_jwt_ids")["constrained_columns"] == ["iss", "jti"]
    indexes = {index["name"]: index for index in inspector.get_indexes("used_jwt_ids")}
    assert indexes["ix_used_jwt_ids_expires_at"]["column_names"] == ["expires_at"]
    assert _version(engine) == [_head()]


def test_migrate_twice_is_a_no_op(engine: Engine) -> None:
    migrate(engine)
    assert SqlReplayGuard(engine).remember(ISS, "kept", time.time() + 60)

    migrate(engine)

    assert list(_stored(engine)) == [(ISS, "kept")]
    assert _version(engine) == [_head()]


def test_migrate_from_four_processes_at_once(engine: Engine) -> None:
    barrier = _ctx.Barrier(4)
    _run_processes(_migrate_worker, [(_url(engine), barrier)] * 4)

    assert _version(engine) == [_head()]
    assert "used_jwt_ids" in inspect(engine).get_table_names()


# --- replay guard ---


def test_remember_accepts_a_jti_once(engine: Engine) -> None:
    migrate(engine)
    guard = SqlReplayGuard(engine)
    expires_at = time.time() + 300

    assert guard.remember(ISS, "jti-1", expires_at) is True
    assert guard.remember(ISS, "jti-1", expires_at) is False
    assert SqlReplayGuard(engine).remember(ISS, "jti-1", expires_at) is False


def test_same_jti_from_another_issuer_is_not_a_replay(engine: Engine) -> None:
    migrate(engine)
    guard = SqlReplayGuard(engine)
    expires_at = time.time() + 300

    assert guard.remember(ISS, "shared", expires_at) is True
    assert guard.remember("https://other-ehr.example.org", "shared", expires_at) is True
    assert guard.remember("https://other-ehr.example.org", "shared", expires_at) is False


def test_expired_rows_are_purged_every_purge_every_calls(engine: Engine) -> None:
    migrate(engine)
    clock = FakeClock(1000.0)
    guard = SqlReplayGuard(engine, clock=clock, purge_every=3)

    assert guard.remember(ISS, "short", 1010.0)
    assert guard.remember(ISS, "long", 2000.0)
    clock.now = 1010.0  # "short" expires now
    assert set(_stored(engine)) == {(ISS, "short"), (ISS, "long")}

    assert guard.remember(ISS, "third", 2000.0)  # the third call purges

    assert set(_stored(engine)) == {(ISS, "long"), (ISS, "third")}


def test_an_expired_jti_is_never_trusted_and_can_be_reused(engine: Engine) -> None:
    migrate(engine)
    clock = FakeClock(1000.0)
    guard = SqlReplayGuard(engine, clock=clock, purge_every=10_000)  # no purge in this test

    assert guard.remember(ISS, "reused", 1010.0)
    clock.now = 1009.5
    assert not guard.remember(ISS, "reused", 1100.0)
    assert _stored(engine)[(ISS, "reused")] == 1010.0  # a refused replay changes nothing

    clock.now = 1010.0
    assert guard.remember(ISS, "reused", 1100.0)
    assert _stored(engine)[(ISS, "reused")] == 1100.0
    assert not guard.remember(ISS, "reused", 1100.0)


def test_purge_returns_the_number_of_expired_rows(engine: Engine) -> None:
    migrate(engine)
    clock = FakeClock(1000.0)
    guard = SqlReplayGuard(engine, clock=clock)
    for i in range(5):
        guard.remember(ISS, f"jti-{i}", 1000.0 + i)

    clock.now = 1002.0

    assert guard.purge() == 3
    assert set(_stored(engine)) == {(ISS, "jti-3"), (ISS, "jti-4")}


def test_replay_is_refused_across_processes(engine: Engine) -> None:
    migrate(engine)
    jtis = [f"jti-{i:03d}" for i in range(200)]
    barrier = _ctx.Barrier(2)
    results: Queue[int] = _ctx.Queue()

    _run_processes(_remember_worker, [(_url(engine), jtis, barrier, results)] * 2)

    successes = [results.get(timeout=10), results.get(timeout=10)]
    assert sum(successes) == 200
    assert set(_stored(engine)) == {(ISS, jti) for jti in jtis}


def test_overlong_ids_are_rejected_rather_than_truncated(engine: Engine) -> None:
    migrate(engine)
    guard = SqlReplayGuard(engine)

    with pytest.raises(ValueError):
        guard.remember(ISS, "j" * 257, time.time() + 60)
    with pytest.raises(ValueError):
        guard.remember("i" * 513, "jti", time.time() + 60)
    assert guard.remember("i" * 512, "j" * 256, time.time() + 60)


def test_purge_every_must_be_positive(tmp_path: Path) -> None:
    engine = create_store_engine(default_database_url(tmp_path))
    with pytest.raises(ValueError):
        SqlReplayGuard(engine, purge_every=0)
