"""Notify: customer profiles, notifications, RM tasks, interventions and the events taken.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the notify_* tables."""
    op.create_table(
        "notify_profiles",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "notify_notifications",
        sa.Column("notification_id", sa.String(64), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("category", sa.String(16), nullable=False),
        sa.Column("template", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(8), nullable=True),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("cause", sa.String(40), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason_code", sa.String(40), nullable=True),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("send_at", _TIME, nullable=True),
        sa.Column("source_event_id", sa.String(128), nullable=False),
        sa.Column("delivery_attempts", sa.Integer, nullable=True),
        sa.Column("delivery_error", sa.String(300), nullable=True),
    )
    op.create_table(
        "notify_tasks",
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("assignee", sa.String(64), nullable=False, index=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("due_at", _TIME, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("task", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "notify_interventions",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("at", _TIME, primary_key=True),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("cause", sa.String(40), nullable=False),
        sa.Column("treated", sa.Boolean, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("outcome_at", _TIME, nullable=True),
    )
    op.create_table(
        "notify_source_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("outputs", sa.LargeBinary, nullable=False),
        sa.Column("processed_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    """Drop the notify_* tables."""
    for table in (
        "notify_source_events",
        "notify_interventions",
        "notify_tasks",
        "notify_notifications",
        "notify_profiles",
    ):
        op.drop_table(table)
