"""Every Kafka topic Rapport reads or writes, with its key, partitioning and retention.

This module is the single source for `rapport topics create`, the AsyncAPI document and the
services' subscriptions, so a topic's name is spelled in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DLQ_SUFFIX = ".dlq"
DAY_MS = 24 * 60 * 60 * 1000

# Dead-letter records carry the original bytes as value and key; the why goes in headers.
DLQ_HEADER_ERROR = "rapport-error"
DLQ_HEADER_REASON = "rapport-error-reason"
DLQ_HEADER_SOURCE_TOPIC = "rapport-source-topic"
DLQ_HEADER_SOURCE_PARTITION = "rapport-source-partition"
DLQ_HEADER_SOURCE_OFFSET = "rapport-source-offset"
DLQ_HEADER_SERVICE = "rapport-service"


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the contract fixes it."""

    name: str
    description: str
    key: str
    payload: str | None  # name of the JSON Schema file in schemas/jsonschema, once defined
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    compacted: bool = False
    retention_ms: int = 30 * DAY_MS
    has_dlq: bool = True
    defined_by: str = ""
    extra_config: dict[str, str] = field(default_factory=dict)

    @property
    def dlq(self) -> str:
        """Name of this topic's dead-letter topic."""
        return self.name + DLQ_SUFFIX

    def config(self) -> dict[str, str]:
        """Broker-side topic configuration."""
        if self.compacted:
            # Latest value per key is the point; never let time retention delete live keys.
            cfg = {"cleanup.policy": "compact", "retention.ms": "-1"}
        else:
            cfg = {"cleanup.policy": "delete", "retention.ms": str(self.retention_ms)}
        return {**cfg, **self.extra_config}


ACCOUNT_EVENTS = TopicSpec(
    name="bank.account-events.v1",
    description="Core-banking account events, one JSON object per event.",
    key="customer id (UTF-8)",
    payload="account-event.v1.json",
    producers=("core banking",),
    consumers=("lifecycle", "referral", "notify"),
    # A year of history must stay replayable so a new rule can be back-tested on real events.
    retention_ms=400 * DAY_MS,
)
STAGE_CHANGED = TopicSpec(
    name="rapport.lifecycle.stage-changed.v1",
    description="Lifecycle stage and value-tier transitions, one per real change.",
    key="customer id (UTF-8)",
    payload="stage-changed.v1.json",
    producers=("lifecycle",),
    # lifecycle: its history of stages and signals (services/lifecycle/history.py).
    consumers=("lifecycle", "rewards", "notify"),
    defined_by="issue 3 (lifecycle service)",
)
CHURN_SIGNALS = TopicSpec(
    name="rapport.lifecycle.churn-signals.v1",
    description="Churn signals raised, escalated and resolved, with cause, score and evidence.",
    key="customer id (UTF-8)",
    payload="churn-signal.v1.json",
    producers=("lifecycle",),
    consumers=("lifecycle", "notify"),
    defined_by="issue 3 (lifecycle service)",
)
MILESTONES = TopicSpec(
    name="rapport.lifecycle.milestones.v1",
    description="Customer milestones in event time: tenure anniversaries and birthdays.",
    key="customer id (UTF-8)",
    payload="milestone.v1.json",
    producers=("lifecycle",),
    consumers=("rewards", "notify"),
    defined_by="issue 6 (loyalty rewards)",
)
REFERRAL_EVENTS = TopicSpec(
    name="rapport.referral.events.v1",
    description="Leads, attributions, qualifications, rejections, holds and reversals.",
    key="referral id or counterparty hash (UTF-8)",
    payload="referral-event.v1.json",
    producers=("referral",),
    consumers=("rewards", "notify"),
    defined_by="issue 5 (referral service)",
)
REWARDS_LEDGER = TopicSpec(
    name="rapport.rewards.ledger.v1",
    description="Ledger entries as booked, published through the transactional outbox.",
    key="customer id (UTF-8)",
    payload="ledger-entry.v1.json",
    producers=("rewards",),
    consumers=("notify",),
    defined_by="issue 6 (rewards service)",
)
NOTIFICATIONS = TopicSpec(
    name="rapport.notifications.v1",
    description="Customer messages for the push, SMS and e-mail senders.",
    key="customer id (UTF-8)",
    payload="notification.v1.json",
    producers=("notify",),
    consumers=("push, SMS and e-mail senders",),
    defined_by="issue 7 (notify service)",
)
RM_TASKS = TopicSpec(
    name="rapport.rm-tasks.v1",
    description="Follow-up tasks for relationship managers; the latest state of each task.",
    key="task id (UTF-8)",
    payload="rm-task.v1.json",
    producers=("notify",),
    consumers=("RM workbench",),
    # Keyed by task id and re-published on every status change: the latest state is the task.
    compacted=True,
    defined_by="issue 7 (notify service)",
)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    ACCOUNT_EVENTS,
    STAGE_CHANGED,
    CHURN_SIGNALS,
    MILESTONES,
    REFERRAL_EVENTS,
    REWARDS_LEDGER,
    NOTIFICATIONS,
    RM_TASKS,
)


def dead_letter_topic(topic: TopicSpec) -> TopicSpec:
    """The `<topic>.dlq` companion of a topic, kept long enough to fix the cause and replay."""
    return TopicSpec(
        name=topic.dlq,
        description=f"Records of {topic.name} that a consumer could not accept, with the reason.",
        key="the original key",
        payload=None,
        producers=topic.consumers,
        consumers=("operators (rapport dlq)",),
        retention_ms=90 * DAY_MS,
        has_dlq=False,
    )


def dead_letter_topics() -> tuple[TopicSpec, ...]:
    """The `<topic>.dlq` companions of the contract's topics."""
    return tuple(dead_letter_topic(t) for t in ALL_TOPICS if t.has_dlq)
