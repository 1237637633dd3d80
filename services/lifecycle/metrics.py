"""Lifecycle business metrics (bounded labels only: stages, tiers, signals, causes)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Histogram

from schemas.lifecycle import (
    ChurnSignalChanged,
    CustomerBirthday,
    Stage,
    StageChanged,
    TenureAnniversary,
    Tier,
)
from services.runtime.metrics import Samples

STAGE_TRANSITIONS = Counter(
    "rapport_lifecycle_stage_transitions_total",
    "Stage changes, by previous and new stage.",
    ["from_stage", "to_stage"],
)
TIER_TRANSITIONS = Counter(
    "rapport_lifecycle_tier_transitions_total",
    "Tier changes, by previous and new tier.",
    ["from_tier", "to_tier"],
)
CHURN_SIGNALS = Counter(
    "rapport_lifecycle_churn_signals_total",
    "Churn signals raised, escalated and resolved, by signal and cause.",
    ["change", "signal", "cause"],
)
DUPLICATES = Counter(
    "rapport_lifecycle_duplicate_events_total", "Events ignored because their event_id was seen."
)
LATE_EVENTS = Counter(
    "rapport_lifecycle_late_events_total",
    "Events older than the stream clock (newest event time less the allowed lateness).",
)
EVENT_TIME_LAG = Histogram(
    "rapport_lifecycle_event_time_lag_seconds",
    "Stream clock minus the event's time when it was processed.",
    buckets=(0, 60, 3600, 6 * 3600, 86400, 7 * 86400, 30 * 86400),
)
ANNIVERSARIES = Counter(
    "rapport_lifecycle_tenure_anniversaries_total",
    "Tenure anniversaries announced, by the customer's tier at the time.",
    ["tier"],
)
BIRTHDAYS = Counter("rapport_lifecycle_birthdays_total", "Customer birthdays announced.")
READ_MODEL_ROWS = Counter(
    "rapport_lifecycle_read_model_rows_written_total",
    "Customer rows written to the lifecycle read model.",
)
READ_MODEL_FAILURES = Counter(
    "rapport_lifecycle_read_model_write_failures_total",
    "Batches the read model could not take (retried on the next interval).",
)


def record(
    output: StageChanged | ChurnSignalChanged | TenureAnniversary | CustomerBirthday,
) -> None:
    """Count one published output by its kind."""
    if isinstance(output, CustomerBirthday):
        BIRTHDAYS.inc()
    elif isinstance(output, TenureAnniversary):
        ANNIVERSARIES.labels(output.tier.value).inc()
    elif isinstance(output, ChurnSignalChanged):
        change = output.type.rsplit(".", 1)[1]
        CHURN_SIGNALS.labels(change, output.signal.value, output.cause.value).inc()
    elif output.type == "stage.changed":
        STAGE_TRANSITIONS.labels(str(output.previous_stage or "none"), output.stage.value).inc()
    else:
        TIER_TRANSITIONS.labels(str(output.previous_tier or "none"), output.tier.value).inc()


def customer_samples(count: Callable[[], list[tuple[Stage, Tier, int]]]) -> Callable[[], Samples]:
    """`rapport_lifecycle_customers{stage,tier}` samples, every stage and tier, zeros included."""

    def read() -> Samples:
        found = {(stage, tier): n for stage, tier, n in count()}
        return [
            ((stage.value, tier.value), float(found.get((stage, tier), 0)))
            for stage in Stage
            for tier in Tier
        ]

    return read
