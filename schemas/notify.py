"""Outputs of the notify service (issue 7): customer notifications on
`rapport.notifications.v1` and relationship-manager tasks on `rapport.rm-tasks.v1`.

Messages never carry full account numbers or counterparty details: templates only see masked
or aggregated values.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import JsonValue

from schemas.account_events import EventTime
from schemas.envelope import RapportEvent


class Channel(StrEnum):
    """How a message reaches the customer."""

    PUSH = "push"
    SMS = "sms"
    EMAIL = "email"


class Category(StrEnum):
    """What kind of message it is: caps and consent treat them differently."""

    RETENTION = "retention"
    ENGAGEMENT = "engagement"  # stage strategies: welcome, recommendations, exclusive service
    GREETING = "greeting"  # birthdays and anniversaries
    SERVICE = "service"  # rewards credited, referral qualified: their own cap


class NotificationChanged(RapportEvent):
    """`notification.scheduled` (to be sent at `send_at`; later than the cause when quiet hours
    deferred it), `notification.suppressed` (not sent, with the reason) or
    `notification.cancelled` (a scheduled message the senders must not send: the churn signal
    behind a deferred retention message resolved first)."""

    type: Literal["notification.scheduled", "notification.suppressed", "notification.cancelled"]
    notification_id: str
    customer_id: str
    category: Category
    template: str
    channel: Channel | None = None
    # The customer's locale (a BCP 47 tag, such as zh-Hant-HK or de-AT), or notify's default
    # when the customer's profile gives none.
    locale: str | None = None
    # The locale of the template the subject and body were written from: zh-CN, zh-Hant or en
    # (en for a language without templates). Added 2026-12: absent from earlier records.
    template_locale: str | None = None
    subject: str | None = None
    body: str | None = None
    send_at: EventTime | None = None
    # The customer's time zone, in which quiet hours and the daily cap were applied.
    time_zone: str | None = None
    deferred: bool = False
    dedupe_key: str
    reason_code: str | None = None
    reason: str | None = None
    source_event_id: str


class Priority(StrEnum):
    """How soon an RM should act."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


TaskKind = Literal["retention_call", "introduction_request", "corporate_lead"]


class RmTaskChanged(RapportEvent):
    """`rm_task.created`, `rm_task.released` (a queued task opened because its assignee
    closed another) or `rm_task.closed` (an outcome was recorded), keyed by task id on a
    compacted topic: the latest record is the task."""

    type: Literal["rm_task.created", "rm_task.released", "rm_task.closed"]
    task_id: str
    kind: TaskKind
    customer_id: str
    # The customer's RM, or a team queue ("queue:<team>") when the customer has none.
    assignee: str
    priority: Priority
    due_at: EventTime
    # "queued": the assignee's daily capacity was full when it came; it waits its turn.
    status: Literal["open", "queued", "closed"]
    tier: str | None = None
    cause: str | None = None
    summary: str
    evidence: dict[str, JsonValue] = {}
    counterparty_key: str | None = None
    outcome: Literal["contacted", "retained", "lost", "not_reachable"] | None = None
    note: str | None = None
    source_event_id: str
