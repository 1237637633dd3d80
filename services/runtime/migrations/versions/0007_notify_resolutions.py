"""Notify decides on event times, whichever of its topics it takes first: the churn-signal
resolutions it has taken (a retention message taken after the resolution that cancels it is
cancelled as well), and the customer's profile as a history of changes, each in force from its
event time, in place of the latest profile alone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create notify_resolutions and notify_profile_changes; each stored profile becomes one
    change in force from the start, so that what notify knew stays known."""
    op.create_table(
        "notify_resolutions",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("cause", sa.String(40), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("signal", sa.String(40), nullable=False),
        sa.Column("resolved_at", _TIME, nullable=False),
    )
    changes = op.create_table(
        "notify_profile_changes",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("effective_at", _TIME, nullable=False),
        sa.Column("fields", sa.JSON, nullable=False),
    )
    rows = op.get_bind().execute(sa.text("SELECT customer_id, profile FROM notify_profiles"))
    migrated = []
    for customer_id, profile in rows:
        fields = json.loads(profile) if isinstance(profile, str) else dict(profile)
        fields.pop("customer_id", None)
        migrated.append(
            {
                "event_id": f"migrated:{customer_id}",
                "customer_id": customer_id,
                "effective_at": datetime(1970, 1, 1, tzinfo=UTC),
                "fields": fields,
            }
        )
    if migrated:
        op.bulk_insert(changes, migrated)
    op.drop_table("notify_profiles")


def downgrade() -> None:
    op.create_table(
        "notify_profiles",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("profile", sa.JSON, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.drop_table("notify_profile_changes")
    op.drop_table("notify_resolutions")
