"""Create the tables of issued cards, their suggestions, feedback and suppression state.

Revision ID: 0003
Revises: 0001
Create Date: 2026-12-02

Self-contained on purpose: it revises 0001 only, so it applies on its own and beside any
sibling revision of 0001; :func:`service.store.migrate` upgrades to every head. Columns are
described in :mod:`service.outcomes.tables`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the four tables and their time indexes (the retention purge deletes by range)."""
    op.create_table(
        "issued_cards",
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(16), nullable=False),
        sa.Column("pattern", sa.String(64), nullable=False),
        sa.Column("content_version", sa.String(32), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.Column("shown", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", name="pk_issued_cards"),
    )
    op.create_index("ix_issued_cards_issued_at", "issued_cards", ["issued_at"])
    op.create_table(
        "issued_suggestions",
        sa.Column("suggestion_uuid", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("issued_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("suggestion_uuid", name="pk_issued_suggestions"),
    )
    op.create_index("ix_issued_suggestions_card_uuid", "issued_suggestions", ["card_uuid"])
    op.create_index("ix_issued_suggestions_issued_at", "issued_suggestions", ["issued_at"])
    op.create_table(
        "card_feedback",
        sa.Column("feedback_id", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(256), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("known", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(128), nullable=True),
        sa.Column("reason_system", sa.String(256), nullable=True),
        sa.Column("accepted_count", sa.Integer(), nullable=False),
        sa.Column("accepted_kinds", sa.String(512), nullable=True),
        sa.Column("user_comment", sa.Text(), nullable=True),
        sa.Column("outcome_at", sa.Double(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("feedback_id", name="pk_card_feedback"),
    )
    op.create_index("ix_card_feedback_card_uuid", "card_feedback", ["card_uuid"])
    op.create_index("ix_card_feedback_received_at", "card_feedback", ["received_at"])
    op.create_table(
        "suppression_state",
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(160), nullable=False),
        sa.Column("indicator", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("card_uuid", sa.String(64), nullable=False),
        sa.Column("acted_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint(
            "patient_key", "service_id", "subject", name="pk_suppression_state"
        ),
    )
    op.create_index("ix_suppression_state_acted_at", "suppression_state", ["acted_at"])


def downgrade() -> None:
    """Drop the four tables (their indexes go with them)."""
    for table in ("suppression_state", "card_feedback", "issued_suggestions", "issued_cards"):
        op.drop_table(table)
