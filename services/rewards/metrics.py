"""Rewards business metrics (bounded labels only: rules, entry kinds, reason codes, outcomes)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from schemas.rewards import LedgerEntryBooked

POINTS = Counter(
    "rapport_rewards_points_total",
    "Points booked, by rule and entry kind (reversals and redemptions count their size).",
    ["rule", "kind"],
)
ENTRIES = Counter(
    "rapport_rewards_ledger_entries_total",
    "Ledger entries booked, by rule and entry kind.",
    ["rule", "kind"],
)
WITHHELD = Counter(
    "rapport_rewards_withheld_points_total",
    "Points a cap kept back, by reason code.",
    ["reason"],
)
DUPLICATES = Counter(
    "rapport_rewards_duplicate_events_total",
    "Events the ledger had already taken (redelivered or replayed), ignored.",
)
REDEMPTIONS = Counter(
    "rapport_rewards_redemptions_total",
    "Redemption requests answered, by outcome (booked, replayed, refused code).",
    ["outcome"],
)
OUTBOX_PUBLISHED = Counter(
    "rapport_rewards_outbox_published_total",
    "Ledger entries the relay put on rapport.rewards.ledger.v1.",
)
OUTBOX_BACKLOG = Gauge(
    "rapport_rewards_outbox_backlog",
    "Entries booked but not yet on the ledger topic (as the relaying worker last saw).",
)
RELAY_RECONCILED = Counter(
    "rapport_rewards_outbox_reconciled_total",
    "Entries found already on the topic when a relay took over (sent, not yet marked).",
)


def record(entry: LedgerEntryBooked) -> None:
    """Count one booked entry."""
    ENTRIES.labels(entry.rule, entry.kind.value).inc()
    POINTS.labels(entry.rule, entry.kind.value).inc(abs(entry.points))
