"""The store's tables for issued cards, feedback and suppression (revision 0003).

Why these columns and no others: the store is analytics plus alert-fatigue control, so it keeps
coded facts only. A patient appears as a keyed HMAC (:mod:`service.outcomes.keys`), evidence as
a fingerprint, and a free-text ``userComment`` only when a setting allows it (free text may hold
PHI). Times are epoch seconds (double), as for ``used_jwt_ids``, so that range deletes for the
retention purge are one indexed comparison on both backends.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from service.store import metadata

__all__ = ["card_feedback", "issued_cards", "issued_suggestions", "suppression_state"]

KEY_MAX = 64
"""Card and suggestion uuids, fingerprints and patient keys (64 hex digits) fit in this."""

issued_cards = Table(
    "issued_cards",
    metadata,
    Column("card_uuid", String(KEY_MAX), nullable=False),
    Column("service_id", String(64), nullable=False),
    Column("rule", String(16), nullable=False),
    Column("pattern", String(64), nullable=False),
    Column("content_version", String(32), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("fingerprint", String(KEY_MAX), nullable=False),
    Column("patient_key", String(KEY_MAX), nullable=False),
    Column("hook_instance", String(128), nullable=False),
    Column("issued_at", Double(), nullable=False),
    Column("shown", Boolean(), nullable=False),
    PrimaryKeyConstraint("card_uuid", name="pk_issued_cards"),
    Index("ix_issued_cards_issued_at", "issued_at"),
)

issued_suggestions = Table(
    "issued_suggestions",
    metadata,
    Column("suggestion_uuid", String(KEY_MAX), nullable=False),
    Column("card_uuid", String(KEY_MAX), nullable=False),
    Column("kind", String(255), nullable=False),
    Column("issued_at", Double(), nullable=False),
    PrimaryKeyConstraint("suggestion_uuid", name="pk_issued_suggestions"),
    Index("ix_issued_suggestions_card_uuid", "card_uuid"),
    Index("ix_issued_suggestions_issued_at", "issued_at"),
)

card_feedback = Table(
    "card_feedback",
    metadata,
    Column("feedback_id", String(KEY_MAX), nullable=False),
    Column("card_uuid", String(256), nullable=False),
    Column("service_id", String(64), nullable=False),
    Column("known", Boolean(), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("reason_code", String(128), nullable=True),
    Column("reason_system", String(256), nullable=True),
    Column("accepted_count", Integer(), nullable=False),
    Column("accepted_kinds", String(512), nullable=True),
    Column("user_comment", Text(), nullable=True),
    Column("outcome_at", Double(), nullable=False),
    Column("received_at", Double(), nullable=False),
    PrimaryKeyConstraint("feedback_id", name="pk_card_feedback"),
    Index("ix_card_feedback_card_uuid", "card_uuid"),
    Index("ix_card_feedback_received_at", "received_at"),
)

suppression_state = Table(
    "suppression_state",
    metadata,
    Column("patient_key", String(KEY_MAX), nullable=False),
    Column("service_id", String(64), nullable=False),
    Column("subject", String(160), nullable=False),
    Column("indicator", String(16), nullable=False),
    Column("reason", String(128), nullable=False),
    Column("card_uuid", String(KEY_MAX), nullable=False),
    Column("acted_at", Double(), nullable=False),
    PrimaryKeyConstraint("patient_key", "service_id", "subject", name="pk_suppression_state"),
    Index("ix_suppression_state_acted_at", "acted_at"),
)
