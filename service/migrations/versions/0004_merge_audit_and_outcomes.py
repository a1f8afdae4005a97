"""Join the two branches of the schema: audit records (0002) and card outcomes (0003).

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-12-02

Both revisions were written side by side, each revising 0001, so the history had two heads. This
merge point changes nothing in the database; it gives the history one head again, so
``alembic upgrade head`` and a check against "the current revision" mean one thing.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0004"
down_revision: str | Sequence[str] | None = ("0002", "0003")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: both branches' tables already exist."""


def downgrade() -> None:
    """Nothing to undo."""
