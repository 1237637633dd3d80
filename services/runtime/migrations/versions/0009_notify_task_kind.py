"""Notify: each task keeps its kind, so that the leads handed out to an assignee in a day can be
counted against the daily lead budget.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add notify_tasks.kind (null for tasks stored before it: they count for no budget)."""
    op.add_column("notify_tasks", sa.Column("kind", sa.String(32), nullable=True))


def downgrade() -> None:
    op.drop_column("notify_tasks", "kind")
