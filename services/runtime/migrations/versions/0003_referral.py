"""Referral: issued codes (the system of record), and the read model of referrals and leads.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create referral_codes, referrals and referral_leads."""
    op.create_table(
        "referral_codes",
        sa.Column("code", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False, index=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "referrals",
        sa.Column("referral_id", sa.String(64), primary_key=True),
        sa.Column("referrer", sa.String(64), nullable=True, index=True),
        sa.Column("referee", sa.String(64), nullable=False, index=True),
        sa.Column("via", sa.String(8), nullable=False),
        sa.Column("lead_type", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(16), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("reason_code", sa.String(32), nullable=True),
        sa.Column("reason", sa.String(300), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "referral_leads",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("lead_type", sa.String(16), nullable=False),
        sa.Column("suggested_referrer", sa.String(64), nullable=False, index=True),
        sa.Column("transactions", sa.Integer, nullable=False),
        sa.Column("customers", sa.Integer, nullable=False),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the referral tables."""
    op.drop_table("referral_leads")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
