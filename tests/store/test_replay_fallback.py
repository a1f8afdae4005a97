"""The replay guard when the store cannot be reached (:mod:`service.replay_fallback`).

The store is a real SQLite file. An outage is real too: the directory holding the file is moved
away and the engine's pool emptied, so every connection attempt fails with SQLite's own
"unable to open database file" (an ``OperationalError``); moving it back ends the outage. A
"sibling" is a second guard on its own engine over the same file, as another worker process
has. One test stops a real PostgreSQL server instead, for the driver's own connection errors.
Tokens are only IDs here: the authenticator in front of the guard is covered elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from service.errors import StoreUnavailable
from service.replay_fallback import REFUSE, FallbackReplayGuard, is_outage
from service.store import (
    SqlReplayGuard,
    create_store_engine,
    default_database_url,
    migrate,
    used_jwt_ids,
)
from tests.support.postgres import PostgresServer

ISS = "https://ehr.example.org"
LOGGER = "service.replay_fallback"


class Store:
    """A migrated SQLite store in ``<tmp>/db`` whose directory can be taken away."""

    def __init__(self, tmp_path: Path) -> None:
        self.directory = tmp_path / "db"
        self.away = tmp_path / "db-away"
        self.directory.mkdir()
        self.url = default_database_url(self.directory)
        self.engines: list[Engine] = []
        migrate(self.engine())

    def engine(self) -> Engine:
        """A new engine on the file (one per guard, as each worker process has its own)."""
        engine = create_store_engine(self.url)
        self.engines.append(engine)
        return engine

    def go_down(self) -> None:
        self.directory.rename(self.away)
        for engine in self.engines:
            engine.dispose()  # pooled connections would still reach the moved file

    def come_back(self) -> None:
        self.away.rename(self.directory)

    def recorded(self) -> set[str]:
        with self.engines[0].connect() as connection:
            return {row.jti for row in connection.execute(select(used_jwt_ids.c.jti))}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path)
    yield made
    for engine in made.engines:
        engine.dispose()


def guard_on(store: Store, **options: object) -> tuple[FallbackReplayGuard, list[str]]:
    events: list[str] = []
    guard = FallbackReplayGuard(
        SqlReplayGuard(store.engine()),
        on_event=events.append,
        retry_s=0,
        **options,  # type: ignore[arg-type]
    )
    return guard, events


def later() -> float:
    return time.time() + 300


def test_an_unreachable_store_falls_back_to_memory(store: Store) -> None:
    guard, events = guard_on(store)
    assert guard.remember(ISS, "before", later())
    store.go_down()
    assert guard.remember(ISS, "during", later())
    assert guard.store_down
    assert guard.pending == 1
    assert events == ["down", "accepted_in_memory"]


def test_a_token_seen_in_memory_is_a_replay_while_the_store_is_down(store: Store) -> None:
    guard, _ = guard_on(store)
    store.go_down()
    assert guard.remember(ISS, "once", later())
    assert not guard.remember(ISS, "once", later())
    assert guard.remember("https://other.example.org", "once", later())  # (iss, jti) pairs


def test_ids_accepted_during_the_outage_reach_the_store_and_the_siblings(store: Store) -> None:
    guard, events = guard_on(store)
    sibling = SqlReplayGuard(store.engine())
    store.go_down()
    assert guard.remember(ISS, "during-1", later())
    assert guard.remember(ISS, "during-2", later())
    store.come_back()

    assert guard.remember(ISS, "after", later())  # the next call that reaches the store
    assert not guard.store_down
    assert guard.pending == 0
    assert {"during-1", "during-2", "after"} <= store.recorded()
    assert not sibling.remember(ISS, "during-1", later())
    assert not sibling.remember(ISS, "during-2", later())
    assert not guard.remember(ISS, "during-1", later())
    assert events == ["down", "accepted_in_memory", "accepted_in_memory", "up"]


def test_a_replay_that_is_the_first_call_after_the_outage_is_refused(store: Store) -> None:
    guard, events = guard_on(store)
    store.go_down()
    assert guard.remember(ISS, "once", later())
    store.come_back()
    assert not guard.remember(ISS, "once", later())  # memory decides before the store does
    assert guard.remember(ISS, "next", later())
    assert "once" in store.recorded()
    assert "used_elsewhere" not in events


def test_each_transition_is_logged_once_without_ids(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    guard, _ = guard_on(store)
    store.go_down()
    for n in range(5):
        guard.remember(ISS, f"secret-jti-{n}", later())
    store.come_back()
    for n in range(5, 8):
        guard.remember(ISS, f"secret-jti-{n}", later())
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(messages) == 2, messages
    assert "cannot be reached (OperationalError)" in messages[0]
    assert "reachable again" in messages[1]
    assert not any("secret-jti" in m or ISS in m for m in messages)


def test_refuse_mode_answers_store_unavailable(store: Store) -> None:
    guard, events = guard_on(store, mode=REFUSE)
    store.go_down()
    with pytest.raises(StoreUnavailable) as raised:
        guard.remember(ISS, "refused", later())
    assert raised.value.status == 503
    assert guard.pending == 0
    store.come_back()
    assert guard.remember(ISS, "refused", later())  # nothing was recorded for it
    assert events == ["down", "refused", "up"]


def test_a_token_accepted_elsewhere_meanwhile_is_reported_when_written(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    guard, events = guard_on(store)
    sibling = SqlReplayGuard(store.engine())
    store.go_down()
    assert guard.remember(ISS, "twice", later())
    store.come_back()
    assert sibling.remember(ISS, "twice", later())  # the residual risk: a sibling accepts it
    assert guard.remember(ISS, "next", later())
    assert events[-1] == "used_elsewhere"
    assert any("also been used elsewhere" in r.getMessage() for r in caplog.records)


def test_expired_ids_leave_memory_and_are_not_written(store: Store) -> None:
    now = [time.time()]
    guard, _ = guard_on(store, clock=lambda: now[0])
    store.go_down()
    assert guard.remember(ISS, "short", now[0] + 10)
    now[0] += 11
    assert guard.remember(ISS, "short", now[0] + 10)  # expired: a new token may reuse the ID
    now[0] += 11
    store.come_back()
    assert guard.remember(ISS, "after", now[0] + 10)
    assert "short" not in store.recorded()


def test_a_dead_store_is_retried_at_most_once_per_interval(store: Store) -> None:
    tick = [0.0]
    guard = FallbackReplayGuard(
        SqlReplayGuard(store.engine()), retry_s=1.0, monotonic=lambda: tick[0]
    )
    store.go_down()
    assert guard.remember(ISS, "a", later())
    store.come_back()
    tick[0] = 0.5
    assert guard.remember(ISS, "b", later())  # not tried yet: decided in memory
    assert guard.store_down and guard.pending == 2
    tick[0] = 1.5
    assert guard.remember(ISS, "c", later())
    assert not guard.store_down and guard.pending == 0
    assert {"a", "b", "c"} <= store.recorded()


def test_a_full_memory_refuses_rather_than_forgets(store: Store) -> None:
    guard, _ = guard_on(store, limit=2)
    store.go_down()
    assert guard.remember(ISS, "1", later())
    assert guard.remember(ISS, "2", later())
    with pytest.raises(StoreUnavailable):
        guard.remember(ISS, "3", later())
    assert not guard.remember(ISS, "1", later())


def test_released_tokens_may_be_sent_again(store: Store) -> None:
    guard, _ = guard_on(store)
    assert guard.remember(ISS, "in-store", later())
    guard.release(ISS, "in-store")
    assert guard.remember(ISS, "in-store", later())

    store.go_down()
    assert guard.remember(ISS, "in-memory", later())
    guard.release(ISS, "in-memory")
    assert guard.pending == 0
    assert guard.remember(ISS, "in-memory", later())
    assert not guard.remember(ISS, "in-memory", later())


def test_an_id_longer_than_the_table_holds_is_refused_in_memory_too(store: Store) -> None:
    guard, _ = guard_on(store)
    store.go_down()
    with pytest.raises(ValueError):
        guard.remember(ISS, "x" * 257, later())


def test_only_unreachable_stores_count_as_outages() -> None:
    # Exceptions as SQLAlchemy raises them, built directly: no database makes these on demand.
    assert is_outage(OperationalError("SELECT 1", None, Exception("connection refused")))
    assert is_outage(PoolTimeoutError("QueuePool limit reached"))
    assert not is_outage(IntegrityError("INSERT", None, Exception("duplicate key")))
    assert not is_outage(ProgrammingError("INSERT", None, Exception("no such relation")))


def test_a_stopped_postgresql_falls_back_and_recovers() -> None:
    with PostgresServer() as server:
        engine = create_store_engine(server.url, connect_timeout_s=2)
        migrate(engine)
        guard = FallbackReplayGuard(SqlReplayGuard(engine), retry_s=0)
        sibling = SqlReplayGuard(create_store_engine(server.url, connect_timeout_s=2))
        assert guard.remember(ISS, "before", later())
        server.pause()
        started = time.monotonic()
        assert guard.remember(ISS, "during", later())
        assert time.monotonic() - started < 5
        assert not guard.remember(ISS, "during", later())
        server.resume()
        assert guard.remember(ISS, "after", later())
        assert not sibling.remember(ISS, "during", later())
        engine.dispose()
