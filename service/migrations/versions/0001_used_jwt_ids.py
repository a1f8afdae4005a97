"""Create ``used_jwt_ids``: the JWT IDs already accepted, shared by every worker and replica.

Revision ID: 0001
Revises:
Create Date: 2025-11-23

The primary key ``(iss, jti)`` is what refuses a replay: two processes inserting the same ID
cannot both succeed. ``expires_at`` (epoch seconds, double precision so fractional ``exp``
values survive) is indexed because expired rows are purged by a range delete on it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table and its expiry index."""
    op.create_table(
        "used_jwt_ids",
        sa.Column("iss", sa.String(512), nullable=False),
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("iss", "jti", name="pk_used_jwt_ids"),
    )
    op.create_index("ix_used_jwt_ids_expires_at", "used_jwt_ids", ["expires_at"])


def downgrade() -> None:
    """Drop the table (and with it the index)."""
    op.drop_index("ix_used_jwt_ids_expires_at", table_name="used_jwt_ids")
    op.drop_table("used_jwt_ids")
