"""Lifecycle history: every stage and tier change and churn signal the lifecycle service
published, one row each (services/lifecycle/history.py), for a customer's timeline and the
team's stages over time. Filled from the worker's own output topics, from their start.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create lifecycle_history."""
    op.create_table(
        "lifecycle_history",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("previous_stage", sa.String(16), nullable=True),
        sa.Column("previous_tier", sa.String(16), nullable=True),
        sa.Column("signal", sa.String(40), nullable=True),
        sa.Column("cause", sa.String(40), nullable=True),
        sa.Column("churn_score", sa.Float, nullable=False),
        sa.Column("details", sa.JSON, nullable=True),
    )
    op.create_index(
        "ix_lifecycle_history_customer_at", "lifecycle_history", ["customer_id", "occurred_at"]
    )
    op.create_index("ix_lifecycle_history_at", "lifecycle_history", ["occurred_at"])


def downgrade() -> None:
    op.drop_table("lifecycle_history")
