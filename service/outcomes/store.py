"""The outcome store: issued cards, feedback and suppression state, in the service's database.

Why SQL and this shape: every worker and replica must see the same suppression state, and the
feedback a client was told we kept must survive a crash, so it lives in the shared store next
to the JWT replay rows (SQLite by default, PostgreSQL in production).

The hook path costs one round trip when a call has cards: an indexed ``SELECT`` of the
patient's suppression state; the cards themselves are written in batches by
:class:`service.outcomes.writer.CardWriter`. Feedback is one
transaction: look up the cards it names, insert each report once (its id is a digest of its
content, so a repeated report is a no-op), update the suppression state, commit. On SQLite that
commit runs with ``synchronous = FULL`` (the connection's default is ``NORMAL``, see
:func:`service.store.create_store_engine`): a 200 for feedback means the row is on disk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from service.outcomes.policy import OutcomePolicy
from service.outcomes.records import (
    CARD_SUBJECT,
    SUGGESTION_SUBJECT,
    FeedbackReport,
    FeedbackResult,
    IssuedCard,
    StateRow,
)
from service.outcomes.tables import (
    card_feedback,
    issued_cards,
    issued_suggestions,
    suppression_state,
)

_KINDS_MAX = 512
#: Longest stored suggestion kind: the "+"-joined content keys of one suggested plan.
KIND_MAX = 255


def _insert(table: Table, dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"the outcome store supports SQLite and PostgreSQL, not {dialect!r}")


class CardStore:
    """Reads and writes the outcome tables; thread-safe (each call takes its own connection)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        """Use ``engine``, whose schema :func:`service.store.migrate` has brought up to date."""
        self.engine = engine
        self._clock = clock
        self._dialect = engine.dialect.name
        self._state_upsert = self._upsert_state_statement()
        mark = "?" if self._dialect == "sqlite" else "%s"
        self._state_sql = (
            "SELECT subject, indicator, reason, acted_at FROM suppression_state "
            f"WHERE patient_key = {mark} AND service_id = {mark} AND acted_at >= {mark}"
        )
        self._local = threading.local()
        self._cards_sql = (
            "INSERT INTO issued_cards (card_uuid, service_id, rule, pattern, content_version, "
            "indicator, fingerprint, patient_key, hook_instance, issued_at, shown) VALUES "
            f"({', '.join([mark] * 11)})"
        )
        self._suggestions_sql = (
            "INSERT INTO issued_suggestions (suggestion_uuid, card_uuid, kind, issued_at) "
            f"VALUES ({', '.join([mark] * 4)})"
        )

    def record_batch(self, cards: Sequence[IssuedCard]) -> None:
        """Store many cards in one transaction on this thread's driver connection.

        The batch writer's path: hand-written ``INSERT`` statements through the driver's
        ``executemany`` cost a fraction of SQLAlchemy's per-row work. The driver gives up the
        GIL around every row, which is why this runs between requests, not beside them
        (:mod:`service.outcomes.writer`). Errors are raised as :class:`SQLAlchemyError` after the
        connection is dropped.
        """
        if not cards:
            return
        dbapi = self.engine.dialect.loaded_dbapi
        card_rows = [
            (c.card_uuid, c.service_id, c.rule, c.pattern, c.content_version, c.indicator,
             c.fingerprint, c.patient_key, c.hook_instance[:128], c.issued_at, c.shown)
            for c in cards
        ]  # fmt: skip
        suggestion_rows = [
            (s_uuid, c.card_uuid, kind[:KIND_MAX], c.issued_at)
            for c in cards
            for s_uuid, kind in c.suggestions
        ]
        try:
            connection = self._thread_connection()
            cursor = connection.cursor()
            try:
                cursor.executemany(self._cards_sql, card_rows)
                if suggestion_rows:
                    cursor.executemany(self._suggestions_sql, suggestion_rows)
            finally:
                cursor.close()
            connection.commit()
        except (dbapi.Error, SQLAlchemyError) as exc:
            with contextlib.suppress(Exception):
                connection.rollback()
            self._drop_thread_connection()
            raise SQLAlchemyError(f"issued cards not written ({type(exc).__name__})") from exc

    def record(self, cards: Sequence[IssuedCard]) -> None:
        """Store the cards of one hook call and their suggestions, in one transaction."""
        if not cards:
            return
        card_rows = [
            {
                "card_uuid": c.card_uuid,
                "service_id": c.service_id,
                "rule": c.rule,
                "pattern": c.pattern,
                "content_version": c.content_version,
                "indicator": c.indicator,
                "fingerprint": c.fingerprint,
                "patient_key": c.patient_key,
                "hook_instance": c.hook_instance[:128],
                "issued_at": c.issued_at,
                "shown": c.shown,
            }
            for c in cards
        ]
        suggestion_rows = [
            {"suggestion_uuid": s_uuid, "card_uuid": c.card_uuid, "kind": kind[:KIND_MAX],
             "issued_at": c.issued_at}
            for c in cards
            for s_uuid, kind in c.suggestions
        ]  # fmt: skip
        with self.engine.begin() as connection:
            connection.execute(issued_cards.insert(), card_rows)
            if suggestion_rows:
                connection.execute(issued_suggestions.insert(), suggestion_rows)

    def state_for(self, patient_key: str, service_id: str, since: float) -> list[StateRow]:
        """The patient's suppression facts acted on at or after ``since``.

        This read runs on every hook call with cards, so it bypasses SQLAlchemy's per-statement
        work: one hand-written indexed ``SELECT`` on a driver connection the calling thread
        keeps (about a tenth of the cost through the pool). A failing connection is dropped and
        the error raised as :class:`SQLAlchemyError`; the next call connects again.
        """
        dbapi = self.engine.dialect.loaded_dbapi
        try:
            connection = self._thread_connection()  # raw_connection raises driver errors
            cursor = connection.cursor()
            try:
                cursor.execute(self._state_sql, (patient_key, service_id, since))
                rows = cursor.fetchall()
            finally:
                cursor.close()
            if self._dialect != "sqlite":
                connection.rollback()  # end the read transaction (psycopg opens one)
        except (dbapi.Error, SQLAlchemyError) as exc:
            self._drop_thread_connection()
            raise SQLAlchemyError(f"suppression state read failed ({type(exc).__name__})") from exc
        return [StateRow(str(a), str(b), str(c), float(d)) for a, b, c, d in rows]

    def _thread_connection(self) -> Any:
        held = getattr(self._local, "connection", None)
        if held is None:
            held = self.engine.raw_connection()
            self._local.connection = held
        return held.driver_connection

    def _drop_thread_connection(self) -> None:
        held = getattr(self._local, "connection", None)
        self._local.connection = None
        if held is not None:
            with contextlib.suppress(Exception):
                held.invalidate()

    def record_feedback(
        self,
        service_id: str,
        reports: Sequence[FeedbackReport],
        policy: OutcomePolicy,
        *,
        received_at: float | None = None,
    ) -> FeedbackResult:
        """Store each report once and update suppression state; commit before returning."""
        received = self._clock() if received_at is None else received_at
        with self.engine.connect() as connection:
            if self._dialect == "sqlite":
                connection.exec_driver_sql("PRAGMA synchronous = FULL")
                connection.commit()  # ends SQLAlchemy's autobegun (empty) transaction
            try:
                with connection.begin():
                    result = self._feedback_in(connection, service_id, reports, policy, received)
            finally:
                if self._dialect == "sqlite":
                    connection.exec_driver_sql("PRAGMA synchronous = NORMAL")
                    connection.commit()
        return result

    def _feedback_in(
        self,
        connection: Connection,
        service_id: str,
        reports: Sequence[FeedbackReport],
        policy: OutcomePolicy,
        received: float,
    ) -> FeedbackResult:
        cards = self._cards(connection, service_id, {r.card_uuid for r in reports})
        kinds = self._kinds(connection, {i for r in reports for i in r.accepted_ids})
        stored = duplicates = unknown = 0
        insert = _insert(card_feedback, self._dialect)
        for report in reports:
            card = cards.get(report.card_uuid)
            accepted = [
                kinds[i] for i in report.accepted_ids if kinds.get(i, ("",))[0] == report.card_uuid
            ]
            accepted_kinds = ",".join(kind for _, kind in accepted)[:_KINDS_MAX] or None
            row = {
                "feedback_id": report.feedback_id,
                "card_uuid": report.card_uuid[:256],
                "service_id": service_id,
                "known": card is not None,
                "outcome": report.outcome,
                "reason_code": report.reason_code,
                "reason_system": report.reason_system,
                "accepted_count": len(report.accepted_ids),
                "accepted_kinds": accepted_kinds,
                "user_comment": report.user_comment,
                "outcome_at": report.outcome_at,
                "received_at": received,
            }
            done = connection.execute(
                insert.values(row)
                .on_conflict_do_nothing(index_elements=[card_feedback.c.feedback_id])
                .returning(card_feedback.c.feedback_id)
            ).first()
            if done is None:
                duplicates += 1
                continue
            stored += 1
            if card is None:
                unknown += 1
                continue
            acted_at = min(report.outcome_at, received)
            for subject, reason in _state_subjects(report, card, accepted, policy):
                connection.execute(
                    self._state_upsert,
                    {
                        "patient_key": card["patient_key"],
                        "service_id": service_id,
                        "subject": subject,
                        "indicator": card["indicator"],
                        "reason": reason[:128],
                        "card_uuid": report.card_uuid[:64],
                        "acted_at": acted_at,
                    },
                )
        return FeedbackResult(len(reports), stored, duplicates, unknown)

    def _cards(
        self, connection: Connection, service_id: str, uuids: Iterable[str]
    ) -> dict[str, Mapping[str, Any]]:
        wanted = [u for u in uuids if len(u) <= 64]
        if not wanted:
            return {}
        query = select(
            issued_cards.c.card_uuid,
            issued_cards.c.rule,
            issued_cards.c.indicator,
            issued_cards.c.fingerprint,
            issued_cards.c.patient_key,
        ).where(issued_cards.c.card_uuid.in_(wanted), issued_cards.c.service_id == service_id)
        return {row.card_uuid: dict(row._mapping) for row in connection.execute(query)}

    def _kinds(self, connection: Connection, uuids: Iterable[str]) -> dict[str, tuple[str, str]]:
        wanted = [u for u in uuids if len(u) <= 64]
        if not wanted:
            return {}
        query = select(
            issued_suggestions.c.suggestion_uuid,
            issued_suggestions.c.card_uuid,
            issued_suggestions.c.kind,
        ).where(issued_suggestions.c.suggestion_uuid.in_(wanted))
        return {row[0]: (row[1], row[2]) for row in connection.execute(query)}

    def _upsert_state_statement(self) -> Any:
        statement = _insert(suppression_state, self._dialect)
        excluded = statement.excluded
        return statement.on_conflict_do_update(
            index_elements=[
                suppression_state.c.patient_key,
                suppression_state.c.service_id,
                suppression_state.c.subject,
            ],
            set_={
                "indicator": excluded.indicator,
                "reason": excluded.reason,
                "card_uuid": excluded.card_uuid,
                "acted_at": excluded.acted_at,
            },
            where=suppression_state.c.acted_at < excluded.acted_at,
        )

    def purge(self, before: float) -> dict[str, int]:
        """Delete everything recorded before ``before`` (epoch seconds); counts per table."""
        deleted: dict[str, int] = {}
        with self.engine.begin() as connection:
            for table, column in (
                (issued_suggestions, issued_suggestions.c.issued_at),
                (issued_cards, issued_cards.c.issued_at),
                (card_feedback, card_feedback.c.received_at),
                (suppression_state, suppression_state.c.acted_at),
            ):
                result = connection.execute(table.delete().where(column < before))
                deleted[table.name] = int(result.rowcount)
        return deleted


def _state_subjects(
    report: FeedbackReport,
    card: Mapping[str, Any],
    accepted: Sequence[tuple[str, str]],
    policy: OutcomePolicy,
) -> list[tuple[str, str]]:
    """The suppression facts one stored report creates: ``(subject, reason)`` pairs."""
    subjects: list[tuple[str, str]] = []
    card_subject = CARD_SUBJECT + str(card["fingerprint"])
    if report.outcome == "overridden":
        code = report.reason_code
        if code is not None and code in policy.reasons_for(str(card["rule"])):
            subjects.append((card_subject, code))
    elif report.outcome == "accepted":
        if policy.accepted_is_plan_in_place:
            subjects.append((card_subject, "accepted"))
        # A suggestion is a whole plan: every order in it was accepted ("+"-joined kinds).
        subjects += [
            (SUGGESTION_SUBJECT + part, "accepted")
            for _, kind in accepted
            for part in kind.split("+")
        ]
    return subjects
