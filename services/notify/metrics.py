"""Notify business metrics (bounded labels only: categories, templates, reasons, priorities)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter

from schemas.notify import NotificationChanged, RmTaskChanged
from services.notify.read_model import TaskSummary, UpliftCell
from services.runtime.metrics import Samples

NOTIFICATIONS = Counter(
    "rapport_notify_notifications_total",
    "Customer notifications by outcome (scheduled, suppressed, cancelled), channel (empty when "
    "none could be used), category and reason.",
    ["outcome", "channel", "category", "reason"],
)
DEFERRED = Counter(
    "rapport_notify_deferred_total",
    "Notifications scheduled later than their cause because of quiet hours.",
)
TASKS = Counter(
    "rapport_notify_rm_tasks_total",
    "RM tasks by change (created, closed), kind, priority and status.",
    ["change", "kind", "priority", "status"],
)
PROFILE_WAITS = Counter(
    "rapport_notify_profile_waits_total",
    "Batches that waited for the profile facts before their events to be taken, by outcome "
    "(taken: they were; timed_out: decided anyway after RAPPORT_NOTIFY_PROFILE_WAIT_SECONDS; "
    "abandoned: left to be taken again after a rebalance that began meanwhile).",
    ["outcome"],
)
DELIVERIES = Counter(
    "rapport_notify_webhook_deliveries_total",
    "Webhook deliveries by channel and verdict (sent, failed: dead-lettered).",
    ["channel", "status"],
)


def record(output: NotificationChanged | RmTaskChanged) -> None:
    """Count one published output."""
    if isinstance(output, RmTaskChanged):
        change = output.type.split(".", 1)[1]
        TASKS.labels(change, output.kind, output.priority.value, output.status).inc()
        return
    NOTIFICATIONS.labels(
        output.type.split(".", 1)[1],
        output.channel.value if output.channel else "",
        output.category.value,
        output.reason_code or "",
    ).inc()
    if output.deferred:
        DEFERRED.inc()


def task_samples(read: Callable[[], TaskSummary]) -> Callable[[], Samples]:
    """`rapport_notify_rm_tasks_by_status{status}`: tasks by status over every assignee, and
    `overdue` for open tasks past their due time."""

    def samples() -> Samples:
        summary = read()
        totals: dict[str, int] = {"open": 0, "queued": 0, "closed": 0}
        for statuses in summary.by_assignee.values():
            for status, n in statuses.items():
                totals[status] = totals.get(status, 0) + n
        totals["overdue"] = summary.overdue_open
        return [((status,), float(n)) for status, n in sorted(totals.items())]

    return samples


def intervention_samples(read: Callable[[], list[UpliftCell]]) -> Callable[[], Samples]:
    """`rapport_notify_interventions{tier,cause,group,outcome}`: at-risk customers whose outcome
    is known, treated or held out, retained or lost."""

    def samples() -> Samples:
        out: Samples = []
        for cell in read():
            for group, total, retained in (
                ("treated", cell.treated, cell.treated_retained),
                ("holdout", cell.holdout, cell.holdout_retained),
            ):
                out.append(((cell.tier, cell.cause, group, "retained"), float(retained)))
                out.append(((cell.tier, cell.cause, group, "lost"), float(total - retained)))
        return out

    return samples
