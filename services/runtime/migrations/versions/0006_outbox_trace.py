"""Rewards: the outbox keeps the trace context of the event that booked each entry, so the
relay's records continue the trace they belong to.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add reward_outbox.traceparent (null for rows booked outside a consumed event)."""
    op.add_column("reward_outbox", sa.Column("traceparent", sa.String(55), nullable=True))


def downgrade() -> None:
    op.drop_column("reward_outbox", "traceparent")
