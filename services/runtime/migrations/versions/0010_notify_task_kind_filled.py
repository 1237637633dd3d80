"""Notify: the tasks stored before 0009 get their kind from their stored event, so that an RM's
worklist filtered by kind (`GET /rm/{id}/tasks?kind=`) shows them too.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT task_id, task FROM notify_tasks WHERE kind IS NULL"))
    for task_id, task in rows.all():
        kind = orjson.loads(bytes(task)).get("kind")
        bind.execute(
            sa.text("UPDATE notify_tasks SET kind = :kind WHERE task_id = :task_id"),
            {"kind": kind, "task_id": task_id},
        )


def downgrade() -> None:
    """Nothing to undo: 0009's downgrade drops the column with the kinds in it."""
