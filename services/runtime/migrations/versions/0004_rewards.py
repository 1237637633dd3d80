"""Rewards: the append-only ledger, balances, withholdings, campaigns, redemptions, the audit
trail and the transactional outbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
OUTBOX_ID_KEY = "rewards_outbox_id"


def upgrade() -> None:
    """Create the reward_* tables, and name this database's outbox."""
    installation = sa.table(
        "rapport_installation", sa.column("key", sa.String), sa.column("value", sa.String)
    )
    # The relay tags what it publishes with this id, to tell its own records from those of
    # another database's outbox on the same topic.
    op.execute(installation.insert().values(key=OUTBOX_ID_KEY, value=str(uuid.uuid4())))
    op.create_table(
        "reward_ledger_entries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(64), nullable=False, unique=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("cash", sa.Numeric(20, 2), nullable=True),
        sa.Column("currency", sa.String(3), nullable=True),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("campaign_id", sa.String(64), nullable=True),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("source_event_id", sa.String(128), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=True, index=True),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("booked_at", _TIME, nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.Column("points_balance", sa.Integer, nullable=False),
        sa.UniqueConstraint(
            "source_event_id", "rule", "customer_id", name="uq_reward_entry_source"
        ),
    )
    op.create_table(
        "reward_accounts",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("flag_reason", sa.String(300), nullable=True),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "reward_withholdings",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("customer_id", sa.String(64), nullable=False, index=True),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("reason_code", sa.String(40), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("source_event_id", sa.String(128), nullable=False),
        sa.Column("referral_id", sa.String(64), nullable=True),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("booked_at", _TIME, nullable=False),
        sa.UniqueConstraint("source_event_id", "rule", "customer_id", name="uq_reward_withheld"),
    )
    op.create_table(
        "reward_source_events",
        sa.Column("event_id", sa.String(128), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", _TIME, nullable=False),
        sa.Column("processed_at", _TIME, nullable=False),
    )
    op.create_table(
        "reward_referrals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("referrer", sa.String(64), nullable=True, index=True),
        sa.Column("referee", sa.String(64), nullable=False, index=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "reward_campaigns",
        sa.Column("campaign_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("multiplier", sa.Numeric(8, 2), nullable=False),
        sa.Column("bonus_points", sa.Integer, nullable=False),
        sa.Column("starts_at", _TIME, nullable=False),
        sa.Column("ends_at", _TIME, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "reward_redemptions",
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("idempotency_key", sa.String(128), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_table(
        "reward_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_table(
        "reward_outbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entry_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("published_at", _TIME, nullable=True, index=True),
    )
    op.create_table(
        "reward_outbox_lease",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )


def downgrade() -> None:
    """Drop the reward_* tables."""
    op.execute(
        sa.text("DELETE FROM rapport_installation WHERE key = :k").bindparams(k=OUTBOX_ID_KEY)
    )
    for table in (
        "reward_outbox_lease",
        "reward_outbox",
        "reward_audit",
        "reward_redemptions",
        "reward_campaigns",
        "reward_referrals",
        "reward_source_events",
        "reward_withholdings",
        "reward_accounts",
        "reward_ledger_entries",
    ):
        op.drop_table(table)
