"""What notify's API reads: a customer's notifications, an RM's tasks, the task summary and
the uplift of interventions."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from pydantic import BaseModel
from sqlmodel import col, select

from schemas.notify import RmTaskChanged
from services.notify.domain import (
    NotifyRules,
    within_lead_budget,
)
from services.notify.store import (
    PRIORITY_ORDER,
    STATUS_ORDER,
    InterventionRow,
    NotificationRow,
    TaskRow,
)
from services.runtime import db

log = logging.getLogger(__name__)


class NotificationView(BaseModel):
    notification_id: str
    category: str
    template: str
    # The locale of the template's text: zh-CN, zh-Hant or en (null for rows stored before it
    # was recorded).
    template_locale: str | None
    channel: str | None
    # scheduled (queued for the senders; `deferred` when quiet hours moved it), sent or failed
    # (webhook delivery), suppressed or cancelled.
    status: str
    deferred: bool
    reason_code: str | None
    occurred_at: datetime
    send_at: datetime | None
    delivery_attempts: int | None
    delivery_error: str | None


def notifications(url: str, customer_id: str, limit: int) -> list[NotificationView]:
    """A customer's notifications and their delivery status, newest first."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(NotificationRow)
            .where(NotificationRow.customer_id == customer_id)
            .order_by(col(NotificationRow.occurred_at).desc())
            .limit(limit)
        ).all()
        return [
            NotificationView(
                **{
                    **r.model_dump(),
                    "occurred_at": db.as_utc(r.occurred_at),
                    "send_at": db.as_utc(r.send_at) if r.send_at else None,
                    "deferred": r.send_at is not None
                    and db.as_utc(r.send_at) != db.as_utc(r.occurred_at),
                }
            )
            for r in rows
        ]


def tasks_of(
    url: str,
    assignee: str,
    include_closed: bool,
    rules: NotifyRules | None = None,
    kind: str | None = None,
) -> list[RmTaskChanged]:
    """An RM's (or queue's) tasks, of one kind or all: open first, then queued, by priority
    and due time; with `rules`, the lead tasks within the daily budget only."""
    query = select(TaskRow).where(TaskRow.assignee == assignee)
    if kind is not None:
        query = query.where(TaskRow.kind == kind)
    with db.session_scope(url) as session:
        rows = session.exec(query).all()
        tasks = [RmTaskChanged.model_validate_json(r.task) for r in rows]
    if rules is not None:
        tasks = within_lead_budget(tasks, rules)
    if not include_closed:
        tasks = [t for t in tasks if t.status != "closed"]
    return sorted(
        tasks, key=lambda t: (STATUS_ORDER[t.status], PRIORITY_ORDER[t.priority.value], t.due_at)
    )


def task_assignee(url: str, task_id: str) -> str | None:
    """Whose task it is (an RM id or a team queue); None when there is no such task."""
    with db.session_scope(url) as session:
        row = session.get(TaskRow, task_id)
        return None if row is None else row.assignee


class TaskSummary(BaseModel):
    by_assignee: dict[str, dict[str, int]]
    outcomes: dict[str, int]
    overdue_open: int


def task_summary(url: str, now: datetime) -> TaskSummary:
    """Open, queued and closed tasks per assignee, outcomes, and open tasks past due."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(TaskRow.assignee, TaskRow.status, TaskRow.outcome, TaskRow.due_at)
        ).all()
    by_assignee: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    outcomes: dict[str, int] = defaultdict(int)
    overdue = 0
    for assignee, status, outcome, due_at in rows:
        by_assignee[assignee][status] += 1
        if outcome:
            outcomes[outcome] += 1
        if status == "open" and db.as_utc(due_at) < now:
            overdue += 1
    return TaskSummary(
        by_assignee={a: dict(s) for a, s in sorted(by_assignee.items())},
        outcomes=dict(outcomes),
        overdue_open=overdue,
    )


class UpliftCell(BaseModel):
    tier: str
    cause: str
    treated: int
    treated_retained: int
    holdout: int
    holdout_retained: int
    treated_retention: float | None
    holdout_retention: float | None
    uplift: float | None


def uplift(url: str) -> list[UpliftCell]:
    """Retention of treated against holdout at-risk customers, per tier and cause, counting
    only interventions whose outcome is known (the customer left at-risk one way or the
    other)."""
    with db.session_scope(url) as session:
        rows = session.exec(
            select(
                InterventionRow.tier,
                InterventionRow.cause,
                InterventionRow.treated,
                InterventionRow.outcome,
            ).where(col(InterventionRow.outcome).is_not(None))
        ).all()
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for tier, cause, treated, outcome in rows:
        cell = cells[(tier, cause)]
        offset = 0 if treated else 2
        cell[offset] += 1
        cell[offset + 1] += outcome == "retained"

    def rate(part: int, whole: int) -> float | None:
        return round(part / whole, 4) if whole else None

    out = []
    for (tier, cause), (t, tr, h, hr) in sorted(cells.items()):
        treated_rate, holdout_rate = rate(tr, t), rate(hr, h)
        out.append(
            UpliftCell(
                tier=tier,
                cause=cause,
                treated=t,
                treated_retained=tr,
                holdout=h,
                holdout_retained=hr,
                treated_retention=treated_rate,
                holdout_retention=holdout_rate,
                uplift=None
                if treated_rate is None or holdout_rate is None
                else round(treated_rate - holdout_rate, 4),
            )
        )
    return out
