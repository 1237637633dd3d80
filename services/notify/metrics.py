"""Notify business metrics (bounded labels only: categories, templates, reasons, priorities)."""

from __future__ import annotations

from prometheus_client import Counter

from schemas.notify import NotificationChanged, RmTaskChanged

NOTIFICATIONS = Counter(
    "rapport_notify_notifications_total",
    "Customer notifications by outcome (scheduled, suppressed, cancelled), category and reason.",
    ["outcome", "category", "reason"],
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
        output.type.split(".", 1)[1], output.category.value, output.reason_code or ""
    ).inc()
    if output.deferred:
        DEFERRED.inc()
