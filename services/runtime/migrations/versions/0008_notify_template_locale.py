"""Notify: each notification keeps the locale of the template its text was written from
(zh-CN, zh-Hant or en), now that customers' locales are any BCP 47 tag.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add notify_notifications.template_locale (null for notifications stored before it)."""
    op.add_column(
        "notify_notifications", sa.Column("template_locale", sa.String(64), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("notify_notifications", "template_locale")
