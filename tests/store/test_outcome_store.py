"""The outcome tables on SQLite and a real PostgreSQL: migrations, recording, feedback, purge.

Migrations are shown from an empty database and from the schema every deployment has today
(revision 0001) with replay rows in it, which must survive. Feedback idempotency rests on the
database's primary key, so it is shown on both backends.
"""

from __future__ import annotations

import time

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from service import content as content_module
from service.outcomes import policy as policy_module
from service.outcomes.records import FeedbackReport, IssuedCard
from service.outcomes.store import CardStore
from service.outcomes.tables import card_feedback, issued_cards, suppression_state
from service.store import MIGRATIONS_DIR, SqlReplayGuard, _alembic_config, migrate, used_jwt_ids

TABLES = {"issued_cards", "issued_suggestions", "card_feedback", "suppression_state"}
POLICY = policy_module.load(content_module.load(None))
NOW = 1_780_000_000.0


def _card(uuid: str, *, at: float = NOW, fingerprint: str = "f" * 64) -> IssuedCard:
    return IssuedCard(
        card_uuid=uuid,
        service_id="epidural-complications",
        rule="R-05",
        pattern="persisting_symptoms",
        content_version="2026.12.0",
        indicator="warning",
        fingerprint=fingerprint,
        patient_key="k" * 64,
        hook_instance="hook-1",
        issued_at=at,
        shown=True,
        suggestions=(("s-" + uuid, "anesthesia_referral"),),
    )


def _report(
    card: str, code: str = "assessed-not-concerning", at: float = NOW + 60
) -> FeedbackReport:
    return FeedbackReport(
        feedback_id=f"{card}-{code}-{at}".ljust(64, "0")[:64],
        card_uuid=card,
        outcome="overridden",
        reason_code=code,
        reason_system=None,
        accepted_ids=(),
        user_comment=None,
        outcome_at=at,
    )


def test_migrate_from_empty_creates_the_outcome_tables(engine: Engine) -> None:
    migrate(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    heads = ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()
    with engine.connect() as conn:
        versions = [r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))]
    assert sorted(versions) == sorted(heads)  # every head applied, this branch's 0003 among them


def test_migrate_from_0001_keeps_the_replay_rows(engine: Engine) -> None:
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
    assert SqlReplayGuard(engine).remember("https://ehr.example.org", "kept", time.time() + 600)
    assert not TABLES & set(inspect(engine).get_table_names())

    migrate(engine)

    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as conn:
        assert [r.jti for r in conn.execute(select(used_jwt_ids))] == ["kept"]
    assert not SqlReplayGuard(engine).remember("https://ehr.example.org", "kept", time.time() + 600)


def test_the_same_feedback_is_stored_once_and_updates_suppression(engine: Engine) -> None:
    migrate(engine)
    store = CardStore(engine)
    store.record([_card("card-1")])
    first = store.record_feedback("epidural-complications", [_report("card-1")], POLICY)
    again = store.record_feedback(
        "epidural-complications", [_report("card-1"), _report("card-1")], POLICY
    )
    assert (first.stored, first.duplicates, first.unknown) == (1, 0, 0)
    assert (again.stored, again.duplicates) == (0, 2)
    with engine.connect() as conn:
        assert conn.execute(select(card_feedback.c.known)).scalars().all() == [True]
        subjects = conn.execute(select(suppression_state.c.subject)).scalars().all()
    assert subjects == ["card:" + "f" * 64]
    state = store.state_for("k" * 64, "epidural-complications", NOW - 3600)
    assert [(s.subject, s.reason) for s in state] == [
        ("card:" + "f" * 64, "assessed-not-concerning")
    ]


def test_unknown_cards_and_other_services_create_no_suppression(engine: Engine) -> None:
    migrate(engine)
    store = CardStore(engine)
    store.record([_card("card-1")])
    result = store.record_feedback("another-service", [_report("card-1")], POLICY)
    assert result.unknown == 1
    assert store.state_for("k" * 64, "epidural-complications", 0) == []


def test_purge_deletes_only_what_is_past_retention(engine: Engine) -> None:
    migrate(engine)
    store = CardStore(engine)
    store.record([_card("old", at=NOW - 10 * 86400), _card("new", at=NOW)])
    deleted = store.purge(NOW - 86400)
    assert deleted["issued_cards"] == 1 and deleted["issued_suggestions"] == 1
    with engine.connect() as conn:
        assert conn.execute(select(issued_cards.c.card_uuid)).scalars().all() == ["new"]


def test_postgresql_pool_and_connect_timeout_follow_the_settings() -> None:
    from sqlalchemy.pool import QueuePool

    from service.store import create_store_engine

    engine = create_store_engine("postgresql://u@db.example/cds", pool_size=5, connect_timeout_s=2)
    assert isinstance(engine.pool, QueuePool)
    assert engine.pool.size() == 5 and engine.pool._max_overflow == 1
    assert engine.pool._timeout == 2
