"""Lifecycle business metrics (bounded labels only: stages, tiers, signals, causes)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
