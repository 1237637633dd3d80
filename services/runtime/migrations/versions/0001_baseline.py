"""Baseline: the installation record every later migration builds on.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the installation record."""
    table = op.create_table(
        "rapport_installation",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.execute(table.insert().values(key="schema_family", value="rapport"))


def downgrade() -> None:
    """Drop the installation record."""
    op.drop_table("rapport_installation")
