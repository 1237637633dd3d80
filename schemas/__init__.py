"""Event contracts shared by every Rapport service and every outside producer or consumer."""

from schemas.account_events import (
    ACCOUNT_EVENT_ADAPTER,
    CUSTOMER_INITIATED,
    AccountEvent,
    EventType,
    account_event_key,
    parse_account_event,
)
from schemas.envelope import RAPPORT_EVENT_ADAPTER, RapportEvent
from schemas.topics import ALL_TOPICS, TopicSpec, dead_letter_topics

__all__ = [
    "ACCOUNT_EVENT_ADAPTER",
    "ALL_TOPICS",
    "CUSTOMER_INITIATED",
    "RAPPORT_EVENT_ADAPTER",
    "AccountEvent",
    "EventType",
    "RapportEvent",
    "TopicSpec",
    "account_event_key",
    "dead_letter_topics",
    "parse_account_event",
]
