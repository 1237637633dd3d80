"""Notify: the churn-signal resolutions it has taken, so that a retention message taken after
the resolution that cancels it is cancelled as well.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create notify_resolutions."""
    op.create_table(
        "notify_resolutions",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("cause", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("signal", sa.String(40), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notify_resolutions")
