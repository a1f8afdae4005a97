"""Create ``audit_records``: one row per hook call, when the site keeps audit records in the store.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Written only with ``EPIDURAL_CDS_AUDIT_STORE=true`` (see :mod:`service.audit_store`); no patient
data and no token, only the SHA-256 of the token's ``jti``. ``recorded_at`` is indexed because
records are read, and eventually deleted, by time range.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table and its time index."""
    op.create_table(
        "audit_records",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("hook_instance", sa.String(128), nullable=True),
        sa.Column("issuer", sa.String(512), nullable=True),
        sa.Column("tenant", sa.String(256), nullable=True),
        sa.Column("jti_sha256", sa.String(64), nullable=True),
        sa.Column("service", sa.String(128), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("topics", sa.Text(), nullable=False),
        sa.Column("indicators", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Double(), nullable=False),
    )
    op.create_index("ix_audit_records_recorded_at", "audit_records", ["recorded_at"])


def downgrade() -> None:
    """Drop the table (and with it the index)."""
    op.drop_index("ix_audit_records_recorded_at", table_name="audit_records")
    op.drop_table("audit_records")
