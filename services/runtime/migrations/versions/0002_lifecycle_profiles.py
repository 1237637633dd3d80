"""Lifecycle read model: one row per customer, written by the lifecycle worker.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create lifecycle_profiles."""
    op.create_table(
        "lifecycle_profiles",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("stage", sa.String(16), nullable=True),
        sa.Column("stage_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("win_back", sa.Boolean, nullable=False),
        sa.Column("churn_score", sa.Float, nullable=False),
        sa.Column("signals", sa.JSON, nullable=True),
        sa.Column("relationship_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("total_balance", sa.String(32), nullable=False),
        sa.Column("balance_avg_30d", sa.String(32), nullable=False),
        sa.Column("balance_avg_90d", sa.String(32), nullable=False),
        sa.Column("open_accounts", sa.Integer, nullable=False),
        sa.Column("open_products", sa.Integer, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_lifecycle_profiles_stage_tier", "lifecycle_profiles", ["stage", "tier"])


def downgrade() -> None:
    """Drop lifecycle_profiles."""
    op.drop_index("ix_lifecycle_profiles_stage_tier", "lifecycle_profiles")
    op.drop_table("lifecycle_profiles")
